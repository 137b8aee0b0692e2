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

/// A snapshot is read lazily while the table changes under it: members
/// already sent and members still ahead both leave, new ones join. What the
/// watcher sees (rows, then events) must add up to the table as it ends up,
/// with revisions strictly increasing after SNAPSHOT_END.
#[tokio::test]
async fn a_lazy_snapshot_of_a_changing_table_adds_up_to_the_table() {
    let server = TestServer::with(ServerConfig {
        default_interval: std::time::Duration::from_secs(60),
        default_timeout: std::time::Duration::from_secs(600),
        max_join_rate: 100_000,
        ..quick_drain()
    })
    .await;
    let mut client = server.client().await;
    let labels = big_labels();
    let join = |instance: String| heartbeat::pb::heartbeat::v1::Join {
        service: "big".into(),
        instance,
        labels: labels.clone(),
        ..Default::default()
    };
    // About 6 MB of snapshot: far more than flow control lets out at once.
    let mut beats = Vec::new();
    for i in 0..3000 {
        beats.push(
            Beat::join_with(&mut client, join(format!("i{i:04}")))
                .await
                .0,
        );
    }
    let mut watcher = server.client().await;
    let mut events = Events::open(&mut watcher, "", 0).await;
    let first = events.next().await;
    assert_eq!(kind_of(&first), EventType::Snapshot);
    // Changes while the server is part-way through the snapshot.
    for b in beats.iter_mut().step_by(6) {
        b.send(leave_req()).await;
        b.expect_ok_end().await;
    }
    let mut newcomers = Vec::new();
    for i in 0..100 {
        newcomers.push(
            Beat::join_with(&mut client, join(format!("n{i:03}")))
                .await
                .0,
        );
    }
    // Apply what the watcher sees: the snapshot, then events until a last
    // change made after SNAPSHOT_END (an event for a row still ahead is
    // folded into that row, so no revision says "caught up" by itself).
    let mut table = std::collections::BTreeMap::new();
    let mut apply = |e: &heartbeat::pb::heartbeat::v1::MemberEvent| {
        let m = e.member.as_ref().unwrap();
        if kind_of(e) == EventType::Removed {
            table.remove(&m.instance);
        } else {
            table.insert(m.instance.clone(), (m.state, m.session));
        }
    };
    apply(&first);
    let left = MemberState::Left as i32;
    let mut rows_left = 0;
    let snapshot_revision = loop {
        let e = events.next().await;
        match kind_of(&e) {
            EventType::Snapshot => {
                rows_left += usize::from(e.member.as_ref().unwrap().state == left);
                apply(&e);
            }
            EventType::SnapshotEnd => break e.revision,
            other => panic!("a {other:?} inside the snapshot"),
        }
    };
    let (_sentinel, _) = Beat::join_with(&mut client, join("sentinel".into())).await;
    let mut last = snapshot_revision;
    let mut events_left = 0;
    loop {
        let e = events.next().await;
        events_left += usize::from(kind_of(&e) == EventType::Left);
        assert!(
            e.revision > last,
            "revisions increase: {} after {last}",
            e.revision
        );
        last = e.revision;
        apply(&e);
        if e.member.as_ref().unwrap().instance == "sentinel" {
            break;
        }
    }
    let list = client
        .clone()
        .max_decoding_message_size(64 << 20)
        .list_members(ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.revision, last, "nothing else changed");
    let want: std::collections::BTreeMap<_, _> = list
        .members
        .iter()
        .map(|m| (m.instance.clone(), (m.state, m.session)))
        .collect();
    assert_eq!(table.len(), 3101);
    assert!(
        rows_left > 0 && events_left > 0 && rows_left + events_left == 500,
        "both kinds of change happened mid-snapshot: {rows_left} rows, {events_left} events"
    );
    assert_eq!(table, want, "rows and events add up to the table");
    drop((beats, newcomers));
    server.stop().await;
}

