//! Sessions: takeover and fencing, rejoin of a dead member, slot reuse,
//! clamped values, the event history and the member listing.

use super::*;

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
