//! The Raft half of a member's storage over an [`Engine`]: the log, the hard state, the
//! metadata of the snapshot the log was compacted to, and the membership as of the applied
//! index. It is the [`crate::raft::Storage`] the Raft core reads.
//!
//! Reads never touch the disk: the whole (compacted) log is mirrored in a
//! [`MemStorage`], loaded and checked on [`RaftStore::open`], and every change goes to the
//! engine first and to the mirror only once the engine took it, as etcd keeps its WAL beside a
//! `MemoryStorage`. One [`RaftStore::persist`] writes a whole Ready (snapshot, entries, hard
//! state) as one atomic batch and syncs once: group commit.

use super::codec::{self, index_key};
use super::engine::{Engine, Result, Space, StorageError, WriteBatch};
use crate::raft::{
    self, ConfState, Entry, HardState, MemStorage, Snapshot, SnapshotMetadata, Storage,
};
use bytes::Bytes;

type RaftResult<T> = std::result::Result<T, raft::StorageError>;

const HARD_STATE: &[u8] = b"hard_state";
const SNAPSHOT: &[u8] = b"snapshot";
const CONF_STATE: &[u8] = b"conf_state";

/// What [`RaftStore::force_new_cluster`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForcedRestart {
    /// Uncommitted entries dropped from the log.
    pub discarded: u64,
    /// The commit index after the appended changes.
    pub commit: u64,
    /// The members the appended changes remove.
    pub removed: Vec<raft::NodeId>,
}

/// The Raft log and state of one member, durable in `E`.
#[derive(Debug)]
pub struct RaftStore<E: Engine> {
    engine: E,
    cache: MemStorage,
    conf_state: ConfState,
    fresh: bool,
}

/// Checks that `entries` can follow the entry `after` (index, term) in a log: each at the
/// next index, terms never going down. What is read from a disk is held to this.
pub(super) fn check_follows(
    after: (u64, u64),
    entries: &[Entry],
) -> std::result::Result<(), String> {
    let (mut expect, mut term) = (after.0.checked_add(1), after.1);
    for e in entries {
        if Some(e.index) != expect {
            return Err(format!(
                "log entry {} where {expect:?} was expected (after {})",
                e.index, after.0
            ));
        }
        if e.term < term {
            return Err(format!(
                "log entry {} has term {} < {term}",
                e.index, e.term
            ));
        }
        expect = e.index.checked_add(1);
        term = e.term;
    }
    Ok(())
}

fn get_decoded<E: Engine, T>(
    engine: &E,
    space: Space,
    key: &[u8],
    decode: fn(&[u8], &[u8]) -> Result<T, codec::CodecError>,
) -> Result<Option<T>> {
    match engine.get(space, key)? {
        None => Ok(None),
        Some(v) => decode(key, &v)
            .map(Some)
            .map_err(|e| StorageError::corrupt(space, key, e)),
    }
}

impl<E: Engine> RaftStore<E> {
    /// Loads and checks what `engine` holds: every entry decodes at its own index, the log is
    /// contiguous from just after the snapshot, terms never decrease, and the commit index is
    /// within the log.
    pub fn open(engine: E) -> Result<RaftStore<E>> {
        let hard_state = get_decoded(&engine, Space::Raft, HARD_STATE, codec::decode_hard_state)?;
        let snapshot = get_decoded(&engine, Space::Raft, SNAPSHOT, codec::decode_snapshot_meta)?;
        let conf_state = get_decoded(&engine, Space::Raft, CONF_STATE, codec::decode_conf_state)?;
        let mut entries = Vec::new();
        for (k, v) in engine.scan(Space::Log, &[], None, 0)? {
            let e = codec::decode_entry(&k, &v)
                .map_err(|err| StorageError::corrupt(Space::Log, &k, err))?;
            entries.push(e);
        }
        let fresh = hard_state.is_none()
            && snapshot.is_none()
            && conf_state.is_none()
            && entries.is_empty();
        let meta = snapshot.unwrap_or_default();
        let hs = hard_state.unwrap_or_default();
        check_follows((meta.index, meta.term), &entries).map_err(StorageError::Inconsistent)?;
        let last = entries.last().map_or(meta.index, |e| e.index);
        if hs.commit > last {
            return Err(StorageError::Inconsistent(format!(
                "commit index {} beyond the last stored entry {last}",
                hs.commit
            )));
        }
        let mut cache = MemStorage::new();
        if meta.index > 0 {
            cache
                .apply_snapshot(Snapshot {
                    data: Bytes::new(),
                    metadata: meta.clone(),
                })
                .expect("a fresh cache takes any snapshot");
        }
        cache.append(&entries).expect("checked contiguous");
        cache.set_hard_state(hs);
        Ok(RaftStore {
            engine,
            cache,
            conf_state: conf_state.unwrap_or(meta.conf_state),
            fresh,
        })
    }