#[tokio::test]
async fn watch_streams_are_limited_per_connection_and_in_total() {
    let (server, registry) = TestServer::with_metrics(ServerConfig {
        max_watches: 3,
        max_watches_per_connection: 2,
        ..quick_drain()
    })
    .await;
    let mut one = server.client().await;
    let mut two = server.client().await;
    let _a = Events::open(&mut one, "", 0).await;
    let _b = Events::open(&mut one, "", 0).await;
    let err = one
        .watch_members(heartbeat::pb::heartbeat::v1::WatchMembersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("on this connection"),
        "{}",
        err.message()
    );
    let c = Events::open(&mut two, "", 0).await;
    let err = two
        .watch_members(heartbeat::pb::heartbeat::v1::WatchMembersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("on this server"),
        "{}",
        err.message()
    );
    assert_eq!(metric(&registry, "heartbeat_watch_streams"), 3.0);
    assert_eq!(
        metric(
            &registry,
            "heartbeat_rejections_total{reason=\"watch_limit\"}"
        ),
        2.0
    );
    // A closed stream frees its place.
    drop(c);
    within("the place to free", async {
        while metric(&registry, "heartbeat_watch_streams") > 2.0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let _d = Events::open(&mut two, "", 0).await;
    server.stop().await;
}

/// A watcher that stops reading while events pile up past the broadcast
/// buffer (flow control blocks the server's side of its stream). `history`
/// says how far back the server remembers.
async fn lagging_watcher(history: usize) -> (Vec<heartbeat::pb::heartbeat::v1::MemberEvent>, f64) {
    use heartbeat::pb::heartbeat::v1::MemberEvent;
    let (server, registry) = TestServer::with_metrics(ServerConfig {
        watch_buffer: 8,
        history,
        ..quick_drain()
    })
    .await;
    let mut conn = raw_h2_window(server.addr, 1024).await;
    let (response, _keep) = conn
        .open_unread("/heartbeat.v1.Heartbeat/WatchMembers", &[])
        .await;
    let response = within("the response", response).await.unwrap();
    let mut reader = GrpcReader::new(response.into_body());
    let end: MemberEvent = reader.next().await;
    assert_eq!(kind_of(&end), EventType::SnapshotEnd, "an empty table");
    // Not reading now: 60 joins, far more than 1 KiB and 8 events.
    let mut client = server.client().await;
    let mut beats = Vec::new();
    for i in 0..60 {
        beats.push(Beat::join(&mut client, "web", &format!("m{i:02}")).await.0);
    }
    let last = client
        .list_members(ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .revision;
    let mut seen = Vec::new();
    loop {
        let e: MemberEvent = reader.next().await;
        let done = e.revision == last && kind_of(&e) != EventType::Snapshot;
        seen.push(e);
        if done {
            break;
        }
    }
    let resyncs = metric(&registry, "heartbeat_watch_resyncs_total");
    assert_eq!(
        metric(&registry, "heartbeat_watch_lagged_total"),
        1.0,
        "the watcher did fall behind"
    );
    drop(beats);
    server.stop().await;
    (seen, resyncs)
}

#[tokio::test]
async fn a_watcher_that_falls_behind_resumes_from_the_history() {
    let (seen, resyncs) = lagging_watcher(8192).await;
    assert_eq!(resyncs, 0.0, "no snapshot needed");
    assert_eq!(seen.len(), 60, "every event, once");
    assert!(seen.iter().all(|e| kind_of(e) == EventType::Joined));
    assert!(
        seen.windows(2).all(|w| w[1].revision == w[0].revision + 1),
        "in order, none lost"
    );
}

#[tokio::test]
async fn a_watcher_behind_the_history_gets_a_fresh_snapshot() {
    let (seen, resyncs) = lagging_watcher(16).await;
    assert_eq!(resyncs, 1.0);
    let rows: std::collections::BTreeSet<_> = seen
        .iter()
        .filter(|e| kind_of(e) == EventType::Snapshot)
        .map(|e| e.member.as_ref().unwrap().instance.clone())
        .collect();
    let joined_after: std::collections::BTreeSet<_> = seen
        .iter()
        .skip_while(|e| kind_of(e) != EventType::SnapshotEnd)
        .filter(|e| kind_of(e) == EventType::Joined)
        .map(|e| e.member.as_ref().unwrap().instance.clone())
        .collect();
    assert_eq!(
        rows.union(&joined_after).count(),
        60,
        "the snapshot and what followed add up to every member"
    );
}
