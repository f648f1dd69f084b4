//! The typed errors of the server's facade: what a request through [`super::driver::NodeHandle`]
//! answers when it does not succeed. No gRPC code appears here: the API edge
//! (`crate::api::error`) maps each to etcd's code and message.

use crate::lease;
use crate::mvcc;
use crate::node::ApplyError;
use crate::raft;
use thiserror::Error;

/// Errors the server raises itself (not the store or the lessor). `Display` is the message
/// without `api::error::MESSAGE_PREFIX`; [`ServerError::status`] is what the client receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ServerError {
    /// This member knows no leader (or the client asked for one with `hasleader`).
    #[error("no leader")]
    NoLeader,
    /// A leader-only operation (a leader transfer) reached a follower.
    #[error("not leader")]
    NotLeader,
    /// The leader changed while the request waited for its entry to apply.
    #[error("leader changed")]
    LeaderChanged,
    #[error("request timed out")]
    Timeout,
    #[error("server stopped")]
    Stopped,
    /// Committed entries are too far ahead of applied ones to take more proposals. etcd 3.4's
    /// table sends it with code Unknown by mistake (it maps to the client-side error); this is
    /// the code its `rpctypes` gives it, and later etcd releases send.
    #[error("too many requests")]
    TooManyRequests,
    #[error("request is too large")]
    RequestTooLarge,
    /// The NOSPACE alarm is raised: writes are refused until it is disarmed.
    #[error("mvcc: database space exceeded")]
    NoSpace,
    /// The CORRUPT alarm is raised: members disagree about the data.
    #[error("corrupt cluster")]
    Corrupt,
    #[error("member not found")]
    MemberNotFound,
    #[error("member ID already exist")]
    MemberExists,
    #[error("Peer URLs already exists")]
    PeerUrlExists,
    #[error("given member URLs are invalid")]
    MemberBadUrls,
    /// The change would leave fewer started members than a quorum. etcd 3.4 sends it with
    /// code Unknown (the same slip as [`ServerError::TooManyRequests`]); this is its `rpctypes`
    /// code.
    #[error("re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("can only promote a learner member")]
    MemberNotLearner,
    #[error("can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("too many learner members in cluster")]
    TooManyLearners,
    #[error("rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("bad leader transferee")]
    BadLeaderTransferee,
    /// A range's sort order or sort target is a number the enum does not have. etcd 3.4 has no
    /// check (an unknown target with a sort order panics its server); later releases answer
    /// this.
    #[error("invalid sort option")]
    InvalidSortOption,
    /// oxcd's own: a compare's result or target is a number the enum does not have. etcd 3.4
    /// evaluates such a compare anyway (an unknown result always holds, an unknown target
    /// compares as equal); the core has no value for either, so they are refused.
    #[error("invalid compare option")]
    InvalidCompareOption,
    /// oxcd's own: transactions nested deeper than the log accepts (etcd sets no depth limit).
    #[error("txn request nested deeper than {depth_max} levels")]
    TxnNestedTooDeep { depth_max: usize },
}

/// Why a request through the facade did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Error {
    /// The server's own refusal.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The store refused a read.
    #[error(transparent)]
    Mvcc(#[from] mvcc::Error),
    /// The lessor refused.
    #[error(transparent)]
    Lease(#[from] lease::Error),
    /// The command applied and failed.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Raft refused in a way etcd has no word for.
    #[error(transparent)]
    Raft(raft::Error),
    /// The member failed in a way no client caused (reading its own storage); the text is the
    /// whole message.
    #[error("{0}")]
    Internal(String),
}

impl From<raft::Error> for Error {
    /// etcd's answer for a proposal Raft did not take.
    fn from(e: raft::Error) -> Error {
        use raft::DropReason;
        match e {
            raft::Error::ProposalDropped(DropReason::NoLeader) => ServerError::NoLeader.into(),
            raft::Error::ProposalDropped(DropReason::LeaderTransfer) => {
                ServerError::LeaderChanged.into()
            }
            raft::Error::ProposalDropped(
                DropReason::UncommittedLimit | DropReason::PendingReadLimit,
            ) => ServerError::TooManyRequests.into(),
            raft::Error::ProposalDropped(DropReason::NotMember) => ServerError::Stopped.into(),
            other => Error::Raft(other),
        }
    }
}

impl From<crate::node::Refusal> for Error {
    fn from(r: crate::node::Refusal) -> Error {
        use crate::node::Refusal;
        match r {
            Refusal::Stopped => ServerError::Stopped.into(),
            Refusal::Raft(e) => e.into(),
            Refusal::Apply(e) => e.into(),
            Refusal::NotLeader => ServerError::NotLeader.into(),
            Refusal::LeaderChanged => ServerError::LeaderChanged.into(),
            Refusal::NoSpace => ServerError::NoSpace.into(),
            Refusal::Timeout => ServerError::Timeout.into(),
            Refusal::Lease(e) => e.into(),
            Refusal::Membership(e) => {
                use crate::node::MembershipError as M;
                match e {
                    M::NotFound => ServerError::MemberNotFound,
                    M::PeerUrlExists => ServerError::PeerUrlExists,
                    M::TooManyLearners => ServerError::TooManyLearners,
                    M::NotLearner => ServerError::MemberNotLearner,
                    M::LearnerNotReady => ServerError::LearnerNotReady,
                }
                .into()
            }
        }
    }
}
