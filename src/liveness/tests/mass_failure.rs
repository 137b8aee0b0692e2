//! Mass-failure protection (members held SUSPECT one more timeout when many
//! fall silent at once) and members restored from a saved table.

use super::*;

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
                endpoint: None,
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
