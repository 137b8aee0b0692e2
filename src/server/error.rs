//! Every way a Beat stream can be refused or ended, mapped to its gRPC status
//! in one place (SPEC §2), each with a message that names the problem.

use std::time::Duration;

use tonic::{Code, Status};

use crate::liveness::{Fenced, StreamEnd};
use crate::metrics::Rejection;
use crate::validate::Invalid;

fn human(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// Why a Beat stream ends with an error.
#[derive(Debug, thiserror::Error)]
pub enum BeatError {
    /// A field broke a validation rule.
    #[error("{0}")]
    Invalid(#[from] Invalid),
    /// The first message was not a Join.
    #[error("first message must be join, got {0}")]
    NotJoin(&'static str),
    /// A message with no `kind` set.
    #[error("BeatRequest.kind is not set")]
    Empty,
    /// A second Join on one stream.
    #[error("join was already received on this stream; open a new stream to join again")]
    SecondJoin,
    /// Nothing arrived within the join timeout.
    #[error("no join within the join timeout of {}", human(*.0))]
    JoinTimeout(Duration),
    /// `Ping.seq` did not increase.
    #[error("ping.seq {got} is not greater than the previous seq {prev}")]
    Seq {
        /// The previous seq.
        prev: u64,
        /// The offending seq.
        got: u64,
    },
    /// Too many pings within the rate window.
    #[error("ping flood: more than {limit} pings within {} (10 agreed intervals)", human(*.window))]
    Flood {
        /// Pings allowed per window.
        limit: usize,
        /// The window.
        window: Duration,
    },
    /// The session was fenced off.
    #[error("{0}")]
    Fenced(#[from] Fenced),
    /// The member's deadline passed.
    #[error("no ping within the timeout of {}: member is DEAD; join again", human(*.0))]
    Dead(Duration),
    /// The server is shutting down.
    #[error("server is shutting down")]
    Draining,
    /// Cluster mode: this replica is cut off from etcd and a peer is not
    /// (SPEC §7.6).
    #[error("this replica is cut off from the registry; reconnect to another replica")]
    Moved,
    /// Cluster mode: too many Joins wait for their etcd write already.
    #[error(
        "{0} joins are waiting for the registry already; retry with backoff, or join another replica"
    )]
    RegistryBusy(usize),
    /// Cluster mode: the Join could not be written to etcd (SPEC §7.6).
    #[error("registry unavailable: {0}; retry, or join another replica")]
    Registry(String),
    /// The member limit is reached.
    #[error("member limit of {0} reached; try another server or later")]
    MemberLimit(usize),
    /// The identity may not join as this service.
    #[error("{identity} may not join as service {service:?}")]
    PermissionDenied {
        /// Who asked (never a token).
        identity: String,
        /// The service.
        service: String,
    },
    /// Joins arrive faster than the server's join rate.
    #[error("join rate limit of {0}/s exceeded; retry with backoff")]
    JoinRate(u32),
    /// Even at their slowest intervals, the members would ping more often
    /// than the server is sized for.
    #[error(
        "ping budget of {0} pings/s reached even at the slowest allowed intervals; try another server or later"
    )]
    PingBudget(u32),
}

impl BeatError {
    /// The error for a registry-initiated end of the stream.
    pub fn ended(end: StreamEnd, timeout: Duration) -> Self {
        match end {
            StreamEnd::Superseded { by } => BeatError::Fenced(Fenced::Superseded { by }),
            StreamEnd::Dead => BeatError::Dead(timeout),
            StreamEnd::Moved => BeatError::Moved,
        }
    }

