//! Snapshot files: a member's state machine saved to a file (a backup), and a fresh data dir
//! built from one (what `etcdctl snapshot restore` does for etcd). The file is the snapshot
//! stream of [`super::snapshot`] as it is, checksums included; a restore also takes the
//! stream in etcd's envelope ([`snapshot::seal`]), as `etcdctl snapshot save` stores it.

use super::engine::{Engine, Result, StorageError};
use super::fjall_engine::FjallEngine;
use super::snapshot::{self, SnapshotStatus, SnapshotWriter};
use std::fs::File;
use std::io::Write;
use std::path::Path;

fn io(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Io(format!("{}: {e}", path.display()))
}

/// Streams `engine`'s state machine (as of now) into a new file at `path`, synced, and
/// returns its status. The file appears under its name only once complete.
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

/// Builds a data dir at `dir` holding the state machine of the snapshot file at `path`.
/// Refuses a `dir` that exists and is not empty, and a file that fails any check. A member
/// opened on the dir founds a new cluster with that data (its Raft log starts afresh).
pub fn restore_file(path: &Path, dir: &Path) -> Result<SnapshotStatus> {
    let file = std::fs::read(path).map_err(|e| io(path, e))?;
    let bytes = snapshot::unseal(&file)?;
    let status = snapshot::status(bytes)?;
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(StorageError::Format {
            dir: dir.display().to_string(),
            why: "a restore needs a new data dir, and this one is not empty".into(),
        });
    }
    let engine = FjallEngine::open(dir)?;
    snapshot::restore_into(&engine, bytes)?;
    Ok(status)
}
