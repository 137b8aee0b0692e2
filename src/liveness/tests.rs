//! Tests of the core driven by explicit instants: every transition of SPEC §3,
//! fencing, clamping, retention, revisions, and a property test of random
//! operation sequences against the invariants the server relies on.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

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

/// `n` members of which the first `silent` stop pinging after t0; the rest
/// ping every second. Returns how many DEAD events each poll instant saw.
fn silence(cfg: CoreConfig, n: usize, silent: usize) -> (Registry, Vec<(u64, usize, usize)>) {
    let t0 = Instant::now();
    let mut r = Registry::new(cfg);
    let ids: Vec<MemberId> = (0..n)
        .map(|i| r.join(req("db", &format!("m{i:02}")), t0).id)
        .collect();
    r.take_outbox();
    let mut seen = vec![];
    for t in (500..=7_000).step_by(500) {
        let now = t0 + ms(t);
        if t % 1_000 == 0 {
            for id in &ids[silent..] {
                r.ping(*id, Status::Serving, now).unwrap();
            }
        }
        r.poll(now);
        let out = r.take_outbox();
        let dead = out
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Dead)
            .count();
        if dead > 0 || !out.held.is_empty() {
            seen.push((t, dead, out.held.len()));
        }
        assert!(
            out.health.iter().all(|(n, _)| n.contains('/')) || dead > 0,
            "service health unchanged while held"
        );
    }
    (r, seen)
}

#[test]
fn mass_failure_holds_silent_members_one_more_timeout() {
    // 11 of 20 silent (55 %): held at 3 s, DEAD at 6 s.
    let (r, seen) = silence(CoreConfig::default(), 20, 11);
    assert_eq!(seen, [(3_000, 0, 11), (6_000, 11, 0)]);
    assert_eq!(r.health("db"), Some(Status::Serving), "9 still serve");
}

#[test]
fn mass_failure_needs_more_than_the_threshold_and_enough_members() {
    // Exactly half silent: not more than 50 %, normal expiry at 3 s.
    assert_eq!(silence(CoreConfig::default(), 20, 10).1, [(3_000, 10, 0)]);
    // All silent but only 9 members: below the minimum of 10.
    assert_eq!(silence(CoreConfig::default(), 9, 9).1, [(3_000, 9, 0)]);
    // Turned off.
    let off = CoreConfig {
        mass_failure: None,
        ..CoreConfig::default()
    };
    assert_eq!(silence(off, 20, 20).1, [(3_000, 20, 0)]);
    // All silent: held, then DEAD after one more timeout.
    assert_eq!(
        silence(CoreConfig::default(), 20, 20).1,
        [(3_000, 0, 20), (6_000, 20, 0)]
    );
}

