//! Durable storage: the core's storage (codecs, the [`Engine`] trait, snapshots, the simulated
//! disk; see [`oxcd_core::storage`]) and what the server adds around it, which opens files:
//!
//! - [`FjallEngine`]: fjall on a real data dir, with a lock file and a format stamp.
//! - [`wal_file::FileWalDir`]: the Raft log's own file, preallocated segments in `wal/`.
//! - [`save_file`] / [`restore_file`] / [`file_status`]: backups, and a fresh data dir built
//!   from one (etcd's snapshot format or oxcd's own).

pub use oxcd_core::storage::*;

#[cfg(not(madsim))]
mod backup;
#[cfg(not(madsim))]
mod fjall_engine;
#[cfg(not(madsim))]
pub mod wal_file;

#[cfg(not(madsim))]
pub use backup::{
    FileStatus, Restore, RestoreError, RestoreOptions, SnapshotFormat, file_status, restore_file,
    save_file,
};
#[cfg(not(madsim))]
pub use fjall_engine::{
    FORMAT_FILE, FORMAT_STAMP, FORMAT_STAMP_LAYOUT_1, FjallEngine, FjallView, LOCK_FILE,
};
