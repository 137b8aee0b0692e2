//! The hub follows the table: routable = live, SERVING, with an endpoint;
//! each change that alters a service's set is one generation; host names
//! resolve off the lock.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::liveness::{Event, EventKind, MemberView, Reason, State, Status};

fn member(instance: &str, state: State, status: Status, endpoint: Option<&str>) -> MemberView {
    let name: Arc<str> = format!("web/{instance}").into();
    MemberView {
        name,
        service_len: 3,
        labels: Arc::default(),
        state,
        status,
        session: 7,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(3),
        joined_at: Instant::now(),
        last_seen: Instant::now(),
        replica: None,
        endpoint: endpoint.map(Arc::from),
    }
}

fn event(kind: EventKind, member: MemberView) -> Event {
    Event {
        revision: 1,
        kind,
        reason: Reason::Join,
        member,
        slot: 0,
    }
}

fn addrs(hub: &Hub) -> Vec<(String, Vec<String>)> {
    hub.endpoints("web")
        .members
        .iter()
        .map(|(i, a)| (i.to_string(), a.iter().map(|a| a.to_string()).collect()))
        .collect()
}

#[test]
fn live_serving_members_with_endpoints_are_routed() {
    let hub = Arc::new(Hub::default());
    let (alive, serving) = (State::Alive, Status::Serving);
    hub.apply(&event(
        EventKind::Joined,
        member("a", alive, serving, Some("10.0.0.1:80")),
    ));
    hub.apply(&event(
        EventKind::Joined,
        member("b", alive, serving, Some("[::1]:81")),
    ));
    hub.apply(&event(EventKind::Joined, member("c", alive, serving, None)));
    assert_eq!(
        addrs(&hub),
        [
            ("a".into(), vec!["10.0.0.1:80".into()]),
            ("b".into(), vec!["[::1]:81".into()])
        ]
    );
    let g = hub.generation();
    // SUSPECT still routes; nothing changes.
    hub.apply(&event(
        EventKind::Updated,
        member("a", State::Suspect, serving, Some("10.0.0.1:80")),
    ));
    assert_eq!(hub.generation(), g);
    // NOT_SERVING, DEAD, LEFT, removed: out, one generation each.
    hub.apply(&event(
        EventKind::Updated,
        member("a", alive, Status::NotServing, Some("10.0.0.1:80")),
    ));
    assert_eq!(hub.generation(), g + 1);
    assert_eq!(addrs(&hub).len(), 1);
    hub.apply(&event(
        EventKind::Dead,
        member("b", State::Dead, serving, Some("[::1]:81")),
    ));
    assert_eq!(hub.generation(), g + 2);
    assert!(addrs(&hub).is_empty());
    assert_eq!(hub.changed("web"), 0, "an empty service reads as 0");
    hub.apply(&event(
        EventKind::Removed,
        member("b", State::Dead, serving, Some("[::1]:81")),
    ));
    assert_eq!(
        hub.generation(),
        g + 2,
        "removing what is not routed changes nothing"
    );
    // Back: in again.
    hub.apply(&event(
        EventKind::Joined,
        member("b", alive, serving, Some("[::1]:81")),
    ));
    assert_eq!(hub.changed("web"), g + 3);
}

#[tokio::test]
async fn host_names_are_resolved_before_they_are_routed() {
    let hub = Arc::new(Hub::default());
    let mut changes = hub.subscribe();
    let m = member("a", State::Alive, Status::Serving, Some("localhost:8080"));
    let g = hub.generation();
    hub.apply(&event(EventKind::Joined, m));
    assert!(
        addrs(&hub).is_empty(),
        "not routed before the name resolves"
    );
    assert_eq!(hub.generation(), g, "nothing to push before it resolves");
    let resolved = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            changes.changed().await.unwrap();
            if !addrs(&hub).is_empty() {
                return addrs(&hub);
            }
        }
    })
    .await
    .expect("localhost resolves");
    assert_eq!(resolved[0].0, "a");
    assert!(
        resolved[0]
            .1
            .iter()
            .all(|a| a.ends_with(":8080") && (a.starts_with("127.") || a.starts_with("[::1]"))),
        "{resolved:?}"
    );
}

#[test]
fn a_reset_keeps_what_did_not_move_and_drops_the_rest() {
    let hub = Arc::new(Hub::default());
    let (alive, serving) = (State::Alive, Status::Serving);
    hub.apply(&event(
        EventKind::Joined,
        member("a", alive, serving, Some("10.0.0.1:80")),
    ));
    hub.apply(&event(
        EventKind::Joined,
        member("b", alive, serving, Some("10.0.0.2:80")),
    ));
    hub.reset(&[member("b", alive, serving, Some("10.0.0.2:80"))]);
    assert_eq!(addrs(&hub), [("b".into(), vec!["10.0.0.2:80".into()])]);
    hub.reset(&[]);
    assert_eq!(hub.changed("web"), 0);
}
