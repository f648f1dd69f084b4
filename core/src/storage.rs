//! Durable storage as the core sees it: everything a member keeps across restarts, over the
//! [`Engine`] trait, and the simulated disk. The production engine (fjall) and backup files
//! live in the server crate, which opens files.
//!
//! - [`codec`]: the checksummed framing of every stored value (the checksum covers the key),
//!   and the encodings of log entries, hard state, snapshot metadata, membership, MVCC
//!   records, leases and meta numbers.
//! - [`engine`]: the [`Engine`] trait (keyspaces, atomic batches, sync) and [`StorageError`].
//! - [`SimDisk`]: the simulated disk, with crashes that lose or tear unsynced writes and
//!   faults (read corruption, sync failure, a full disk, slow I/O) drawn from a seed.
//! - [`RaftStore`]: the Raft log, hard state and snapshot metadata over an engine (the
//!   [`crate::raft::Storage`] the Raft core reads).
//! - [`EngineBackend`]: the MVCC backend over an engine.
//! - [`snapshot`]: the state machine as a stream of checksummed chunks, and its restore.
//! - [`etcd_format`]: the state machine to and from etcd's backend (its snapshot files).
//! - [`wal`]: the format of the Raft log's own file, planned to take the log out of the
//!   engine (`docs/raft-log-file.md`); not used by the member yet.

pub mod codec;
pub mod engine;
pub mod etcd_format;
mod sim_disk;
pub mod snapshot;
pub mod wal;

pub use engine::{Engine, EngineRead, Op, Result, Space, StorageError, WriteBatch};
pub use sim_disk::{
    CrashReport, DiskFaults, DiskStats, SIM_WAL_SEGMENT_BYTES, SimDisk, SimView, SimWalDir,
    decode_journal_frame, encode_journal_frame,
};
mod backend;
mod raft_store;

pub use backend::{EngineBackend, meta_key, read_meta, stage_meta};
pub use engine::scan_limit;
pub use raft_store::{ForcedRestart, RaftStore};
