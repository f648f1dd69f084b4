//! The MVCC backend over an [`Engine`]: records in the `mvcc` keyspace keyed by revision,
//! leases in `lease`, the store's numbers in `meta`. A batch becomes one atomic engine write,
//! not synced: the Raft log is the durable record of every command, and the applied index in
//! the same batch tells recovery where to resume, so each command lands exactly once.

use super::codec::{self, CodecError};
use super::engine::{Engine, Space, StorageError, WriteBatch};
use crate::mvcc::{Alarm, Backend, BackendError, Batch, LeaseRecord, MetaKey, Record, Revision};
use bytes::Bytes;

/// The key of a meta number.
pub fn meta_key(key: MetaKey) -> &'static [u8] {
    match key {
        MetaKey::CurrentRevision => b"current_revision",
        MetaKey::CompactRevision => b"compact_revision",
        MetaKey::AppliedIndex => b"applied_index",
        MetaKey::V2Index => b"v2_index",
    }
}

/// [`crate::mvcc::Backend`] on an engine.
#[derive(Clone, Debug)]
pub struct EngineBackend<E: Engine> {
    engine: E,
}

impl<E: Engine> EngineBackend<E> {
    /// The MVCC backend over `engine`.
    pub fn new(engine: E) -> EngineBackend<E> {
        EngineBackend { engine }
    }

    /// The engine underneath.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The engine batch for `batch`.
    pub fn to_write_batch(batch: Batch) -> WriteBatch {
        let mut w = WriteBatch::default();
        for rev in batch.deletes {
            w.delete(Space::Mvcc, codec::revision_key(rev).to_vec());
        }
        for (rev, record) in batch.puts {
            let key = codec::revision_key(rev);
            w.put(
                Space::Mvcc,
                key.to_vec(),
                codec::encode_record(&key, &record),
            );
        }
        for (key, value) in batch.meta {
            let k = meta_key(key);
            w.put(Space::Meta, k, codec::encode_meta(k, value));
        }
        for (id, lease) in batch.leases {
            let key = codec::lease_key(id).to_vec();
            match lease {
                Some(l) => w.put(Space::Lease, key, codec::encode_lease(&l)),
                None => w.delete(Space::Lease, key),
            }
        }
        for (id, record) in batch.members {
            let key = codec::member_key(id);
            match record {
                Some(r) => {
                    let v = codec::encode_member(&key, &r);
                    w.put(Space::Meta, key, v)
                }
                None => w.delete(Space::Meta, key),
            }
        }
        for (alarm, raised) in batch.alarms {
            let key = codec::alarm_key(alarm);
            if raised {
                let v = codec::encode_meta(&key, i64::from(alarm.kind));
                w.put(Space::Meta, key, v);
            } else {
                w.delete(Space::Meta, key);
            }
        }
        if let Some(auth) = batch.auth {
            let key = codec::AUTH_KEY.to_vec();
            let v = codec::encode_auth(&key, &auth);
            w.put(Space::Meta, key, v);
        }
        for (path, node) in batch.v2 {
            let key = codec::v2_key(&path);
            match node {
                Some(n) => {
                    let v = codec::encode_v2_node(&key, &n);
                    w.put(Space::Meta, key, v)
                }
                None => w.delete(Space::Meta, key),
            }
        }
        w
    }

    /// The meta keyspace's pairs under `prefix`.
    fn scan_meta_prefix(&self, prefix: &[u8]) -> Result<Vec<(Bytes, Bytes)>, BackendError> {
        let mut end = prefix.to_vec();
        *end.last_mut().expect("non-empty prefix") += 1;
        self.engine
            .scan(Space::Meta, prefix, Some(&end), 0)
            .map_err(backend_error)
    }
}

fn backend_error(e: StorageError) -> BackendError {
    BackendError(e.to_string())
}

fn corrupt(space: Space, key: &[u8], e: CodecError) -> BackendError {
    backend_error(StorageError::corrupt(space, key, e))
}

fn decode_pair(k: &[u8], v: &Bytes) -> Result<(Revision, Record), BackendError> {
    let rev = codec::decode_revision_key(k).map_err(|e| corrupt(Space::Mvcc, k, e))?;
    let record = codec::decode_record_shared(k, v).map_err(|e| corrupt(Space::Mvcc, k, e))?;
    if record.kv.mod_revision != rev.main {
        return Err(backend_error(StorageError::Inconsistent(format!(
            "record at revision {} says it was written at {}",
            rev.main, record.kv.mod_revision
        ))));
    }
    Ok((rev, record))
}

