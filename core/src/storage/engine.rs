//! The engine: what every storage layer above needs from a disk. Keyspaces of ordered byte
//! keys, atomic write batches, and a sync that makes everything written so far durable.
//!
//! Two engines implement it: `FjallEngine` (the server crate's) on a real disk, and [`super::SimDisk`],
//! the faulty simulated disk. The layers above ([`super::RaftStore`],
//! [`super::EngineBackend`], the member's recovery) are written once against this trait, so
//! the simulation exercises the same code that runs in production.
//!
//! The engine knows nothing of what it stores. Values arrive framed and checksummed by
//! [`super::codec`] (the checksum also covers the key), so an engine that returns a flipped
//! bit hands back a value that fails to decode: corruption surfaces as
//! [`StorageError::Corrupt`], never as data.

use super::codec::CodecError;
use super::wal::WalDir;
use bytes::Bytes;
use std::fmt;
use std::time::Duration;
use thiserror::Error;

/// The concerns a member stores, each in its own keyspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// Raft log entries, keyed by index (big-endian).
    Log,
    /// Raft's hard state, the snapshot metadata and the membership.
    Raft,
    /// MVCC records, keyed by revision.
    Mvcc,
    /// Leases, keyed by ID.
    Lease,
    /// Numbers (applied index, revisions, cluster and member IDs), and the members' records
    /// and raised alarms under the `member/` and `alarm/` prefixes.
    Meta,
}

impl Space {
    /// Every keyspace, in [`Space::index`] order.
    pub const ALL: [Space; 5] = [
        Space::Log,
        Space::Raft,
        Space::Mvcc,
        Space::Lease,
        Space::Meta,
    ];

    /// The keyspace's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Space::Log => "raft_log",
            Space::Raft => "raft_state",
            Space::Mvcc => "mvcc",
            Space::Lease => "lease",
            Space::Meta => "meta",
        }
    }

    /// The keyspace's position in [`Space::ALL`] (an engine's table of keyspaces).
    pub fn index(self) -> u8 {
        self as u8
    }

    /// The keyspace at position `i` in [`Space::ALL`].
    pub fn from_index(i: u8) -> Option<Space> {
        Space::ALL.get(usize::from(i)).copied()
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One change in a batch: a put (`value` set) or a delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// The keyspace changed.
    pub space: Space,
    /// The key changed.
    pub key: Bytes,
    /// The value to store, or `None` to delete the key.
    pub value: Option<Bytes>,
}

/// Changes applied together or not at all, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The changes, in the order they apply.
    pub ops: Vec<Op>,
}

impl WriteBatch {
    /// Adds a put of `key` in `space`.
    pub fn put(&mut self, space: Space, key: impl Into<Bytes>, value: Bytes) {
        self.ops.push(Op {
            space,
            key: key.into(),
            value: Some(value),
        });
    }

    /// Adds a delete of `key` in `space`.
    pub fn delete(&mut self, space: Space, key: impl Into<Bytes>) {
        self.ops.push(Op {
            space,
            key: key.into(),
            value: None,
        });
    }

