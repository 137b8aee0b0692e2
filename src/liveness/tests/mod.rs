//! Tests of the core driven by explicit instants: every transition of SPEC §3
//! (here), mass-failure protection and restored members, sessions and
//! fencing, the ping budget, and property tests of random operation
//! sequences against the invariants and a reference model.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

mod budget;
mod mass_failure;
mod properties;
mod sessions;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn req(service: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        service: service.into(),
        instance: instance.into(),
        interval: None,
        timeout: None,
        labels: Labels::new(),
        status: Status::Serving,
        endpoint: None,
    }
}

fn core() -> Registry {
    Registry::new(CoreConfig {
        retention: ms(10_000),
        initial_revision: 1_000,
        initial_session: 500,
        ..CoreConfig::default()
    })
}

fn kinds(out: &Outbox) -> Vec<(EventKind, State)> {
    out.events
        .iter()
        .map(|e| (e.kind, e.member.state))
        .collect()
}

fn dead(out: &Outbox) -> usize {
    out.events
        .iter()
        .filter(|e| e.kind == EventKind::Dead)
        .count()
}

fn health(out: &Outbox) -> Vec<(String, Health)> {
    out.health
        .iter()
        .map(|(n, h)| (n.to_string(), *h))
        .collect()
}

#[test]
fn join_creates_alive_member_and_health_names() {
    let t0 = Instant::now();
    let mut r = core();
    let j = r.join(req("db", "a"), t0);
    assert_eq!(
        (j.interval, j.timeout, j.superseded),
        (ms(1_000), ms(3_000), None)
    );
    assert_eq!(j.id.session, 500);
    let out = r.take_outbox();
    assert_eq!(kinds(&out), vec![(EventKind::Joined, State::Alive)]);
    assert_eq!(out.events[0].revision, 1_001);
    assert_eq!(
        health(&out),
        vec![
            ("db/a".into(), Some(Status::Serving)),
            ("db".into(), Some(Status::Serving))
        ]
    );
    assert!(out.wake);
    assert_eq!(r.next_deadline(), Some(t0 + ms(2_000)));
    assert_eq!(r.revision(), 1_001);
}

#[test]
fn alive_suspect_dead_removed_on_schedule() {
    let t0 = Instant::now();
    let mut r = core();
    let j = r.join(req("db", "a"), t0);
    r.take_outbox();

    r.poll(t0 + ms(1_999));
    assert!(r.take_outbox().is_empty());
    r.poll(t0 + ms(2_000));
    let out = r.take_outbox();
    assert_eq!(kinds(&out), vec![(EventKind::Updated, State::Suspect)]);
    assert!(out.health.is_empty(), "SUSPECT keeps health (hysteresis)");
    assert_eq!(r.health("db/a"), Some(Status::Serving));

    r.poll(t0 + ms(2_999));
    assert!(r.take_outbox().is_empty());
    r.poll(t0 + ms(3_000));
    let out = r.take_outbox();
    assert_eq!(kinds(&out), vec![(EventKind::Dead, State::Dead)]);
    assert_eq!(out.ends, vec![(j.id.session, StreamEnd::Dead)]);
    assert_eq!(
        health(&out),
        vec![
            ("db/a".into(), Some(Status::NotServing)),
            ("db".into(), Some(Status::NotServing))
        ]
    );
    assert_eq!(
        r.ping(j.id, Status::Serving, t0 + ms(3_001)),
        Err(Fenced::Dead)
    );

    r.poll(t0 + ms(12_999));
    assert!(r.take_outbox().is_empty());
    r.poll(t0 + ms(13_000));
    let out = r.take_outbox();
    assert_eq!(kinds(&out), vec![(EventKind::Removed, State::Dead)]);
    assert_eq!(
        health(&out),
        vec![("db/a".into(), None), ("db".into(), None)]
    );
    assert!(r.is_empty());
    assert_eq!(r.next_deadline(), None);
    assert_eq!(
        r.ping(j.id, Status::Serving, t0 + ms(13_001)),
        Err(Fenced::Removed)
    );
}

