//! The Raft half of a member's storage: the log and the hard state in the log file
//! ([`super::wal`]), and in the [`Engine`] the metadata of the snapshot the log was compacted
//! to and the membership as of the applied index. It is the [`crate::raft::Storage`] the
//! Raft core reads.
//!
//! Reads never touch the disk: the whole (compacted) log is mirrored in a [`MemStorage`],
//! loaded and checked on [`RaftStore::open`], and every change goes to disk first and to the
//! mirror only once written, as etcd keeps its WAL beside a `MemoryStorage`. One
//! [`RaftStore::persist`] writes a Ready's entries and hard state as one log record and syncs
//! the log file once: group commit. The engine is not synced for it: what the state machine
//! writes there is replayed from the log after a crash.
//!
//! The order of writes, so that a crash anywhere leaves a log that reads (the plan,
//! `docs/raft-log-file.md`): the log file always holds every entry after the snapshot the
//! engine holds durably, and is read from that snapshot on open. A snapshot installed is
//! written to the engine and synced before the log file's reset record; a compaction writes
//! the snapshot's metadata to the engine, and syncs it only before log segments go. A data
//! dir of the layout before (the log and hard state in the engine's `raft_log` and
//! `raft_state` keyspaces) is moved into the log file on open.

use super::codec;
use super::engine::{Engine, Result, Space, StorageError, WriteBatch};
use super::wal::{Wal, WalLog, WalRecord};
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
    wal: Wal<E::Wal>,
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
    /// Loads and checks what `engine` and its log file hold: the log read from the snapshot
    /// the engine holds, contiguous, terms never decreasing, and the commit index within it.
    /// A data dir of the layout before has its log and hard state moved into the log file
    /// first.
    pub fn open(engine: E) -> Result<RaftStore<E>> {
        let snapshot = get_decoded(&engine, Space::Raft, SNAPSHOT, codec::decode_snapshot_meta)?;
        let conf_state = get_decoded(&engine, Space::Raft, CONF_STATE, codec::decode_conf_state)?;
        let meta = snapshot.clone().unwrap_or_default();
        let start = (meta.index, meta.term);
        let (mut wal, mut log) = Wal::open(engine.wal_dir()?, start)?;
        if let Some(moved) = move_layout_1_log(&engine, &mut wal, start)? {
            log = moved;
        }
        engine.stamp_current_layout()?;
        if log.start != start {
            return Err(StorageError::Inconsistent(format!(
                "the log file starts after {} but the stored snapshot is at {}",
                log.start.0, start.0
            )));
        }
        let fresh = snapshot.is_none() && conf_state.is_none() && wal.is_empty();
        let WalLog {
            entries,
            hard_state: mut hs,
            ..
        } = log;
        // A snapshot installed and synced, then a crash before the log file's record of it:
        // what it covers is committed, and its term was reached.
        hs.commit = hs.commit.max(meta.index);
        if hs.term < meta.term {
            hs.term = meta.term;
            hs.vote = 0;
        }
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
            wal,
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

    /// Takes the commit index up to `applied` (the state machine's applied index, read on
    /// open) when the log holds that entry and the hard state says less: see
    /// [`crate::node::Member::open`]. Written and synced, so it is said once.
    pub fn commit_applied(&mut self, applied: u64) -> Result<()> {
        let mut hs = self.hard_state();
        let last = self.cache.last_index().expect("cache");
        if applied <= hs.commit || applied > last {
            return Ok(());
        }
        hs.commit = applied;
        self.persist(None, &[], Some(&hs), WriteBatch::default(), true)
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

    /// Adds to `batch` what makes `snapshot` the start of the log in the engine: its
    /// metadata and membership.
    fn stage_snapshot(&self, batch: &mut WriteBatch, meta: &SnapshotMetadata) {
        batch.put(
            Space::Raft,
            SNAPSHOT,
            codec::encode_snapshot_meta(SNAPSHOT, meta),
        );
        self.stage_conf_state(batch, &meta.conf_state);
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

    /// Persists a Ready: `extra` (a received snapshot's data) and the snapshot's metadata in
    /// the engine, synced before anything else when there is a snapshot; then the entries and
    /// the hard state as one record of the log file (after a reset record for the snapshot),
    /// synced when `sync` is set.
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
        if !batch.is_empty() {
            self.engine.write(batch)?;
            if sync || snapshot.is_some() {
                // A snapshot is durable in the engine before the log file says the log
                // starts after it: the log file is read from the engine's snapshot.
                self.engine.sync()?;
            }
        }
        let mut records = Vec::with_capacity(2);
        if let Some(meta) = snapshot {
            records.push(WalRecord::Reset {
                index: meta.index,
                term: meta.term,
            });
        }
        // Entries the snapshot covers are not stored (the mirror ignores them too).
        let floor = snapshot.map_or(self.snapshot_metadata().index, |m| m.index);
        let after = entries.partition_point(|e| e.index <= floor);
        if after < entries.len() || hard_state.is_some() {
            records.push(WalRecord::Ready {
                entries: entries[after..].to_vec(),
                hard_state: hard_state.copied(),
            });
        }
        self.wal.append(&records)?;
        if sync {
            self.wal.sync()?;
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
    /// and drops the log up to it. The engine is synced only when log segments can go: a
    /// crash before that leaves the older snapshot and the longer log, which is as good.
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
        batch.put(
            Space::Raft,
            SNAPSHOT,
            codec::encode_snapshot_meta(SNAPSHOT, &meta),
        );
        self.engine.write(batch)?;
        self.cache
            .create_snapshot(index, meta.conf_state, Bytes::new())
            .and_then(|_| self.cache.compact(index))
            .map_err(|e| StorageError::Inconsistent(format!("compact at {index}: {e}")))?;
        if self.wal.releasable(index) > 0 {
            // The log file is read from the engine's snapshot: it must be durable before the
            // segments it covers go (and with it every write before it, the applied index's).
            self.engine.sync()?;
            self.wal.release_through(index)?;
        }
        Ok(())
    }

    /// The log file's segments (for tests and tools).
    pub fn wal_segments(&self) -> usize {
        self.wal.segments().len()
    }
}

/// Moves the log and hard state of a layout-1 data dir (kept in the engine) into the log
/// file, and then drops them from the engine; returns the log as the file now holds it, or
/// `None` when the file holds what it held when opened (nothing to move, or an earlier
/// attempt moved it). Crash-safe at every step: the log file is written and synced whole
/// before the engine's copy goes, and a log file that holds a record already was written by
/// an earlier attempt.
fn move_layout_1_log<E: Engine>(
    engine: &E,
    wal: &mut Wal<E::Wal>,
    start: (u64, u64),
) -> Result<Option<WalLog>> {
    let hard_state = get_decoded(engine, Space::Raft, HARD_STATE, codec::decode_hard_state)?;
    let stored = engine.scan(Space::Log, &[], None, 0)?;
    if hard_state.is_none() && stored.is_empty() {
        return Ok(None);
    }
    let mut old = WriteBatch::default();
    old.delete(Space::Raft, HARD_STATE);
    let mut entries = Vec::with_capacity(stored.len());
    for (k, v) in stored {
        let e = codec::decode_entry(&k, &v)
            .map_err(|err| StorageError::corrupt(Space::Log, &k, err))?;
        old.delete(Space::Log, k);
        entries.push(e);
    }
    let moved = if wal.is_empty() {
        check_follows(start, &entries).map_err(StorageError::Inconsistent)?;
        let record = WalRecord::Ready {
            entries,
            hard_state,
        };
        wal.append(std::slice::from_ref(&record))?;
        wal.sync()?;
        let mut log = WalLog::starting_after(start);
        log.apply(record).map_err(StorageError::Inconsistent)?;
        Some(log)
    } else {
        None
    };
    engine.stamp_current_layout()?;
    engine.write(old)?;
    engine.sync()?;
    Ok(moved)
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
    use crate::storage::engine::EngineRead;
    use crate::storage::wal::WalDir;
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

    /// Writes `entries` and `hs` into `disk` as the layout before kept them (in the engine).
    fn write_layout_1(disk: &SimDisk, entries: &[Entry], hs: Option<HardState>) {
        let mut b = WriteBatch::default();
        for e in entries {
            b.put(
                Space::Log,
                codec::index_key(e.index).to_vec(),
                codec::encode_entry(e),
            );
        }
        if let Some(hs) = hs {
            b.put(
                Space::Raft,
                HARD_STATE,
                codec::encode_hard_state(HARD_STATE, &hs),
            );
        }
        disk.write(b).unwrap();
        disk.sync().unwrap();
    }

    #[test]
    fn a_layout_1_log_moves_into_the_log_file_even_across_a_crash() {
        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 4,
        };
        let entries: Vec<Entry> = (3..=6).map(|i| ent(i, 2)).collect();
        let meta = SnapshotMetadata {
            conf_state: ConfState::with_voters([1]),
            index: 2,
            term: 1,
        };
        for crash in [false, true] {
            let disk = SimDisk::new(1, DiskFaults::default());
            let mut b = WriteBatch::default();
            b.put(
                Space::Raft,
                SNAPSHOT,
                codec::encode_snapshot_meta(SNAPSHOT, &meta),
            );
            disk.write(b).unwrap();
            write_layout_1(&disk, &entries, Some(hs));
            if crash {
                // The log file written and synced, then a crash before the engine's copy
                // went: the next open finds both and keeps the file's.
                let (mut wal, _) = Wal::open(disk.wal_dir().unwrap(), (2, 1)).unwrap();
                wal.append(&[WalRecord::Ready {
                    entries: entries.clone(),
                    hard_state: Some(hs),
                }])
                .unwrap();
                wal.sync().unwrap();
                disk.crash();
            }
            let s = RaftStore::open(disk.reopen()).unwrap();
            assert!(!s.is_fresh());
            assert_eq!(log(&s), vec![(3, 2), (4, 2), (5, 2), (6, 2)]);
            assert_eq!(s.hard_state(), hs);
            assert_eq!(s.wal_segments(), 1);
            let disk = disk.reopen();
            assert!(disk.scan(Space::Log, &[], None, 0).unwrap().is_empty());
            assert!(disk.get(Space::Raft, HARD_STATE).unwrap().is_none());
            drop(s);
            let again = RaftStore::open(disk.reopen()).unwrap();
            assert_eq!(log(&again), vec![(3, 2), (4, 2), (5, 2), (6, 2)]);
            assert_eq!(again.hard_state(), hs);
        }
        // A gap in a layout-1 log is refused, and nothing is moved.
        let disk = SimDisk::new(1, DiskFaults::default());
        write_layout_1(&disk, &[ent(1, 1), ent(3, 1)], Some(hs));
        let err = RaftStore::open(disk.reopen()).unwrap_err();
        assert!(matches!(err, StorageError::Inconsistent(_)), "{err}");
        assert!(disk.wal_dir().unwrap().list().unwrap().is_empty());
    }

    /// A snapshot installed: the engine holds it (synced), then a crash before the log file's
    /// reset record. The log read from it keeps nothing of the old log past it, unless the old
    /// log held the snapshot's own entry, and what it covers counts as committed.
    #[test]
    fn a_crash_between_an_installed_snapshot_and_its_log_record_loses_nothing() {
        for (old_term_at_4, kept) in [(1, vec![]), (3, vec![(5, 3), (6, 3)])] {
            let disk = SimDisk::new(1, DiskFaults::default());
            let mut s = RaftStore::open(disk.reopen()).unwrap();
            let entries: Vec<Entry> = (1..=6)
                .map(|i| ent(i, if i < 4 { 1 } else { old_term_at_4 }))
                .collect();
            let hs = HardState {
                term: old_term_at_4,
                vote: 1,
                commit: 2,
            };
            s.persist(None, &entries, Some(&hs), WriteBatch::default(), true)
                .unwrap();
            let meta = SnapshotMetadata {
                conf_state: ConfState::with_voters([1]),
                index: 4,
                term: 3,
            };
            let mut b = WriteBatch::default();
            s.stage_snapshot(&mut b, &meta);
            disk.write(b).unwrap();
            disk.sync().unwrap();
            disk.crash();
            let again = RaftStore::open(disk.reopen()).unwrap();
            assert_eq!(again.snapshot_metadata().index, 4);
            assert_eq!(log(&again), kept);
            let hs = again.hard_state();
            assert_eq!((hs.term, hs.commit), (3, 4));
            assert_eq!(hs.vote, if old_term_at_4 == 3 { 1 } else { 0 });
        }
        // The whole install, then a crash: whatever the crash keeps of what was not synced,
        // the log starts after the snapshot.
        for seed in 0..8 {
            let disk = SimDisk::new(seed, DiskFaults::default());
            let mut s = RaftStore::open(disk.reopen()).unwrap();
            let entries: Vec<Entry> = (1..=6).map(|i| ent(i, 1)).collect();
            s.persist(None, &entries, None, WriteBatch::default(), true)
                .unwrap();
            let meta = SnapshotMetadata {
                conf_state: ConfState::with_voters([1]),
                index: 9,
                term: 2,
            };
            let hs = HardState {
                term: 2,
                vote: 0,
                commit: 9,
            };
            s.persist(Some(&meta), &[], Some(&hs), WriteBatch::default(), true)
                .unwrap();
            disk.crash();
            let again = RaftStore::open(disk.reopen()).unwrap();
            assert_eq!(again.snapshot_metadata().index, 9, "seed {seed}");
            assert_eq!(log(&again), vec![]);
            assert_eq!(again.hard_state(), hs);
        }
    }

    /// Many small segments: compactions drop the old ones (the engine synced first), and a
    /// crash after leaves a log that reads from the engine's snapshot.
    #[test]
    fn compactions_release_old_segments_and_a_crash_after_reads_back() {
        for seed in 0..8 {
            compactions_release_old_segments_and_a_crash_after_reads_back_with(seed);
        }
    }

    fn compactions_release_old_segments_and_a_crash_after_reads_back_with(seed: u64) {
        let disk = SimDisk::new(seed, DiskFaults::default());
        disk.set_wal_segment_bytes(256);
        let mut s = RaftStore::open(disk.reopen()).unwrap();
        let mut hs = HardState {
            term: 1,
            vote: 1,
            commit: 0,
        };
        for i in 1..=200 {
            hs.commit = i - 1;
            s.persist(None, &[ent(i, 1)], Some(&hs), WriteBatch::default(), true)
                .unwrap();
            if i % 50 == 0 {
                s.compact(i - 10, ConfState::with_voters([1])).unwrap();
            }
        }
        assert!(s.wal_segments() < 20, "{} segments", s.wal_segments());
        let want = log(&s);
        disk.crash();
        let again = RaftStore::open(disk.reopen()).unwrap();
        assert_eq!(again.snapshot_metadata().index, 190);
        assert_eq!(log(&again), want);
        assert_eq!(again.hard_state(), hs);
    }
}
