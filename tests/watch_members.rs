//! ListMembers and WatchMembers: snapshot then live events in revision order,
//! resume with since_revision, fallback to a snapshot, service filter.

mod common;

use common::*;
use heartbeat::config::ServerConfig;
use heartbeat::pb::heartbeat::v1::{EventType, ListMembersRequest, MemberState};
use tonic::Code;

#[tokio::test]
async fn snapshot_then_live_events_with_increasing_revisions() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_a, _) = Beat::join(&mut client, "web", "a").await;
    let (_b, _) = Beat::join(&mut client, "db", "b").await;
    let list = client
        .list_members(ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<(&str, &str)> = list
        .members
        .iter()
        .map(|m| (m.service.as_str(), m.instance.as_str()))
        .collect();
    assert_eq!(
        names,
        [("db", "b"), ("web", "a")],
        "ordered by service, instance"
    );

    let mut events = Events::open(&mut client, "", 0).await;
    let (rows, rev) = events.snapshot().await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rev, list.revision, "nothing changed in between");
    let (mut c, _) = Beat::join(&mut client, "web", "c").await;
    c.send(leave_req()).await;
    c.expect_ok_end().await;
    let seen = events.until(EventType::Left, "c").await;
    assert_eq!(
        seen.iter().map(kind_of).collect::<Vec<_>>(),
        [EventType::Joined, EventType::Left]
    );
    assert_eq!(seen[0].revision, rev + 1);
    assert_eq!(seen[1].revision, rev + 2);
    assert_eq!(
        seen[1].member.as_ref().unwrap().state,
        MemberState::Left as i32
    );
    server.stop().await;
}

#[tokio::test]
async fn resume_from_a_revision_replays_exactly_what_followed() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_a, _) = Beat::join(&mut client, "web", "a").await;
    let rev = client
        .list_members(ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revision;
    let (_b, _) = Beat::join(&mut client, "web", "b").await;
    let (_c, _) = Beat::join(&mut client, "db", "c").await;
    let mut resumed = Events::open(&mut client, "", rev).await;
    let first = resumed.next().await;
    let second = resumed.next().await;
    assert_eq!(
        (kind_of(&first), first.revision),
        (EventType::Joined, rev + 1)
    );
    assert_eq!(first.member.unwrap().instance, "b");
    assert_eq!(
        (kind_of(&second), second.revision),
        (EventType::Joined, rev + 2)
    );
    // Filtered resume skips other services but keeps revisions.
    let mut filtered = Events::open(&mut client, "db", rev).await;
    let e = filtered.next().await;
    assert_eq!(
        (e.revision, e.member.unwrap().instance.as_str()),
        (rev + 2, "c")
    );
    // Resuming at the current revision sends nothing old, then live events.
    let mut live = Events::open(&mut client, "", rev + 2).await;
    let (_d, _) = Beat::join(&mut client, "web", "d").await;
    let e = live.next().await;
    assert_eq!((kind_of(&e), e.revision), (EventType::Joined, rev + 3));
    server.stop().await;
}

#[tokio::test]
async fn too_old_or_foreign_revisions_fall_back_to_a_snapshot() {
    let server = TestServer::with(ServerConfig {
        history: 2,
        ..quick_drain()
    })
    .await;
    let mut client = server.client().await;
    let rev0 = client
        .list_members(ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revision;
    let mut beats = vec![];
    for i in 0..4 {
        beats.push(Beat::join(&mut client, "web", &format!("i{i}")).await.0);
    }
    for since in [rev0, 1, rev0 + 100] {
        let mut events = Events::open(&mut client, "", since).await;
        let (rows, rev) = events.snapshot().await;
        assert_eq!(rows.len(), 4, "since {since}");
        assert_eq!(rev, rev0 + 4);
    }
    server.stop().await;
}

#[tokio::test]
async fn service_filter_applies_to_snapshot_and_live_events() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_a, _) = Beat::join(&mut client, "web", "a").await;
    let (_b, _) = Beat::join(&mut client, "db", "b").await;
    let mut events = Events::open(&mut client, "db", 0).await;
    let (rows, _) = events.snapshot().await;
    assert_eq!(
        rows.iter().map(|m| m.instance.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    let (_c, _) = Beat::join(&mut client, "web", "c").await;
    let (_d, _) = Beat::join(&mut client, "db", "d").await;
    assert_eq!(events.next().await.member.unwrap().instance, "d");
    let listed = client
        .list_members(ListMembersRequest {
            service: "web".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(listed.len(), 2);
    let err = client
        .list_members(ListMembersRequest {
            service: "bad name".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("service"));
    server.stop().await;
}