#[test]
fn reasons_and_detection_lateness() {
    let t0 = Instant::now();
    let mut r = core();
    let a = r.join(req("db", "a"), t0);
    r.join(req("db", "a"), t0 + ms(10));
    r.poll(t0 + ms(3_010 + 7));
    r.join(req("db", "a"), t0 + ms(4_000));
    r.leave(
        MemberId {
            session: a.id.session + 2,
            ..a.id
        },
        t0 + ms(4_001),
    )
    .unwrap();
    let out = r.take_outbox();
    let reasons: Vec<Reason> = out.events.iter().map(|e| e.reason).collect();
    use Reason::*;
    assert_eq!(reasons, [Join, Takeover, Late, Timeout, Rejoin, Leave]);
    let dead = out
        .transitions
        .iter()
        .find(|t| t.to == Some(State::Dead))
        .unwrap();
    assert_eq!(
        dead.late_by,
        Some(ms(7)),
        "detected 7 ms after the deadline"
    );
    assert_eq!(dead.service(), "db");
}

#[test]
fn a_server_stall_extends_pending_deadlines_once() {
    let t0 = Instant::now();
    let mut r = core();
    let a = r.join(req("db", "a"), t0);
    r.take_outbox();
    // The server was stalled for 5 s around t0 + 2.5 s.
    r.stalled(ms(5_000));
    let b = r.join(req("db", "b"), t0 + ms(7_000));
    r.take_outbox();
    r.poll(t0 + ms(6_999));
    assert!(
        r.take_outbox().events.is_empty(),
        "a's SUSPECT moved from 2 s to 7 s"
    );
    r.poll(t0 + ms(7_000));
    assert_eq!(
        kinds(&r.take_outbox()),
        vec![(EventKind::Updated, State::Suspect)]
    );
    assert_eq!(r.deadline("db/a"), Some(t0 + ms(8_000)));
    assert_eq!(
        r.deadline("db/b"),
        Some(t0 + ms(10_000)),
        "joined after the stall: no credit"
    );
    // A ping consumes the credit: the next deadline is the plain one.
    r.ping(a.id, Status::Serving, t0 + ms(7_500)).unwrap();
    assert_eq!(r.deadline("db/a"), Some(t0 + ms(10_500)));
    r.ping(b.id, Status::Serving, t0 + ms(7_500)).unwrap();
    r.poll(t0 + ms(10_500));
    let out = r.take_outbox();
    assert_eq!(dead(&out), 2);
    let late: Vec<Option<Duration>> = out
        .transitions
        .iter()
        .map(|t| t.late_by)
        .filter(Option::is_some)
        .collect();
    assert_eq!(
        late,
        [Some(ms(0)), Some(ms(0))],
        "lateness counts from the extended deadline"
    );
}

#[test]
fn late_poll_steps_through_suspect_to_dead() {
    let t0 = Instant::now();
    let mut r = core();
    r.join(req("db", "a"), t0);
    r.take_outbox();
    r.poll(t0 + ms(5_000));
    let out = r.take_outbox();
    assert_eq!(
        kinds(&out),
        vec![
            (EventKind::Updated, State::Suspect),
            (EventKind::Dead, State::Dead)
        ]
    );
}

#[test]
fn pings_keep_alive_and_revive_suspect_without_queue_churn() {
    let t0 = Instant::now();
    let mut r = core();
    let j = r.join(req("db", "a"), t0);
    r.take_outbox();
    for i in 1..=100 {
        r.ping(j.id, Status::Serving, t0 + ms(i * 1_000)).unwrap();
        r.poll(t0 + ms(i * 1_000));
    }
    assert!(r.take_outbox().is_empty(), "steady pings change nothing");
    // Lazy re-arm: the one entry is re-armed at last_seen + 2 s.
    assert_eq!(r.next_deadline(), Some(t0 + ms(102_000)));

    r.poll(t0 + ms(102_000));
    assert_eq!(
        kinds(&r.take_outbox()),
        vec![(EventKind::Updated, State::Suspect)]
    );
    r.ping(j.id, Status::Serving, t0 + ms(102_500)).unwrap();
    let out = r.take_outbox();
    assert_eq!(kinds(&out), vec![(EventKind::Updated, State::Alive)]);
    assert!(out.health.is_empty());
}