    /// Makes this member, `id`, the only member of its cluster, keeping its data (etcd's
    /// `--force-new-cluster`, for recovering from the loss of a majority): the log's
    /// uncommitted entries are discarded, and committed entries are appended after the
    /// committed log that remove every other member (leaving a joint configuration first),
    /// so that the member applies them on start, alone in the configuration, and elects
    /// itself. `applied` is the state machine's applied index: the stored membership is as
    /// of it, and the changes committed after it are folded in to find the other members.
    pub fn force_new_cluster(&mut self, id: raft::NodeId, applied: u64) -> Result<ForcedRestart> {
        use crate::raft::{ConfChange, ConfChangeKind, EntryKind};
        use std::collections::BTreeSet;
        let mut hs = self.hard_state();
        let last = self.cache.last_index().expect("cache");
        let discarded = last - hs.commit;
        let cs = &self.conf_state;
        let mut members: BTreeSet<raft::NodeId> = cs
            .voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .chain(&cs.learners_next)
            .copied()
            .collect();
        let mut joint = !cs.voters_outgoing.is_empty();
        let from = applied.max(self.snapshot_metadata().index) + 1;
        let committed = if from <= hs.commit {
            self.cache
                .entries(from, hs.commit + 1, u64::MAX)
                .map_err(|e| StorageError::Inconsistent(format!("the committed log: {e}")))?
        } else {
            Vec::new()
        };
        for e in committed.iter().filter(|e| e.kind == EntryKind::ConfChange) {
            let cc = ConfChange::decode(&e.data).map_err(|err| {
                StorageError::Inconsistent(format!("committed entry {}: {err}", e.index))
            })?;
            if cc.is_leave_joint() {
                joint = false;
                continue;
            }
            joint |= cc.enters_joint().is_some();
            for c in &cc.changes {
                match c.kind {
                    ConfChangeKind::RemoveNode => members.remove(&c.node_id),
                    ConfChangeKind::AddNode | ConfChangeKind::AddLearnerNode => {
                        members.insert(c.node_id)
                    }
                };
            }
        }
        if !members.contains(&id) {
            return Err(StorageError::Inconsistent(format!(
                "member {id:x} is not in its cluster's configuration"
            )));
        }
        let mut changes = Vec::new();
        if joint {
            changes.push(ConfChange::leave_joint());
        }
        let removed: Vec<raft::NodeId> = members.into_iter().filter(|m| *m != id).collect();
        changes.extend(
            removed
                .iter()
                .map(|m| ConfChange::simple(ConfChangeKind::RemoveNode, *m)),
        );
        // An empty entry when there is nothing to change, so the uncommitted tail still goes.
        let entries: Vec<Entry> = if changes.is_empty() {
            vec![Entry {
                term: hs.term,
                index: hs.commit + 1,
                kind: EntryKind::Normal,
                data: Bytes::new(),
            }]
        } else {
            changes
                .iter()
                .enumerate()
                .map(|(i, cc)| Entry {
                    term: hs.term,
                    index: hs.commit + 1 + i as u64,
                    kind: EntryKind::ConfChange,
                    data: cc.encode(),
                })
                .collect()
        };
        hs.commit += entries.len() as u64;
        self.persist(None, &entries, Some(&hs), WriteBatch::default(), true)?;
        Ok(ForcedRestart {
            discarded,
            commit: hs.commit,
            removed,
        })
    }

