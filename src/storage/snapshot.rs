//! Placeholder until the snapshot stream lands.
use super::engine::{Engine, Result, StorageError, WriteBatch};
use bytes::Bytes;

pub fn snapshot_bytes<E: Engine>(_engine: &E) -> Result<Bytes> {
    Err(StorageError::Io("snapshots: not yet".into()))
}

pub fn restore_batch<E: Engine>(_engine: &E, _data: &[u8]) -> Result<WriteBatch> {
    Err(StorageError::Io("snapshots: not yet".into()))
}
