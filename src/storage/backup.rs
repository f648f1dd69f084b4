//! Snapshot files: a member's state machine saved to a file (a backup), and a fresh data dir
//! built from one (what `etcdctl snapshot restore` does for etcd).
//!
//! Two formats are read, told apart by their first bytes:
//! - etcd's (bbolt's magic in the first meta page): what `Maintenance.Snapshot` sends, and what
//!   `etcdctl snapshot save` stores from etcd 3.4 or 3.5 or from oxcd; converted by
//!   [`super::etcd_format`].
//! - oxcd's own stream ([`super::snapshot`], first byte the frame magic), bare or in etcd's
//!   envelope ([`snapshot::seal`]), as older oxcd servers sent it and [`save_file`] writes.
//!
//! A restore checks the file as etcd's does (the SHA-256 trailer unless told to skip it, with
//! etcd's words for a failure), converts it to the pairs of the `mvcc`, `lease` and `meta`
//! keyspaces, replaces the members it names with the restored cluster's (`--initial-cluster`,
//! as etcd 3.5's restore does), and writes them in one batch, synced. The member founded on the
//! dir then starts the Raft log afresh.

use super::engine::{Engine, Result, Space, StorageError, WriteBatch};
use super::etcd_format::{self, etcdb};
use super::fjall_engine::FjallEngine;
use super::snapshot::{self, Restored, SnapshotStatus, SnapshotWriter};
use crate::node::MemberRecord;
use oxcd_core::storage::codec;
use std::fs::File;
use std::io::Write;
use std::path::Path;

fn io(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Io(format!("{}: {e}", path.display()))
}

/// Streams `engine`'s state machine (as of now) into a new file at `path` in oxcd's own
/// format, synced, and returns its status. The file appears under its name only once complete.
pub fn save_file<E: Engine>(engine: &E, path: &Path) -> Result<SnapshotStatus> {
    let part = path.with_extension("part");
    let mut f = File::create(&part).map_err(|e| io(&part, e))?;
    let mut bytes = Vec::new();
    for chunk in SnapshotWriter::new(engine.view(), snapshot::CHUNK_BYTES_DEFAULT) {
        let chunk = chunk?;
        f.write_all(&chunk).map_err(|e| io(&part, e))?;
        bytes.extend_from_slice(&chunk);
    }
    f.sync_all().map_err(|e| io(&part, e))?;
    std::fs::rename(&part, path).map_err(|e| io(path, e))?;
    snapshot::status(&bytes)
}

/// The format of a snapshot file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotFormat {
    /// etcd's backend (bbolt, then a SHA-256): etcd's own snapshots and oxcd's since it sends
    /// them. Also any file that is not oxcd's, so that its errors are etcd's.
    Etcd,
    /// oxcd's own stream of checksummed chunks, bare or sealed.
    Oxcd,
}

impl SnapshotFormat {
    /// The format `file` is in.
    pub fn of(file: &[u8]) -> SnapshotFormat {
        if !etcdb::bbolt::has_magic(file) && file.first() == Some(&codec::MAGIC) {
            SnapshotFormat::Oxcd
        } else {
            SnapshotFormat::Etcd
        }
    }
}

/// Why a snapshot file could not be read or restored, in `etcdctl`'s (3.4) words.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The file could not be read (Go's wording: `open f: no such file or directory`).
    #[error("{0}")]
    Read(String),
    /// The data dir exists and is not empty.
    #[error("data-dir {0:?} exists")]
    DirExists(String),
    /// An etcd file without its SHA-256 trailer, and no `--skip-hash-check`.
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    /// The trailer does not match (`expected sha256 [..], got [..]`).
    #[error("{0}")]
    HashMismatch(etcdb::Error),
    /// Not a bbolt file etcd would open (bbolt's words: `invalid database`, `file size too small`).
    #[error("{0}")]
    BadDatabase(&'static str),
    /// A bbolt file whose contents are not etcd's, or an oxcd stream that fails its checks.
    #[error("{0}")]
    Content(String),
    /// Writing the data dir failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Go's words for a failed file operation `op` ("open", "stat") on `path`.
fn go_io(op: &str, path: &Path, e: &std::io::Error) -> RestoreError {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    RestoreError::Read(format!("{op} {}: {why}", path.display()))
}

/// bbolt's refusal of `db` as etcd opens it, checked before etcdb reads it.
fn check_bbolt(db: &[u8]) -> std::result::Result<(), RestoreError> {
    // bbolt reads one OS page for the meta (a shorter file is invalid), then maps at least two
    // pages of the meta's page size (bbolt falls back to the OS page size for a bad meta).
    if db.len() < etcdb::bbolt::PAGE_SIZE {
        return Err(RestoreError::BadDatabase("invalid database"));
    }
    if db.len() < 2 * etcdb::bbolt::PAGE_SIZE {
        return Err(RestoreError::BadDatabase("file size too small"));
    }
    Ok(())
}

fn etcd_error(e: etcdb::Error) -> RestoreError {
    match e {
        etcdb::Error::HashMismatch { .. } => RestoreError::HashMismatch(e),
        etcdb::Error::NoValidMeta(_) => RestoreError::BadDatabase("invalid database"),
        e => RestoreError::Content(e.to_string()),
    }
}

/// What `snapshot status` prints of a file: etcd's numbers for an etcd file, the old ones
/// ([`snapshot::status`]) for oxcd's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStatus {
    /// etcd: CRC-32C over buckets, keys and values; oxcd: CRC-32C of the stream.
    pub hash: u32,
    /// The store's revision.
    pub revision: i64,
    /// etcd: keys in all buckets; oxcd: MVCC records.
    pub total_keys: u64,
    /// etcd: pages × page size; oxcd: the stream's length.
    pub size_bytes: u64,
}