    /// Whether the engine held nothing of Raft's when opened: a member that has never run.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// The engine underneath.
    pub fn engine(&self) -> &E {
        &self.engine
    }

    /// The hard state last stored.
    pub fn hard_state(&self) -> HardState {
        self.cache.hard_state()
    }

    /// The membership last stored (with the snapshot or by a configuration change).
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The metadata of the snapshot the log starts after.
    pub fn snapshot_metadata(&self) -> SnapshotMetadata {
        self.cache
            .snapshot()
            .expect("the cache always has its snapshot")
            .metadata
    }

    /// Adds to `batch` what makes `snapshot` the start of the log: the log before it gone,
    /// its metadata and membership stored. The caller writes the batch, then calls
    /// [`RaftStore::snapshot_persisted`].
    fn stage_snapshot(&self, batch: &mut WriteBatch, meta: &SnapshotMetadata) {
        for i in self.first_stored()..=self.cache.last_index().expect("cache") {
            batch.delete(Space::Log, index_key(i).to_vec());
        }
        batch.put(
            Space::Raft,
            SNAPSHOT,
            codec::encode_snapshot_meta(SNAPSHOT, meta),
        );
        self.stage_conf_state(batch, &meta.conf_state);
    }

    /// The first index held as an entry (the one after the snapshot).
    fn first_stored(&self) -> u64 {
        self.cache.first_index().expect("cache")
    }

    /// Adds the membership to `batch` (a member stores it with the applied index of the
    /// configuration change that produced it).
    pub fn stage_conf_state(&self, batch: &mut WriteBatch, cs: &ConfState) {
        batch.put(
            Space::Raft,
            CONF_STATE,
            codec::encode_conf_state(CONF_STATE, cs),
        );
    }