#[test]
fn status_changes_drive_instance_and_service_health() {
    let t0 = Instant::now();
    let mut r = core();
    let a = r.join(req("db", "a"), t0);
    let b = r.join(req("db", "b"), t0);
    r.take_outbox();
    r.ping(a.id, Status::NotServing, t0 + ms(10)).unwrap();
    let out = r.take_outbox();
    assert_eq!(kinds(&out), vec![(EventKind::Updated, State::Alive)]);
    assert_eq!(
        health(&out),
        vec![("db/a".into(), Some(Status::NotServing))]
    );
    r.ping(b.id, Status::NotServing, t0 + ms(20)).unwrap();
    assert_eq!(
        health(&r.take_outbox()),
        vec![
            ("db/b".into(), Some(Status::NotServing)),
            ("db".into(), Some(Status::NotServing))
        ]
    );
    r.ping(b.id, Status::Serving, t0 + ms(30)).unwrap();
    assert_eq!(
        health(&r.take_outbox()),
        vec![
            ("db/b".into(), Some(Status::Serving)),
            ("db".into(), Some(Status::Serving))
        ]
    );
    assert_eq!(r.get("db/a").unwrap().state, State::Alive);
}

#[test]
fn leave_is_left_at_once_then_removed_after_retention() {
    let t0 = Instant::now();
    let mut r = core();
    let j = r.join(req("db", "a"), t0);
    r.take_outbox();
    r.leave(j.id, t0 + ms(100)).unwrap();
    let out = r.take_outbox();
    assert_eq!(kinds(&out), vec![(EventKind::Left, State::Left)]);
    assert!(
        out.ends.is_empty(),
        "the leaving stream ends itself with OK"
    );
    assert_eq!(
        r.ping(j.id, Status::Serving, t0 + ms(200)),
        Err(Fenced::Left)
    );
    assert_eq!(r.leave(j.id, t0 + ms(200)), Err(Fenced::Left));
    r.poll(t0 + ms(10_099));
    assert!(r.take_outbox().events.is_empty(), "no DEAD after LEFT");
    r.poll(t0 + ms(10_100));
    assert_eq!(
        kinds(&r.take_outbox()),
        vec![(EventKind::Removed, State::Left)]
    );
}

#[test]
fn the_next_wake_re_arms_members_that_pinged_and_is_exact_for_silent_ones() {
    let t0 = Instant::now();
    let mut r = core();
    r.join(req("db", "quiet"), t0);
    let busy = r.join(req("db", "busy"), t0 + ms(1));
    // busy pings on; its entry (SUSPECT due at t0 + 1 ms + 2 s) goes stale.
    for k in 1..=3 {
        r.ping(busy.id, Status::Serving, t0 + ms(1 + 500 * k))
            .unwrap();
    }
    // quiet has been silent since t0: at 1.4 s it does not look silent yet
    // (half-way between its interval, 1 s, and its SUSPECT, 2 s, is 1.5 s).
    let grid = t0 + ms(2_010);
    assert_eq!(r.next_wake(t0 + ms(1_400), grid), None);
    assert_eq!(r.next_wake(t0 + ms(1_600), grid), Some(t0 + ms(2_000)));
    // busy's stale entry was re-armed at its real deadline meanwhile.
    r.poll(t0 + ms(2_000));
    assert_eq!(r.next_deadline(), Some(t0 + ms(3_000)), "quiet's DEAD");
    // SUSPECT: always exact; busy (true deadline 3.501 s) is left alone.
    assert_eq!(
        r.next_wake(t0 + ms(2_000), t0 + ms(3_510)),
        Some(t0 + ms(3_000))
    );
    r.ping(busy.id, Status::Serving, t0 + ms(2_900)).unwrap();
    r.poll(t0 + ms(3_000));
    assert_eq!(
        r.next_wake(t0 + ms(3_000), t0 + ms(3_510)),
        None,
        "busy pinged"
    );
    assert_eq!(r.next_deadline(), Some(t0 + ms(4_900)));
}