    /// Adds `other`'s changes after this batch's.
    pub fn append(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values, for quotas and the simulated disk's accounting.
    pub fn size_bytes(&self) -> u64 {
        self.ops
            .iter()
            .map(|o| (o.key.len() + o.value.as_ref().map_or(0, |v| v.len())) as u64)
            .sum()
    }
}

/// What can go wrong below the state machine. Every variant stops the member: it serves
/// nothing it cannot vouch for.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StorageError {
    /// A stored value failed to decode.
    #[error("corrupt record in {space} at key {key}: {source}")]
    Corrupt {
        /// The keyspace it was read from.
        space: Space,
        /// The key, in hex.
        key: String,
        /// Why it did not decode.
        source: CodecError,
    },
    /// Values that decode but contradict each other (a gap in the log, a key that names another
    /// record).
    #[error("stored data is inconsistent: {0}")]
    Inconsistent(String),
    /// The device failed a read or write.
    #[error("I/O error: {0}")]
    Io(String),
    /// The device failed to make writes durable; what was written since the last sync may be lost.
    #[error("sync failed: {0}")]
    Sync(String),
    /// The device is full.
    #[error("no space left on the device")]
    NoSpace,
    /// Another process holds the data directory's lock.
    #[error("data dir {dir} is in use by another process (it holds the lock on {dir}/{lock})")]
    Locked {
        /// The data directory.
        dir: String,
        /// The lock file's name within it.
        lock: &'static str,
    },
    /// The data directory does not hold what this version can open.
    #[error("data dir {dir}: {why}")]
    Format {
        /// The data directory.
        dir: String,
        /// What is wrong with it.
        why: String,
    },
    /// A call to a member that stopped after an earlier storage failure, which it names.
    #[error("storage stopped after an earlier error: {0}")]
    Stopped(String),
}

impl StorageError {
    /// A [`StorageError::Corrupt`] for `key` in `space`, with the key in hex.
    pub fn corrupt(space: Space, key: &[u8], source: CodecError) -> StorageError {
        StorageError::Corrupt {
            space,
            key: hex(key),
            source,
        }
    }
}

/// Lower-case hex of `bytes`, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The storage layer's result type.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// How many pairs a scan of `from..to` with `limit` may return: `None` when the range is
/// empty, else the limit with 0 read as "no limit". Shared by the engines' scans.
pub fn scan_limit(from: &[u8], to: Option<&[u8]>, limit: usize) -> Option<usize> {
    if to.is_some_and(|to| to <= from) {
        return None;
    }
    Some(if limit == 0 { usize::MAX } else { limit })
}

/// Reads from a disk, or from a frozen point-in-time view of one.
pub trait EngineRead {
    /// The value stored at `key` in `space`, if any.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>>;

    /// Pairs with `from <= key < to` (`to` `None`: to the end), in key order, at most `limit`
    /// of them (0: no limit).
    fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>>;
}

/// A disk: keyspaces of ordered keys. Handles are cheap clones sharing one disk; the layers
/// above each keep one.
pub trait Engine: EngineRead + Clone {
    /// A view of everything written so far that later writes do not change (for snapshots
    /// streamed while the member goes on).
    type View: EngineRead + Send + 'static;

    /// A frozen view of everything written so far.
    fn view(&self) -> Self::View;

    /// Where the Raft log's own file lives on this disk ([`super::wal`]).
    type Wal: WalDir + Send + fmt::Debug + 'static;

    /// The Raft log file's directory on this disk.
    fn wal_dir(&self) -> Result<Self::Wal>;

    /// Called once the layers above moved what an older layout kept in the engine (the Raft
    /// log and hard state) into the log file: an engine that stamps its layout stamps this
    /// build's. Nothing to do for one that has no stamp.
    fn stamp_current_layout(&self) -> Result<()> {
        Ok(())
    }

    /// Applies `batch` atomically. It is visible to reads at once and durable after the next
    /// successful [`Engine::sync`]; a crash before that loses it whole or keeps it whole.
    fn write(&self, batch: WriteBatch) -> Result<()>;

    /// Makes every batch written so far durable. Nothing may be acknowledged on the strength
    /// of a write until a sync after it succeeded.
    fn sync(&self) -> Result<()>;

    /// Gives back the space that overwritten and deleted data still takes (a defragment);
    /// what is read stays the same. An engine without such space does nothing.
    fn defragment(&self) -> Result<()> {
        Ok(())
    }

    /// Time the device spent on I/O since the last call that the caller has not yet waited
    /// out: the simulated disk's slow-I/O fault; a real disk blocks instead and reports zero.
    fn take_io_delay(&self) -> Duration {
        Duration::ZERO
    }
}