    /// Records that a batch with [`RaftStore::stage_conf_state`] was written.
    pub fn conf_state_persisted(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// Persists a Ready's snapshot metadata, entries and hard state in one atomic batch,
    /// together with `extra` (a received snapshot's data), then syncs when `sync` is set.
    pub fn persist(
        &mut self,
        snapshot: Option<&SnapshotMetadata>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        extra: WriteBatch,
        sync: bool,
    ) -> Result<()> {
        let mut batch = extra;
        if let Some(meta) = snapshot {
            self.stage_snapshot(&mut batch, meta);
        }
        if let Some(first) = entries.first().map(|e| e.index) {
            let last_new = first + entries.len() as u64 - 1;
            let (old_first, old_last) = if snapshot.is_some() {
                (1, 0)
            } else {
                (self.first_stored(), self.cache.last_index().expect("cache"))
            };
            for i in (last_new + 1).max(old_first)..=old_last {
                batch.delete(Space::Log, index_key(i).to_vec());
            }
            // Entries the snapshot covers are not stored (the mirror ignores them too).
            let floor = snapshot.map_or(self.snapshot_metadata().index, |m| m.index);
            for e in entries.iter().filter(|e| e.index > floor) {
                batch.put(
                    Space::Log,
                    index_key(e.index).to_vec(),
                    codec::encode_entry(e),
                );
            }
        }
        if let Some(hs) = hard_state {
            batch.put(
                Space::Raft,
                HARD_STATE,
                codec::encode_hard_state(HARD_STATE, hs),
            );
        }
        if !batch.is_empty() {
            self.engine.write(batch)?;
        }
        if sync {
            self.engine.sync()?;
        }
        if let Some(meta) = snapshot {
            self.cache
                .apply_snapshot(Snapshot {
                    data: Bytes::new(),
                    metadata: meta.clone(),
                })
                .map_err(|e| StorageError::Inconsistent(format!("snapshot: {e}")))?;
            self.conf_state = meta.conf_state.clone();
        }
        self.cache
            .append(entries)
            .map_err(|e| StorageError::Inconsistent(format!("append: {e}")))?;
        if let Some(hs) = hard_state {
            self.cache.set_hard_state(*hs);
        }
        self.fresh = false;
        Ok(())
    }

    /// Records a snapshot of the applied state at `index` (with the membership `cs` as of it)
    /// and drops the log up to it. Nothing needs syncing: a crash before the next sync leaves
    /// the longer log and the older snapshot, which is as good.
    pub fn compact(&mut self, index: u64, cs: ConfState) -> Result<()> {
        if index <= self.snapshot_metadata().index {
            return Ok(());
        }
        let term = self
            .cache
            .term(index)
            .map_err(|e| StorageError::Inconsistent(format!("compact at {index}: {e}")))?;
        let meta = SnapshotMetadata {
            conf_state: cs,
            index,
            term,
        };
        let mut batch = WriteBatch::default();
        for i in self.first_stored()..=index {
            batch.delete(Space::Log, index_key(i).to_vec());
        }
        batch.put(
            Space::Raft,
            SNAPSHOT,
            codec::encode_snapshot_meta(SNAPSHOT, &meta),
        );
        self.engine.write(batch)?;
        self.cache
            .create_snapshot(index, meta.conf_state, Bytes::new())
            .and_then(|_| self.cache.compact(index))
            .map_err(|e| StorageError::Inconsistent(format!("compact at {index}: {e}")))
    }
}

impl<E: Engine> Storage for RaftStore<E> {
    fn initial_state(&self) -> RaftResult<(HardState, ConfState)> {
        Ok((self.cache.hard_state(), self.conf_state.clone()))
    }

    fn entries(&self, lo: u64, hi: u64, max_size_bytes: u64) -> RaftResult<Vec<Entry>> {
        self.cache.entries(lo, hi, max_size_bytes)
    }

    fn term(&self, index: u64) -> RaftResult<u64> {
        self.cache.term(index)
    }

    fn first_index(&self) -> RaftResult<u64> {
        self.cache.first_index()
    }

    fn last_index(&self) -> RaftResult<u64> {
        self.cache.last_index()
    }

    /// The snapshot's metadata; its data (the state machine) is added by whoever sends it.
    fn snapshot(&self) -> RaftResult<Snapshot> {
        self.cache.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{DiskFaults, SimDisk};

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            term,
            index,
            data: Bytes::from(format!("{index}@{term}")),
            ..Entry::default()
        }
    }

    fn log(s: &RaftStore<SimDisk>) -> Vec<(u64, u64)> {
        let (first, last) = (s.first_index().unwrap(), s.last_index().unwrap());
        s.entries(first, last + 1, u64::MAX)
            .unwrap()
            .iter()
            .map(|e| (e.index, e.term))
            .collect()
    }