impl<E: Engine> Backend for EngineBackend<E> {
    fn get(&self, rev: Revision) -> Result<Option<Record>, BackendError> {
        let key = codec::revision_key(rev);
        match self.engine.get(Space::Mvcc, &key).map_err(backend_error)? {
            None => Ok(None),
            Some(v) => decode_pair(&key, &v).map(|(_, r)| Some(r)),
        }
    }

    fn scan(
        &self,
        from: Revision,
        to: Revision,
        limit: usize,
    ) -> Result<Vec<(Revision, Record)>, BackendError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let (from, to) = (codec::revision_key(from), codec::revision_key(to));
        self.engine
            .scan(Space::Mvcc, &from, Some(&to), limit)
            .map_err(backend_error)?
            .iter()
            .map(|(k, v)| decode_pair(k, v))
            .collect()
    }

    fn meta(&self, key: MetaKey) -> Result<Option<i64>, BackendError> {
        let k = meta_key(key);
        match self.engine.get(Space::Meta, k).map_err(backend_error)? {
            None => Ok(None),
            Some(v) => codec::decode_meta(k, &v)
                .map(Some)
                .map_err(|e| corrupt(Space::Meta, k, e)),
        }
    }

    fn leases(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        self.engine
            .scan(Space::Lease, &[], None, 0)
            .map_err(backend_error)?
            .iter()
            .map(|(k, v)| codec::decode_lease(k, v).map_err(|e| corrupt(Space::Lease, k, e)))
            .collect()
    }

    fn members(&self) -> Result<Vec<(u64, Bytes)>, BackendError> {
        self.scan_meta_prefix(codec::MEMBER_KEY_PREFIX)?
            .iter()
            .map(|(k, v)| {
                let id = codec::decode_member_key(k).ok_or_else(|| {
                    backend_error(StorageError::Inconsistent(format!(
                        "member key {} names no ID",
                        super::engine::hex(k)
                    )))
                })?;
                let record = codec::decode_member(k, v).map_err(|e| corrupt(Space::Meta, k, e))?;
                Ok((id, record))
            })
            .collect()
    }

    fn alarms(&self) -> Result<Vec<Alarm>, BackendError> {
        self.scan_meta_prefix(codec::ALARM_KEY_PREFIX)?
            .iter()
            .map(|(k, v)| {
                let kind = codec::decode_meta(k, v).map_err(|e| corrupt(Space::Meta, k, e))?;
                match codec::decode_alarm_key(k) {
                    Some(a) if i64::from(a.kind) == kind => Ok(a),
                    _ => Err(backend_error(StorageError::Inconsistent(format!(
                        "alarm key {} does not match its value {kind}",
                        super::engine::hex(k)
                    )))),
                }
            })
            .collect()
    }

    fn auth(&self) -> Result<Option<Bytes>, BackendError> {
        let key = codec::AUTH_KEY;
        let Some(v) = self.engine.get(Space::Meta, key).map_err(backend_error)? else {
            return Ok(None);
        };
        codec::decode_auth(key, &v)
            .map(Some)
            .map_err(|e| corrupt(Space::Meta, key, e))
    }

    fn v2_nodes(&self) -> Result<Vec<(String, Bytes)>, BackendError> {
        self.scan_meta_prefix(codec::V2_KEY_PREFIX)?
            .into_iter()
            .map(|(k, v)| {
                let path = codec::decode_v2_key(&k).ok_or_else(|| {
                    backend_error(StorageError::Inconsistent(format!(
                        "v2 key {} is not a path",
                        super::engine::hex(&k)
                    )))
                })?;
                let node =
                    codec::decode_v2_node(&k, &v).map_err(|e| corrupt(Space::Meta, &k, e))?;
                Ok((path.to_string(), node))
            })
            .collect()
    }

    fn write(&mut self, batch: Batch) -> Result<(), BackendError> {
        self.engine
            .write(Self::to_write_batch(batch))
            .map_err(backend_error)
    }
}

/// Reads a stored number (the store's meta, or the member's IDs in the Raft keyspace).
pub fn read_meta<E: Engine>(
    engine: &E,
    space: Space,
    key: &[u8],
) -> Result<Option<i64>, StorageError> {
    match engine.get(space, key)? {
        None => Ok(None),
        Some(v) => codec::decode_meta(key, &v)
            .map(Some)
            .map_err(|e| StorageError::corrupt(space, key, e)),
    }
}

/// Adds a stored number to `batch`.
pub fn stage_meta(batch: &mut WriteBatch, space: Space, key: &'static [u8], value: i64) {
    batch.put(
        space,
        Bytes::from_static(key),
        codec::encode_meta(key, value),
    );
}
