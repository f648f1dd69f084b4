//! Sans-IO Raft consensus, in the design of etcd-io/raft and raft-rs.
//!
//! What it does not do: it opens no socket, reads no clock, starts no thread, draws no OS
//! randomness and writes nothing to disk. Time arrives as `RawNode::tick`, randomness as a
//! seeded `ChaCha8Rng`, messages through `RawNode::step`; everything it wants done (entries and
//! hard state to persist, messages to send, entries to apply, reads to serve) leaves through
//! `Ready`, whose docs give the order in which the owner must carry it out.
//!
//! Features: elections with randomized timeouts, pre-vote, check-quorum; pipelined, batched
//! replication with fast conflict backtracking and probe / replicate / snapshot progress;
//! snapshots and log compaction; ReadIndex reads sharing heartbeat rounds; leader transfer;
//! learners; joint-consensus and simple membership changes; follower proposal forwarding.

mod changer;
mod conf_change;
mod config;
mod error;
mod log;
mod log_unstable;
mod message;
mod progress;
mod quorum;
#[allow(clippy::module_inception)]
mod raft;
mod raw_node;
mod read_only;
mod storage;
mod tracker;

pub use conf_change::{
    CONF_CHANGE_CONTEXT_BYTES_MAX, CONF_CHANGES_MAX, ConfChange, ConfChangeKind, ConfChangeSingle,
    ConfChangeTransition,
};
pub use config::Config;
pub use error::{DropReason, Error, Result, StorageError};
pub use log::RaftLog;
pub use message::{
    CAMPAIGN_TRANSFER, ConfState, Entry, EntryKind, HardState, Message, MessageKind, NONE, NodeId,
    ReadState, Snapshot, SnapshotMetadata, SnapshotStatus,
};
pub use progress::{Inflights, Progress, ProgressState};
pub use quorum::{JointConfig, MajorityConfig, VoteResult};
pub use raft::{PlantedBug, Raft, SoftState, StateRole};
pub use raw_node::{RawNode, Ready, Status};
pub use read_only::PENDING_READS_MAX;
pub use storage::{MemStorage, Storage};
pub use tracker::{ProgressTracker, TrackerConfig};