    #[test]
    fn a_forced_new_cluster_drops_the_uncommitted_tail_and_removes_the_others() {
        use crate::raft::{ConfChange, ConfChangeKind, EntryKind};
        let disk = SimDisk::new(1, DiskFaults::default());
        let mut s = RaftStore::open(disk.reopen()).unwrap();
        let mut batch = WriteBatch::default();
        s.stage_conf_state(&mut batch, &ConfState::with_voters([1, 2, 3]));
        s.persist(None, &[], None, batch, true).unwrap();
        s.conf_state_persisted(ConfState::with_voters([1, 2, 3]));
        // Applied to 2; entry 3 (committed, not applied) adds 4 as a learner and entry 4
        // (committed) removes 3; entries 5 and 6 are not committed.
        let cc = |kind, id| Entry {
            kind: EntryKind::ConfChange,
            data: ConfChange::simple(kind, id).encode(),
            ..ent(0, 2)
        };
        let mut entries: Vec<Entry> = (1..=6).map(|i| ent(i, 2)).collect();
        entries[2] = Entry {
            index: 3,
            ..cc(ConfChangeKind::AddLearnerNode, 4)
        };
        entries[3] = Entry {
            index: 4,
            ..cc(ConfChangeKind::RemoveNode, 3)
        };
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 4,
        };
        s.persist(None, &entries, Some(&hs), WriteBatch::default(), true)
            .unwrap();
        let forced = s.force_new_cluster(1, 2).unwrap();
        assert_eq!(
            forced,
            ForcedRestart {
                discarded: 2,
                commit: 6,
                removed: vec![2, 4],
            }
        );
        let again = RaftStore::open(disk.reopen()).unwrap();
        assert_eq!(again.hard_state().commit, 6);
        let tail = again.entries(5, 7, u64::MAX).unwrap();
        let removed: Vec<u64> = tail
            .iter()
            .map(|e| {
                assert_eq!((e.kind, e.term), (EntryKind::ConfChange, 2));
                let cc = ConfChange::decode(&e.data).unwrap();
                assert_eq!(cc.changes[0].kind, ConfChangeKind::RemoveNode);
                cc.changes[0].node_id
            })
            .collect();
        assert_eq!(removed, vec![2, 4]);
        assert_eq!(again.last_index().unwrap(), 6);
        // A member the configuration does not hold cannot force itself a cluster.
        let mut again = again;
        assert!(again.force_new_cluster(9, 6).is_err());
    }

    #[test]
    fn appends_truncations_and_compactions_reopen_as_they_were() {
        let disk = SimDisk::new(1, DiskFaults::default());
        let mut s = RaftStore::open(disk.reopen()).unwrap();
        assert!(s.is_fresh());
        let entries: Vec<Entry> = (1..=6).map(|i| ent(i, 1)).collect();
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: 3,
        };
        s.persist(None, &entries, Some(&hs), WriteBatch::default(), true)
            .unwrap();
        // A new leader's entries replace the tail from index 5 on, and the log gets shorter.
        s.persist(None, &[ent(5, 2)], None, WriteBatch::default(), true)
            .unwrap();
        s.compact(2, ConfState::with_voters([1])).unwrap();
        disk.sync().unwrap();
        let want = log(&s);
        assert_eq!(want, vec![(3, 1), (4, 1), (5, 2)]);
        let again = RaftStore::open(disk.reopen()).unwrap();
        assert!(!again.is_fresh());
        assert_eq!(log(&again), want);
        assert_eq!(again.hard_state(), hs);
        assert_eq!(again.snapshot_metadata().index, 2);
        assert_eq!(again.term(2).unwrap(), 1);
        assert_eq!(
            again.conf_state(),
            &ConfState::with_voters([1]),
            "with no membership stored apart, the snapshot's"
        );
        // An old compaction is a no-op, not a step back.
        let mut again = again;
        again.compact(1, ConfState::default()).unwrap();
        assert_eq!(again.snapshot_metadata().index, 2);
    }

    #[test]
    fn a_gap_in_the_stored_log_is_refused() {
        let disk = SimDisk::new(1, DiskFaults::default());
        let mut s = RaftStore::open(disk.reopen()).unwrap();
        let entries: Vec<Entry> = (1..=3).map(|i| ent(i, 1)).collect();
        s.persist(None, &entries, None, WriteBatch::default(), true)
            .unwrap();
        let mut b = WriteBatch::default();
        b.delete(Space::Log, index_key(2).to_vec());
        disk.write(b).unwrap();
        let err = RaftStore::open(disk.reopen()).unwrap_err();
        assert!(matches!(err, StorageError::Inconsistent(_)), "{err}");
    }
}
