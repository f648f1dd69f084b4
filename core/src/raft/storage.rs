//! The read-only view of durable Raft state that the core consults, and `MemStorage`, its
//! in-memory implementation. The core never writes storage: what it wants persisted leaves
//! through `Ready`, and the owner writes it here (or to disk) before calling `advance`.

use super::error::StorageError;
use super::message::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use bytes::Bytes;

type Result<T> = std::result::Result<T, StorageError>;

/// Durable Raft state, as the core reads it. Indexes below `first_index` are compacted into
/// the snapshot; `term(first_index - 1)` still answers (the snapshot's term).
pub trait Storage {
    /// The persisted hard state and membership.
    fn initial_state(&self) -> Result<(HardState, ConfState)>;
    /// Entries in `[lo, hi)`, stopping before `max_size_bytes` is exceeded (at least one entry
    /// is returned when the range is non-empty).
    fn entries(&self, lo: u64, hi: u64, max_size_bytes: u64) -> Result<Vec<Entry>>;
    /// The term of the entry at `index`, for `first_index - 1 <= index <= last_index`.
    fn term(&self, index: u64) -> Result<u64>;
    /// The first index still held as an entry (the snapshot's index + 1).
    fn first_index(&self) -> Result<u64>;
    /// The last index held (the snapshot's index when no entries follow it).
    fn last_index(&self) -> Result<u64>;
    /// The latest snapshot, to send to a follower that needs one. A member only accepts a
    /// snapshot whose membership includes it: an owner whose stored snapshot predates the
    /// receiver joining must send a fresh one of its applied state instead (as etcd's server
    /// does), replacing the snapshot in the outgoing message.
    fn snapshot(&self) -> Result<Snapshot>;
}

/// Takes entries from `entries` while they fit in `max_size_bytes` (always at least one).
pub fn limit_size(entries: &mut Vec<Entry>, max_size_bytes: u64) {
    let mut total = 0u64;
    let keep = entries
        .iter()
        .position(|e| {
            total += e.size_bytes();
            total > max_size_bytes
        })
        .unwrap_or(entries.len())
        .max(1);
    entries.truncate(keep);
}

/// An in-memory `Storage`, used by tests, the simulator and the fjall-less parts of the server.
/// `entries[0]` is a dummy holding the snapshot's index and term.
#[derive(Clone, Debug)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl Default for MemStorage {
    fn default() -> Self {
        MemStorage {
            hard_state: HardState::default(),
            snapshot: Snapshot::default(),
            entries: vec![Entry::default()],
        }
    }
}

impl MemStorage {
    /// Empty storage: a member that joins an existing cluster starts this way and learns the
    /// membership from the leader's snapshot.
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Storage for a founding member of a new cluster: a bootstrap snapshot at index 1, term 1
    /// that carries the initial membership. Members added later cannot replay it from the log:
    /// they need a snapshot whose membership includes them (see `Storage::snapshot`).
    pub fn new_with_conf_state(conf_state: ConfState) -> MemStorage {
        let mut storage = MemStorage::default();
        let snapshot = Snapshot {
            data: Bytes::new(),
            metadata: SnapshotMetadata {
                conf_state,
                index: 1,
                term: 1,
            },
        };
        storage
            .apply_snapshot(snapshot)
            .expect("a fresh storage accepts any snapshot");
        storage.hard_state = HardState {
            term: 1,
            vote: 0,
            commit: 1,
        };
        storage
    }

