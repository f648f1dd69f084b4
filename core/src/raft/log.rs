//! The Raft log as the core sees it: durable entries (through `Storage`), unstable entries,
//! and the commit, applied and persisted indexes.

use super::error::StorageError;
use super::log_unstable::Unstable;
use super::message::{Entry, Snapshot};
use super::storage::{Storage, limit_size};

type Result<T> = std::result::Result<T, StorageError>;

/// The log: the durable part in `storage`, the not-yet-persisted tail in `unstable`, and the
/// commit, applied and persisted marks.
pub struct RaftLog<S: Storage> {
    /// The durable entries and snapshot.
    pub storage: S,
    /// Entries and snapshot received but not yet persisted by the owner.
    pub unstable: Unstable,
    /// The highest index known to be stored on a quorum.
    pub committed: u64,
    /// The highest index the owner has acknowledged applying (through `advance`).
    pub applied: u64,
    /// The highest index the owner has made durable locally (through `advance`).
    pub persisted: u64,
}

impl<S: Storage> RaftLog<S> {
    /// A log over `storage`, committed and applied up to its snapshot, persisted to its end.
    pub fn new(storage: S) -> RaftLog<S> {
        let first = storage.first_index().expect("storage answers first_index");
        let last = storage.last_index().expect("storage answers last_index");
        RaftLog {
            storage,
            unstable: Unstable::new(last + 1),
            committed: first - 1,
            applied: first - 1,
            persisted: last,
        }
    }

    /// The index of the first entry held (after the snapshot).
    pub fn first_index(&self) -> u64 {
        self.unstable
            .maybe_first_index()
            .unwrap_or_else(|| self.storage.first_index().expect("storage first_index"))
    }

    /// The index of the last entry held, durable or not.
    pub fn last_index(&self) -> u64 {
        self.unstable
            .maybe_last_index()
            .unwrap_or_else(|| self.storage.last_index().expect("storage last_index"))
    }

    /// The term of the last entry held.
    pub fn last_term(&self) -> u64 {
        self.term(self.last_index())
            .expect("the term of the last index is always known")
    }