/// The status of the snapshot file at `path`, as `etcdctl snapshot status` sums it up (the
/// trailer is not checked, as etcd does not).
pub fn file_status(path: &Path) -> std::result::Result<FileStatus, RestoreError> {
    std::fs::metadata(path).map_err(|e| go_io("stat", path, &e))?;
    let file = std::fs::read(path).map_err(|e| go_io("open", path, &e))?;
    match SnapshotFormat::of(&file) {
        SnapshotFormat::Etcd => {
            let (db, _) = etcdb::etcd::split_trailer(&file);
            check_bbolt(db)?;
            let s = etcdb::etcd::status(&file).map_err(etcd_error)?;
            Ok(FileStatus {
                hash: s.hash,
                revision: s.revision,
                total_keys: s.total_key,
                size_bytes: s.total_size,
            })
        }
        SnapshotFormat::Oxcd => {
            let s = snapshot::unseal(&file)
                .and_then(snapshot::status)
                .map_err(|e| RestoreError::Content(e.to_string()))?;
            Ok(FileStatus {
                hash: s.hash,
                revision: s.revision,
                total_keys: s.total_keys,
                size_bytes: s.size_bytes,
            })
        }
    }
}

/// How to restore: etcdctl's `--skip-hash-check`, and the restored cluster's members
/// (derived from `--initial-cluster`: [`crate::server::founders`]).
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Accept an etcd file without its SHA-256 trailer, or with one that does not match.
    pub skip_hash_check: bool,
    /// The members the restored data names: those of the cluster to be founded on it.
    pub members: Vec<MemberRecord>,
}

/// What a restore read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restore {
    /// The file's format.
    pub format: SnapshotFormat,
    /// The restored store's revision.
    pub revision: i64,
    /// Pairs written to the data dir.
    pub pairs: u64,
}

/// Builds a data dir at `dir` holding the state machine of the snapshot file at `path`, in
/// either format. Refuses a `dir` that exists and is not empty, and a file that fails any
/// check, before writing anything. A member opened on the dir founds a new cluster with that
/// data (its Raft log starts afresh); `options.members` should be that cluster's.
pub fn restore_file(
    path: &Path,
    dir: &Path,
    options: &RestoreOptions,
) -> std::result::Result<Restore, RestoreError> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(RestoreError::DirExists(dir.display().to_string()));
    }
    let file = std::fs::read(path).map_err(|e| go_io("open", path, &e))?;
    let format = SnapshotFormat::of(&file);
    let restored = match format {
        SnapshotFormat::Etcd => {
            let (db, trailer) = etcdb::etcd::split_trailer(&file);
            if trailer.is_none() && !options.skip_hash_check {
                return Err(RestoreError::MissingHash);
            }
            check_bbolt(db)?;
            let backend =
                etcdb::etcd::decode(&file, !options.skip_hash_check).map_err(etcd_error)?;
            etcd_format::from_etcd(&backend).map_err(|e| RestoreError::Content(e.to_string()))?
        }
        SnapshotFormat::Oxcd => snapshot::unseal(&file)
            .and_then(snapshot::read_snapshot)
            .map_err(|e| RestoreError::Content(e.to_string()))?,
    };
    let restored = with_members(restored, &options.members);
    let revision = current_revision(&restored);
    let pairs = restored.pairs;
    let engine = FjallEngine::open(dir)?;
    let batch = snapshot::restore_batch(&engine, restored)?;
    engine.write(batch)?;
    engine.sync()?;
    Ok(Restore {
        format,
        revision,
        pairs,
    })
}

/// `restored` with its member records replaced by `members` (pairs kept in stream order).
fn with_members(restored: Restored, members: &[MemberRecord]) -> Restored {
    let mut pairs: std::collections::BTreeMap<(Space, bytes::Bytes), bytes::Bytes> = restored
        .batch
        .ops
        .into_iter()
        .filter(|op| !(op.space == Space::Meta && op.key.starts_with(codec::MEMBER_KEY_PREFIX)))
        .map(|op| {
            (
                (op.space, op.key),
                op.value.expect("restored pairs are puts"),
            )
        })
        .collect();
    for m in members {
        let key = codec::member_key(m.id);
        let value = codec::encode_member(&key, &m.encode());
        pairs.insert((Space::Meta, key.into()), value);
    }
    let mut batch = WriteBatch::default();
    for ((space, key), value) in pairs {
        batch.put(space, key, value);
    }
    Restored {
        applied_index: restored.applied_index,
        pairs: batch.ops.len() as u64,
        batch,
    }
}

fn current_revision(restored: &Restored) -> i64 {
    let key = super::meta_key(crate::mvcc::MetaKey::CurrentRevision);
    restored
        .batch
        .ops
        .iter()
        .find(|op| op.space == Space::Meta && op.key == key)
        .and_then(|op| codec::decode_meta(key, op.value.as_ref()?).ok())
        .unwrap_or(0)
}