    /// The hard state last stored.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Replaces the stored hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Replaces the membership recorded with the snapshot (used by tests).
    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.snapshot.metadata.conf_state = conf_state;
    }

    fn offset(&self) -> u64 {
        self.entries[0].index
    }

    fn last(&self) -> u64 {
        self.offset() + self.entries.len() as u64 - 1
    }

    /// Replaces the whole log with `snapshot`. Refuses a snapshot older than the current one.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        let index = snapshot.metadata.index;
        if index < self.snapshot.metadata.index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        self.entries = vec![Entry {
            index,
            term: snapshot.metadata.term,
            ..Entry::default()
        }];
        if self.hard_state.commit < index {
            self.hard_state.commit = index;
        }
        if self.hard_state.term < snapshot.metadata.term {
            self.hard_state.term = snapshot.metadata.term;
        }
        self.snapshot = snapshot;
        Ok(())
    }

    /// Records a snapshot of the state machine at `index` (which must be held in the log and
    /// not above the commit index). The log is not compacted: call `compact` for that.
    pub fn create_snapshot(
        &mut self,
        index: u64,
        conf_state: ConfState,
        data: Bytes,
    ) -> Result<Snapshot> {
        if index <= self.snapshot.metadata.index {
            return Err(StorageError::SnapshotOutOfDate);
        }
        assert!(
            index <= self.last(),
            "snapshot index {index} beyond last index {}",
            self.last()
        );
        let term = self.term(index)?;
        self.snapshot = Snapshot {
            data,
            metadata: SnapshotMetadata {
                conf_state,
                index,
                term,
            },
        };
        Ok(self.snapshot.clone())
    }

    /// Drops entries up to and including `compact_index` (which must be covered by the snapshot).
    pub fn compact(&mut self, compact_index: u64) -> Result<()> {
        let offset = self.offset();
        if compact_index <= offset {
            return Err(StorageError::Compacted);
        }
        assert!(
            compact_index <= self.last(),
            "compact {compact_index} beyond last index {}",
            self.last()
        );
        assert!(
            compact_index <= self.snapshot.metadata.index,
            "compact {compact_index} beyond the snapshot at {}",
            self.snapshot.metadata.index
        );
        let i = (compact_index - offset) as usize;
        let term = self.entries[i].term;
        self.entries.drain(..i);
        self.entries[0] = Entry {
            index: compact_index,
            term,
            ..Entry::default()
        };
        Ok(())
    }

    /// Appends `entries`, replacing any held entries from the first new index on. Entries at or
    /// below the snapshot are ignored.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first_new) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        let first = self.offset() + 1;
        let last_new = first_new + entries.len() as u64 - 1;
        if last_new < first {
            return Ok(());
        }
        let entries = if first > first_new {
            &entries[(first - first_new) as usize..]
        } else {
            entries
        };
        let start = entries[0].index;
        assert!(
            start <= self.last() + 1,
            "append at {start} leaves a gap after last index {}",
            self.last()
        );
        self.entries.truncate((start - self.offset()) as usize);
        self.entries.extend_from_slice(entries);
        Ok(())
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> Result<(HardState, ConfState)> {
        Ok((self.hard_state, self.snapshot.metadata.conf_state.clone()))
    }

    fn entries(&self, lo: u64, hi: u64, max_size_bytes: u64) -> Result<Vec<Entry>> {
        let offset = self.offset();
        if lo <= offset {
            return Err(StorageError::Compacted);
        }
        if hi > self.last() + 1 {
            return Err(StorageError::Unavailable);
        }
        let mut out = self.entries[(lo - offset) as usize..(hi - offset) as usize].to_vec();
        limit_size(&mut out, max_size_bytes);
        Ok(out)
    }

    fn term(&self, index: u64) -> Result<u64> {
        let offset = self.offset();
        if index < offset {
            return Err(StorageError::Compacted);
        }
        if index > self.last() {
            return Err(StorageError::Unavailable);
        }
        Ok(self.entries[(index - offset) as usize].term)
    }

    fn first_index(&self) -> Result<u64> {
        Ok(self.offset() + 1)
    }

    fn last_index(&self) -> Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self) -> Result<Snapshot> {
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn append_replaces_the_tail_and_compact_keeps_terms() {
        let mut s = MemStorage::new();
        s.append(&[ent(1, 1), ent(2, 1), ent(3, 2)]).unwrap();
        s.append(&[ent(3, 3), ent(4, 3)]).unwrap();
        assert_eq!(s.last_index().unwrap(), 4);
        assert_eq!(s.term(3).unwrap(), 3);
        s.create_snapshot(2, ConfState::with_voters([1]), Bytes::new())
            .unwrap();
        s.compact(2).unwrap();
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.term(2).unwrap(), 1);
        assert_eq!(s.term(1), Err(StorageError::Compacted));
        assert_eq!(s.entries(2, 4, u64::MAX), Err(StorageError::Compacted));
        assert_eq!(s.entries(3, 5, u64::MAX).unwrap().len(), 2);
        assert_eq!(s.entries(3, 5, 0).unwrap().len(), 1);
        assert_eq!(s.entries(3, 6, u64::MAX), Err(StorageError::Unavailable));
    }
}