    /// The term at `index`; `Compacted` below the log, `Unavailable` past its end.
    pub fn term(&self, index: u64) -> Result<u64> {
        let dummy = self.first_index() - 1;
        if index < dummy {
            return Err(StorageError::Compacted);
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        if let Some(term) = self.unstable.maybe_term(index) {
            return Ok(term);
        }
        self.storage.term(index)
    }

    /// The term at `index`, or 0 when it is not in the log.
    pub fn term_or_zero(&self, index: u64) -> u64 {
        self.term(index).unwrap_or(0)
    }

    /// Whether the log holds an entry at `index` of term `term`.
    pub fn match_term(&self, index: u64, term: u64) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// Whether a log ending at (`last_index`, `term`) is at least as up to date as this one.
    pub fn is_up_to_date(&self, last_index: u64, term: u64) -> bool {
        term > self.last_term() || (term == self.last_term() && last_index >= self.last_index())
    }

    /// The first index where `entries` disagree with (or extend) the log, or 0 when the log
    /// already holds all of them.
    pub fn find_conflict(&self, entries: &[Entry]) -> u64 {
        entries
            .iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map_or(0, |e| e.index)
    }

    /// For a rejected append at (`index`, `term`): the largest index at or below `index` whose
    /// term is at most `term`, with its term. The leader skips every index in between, which
    /// cannot match (fast backtracking).
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> (u64, u64) {
        if index > self.last_index() {
            return (index, 0);
        }
        let mut index = index;
        loop {
            match self.term(index) {
                Ok(t) if t > term && index > 0 => index -= 1,
                Ok(t) => return (index, t),
                Err(_) => return (index, 0),
            }
        }
    }

    /// Appends entries after the (`index`, `log_term`) they follow, when the log holds that
    /// entry. Returns the index of the last new entry. `skip_prev_check` is only ever true
    /// under a planted bug.
    pub fn maybe_append(
        &mut self,
        index: u64,
        log_term: u64,
        committed: u64,
        entries: &[Entry],
        skip_prev_check: bool,
    ) -> Option<u64> {
        if !skip_prev_check && !self.match_term(index, log_term) {
            return None;
        }
        if skip_prev_check && index > self.last_index() {
            return None;
        }
        let last_new = index + entries.len() as u64;
        let conflict = self.find_conflict(entries);
        if conflict != 0 {
            assert!(
                skip_prev_check || conflict > self.committed,
                "entry {conflict} conflicts with the committed log (committed {})",
                self.committed
            );
            let start = (conflict - (index + 1)) as usize;
            self.append(&entries[start..]);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
    }

    /// Appends entries (which may replace an uncommitted suffix); returns the new last index.
    pub fn append(&mut self, entries: &[Entry]) -> u64 {
        let Some(first) = entries.first() else {
            return self.last_index();
        };
        let after = first.index - 1;
        assert!(
            after <= self.last_index(),
            "append at {} leaves a gap after {}",
            first.index,
            self.last_index()
        );
        self.persisted = self.persisted.min(after);
        self.unstable.truncate_and_append(entries);
        self.last_index()
    }

    /// Raises the commit index to `index`; panics if the log does not reach it.
    pub fn commit_to(&mut self, index: u64) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit {index} is out of range [last index {}]: was the log lost?",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Commits `index` if it was replicated in the current `term` (Raft never commits an entry
    /// of an older term by counting replicas; it is committed indirectly, with the new one).
    pub fn maybe_commit(&mut self, index: u64, term: u64, skip_term_check: bool) -> bool {
        if index > self.committed && (skip_term_check || self.term_or_zero(index) == term) {
            self.commit_to(index);
            true
        } else {
            false
        }
    }

    /// Records that the owner applied everything up to `index` (0: nothing to record).
    pub fn applied_to(&mut self, index: u64) {
        if index == 0 {
            return;
        }
        assert!(
            self.committed >= index && index >= self.applied,
            "applied {index} out of range [applied {}, committed {}]",
            self.applied,
            self.committed
        );
        self.applied = index;
    }

    /// Records that the owner persisted entries up to `index` of term `term`.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        self.unstable.stable_to(index, term);
        if self.match_term(index, term) {
            self.persisted = self.persisted.max(index);
        }
    }

    /// Records that the owner persisted the pending snapshot at `index`.
    pub fn stable_snap_to(&mut self, index: u64) {
        self.unstable.stable_snap_to(index);
        self.persisted = self.persisted.max(index);
    }

    /// The entries not yet handed to the owner to persist.
    pub fn unstable_entries(&self) -> &[Entry] {
        &self.unstable.entries
    }

    /// Committed entries not yet handed out, up to `max_size_bytes`.
    pub fn next_committed_entries(&self, max_size_bytes: u64) -> Vec<Entry> {
        let lo = self.applied.max(self.first_index() - 1) + 1;
        if self.committed < lo {
            return Vec::new();
        }
        self.slice(lo, self.committed + 1, max_size_bytes)
            .expect("committed entries are in the log")
    }

    /// Whether committed entries wait to be handed out for applying.
    pub fn has_next_committed_entries(&self) -> bool {
        self.committed > self.applied.max(self.first_index() - 1)
    }

    /// The snapshot received but not yet persisted, if any.
    pub fn pending_snapshot(&self) -> Option<&Snapshot> {
        self.unstable.snapshot.as_ref()
    }

    /// The snapshot to send to a follower that needs one.
    pub fn snapshot(&self) -> Result<Snapshot> {
        match &self.unstable.snapshot {
            Some(s) => Ok(s.clone()),
            None => self.storage.snapshot(),
        }
    }

    /// Entries from `index` to the end of the log, up to `max_size_bytes`.
    pub fn entries(&self, index: u64, max_size_bytes: u64) -> Result<Vec<Entry>> {
        if index > self.last_index() {
            return Ok(Vec::new());
        }
        self.slice(index, self.last_index() + 1, max_size_bytes)
    }

    /// Entries in `[lo, hi)`, from storage and the unstable part, up to `max_size_bytes`.
    pub fn slice(&self, lo: u64, hi: u64, max_size_bytes: u64) -> Result<Vec<Entry>> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo < self.first_index() {
            return Err(StorageError::Compacted);
        }
        assert!(
            hi <= self.last_index() + 1,
            "slice [{lo}, {hi}) out of bounds [last {}]",
            self.last_index()
        );
        let mut out = Vec::new();
        let offset = self.unstable.offset;
        if lo < offset {
            let stored = self.storage.entries(lo, hi.min(offset), max_size_bytes)?;
            let short = (stored.len() as u64) < hi.min(offset) - lo;
            out = stored;
            if short {
                return Ok(out);
            }
        }
        if hi > offset {
            out.extend_from_slice(self.unstable.slice(lo.max(offset), hi));
        }
        limit_size(&mut out, max_size_bytes);
        Ok(out)
    }

