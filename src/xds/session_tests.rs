//! The state-of-the-world protocol of one stream, request by request.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status as RpcStatus;

use super::*;

fn req(kind: Kind, names: &[&str], nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: kind.type_url().into(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

#[test]
fn subscribe_ack_nack_and_stale_nonces() {
    let hub = Arc::new(Hub::default());
    let mut s = Session::default();
    let l = Kind::Listener;
    assert_eq!(s.request(req(l, &["web"], "")).unwrap(), Handled::Push(l));
    let r = s.respond(l, &hub);
    assert_eq!(r.resources.len(), 1);
    assert_eq!(r.type_url, l.type_url());
    assert_eq!(
        s.request(req(l, &["web"], &r.nonce)).unwrap(),
        Handled::Ack(l)
    );
    // An answer to an older response is ignored whole.
    assert_eq!(
        s.request(req(l, &["web", "db"], "0")).unwrap(),
        Handled::Stale(l)
    );
    // A new name set is answered with every subscribed resource.
    assert_eq!(
        s.request(req(l, &["web", "db"], &r.nonce)).unwrap(),
        Handled::Push(l)
    );
    let r2 = s.respond(l, &hub);
    assert_eq!(r2.resources.len(), 2);
    assert_ne!(r2.version_info, r.version_info);
    assert_ne!(r2.nonce, r.nonce);
    // A NACK is reported, not answered.
    let mut nack = req(l, &["web", "db"], &r2.nonce);
    nack.version_info = r2.version_info.clone();
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "bad".into(),
        details: vec![],
    });
    assert_eq!(
        s.request(nack).unwrap(),
        Handled::Nack {
            kind: l,
            version: r2.version_info.clone(),
            message: "bad".into()
        }
    );
    // Empty after a subscription: unsubscribe (an empty response), not a wildcard.
    assert_eq!(s.request(req(l, &[], &r2.nonce)).unwrap(), Handled::Push(l));
    assert!(s.respond(l, &hub).resources.is_empty());
}

#[test]
fn names_that_are_not_services_are_left_out_and_too_many_are_refused() {
    let hub = Arc::new(Hub::default());
    let mut s = Session::default();
    let c = Kind::Cluster;
    s.request(req(
        c,
        &["web", "xdstp://x/y", "heartbeat.v1.Heartbeat"],
        "",
    ))
    .unwrap();
    assert_eq!(s.respond(c, &hub).resources.len(), 1);
    let many: Vec<String> = (0..=MAX_NAMES).map(|i| format!("s{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let e = s.request(req(c, &many, "")).unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(e.message().contains("resource_names"), "{}", e.message());
    assert_eq!(
        s.request(req_url("type.googleapis.com/x.Y")).unwrap(),
        Handled::Unknown("type.googleapis.com/x.Y".into())
    );
}

fn req_url(url: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: url.into(),
        ..Default::default()
    }
}

#[test]
fn endpoints_are_due_when_a_subscribed_service_changed() {
    use crate::liveness::{Event, EventKind, MemberView, Reason, State, Status};
    let hub = Arc::new(Hub::default());
    let mut s = Session::default();
    let e = Kind::Endpoints;
    assert!(!s.endpoints_due(&hub), "nothing subscribed");
    s.request(req(e, &["web"], "")).unwrap();
    s.respond(e, &hub);
    assert!(!s.endpoints_due(&hub));
    let now = tokio::time::Instant::now();
    let member = |service_len: u32, name: &str| MemberView {
        name: name.into(),
        service_len,
        labels: Arc::default(),
        state: State::Alive,
        status: Status::Serving,
        session: 1,
        interval: std::time::Duration::from_secs(1),
        timeout: std::time::Duration::from_secs(3),
        joined_at: now,
        last_seen: now,
        replica: None,
        endpoint: Some("10.0.0.1:80".into()),
    };
    let joined = |m| Event {
        revision: 1,
        kind: EventKind::Joined,
        reason: Reason::Join,
        member: m,
        slot: 0,
    };
    hub.apply(&joined(member(2, "db/a")));
    assert!(!s.endpoints_due(&hub), "another service");
    hub.apply(&joined(member(3, "web/a")));
    assert!(s.endpoints_due(&hub));
    let r = s.respond(e, &hub);
    assert_eq!(r.resources.len(), 1);
    assert!(!s.endpoints_due(&hub));
}
