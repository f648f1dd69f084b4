//! The store's backend: records keyed by revision, as etcd's backend keys its `key` bucket, plus
//! a few meta values; written in atomic batches. [`MemBackend`] is the deterministic in-memory
//! implementation; the durable one (fjall) implements the same trait.
//!
//! The backend knows nothing of keys' histories: the [`KeyIndex`](super::key_index) rebuilt from
//! a scan maps keys to revisions.

use super::kv::{KeyValue, Revision};
use bytes::Bytes;
use std::collections::BTreeMap;
use thiserror::Error;

/// What the backend stores at a revision: the version written, or a tombstone (a deletion; only
/// `kv.key` and `kv.mod_revision` are meaningful).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The version written, or for a tombstone the key and the deleting revision.
    pub kv: KeyValue,
    /// Whether this record marks a deletion rather than a version.
    pub tombstone: bool,
}

/// Meta values stored beside the records, in the same atomic batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MetaKey {
    /// The store's revision after the batch (kept even when compaction removed its records).
    CurrentRevision,
    /// The revision the store was compacted at.
    CompactRevision,
    /// The Raft index of the last entry applied (the apply layer's, for exactly-once replay).
    AppliedIndex,
    /// The v2 store's index.
    V2Index,
}

/// A lease as the backend stores it: its ID, granted TTL and the remaining TTL last
/// checkpointed (keys are not stored with it: they are the live keys that name it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The lease's ID.
    pub id: i64,
    /// The TTL it was granted with, in seconds.
    pub ttl_s: i64,
    /// The TTL left as of the last checkpoint, in milliseconds.
    pub remaining_ms: u64,
}

/// Writes applied together or not at all. Leases ride along so that a command's effect on
/// them lands with its effect on the keys and the applied index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Records to store, by revision.
    pub puts: Vec<(Revision, Record)>,
    /// Revisions whose records to remove (compaction).
    pub deletes: Vec<Revision>,
    /// Meta values to set.
    pub meta: Vec<(MetaKey, i64)>,
    /// Lease records to store (`Some`) or remove (`None`), by ID.
    pub leases: Vec<(i64, Option<LeaseRecord>)>,
    /// Cluster member records (opaque bytes, the server's encoding) to store or remove, by ID.
    pub members: Vec<(u64, Option<Bytes>)>,
    /// Alarms to raise (`true`) or clear (`false`).
    pub alarms: Vec<(Alarm, bool)>,
    /// The auth state to store (the auth module's encoding), replacing the stored one.
    pub auth: Option<Bytes>,
    /// v2 nodes to store (`Some`: the node's own record) or remove (`None`), by path.
    pub v2: Vec<(String, Option<Bytes>)>,
}

/// A raised alarm: the member it names and etcd's `AlarmType` number (1 NOSPACE, 2 CORRUPT).
/// Ordered by type, then member: the order they are listed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Alarm {
    /// etcd's `AlarmType` number: 1 NOSPACE, 2 CORRUPT.
    pub kind: i32,
    /// The ID of the member the alarm was raised for.
    pub member: u64,
}

impl Batch {
    /// Whether the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
            && self.deletes.is_empty()
            && self.meta.is_empty()
            && self.leases.is_empty()
            && self.members.is_empty()
            && self.alarms.is_empty()
            && self.auth.is_none()
            && self.v2.is_empty()
    }

    /// Adds `other`'s changes after this batch's.
    pub fn append(&mut self, other: Batch) {
        self.puts.extend(other.puts);
        self.deletes.extend(other.deletes);
        self.meta.extend(other.meta);
        self.leases.extend(other.leases);
        self.members.extend(other.members);
        self.alarms.extend(other.alarms);
        if other.auth.is_some() {
            self.auth = other.auth;
        }
        self.v2.extend(other.v2);
    }
}

/// A backend that cannot do what was asked: the store stops rather than guess.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("backend: {0}")]
pub struct BackendError(pub String);

/// Where the store keeps its records, meta values, leases, members and alarms: read by
/// revision, written in atomic [`Batch`]es.
pub trait Backend {
    /// The record at `rev`, if any.
    fn get(&self, rev: Revision) -> Result<Option<Record>, BackendError>;