    /// Replaces the log with `snapshot` (the follower's log did not contain its last entry).
    pub fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        self.committed = index;
        self.persisted = self.persisted.min(index);
        self.unstable.restore(snapshot);
    }

    /// Every entry in `(lo, hi]`, for scanning (no size limit).
    pub fn all_between(&self, lo: u64, hi: u64) -> Vec<Entry> {
        self.slice(lo + 1, hi + 1, u64::MAX).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::MemStorage;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Append `count` entries of `term` after `back` entries from the end (not below commit).
        Append {
            back: u64,
            count: u64,
            term_step: u64,
        },
        /// The owner persists everything unstable.
        Persist,
        /// Commit up to a fraction of the log.
        Commit { permille: u64 },
        /// Snapshot and compact the durable log at a fraction of the commit index.
        Compact { permille: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u64..4, 1u64..4, 0u64..2).prop_map(|(back, count, term_step)| Op::Append {
                back,
                count,
                term_step
            }),
            Just(Op::Persist),
            (0u64..=1000).prop_map(|permille| Op::Commit { permille }),
            (0u64..=1000).prop_map(|permille| Op::Compact { permille }),
        ]
    }

    proptest! {
        /// The log (durable part, unstable part, compaction) always answers like a plain vector
        /// of (index, term) pairs: same terms, same entries, same bounds.
        #[test]
        fn log_matches_a_vector_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut log = RaftLog::new(MemStorage::new());
            // model[i] = term of index i; index 0 is the empty start.
            let mut model: Vec<u64> = vec![0];
            let mut term = 1;
            for op in ops {
                match op {
                    Op::Append { back, count, term_step } => {
                        let last = model.len() as u64 - 1;
                        let after = last.saturating_sub(back).max(log.committed);
                        term += term_step;
                        let entries: Vec<Entry> = (1..=count)
                            .map(|i| Entry { index: after + i, term, ..Entry::default() })
                            .collect();
                        model.truncate(after as usize + 1);
                        model.extend(entries.iter().map(|e| e.term));
                        prop_assert_eq!(log.append(&entries), model.len() as u64 - 1);
                    }
                    Op::Persist => {
                        let unstable = log.unstable_entries().to_vec();
                        log.storage.append(&unstable).unwrap();
                        if let Some(e) = unstable.last() {
                            log.stable_to(e.index, e.term);
                            prop_assert!(log.unstable_entries().is_empty());
                            prop_assert_eq!(log.persisted, e.index);
                        }
                    }
                    Op::Commit { permille } => {
                        let last = model.len() as u64 - 1;
                        log.commit_to(log.committed.max(last * permille / 1000));
                    }
                    Op::Compact { permille } => {
                        let durable = log.persisted.min(log.committed);
                        let at = durable * permille / 1000;
                        if at >= log.storage.first_index().unwrap() {
                            let cs = crate::raft::ConfState::with_voters([1]);
                            log.storage.create_snapshot(at, cs, bytes::Bytes::new()).unwrap();
                            log.storage.compact(at).unwrap();
                        }
                    }
                }
                let last = model.len() as u64 - 1;
                prop_assert_eq!(log.last_index(), last);
                prop_assert!(log.persisted <= last && log.committed <= last);
                prop_assert!(log.persisted < log.unstable.offset.max(1) || log.unstable_entries().is_empty());
                let first = log.first_index();
                for i in first - 1..=last {
                    prop_assert_eq!(log.term(i), Ok(model[i as usize]), "term at {}", i);
                }
                if first > 1 {
                    prop_assert_eq!(log.term(first - 2), Err(StorageError::Compacted));
                }
                prop_assert_eq!(log.term(last + 1), Err(StorageError::Unavailable));
                let all = log.slice(first, last + 1, u64::MAX).unwrap();
                let terms: Vec<u64> = all.iter().map(|e| e.term).collect();
                prop_assert_eq!(&terms[..], &model[first as usize..]);
                // A size limit of zero still yields one entry.
                if first <= last {
                    prop_assert_eq!(log.slice(first, last + 1, 0).unwrap().len(), 1);
                }
            }
        }
    }
}
