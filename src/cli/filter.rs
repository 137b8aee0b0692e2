//! Member filters of `members` and `watch`, the way kubectl's selectors
//! read: `--state alive,suspect`, `--label zone=eu-1` (all must match), or
//! `--label zone` for "has the key".

use clap::ValueEnum;
use heartbeat::liveness::State;
use heartbeat::pb::heartbeat::v1::{Member, MemberState};

/// A member state to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum StateFilter {
    /// Pinging within its deadline.
    Alive,
    /// Late, not yet dead.
    Suspect,
    /// Silent past its timeout.
    Dead,
    /// Left on purpose.
    Left,
}

impl StateFilter {
    fn wire(self) -> MemberState {
        MemberState::from(match self {
            StateFilter::Alive => State::Alive,
            StateFilter::Suspect => State::Suspect,
            StateFilter::Dead => State::Dead,
            StateFilter::Left => State::Left,
        })
    }
}

/// `key=value` or `key`.
pub fn label_selector(s: &str) -> Result<(String, Option<String>), String> {
    let (k, v) = match s.split_once('=') {
        Some((k, v)) => (k, Some(v.to_owned())),
        None => (s, None),
    };
    if k.is_empty() {
        return Err(format!(
            "{s:?}: the label key is empty (use key=value or key)"
        ));
    }
    Ok((k.to_owned(), v))
}

/// Whether `m` passes: one of `states` (none = any) and every label.
pub fn matches(m: &Member, states: &[StateFilter], labels: &[(String, Option<String>)]) -> bool {
    let state_ok = states.is_empty() || states.iter().any(|s| s.wire() as i32 == m.state);
    state_ok
        && labels.iter().all(|(k, v)| match (m.labels.get(k), v) {
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
            (None, _) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let mut m = Member {
            state: MemberState::Suspect as i32,
            ..Default::default()
        };
        m.labels.insert("zone".into(), "eu-1".into());
        let zone = |v: Option<&str>| vec![("zone".to_owned(), v.map(str::to_owned))];
        assert!(matches(&m, &[], &[]));
        assert!(matches(
            &m,
            &[StateFilter::Alive, StateFilter::Suspect],
            &[]
        ));
        assert!(!matches(&m, &[StateFilter::Dead], &[]));
        assert!(matches(&m, &[], &zone(Some("eu-1"))));
        assert!(matches(&m, &[], &zone(None)));
        assert!(!matches(&m, &[], &zone(Some("us-1"))));
        assert!(!matches(&m, &[], &[("rack".into(), None)]));
        assert_eq!(
            label_selector("a=b=c"),
            Ok(("a".into(), Some("b=c".into())))
        );
        assert!(label_selector("=x").is_err());
    }
}