    /// The `reason` label of `heartbeat_rejections_total` when this error
    /// is a rejection of bad input; `None` for ends decided by liveness.
    pub fn rejection(&self) -> Option<Rejection> {
        Some(match self {
            BeatError::Invalid(_) => Rejection::InvalidArgument,
            BeatError::NotJoin(_) | BeatError::Empty => Rejection::FirstMessageNotJoin,
            BeatError::SecondJoin => Rejection::SecondJoin,
            BeatError::JoinTimeout(_) => Rejection::JoinTimeout,
            BeatError::Seq { .. } => Rejection::SeqNotIncreasing,
            BeatError::Flood { .. } => Rejection::PingFlood,
            BeatError::Draining => Rejection::Draining,
            BeatError::Registry(_) => Rejection::RegistryUnavailable,
            BeatError::RegistryBusy(_) => Rejection::RegistryBusy,
            BeatError::MemberLimit(_) => Rejection::MemberLimit,
            BeatError::JoinRate(_) => Rejection::JoinRate,
            BeatError::PingBudget(_) => Rejection::PingBudget,
            BeatError::PermissionDenied { .. } => Rejection::PermissionDenied,
            BeatError::Fenced(_) | BeatError::Dead(_) | BeatError::Moved => return None,
        })
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            BeatError::Invalid(_)
            | BeatError::NotJoin(_)
            | BeatError::Empty
            | BeatError::SecondJoin
            | BeatError::Seq { .. } => Code::InvalidArgument,
            BeatError::JoinTimeout(_) | BeatError::Dead(_) => Code::DeadlineExceeded,
            BeatError::Flood { .. }
            | BeatError::MemberLimit(_)
            | BeatError::JoinRate(_)
            | BeatError::PingBudget(_)
            | BeatError::RegistryBusy(_) => Code::ResourceExhausted,
            BeatError::Fenced(Fenced::Superseded { .. }) => Code::Aborted,
            BeatError::Fenced(Fenced::Dead) => Code::DeadlineExceeded,
            BeatError::Fenced(Fenced::Left | Fenced::Removed) => Code::FailedPrecondition,
            BeatError::Draining | BeatError::Registry(_) | BeatError::Moved => Code::Unavailable,
            BeatError::PermissionDenied { .. } => Code::PermissionDenied,
        }
    }
}

impl From<BeatError> for Status {
    fn from(e: BeatError) -> Self {
        let mut status = Status::new(e.code(), e.to_string());
        if let BeatError::Fenced(Fenced::Superseded { by }) = e {
            status
                .metadata_mut()
                .insert(crate::pb::SUPERSEDED_BY, by.into());
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_reason_is_created_at_zero() {
        let invalid = crate::validate::service("join.service", "").unwrap_err();
        let all = [
            BeatError::Invalid(invalid),
            BeatError::NotJoin("ping"),
            BeatError::Empty,
            BeatError::SecondJoin,
            BeatError::JoinTimeout(Duration::ZERO),
            BeatError::Seq { prev: 1, got: 1 },
            BeatError::Flood {
                limit: 1,
                window: Duration::ZERO,
            },
            BeatError::Draining,
            BeatError::Registry(String::new()),
            BeatError::RegistryBusy(1),
            BeatError::MemberLimit(1),
            BeatError::PermissionDenied {
                identity: String::new(),
                service: String::new(),
            },
            BeatError::JoinRate(1),
            BeatError::PingBudget(1),
        ];
        for e in all {
            let reason = e.rejection().expect("a rejection");
            assert!(
                Rejection::ALL.contains(&reason),
                "{reason:?} is pre-created"
            );
        }
    }

    #[test]
    fn codes_and_messages() {
        let s = Status::from(BeatError::Fenced(Fenced::Superseded { by: 42 }));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Aborted, "superseded by session 42")
        );
        assert_eq!(crate::pb::superseded_by(&s), Some(42));
        let s = Status::from(BeatError::Dead(Duration::from_secs(3)));
        assert_eq!(s.code(), Code::DeadlineExceeded);
        assert!(s.message().contains("3s"));
        let s = Status::from(BeatError::Seq { prev: 5, got: 5 });
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("ping.seq"));
        let s = Status::from(BeatError::Flood {
            limit: 50,
            window: Duration::from_secs(10),
        });
        assert_eq!(s.code(), Code::ResourceExhausted);
    }
}
