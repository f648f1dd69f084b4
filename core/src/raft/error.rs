//! Typed failures of the Raft core. Operating errors only: misuse of the API and broken
//! invariants are assertions.

use thiserror::Error;

/// Why a proposal, read or transfer request was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// No leader is known (an election is under way, or this member is cut off).
    NoLeader,
    /// Forwarding to the leader is disabled in the configuration.
    ForwardingDisabled,
    /// A leader transfer is in progress; the leader takes no proposals meanwhile.
    LeaderTransfer,
    /// The leader holds more uncommitted bytes than `max_uncommitted_bytes`.
    UncommittedLimit,
    /// A configuration change is already pending, or this one does not fit the current
    /// configuration (leaving a joint config that is not joint, and the reverse).
    ConfChangeRefused,
    /// This member is not part of the configuration (removed), so it cannot lead a proposal.
    NotMember,
    /// Too many reads wait on this leader already.
    PendingReadLimit,
}

/// Errors from the storage that the Raft log reads.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageError {
    #[error("requested index is unavailable due to compaction")]
    Compacted,
    #[error("requested entry at index is unavailable")]
    Unavailable,
    #[error("requested index is older than the existing snapshot")]
    SnapshotOutOfDate,
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    #[error("storage failed: {0}")]
    Other(String),
}

/// Operating errors of the Raft core.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    #[error("raft proposal dropped: {0:?}")]
    ProposalDropped(DropReason),
    #[error("raft: cannot step a local message ({0:?}) received from the network")]
    StepLocalMessage(crate::raft::MessageKind),
    #[error("raft: cannot step a response from unknown peer {0}")]
    StepPeerNotFound(u64),
    #[error("raft: invalid configuration: {0}")]
    ConfigInvalid(String),
    #[error("raft: invalid configuration change: {0}")]
    ConfChangeInvalid(String),
    #[error("raft: malformed data: {0}")]
    Decode(String),
    #[error("raft: malformed message from {from}: {why}")]
    InvalidMessage { from: u64, why: &'static str },
    #[error("raft storage: {0}")]
    Storage(#[from] StorageError),
}

pub type Result<T> = std::result::Result<T, Error>;
