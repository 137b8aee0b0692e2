//! The closed sets of label values of the server's metrics: why Beat
//! streams were rejected, and member states as the `state` label spells
//! them.

use crate::liveness::State;

label_values! {
    /// Why a Beat stream (or a watch) was refused or ended for bad input:
    /// the `reason` of `heartbeat_rejections_total`.
    pub enum Rejection {
        /// A field broke a rule of SPEC §2.
        InvalidArgument => "invalid_argument",
        /// The first message was not a Join (or the stream was empty).
        FirstMessageNotJoin => "first_message_not_join",
        /// A second Join on the stream.
        SecondJoin => "second_join",
        /// No Join within --join-timeout.
        JoinTimeout => "join_timeout",
        /// A ping whose seq did not increase.
        SeqNotIncreasing => "seq_not_increasing",
        /// Too many pings within ten intervals.
        PingFlood => "ping_flood",
        /// The server is shutting down.
        Draining => "draining",
        /// Cluster mode: etcd could not be written (or this replica's
        /// authority is in doubt).
        RegistryUnavailable => "registry_unavailable",
        /// Cluster mode: too many Joins wait for their etcd write.
        RegistryBusy => "registry_busy",
        /// --max-members reached.
        MemberLimit => "member_limit",
        /// --max-join-rate reached.
        JoinRate => "join_rate",
        /// --max-ping-rate would be exceeded.
        PingBudget => "ping_budget",
        /// The identity may not join the service.
        PermissionDenied => "permission_denied",
        /// A message over the size limit.
        MessageTooLarge => "message_too_large",
        /// Bytes that do not decode as the message.
        Undecodable => "undecodable",
        /// --max-watches or --max-watches-per-connection reached.
        WatchLimit => "watch_limit",
    }
}

/// A member state as the `state` label spells it (lower case).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) struct StateLabel(pub(super) State);

impl prometheus_client::encoding::EncodeLabelValue for StateLabel {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> std::fmt::Result {
        let name = match self.0 {
            State::Alive => "alive",
            State::Suspect => "suspect",
            State::Dead => "dead",
            State::Left => "left",
        };
        std::fmt::Write::write_str(encoder, name)
    }
}