    /// Records with `from <= revision < to`, in revision order, at most `limit` of them
    /// (`limit` 0: no limit).
    fn scan(
        &self,
        from: Revision,
        to: Revision,
        limit: usize,
    ) -> Result<Vec<(Revision, Record)>, BackendError>;

    /// The meta value stored under `key`, if any.
    fn meta(&self, key: MetaKey) -> Result<Option<i64>, BackendError>;

    /// Every stored lease, by ID.
    fn leases(&self) -> Result<Vec<LeaseRecord>, BackendError>;

    /// Every stored member record, in ID order.
    fn members(&self) -> Result<Vec<(u64, Bytes)>, BackendError>;

    /// Every raised alarm, in [`Alarm`] order.
    fn alarms(&self) -> Result<Vec<Alarm>, BackendError>;

    /// The stored auth state, if any was stored.
    fn auth(&self) -> Result<Option<Bytes>, BackendError>;

    /// Every stored v2 node's record, by path.
    fn v2_nodes(&self) -> Result<Vec<(String, Bytes)>, BackendError>;

    /// Applies a batch atomically: deletes, then puts, then meta, then leases, then members,
    /// then alarms, then the auth state.
    fn write(&mut self, batch: Batch) -> Result<(), BackendError>;
}

/// The in-memory backend: a sorted map. Deterministic; loses everything with the process.
#[derive(Clone, Debug, Default)]
pub struct MemBackend {
    records: BTreeMap<Revision, Record>,
    meta: BTreeMap<MetaKey, i64>,
    leases: BTreeMap<i64, LeaseRecord>,
    members: BTreeMap<u64, Bytes>,
    alarms: std::collections::BTreeSet<Alarm>,
    auth: Option<Bytes>,
    v2: BTreeMap<String, Bytes>,
}

impl MemBackend {
    /// An empty backend.
    pub fn new() -> MemBackend {
        MemBackend::default()
    }
}

impl Backend for MemBackend {
    fn get(&self, rev: Revision) -> Result<Option<Record>, BackendError> {
        Ok(self.records.get(&rev).cloned())
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
        let limit = if limit == 0 { usize::MAX } else { limit };
        Ok(self
            .records
            .range(from..to)
            .take(limit)
            .map(|(r, rec)| (*r, rec.clone()))
            .collect())
    }

    fn meta(&self, key: MetaKey) -> Result<Option<i64>, BackendError> {
        Ok(self.meta.get(&key).copied())
    }

    fn write(&mut self, batch: Batch) -> Result<(), BackendError> {
        for rev in batch.deletes {
            self.records.remove(&rev);
        }
        for (rev, record) in batch.puts {
            debug_assert_eq!(rev.main, record.kv.mod_revision);
            self.records.insert(rev, record);
        }
        for (key, value) in batch.meta {
            self.meta.insert(key, value);
        }
        for (id, lease) in batch.leases {
            match lease {
                Some(l) => self.leases.insert(id, l),
                None => self.leases.remove(&id),
            };
        }
        for (id, record) in batch.members {
            match record {
                Some(r) => self.members.insert(id, r),
                None => self.members.remove(&id),
            };
        }
        for (alarm, raised) in batch.alarms {
            if raised {
                self.alarms.insert(alarm);
            } else {
                self.alarms.remove(&alarm);
            }
        }
        if let Some(auth) = batch.auth {
            self.auth = Some(auth);
        }
        for (path, node) in batch.v2 {
            match node {
                Some(n) => self.v2.insert(path, n),
                None => self.v2.remove(&path),
            };
        }
        Ok(())
    }

    fn auth(&self) -> Result<Option<Bytes>, BackendError> {
        Ok(self.auth.clone())
    }

    fn v2_nodes(&self) -> Result<Vec<(String, Bytes)>, BackendError> {
        Ok(self
            .v2
            .iter()
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect())
    }

    fn leases(&self) -> Result<Vec<LeaseRecord>, BackendError> {
        Ok(self.leases.values().copied().collect())
    }

    fn members(&self) -> Result<Vec<(u64, Bytes)>, BackendError> {
        Ok(self
            .members
            .iter()
            .map(|(id, r)| (*id, r.clone()))
            .collect())
    }

    fn alarms(&self) -> Result<Vec<Alarm>, BackendError> {
        Ok(self.alarms.iter().copied().collect())
    }
}
