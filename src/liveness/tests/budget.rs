//! The ping budget: intervals stretch past it and come back, Joins past
//! the slowest budget are refused, takeovers are not.

use super::*;

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