#[test]
fn restored_members_get_exactly_one_timeout_to_come_back() {
    let t0 = Instant::now();
    let mut r = core();
    for i in 0..12 {
        r.restore(
            Restored {
                service: "db".into(),
                instance: format!("m{i:02}"),
                labels: Labels::new(),
                session: 7_000 + i,
                interval: ms(1_000),
                timeout: ms(3_000),
                status: if i == 0 {
                    Status::NotServing
                } else {
                    Status::Serving
                },
            },
            t0,
        );
    }
    let out = r.take_outbox();
    assert!(
        out.events.is_empty(),
        "restoring is not a change; watchers get a snapshot"
    );
    assert_eq!(
        r.health("db"),
        Some(Status::Serving),
        "service health never drops"
    );
    assert_eq!(r.health("db/m00"), Some(Status::NotServing));
    assert_eq!(r.get("db/m01").unwrap().state, State::Suspect);
    // One member rejoins: a new, larger session, ALIVE.
    let j = r.join(req("db", "m01"), t0 + ms(500));
    assert!(j.id.session > 7_011);
    r.take_outbox();
    // All other 11 are silent (92 %): still no hold, DEAD at exactly one timeout.
    r.ping(j.id, Status::Serving, t0 + ms(2_000)).unwrap();
    r.poll(t0 + ms(2_999));
    assert!(
        r.take_outbox()
            .events
            .iter()
            .all(|e| e.kind != EventKind::Dead)
    );
    r.poll(t0 + ms(3_000));
    let out = r.take_outbox();
    assert_eq!(dead(&out), 11);
    assert!(out.held.is_empty());
    assert_eq!(r.get("db/m01").unwrap().state, State::Alive);
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
fn takeover_fences_the_older_session() {
    let t0 = Instant::now();
    let mut r = core();
    let old = r.join(req("db", "a"), t0);
    r.take_outbox();
    let new = r.join(req("db", "a"), t0 + ms(500));
    assert_eq!(new.superseded, Some(old.id.session));
    assert!(new.id.session > old.id.session);
    let out = r.take_outbox();
    assert_eq!(
        out.ends,
        vec![(old.id.session, StreamEnd::Superseded { by: new.id.session })]
    );
    assert_eq!(kinds(&out), vec![(EventKind::Joined, State::Alive)]);
    assert!(
        out.health.is_empty(),
        "health stays SERVING across a takeover"
    );
    let fenced = Fenced::Superseded { by: new.id.session };
    assert_eq!(
        r.ping(old.id, Status::NotServing, t0 + ms(600)),
        Err(fenced)
    );
    assert_eq!(r.leave(old.id, t0 + ms(600)), Err(fenced));
    assert_eq!(r.get("db/a").unwrap().status, Status::Serving);
    r.ping(new.id, Status::Serving, t0 + ms(600)).unwrap();
}

#[test]
fn rejoin_of_dead_member_is_a_new_session_with_an_earlier_deadline() {
    let t0 = Instant::now();
    let mut r = core();
    let old = r.join(req("db", "a"), t0);
    r.poll(t0 + ms(3_000));
    r.take_outbox();
    assert_eq!(r.next_deadline(), Some(t0 + ms(13_000)));
    let new = r.join(req("db", "a"), t0 + ms(4_000));
    assert_eq!(new.superseded, None, "a DEAD session has no stream to end");
    let out = r.take_outbox();
    assert!(out.ends.is_empty());
    assert!(out.wake, "the deadline moved earlier");
    assert_eq!(r.next_deadline(), Some(t0 + ms(6_000)));
    assert_eq!(
        r.ping(old.id, Status::Serving, t0 + ms(4_001)),
        Err(Fenced::Superseded { by: new.id.session })
    );
    r.poll(t0 + ms(13_000));
    assert_eq!(
        r.get("db/a").unwrap().state,
        State::Dead,
        "new session died on its own deadline"
    );
    assert_eq!(r.len(), 1);
}

#[test]
fn removed_slot_reuse_does_not_confuse_old_ids() {
    let t0 = Instant::now();
    let mut r = core();
    let a = r.join(req("db", "a"), t0);
    r.poll(t0 + ms(3_000));
    r.poll(t0 + ms(13_000));
    assert!(r.is_empty());
    let b = r.join(req("db", "b"), t0 + ms(13_001));
    assert_eq!(a.id.slot, b.id.slot, "slot reused");
    assert_eq!(
        r.ping(a.id, Status::Serving, t0 + ms(13_002)),
        Err(Fenced::Removed)
    );
}

#[test]
fn clamped_values_reach_the_member() {
    let t0 = Instant::now();
    let mut r = core();
    let mut q = req("db", "a");
    q.interval = Some(ms(10));
    q.timeout = Some(ms(100_000));
    let j = r.join(q, t0);
    assert_eq!((j.interval, j.timeout), (ms(100), ms(2_000)));
    let v = r.get("db/a").unwrap();
    assert_eq!((v.interval, v.timeout), (ms(100), ms(2_000)));
    assert_eq!(r.next_deadline(), Some(t0 + ms(1_050)));
}

#[test]
fn history_resume_and_fallback() {
    let t0 = Instant::now();
    let mut r = Registry::new(CoreConfig {
        history: 3,
        initial_revision: 100,
        ..CoreConfig::default()
    });
    assert_eq!(r.events_since(100).map(|i| i.count()), Some(0));
    for i in 0..5 {
        r.join(req("db", &format!("i{i}")), t0);
    }
    assert_eq!(r.revision(), 105);
    let revs = |since| {
        r.events_since(since)
            .map(|i| i.map(|e| e.revision).collect::<Vec<_>>())
    };
    assert_eq!(revs(105), Some(vec![]));
    assert_eq!(revs(103), Some(vec![104, 105]));
    assert_eq!(revs(102), Some(vec![103, 104, 105]));
    assert_eq!(revs(101), None, "too old");
    assert_eq!(revs(0), None, "earlier run");
    assert_eq!(revs(106), None, "from the future");
}

#[test]
fn service_filter_and_order_of_members() {
    let t0 = Instant::now();
    let mut r = core();
    for (s, i) in [("b", "2"), ("a-b", "1"), ("a", "z"), ("a", "y"), ("b", "1")] {
        r.join(req(s, i), t0);
    }
    let names: Vec<String> = r.members(None).iter().map(|m| m.name.to_string()).collect();
    assert_eq!(names, ["a/y", "a/z", "a-b/1", "b/1", "b/2"]);
    let b: Vec<String> = r
        .members(Some("b"))
        .iter()
        .map(|m| m.instance().to_owned())
        .collect();
    assert_eq!(b, ["1", "2"]);
}

#[derive(Debug, Clone)]
enum Op {
    Join(u8),
    Ping(u8, bool),
    Leave(u8),
    Advance(u16),
    /// The server itself stalls for this long (time passes, stall credited).
    Pause(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6).prop_map(Op::Join),
        (0u8..6, any::<bool>()).prop_map(|(m, s)| Op::Ping(m, s)),
        (0u8..6).prop_map(Op::Leave),
        (0u16..4_000).prop_map(Op::Advance),
        (0u16..20_000).prop_map(Op::Pause),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random joins, pings, leaves and time jumps. Invariants: revisions
    /// strictly increase; no session comes back to life after DEAD or LEFT;
    /// at most one DEAD per session; the health names published through the
    /// outbox always equal what the member table implies.
    #[test]
    fn invariants_hold(ops in prop::collection::vec(op(), 1..200)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut r = Registry::new(CoreConfig { retention: ms(5_000), history: 64, ..CoreConfig::default() });
        let mut ids: HashMap<u8, MemberId> = HashMap::new();
        let mut published: BTreeMap<String, Status> = BTreeMap::new();
        let mut last_rev = r.revision();
        let mut ended: HashMap<u64, EventKind> = HashMap::new();
        let mut by_state: BTreeMap<(String, String), i64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Join(m) => {
                    let j = r.join(req(["a", "b"][m as usize % 2], &m.to_string()), now);
                    ids.insert(m, j.id);
                }
                Op::Ping(m, serving) => if let Some(&id) = ids.get(&m) {
                    let status = if serving { Status::Serving } else { Status::NotServing };
                    let _ = r.ping(id, status, now);
                },
                Op::Leave(m) => if let Some(&id) = ids.get(&m) { let _ = r.leave(id, now); },
                Op::Advance(d) => { now += ms(u64::from(d)); r.poll(now); }
                Op::Pause(d) => { now += ms(u64::from(d)); r.stalled(ms(u64::from(d))); r.poll(now); }
            }
            let out = r.take_outbox();
            if let Op::Pause(_) = op {
                // A pause of the server alone never kills (or suspects) a member.
                prop_assert!(
                    out.events.iter().all(|e| e.kind == EventKind::Removed),
                    "a pause changed liveness: {:?}", out.events
                );
            }
            for e in &out.events {
                prop_assert!(e.revision > last_rev, "revisions strictly increase");
                last_rev = e.revision;
                let s = e.member.session;
                match (ended.get(&s), e.kind) {
                    (None, EventKind::Dead | EventKind::Left) => { ended.insert(s, e.kind); }
                    (None, _) => {}
                    (Some(_), EventKind::Removed) => {}
                    (Some(k), kind) => prop_assert!(false, "session {} had {:?} then {:?}", s, k, kind),
                }
                if matches!(e.kind, EventKind::Dead | EventKind::Left) {
                    prop_assert!(!e.member.state.is_live());
                }
            }
            for t in &out.transitions {
                if let Some(from) = t.from {
                    *by_state.entry((t.service().to_owned(), format!("{from:?}"))).or_default() -= 1;
                }
                if let Some(to) = t.to {
                    *by_state.entry((t.service().to_owned(), format!("{to:?}"))).or_default() += 1;
                }
                prop_assert_eq!(t.late_by.is_some(), t.to == Some(State::Dead));
            }
            by_state.retain(|_, n| *n != 0);
            let mut counted: BTreeMap<(String, String), i64> = BTreeMap::new();
            for m in r.members(None) {
                *counted.entry((m.service().to_owned(), format!("{:?}", m.state))).or_default() += 1;
            }
            prop_assert_eq!(&by_state, &counted, "transitions add up to the table");
            for (name, h) in out.health {
                match h {
                    Some(s) => { published.insert(name.to_string(), s); }
                    None => { published.remove(&*name); }
                }
            }
            prop_assert_eq!(r.revision(), last_rev);
            // What the table implies, recomputed from scratch.
            let mut implied: BTreeMap<String, Status> = BTreeMap::new();
            for m in r.members(None) {
                implied.insert(m.name.to_string(), m.health());
                let svc = implied.entry(m.service().to_owned()).or_insert(Status::NotServing);
                if m.health() == Status::Serving { *svc = Status::Serving; }
            }
            prop_assert_eq!(&published, &implied);
            for (name, status) in &implied {
                prop_assert_eq!(r.health(name), Some(*status));
            }
            // A live member is never past its deadline after a poll.
            for m in r.members(None) {
                if m.state.is_live() {
                    prop_assert!(now < r.deadline(&m.name).expect("live member has a deadline"));
                }
            }
        }
    }
}

