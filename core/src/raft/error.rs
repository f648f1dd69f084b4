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
    /// The index lies below the first one the storage still holds.
    #[error("requested index is unavailable due to compaction")]
    Compacted,
    /// The index lies beyond the last entry the storage holds.
    #[error("requested entry at index is unavailable")]
    Unavailable,
    /// The snapshot offered is older than the one the storage holds.
    #[error("requested index is older than the existing snapshot")]
    SnapshotOutOfDate,
    /// No snapshot can be produced now; the leader tries again later.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// The storage failed in a way of its own, described.
    #[error("storage failed: {0}")]
    Other(String),
}

/// Operating errors of the Raft core.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A proposal, read or leader transfer was not taken, for the reason given.
    #[error("raft proposal dropped: {0:?}")]
    ProposalDropped(DropReason),
    /// A local message kind arrived from the network.
    #[error("raft: cannot step a local message ({0:?}) received from the network")]
    StepLocalMessage(crate::raft::MessageKind),
    /// A response came from a member this member does not track (not in its configuration).
    #[error("raft: cannot step a response from unknown peer {0}")]
    StepPeerNotFound(u64),
    /// The configuration is invalid, for the reason given.
    #[error("raft: invalid configuration: {0}")]
    ConfigInvalid(String),
    /// The configuration change cannot be applied, for the reason given.
    #[error("raft: invalid configuration change: {0}")]
    ConfChangeInvalid(String),
    /// Encoded data (a configuration change) did not decode, for the reason given.
    #[error("raft: malformed data: {0}")]
    Decode(String),
    /// A peer's message is malformed.
    #[error("raft: malformed message from {from}: {why}")]
    InvalidMessage {
        /// The sender named in the message.
        from: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The log's storage failed.
    #[error("raft storage: {0}")]
    Storage(#[from] StorageError),
}

/// The Raft core's result type.
pub type Result<T> = std::result::Result<T, Error>;
