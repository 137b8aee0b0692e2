//! Property tests: random operation sequences keep the invariants the
//! server relies on, and match a naive reference model of SPEC §3.

use super::*;

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
    ///
    /// Long on purpose: one loop applies each operation and checks every
    /// invariant right after it, so a shrunk failure names the step.
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

    /// The registry and the naive model above, fed the same operations,
    /// agree on every member's state after each step. Long on purpose, as
    /// `invariants_hold`: one loop, one comparison per step.
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