/// A naive reference model of SPEC §3: per member, the last ping, the stall
/// clock at that ping, and the state; every poll recomputes from first
/// principles what the registry computes incrementally.
#[derive(Debug, Clone)]
struct ModelMember {
    session: u64,
    last_seen: u64,
    stall_mark: u64,
    state: State,
    ended_at: u64,
    status: Status,
}

#[derive(Debug, Default)]
struct Model {
    members: BTreeMap<String, ModelMember>,
    stall: u64,
}

const INTERVAL: u64 = 1_000;
const TIMEOUT: u64 = 3_000;
const RETENTION: u64 = 5_000;

impl Model {
    fn poll(&mut self, now: u64) {
        let stall = self.stall;
        self.members.retain(|_, m| {
            let credit = stall - m.stall_mark;
            if m.state.is_live() {
                if now >= m.last_seen + (INTERVAL + TIMEOUT) / 2 + credit {
                    m.state = State::Suspect;
                }
                if now >= m.last_seen + TIMEOUT + credit {
                    m.state = State::Dead;
                    m.ended_at = now;
                }
            }
            m.state.is_live() || now < m.ended_at + RETENTION
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn matches_the_reference_model(ops in prop::collection::vec(op(), 1..250)) {
        let t0 = Instant::now();
        let mut now = 0u64;
        let mut r = Registry::new(CoreConfig {
            retention: ms(RETENTION),
            mass_failure: None,
            ..CoreConfig::default()
        });
        let mut model = Model::default();
        let mut ids: HashMap<u8, MemberId> = HashMap::new();
        for op in ops {
            match op {
                Op::Join(m) => {
                    let name = format!("s/{m}");
                    let j = r.join(req("s", &m.to_string()), t0 + ms(now));
                    ids.insert(m, j.id);
                    model.members.insert(name, ModelMember {
                        session: j.id.session, last_seen: now, stall_mark: model.stall,
                        state: State::Alive, ended_at: 0, status: Status::Serving,
                    });
                }
                Op::Ping(m, serving) => if let Some(&id) = ids.get(&m) {
                    let status = if serving { Status::Serving } else { Status::NotServing };
                    let got = r.ping(id, status, t0 + ms(now));
                    let mm = model.members.get_mut(&format!("s/{m}"));
                    let accepted = mm.as_ref().is_some_and(|mm| mm.session == id.session && mm.state.is_live());
                    prop_assert_eq!(got.is_ok(), accepted, "ping of {} accepted?", m);
                    if let Some(mm) = mm.filter(|_| accepted) {
                        (mm.last_seen, mm.stall_mark, mm.state, mm.status) = (now, model.stall, State::Alive, status);
                    }
                },
                Op::Leave(m) => if let Some(&id) = ids.get(&m) {
                    let got = r.leave(id, t0 + ms(now));
                    let mm = model.members.get_mut(&format!("s/{m}"));
                    let accepted = mm.as_ref().is_some_and(|mm| mm.session == id.session && mm.state.is_live());
                    prop_assert_eq!(got.is_ok(), accepted, "leave of {} accepted?", m);
                    if let Some(mm) = mm.filter(|_| accepted) {
                        (mm.state, mm.ended_at) = (State::Left, now);
                    }
                },
                Op::Advance(d) => {
                    now += u64::from(d);
                    r.poll(t0 + ms(now));
                    model.poll(now);
                }
                Op::Pause(d) => {
                    now += u64::from(d);
                    model.stall += u64::from(d);
                    r.stalled(ms(u64::from(d)));
                    r.poll(t0 + ms(now));
                    model.poll(now);
                }
            }
            r.take_outbox();
            let got: BTreeMap<String, (u64, State, Status)> = r
                .members(None)
                .into_iter()
                .map(|m| (m.name.to_string(), (m.session, m.state, m.status)))
                .collect();
            let want: BTreeMap<String, (u64, State, Status)> = model
                .members
                .iter()
                .map(|(n, m)| (n.clone(), (m.session, m.state, m.status)))
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}

fn budgeted(max_ping_rate: u32) -> Registry {
    Registry::new(CoreConfig {
        max_ping_rate: Some(max_ping_rate),
        mass_failure: None,
        ..CoreConfig::default()
    })
}

#[test]
fn over_the_ping_budget_intervals_stretch_and_come_back() {
    let t0 = Instant::now();
    // 4 pings/s; members at 1 s with a 3 s timeout may go to 1.5 s.
    let mut r = budgeted(4);
    let ids: Vec<_> = (0..4)
        .map(|i| r.join(req("db", &i.to_string()), t0).id)
        .collect();
    assert_eq!(r.ping(ids[0], Status::Serving, t0 + ms(1_000)), Ok(None));
    // A fifth: 5 pings/s offered for 4, so 1.25× (10/8) for everybody.
    let fifth = r.join(req("db", "4"), t0 + ms(1_000));
    assert_eq!(
        (fifth.interval, fifth.base_interval),
        (ms(1_250), ms(1_000))
    );
    // The others learn it from their next Pong, once.
    let t1 = t0 + ms(2_000);
    assert_eq!(r.ping(ids[1], Status::Serving, t1), Ok(Some(ms(1_250))));
    assert_eq!(r.ping(ids[1], Status::Serving, t1 + ms(1_250)), Ok(None));
    assert_eq!(r.get("db/1").unwrap().interval, ms(1_250));
    // SUSPECT now follows the stretched interval: (1.25 + 3) / 2 = 2.125 s.
    let last = t1 + ms(1_250);
    r.poll(last + ms(2_124));
    assert_eq!(r.get("db/1").unwrap().state, State::Alive);
    r.poll(last + ms(2_125));
    assert_eq!(r.get("db/1").unwrap().state, State::Suspect);
    // The silent ones went DEAD meanwhile, freeing their share: db/1 is
    // back to its 1 s on its next Pong.
    assert_eq!(r.budget().offered(), 1.0);
    assert_eq!(r.budget().stretch(), 1.0);
    let t2 = last + ms(2_200);
    assert_eq!(r.ping(ids[1], Status::Serving, t2), Ok(Some(ms(1_000))));
    // Interval changes are not member events: nothing but the revival.
    let out = r.take_outbox();
    assert!(out.events.iter().all(|e| e.kind != EventKind::Updated
        || e.reason == Reason::Revived
        || e.reason == Reason::Late));
}

#[test]
fn joins_past_the_slowest_budget_are_refused_and_takeovers_are_not() {
    let t0 = Instant::now();
    // 2 pings/s: three members at 1.5 s (timeout 3 s / 2) fit, a fourth not.
    let mut r = budgeted(2);
    for i in 0..3 {
        assert!(r.admits(&format!("db/{i}"), &req("db", &i.to_string())));
        r.join(req("db", &i.to_string()), t0);
    }
    assert!(!r.admits("db/3", &req("db", "3")));
    assert!(
        r.admits("db/0", &req("db", "0")),
        "a takeover frees its own share"
    );
    let j = r.join(req("db", "0"), t0 + ms(10));
    assert_eq!(j.interval, ms(1_500));
    assert_eq!(r.budget().offered(), 3.0);
    // A member that dies frees its share.
    r.poll(t0 + ms(3_000));
    assert_eq!(r.budget().offered(), 1.0, "db/1 and db/2 are DEAD");
    assert!(r.admits("db/3", &req("db", "3")));
}
