//! Entries and a snapshot the core has accepted but the owner has not yet made durable.
//! `entries[i]` has index `offset + i`; a snapshot, when present, precedes them.

use super::message::{Entry, Snapshot};

#[derive(Debug, Default)]
pub struct Unstable {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub offset: u64,
}

impl Unstable {
    pub fn new(offset: u64) -> Unstable {
        Unstable {
            snapshot: None,
            entries: Vec::new(),
            offset,
        }
    }

    /// The first index, when only the unstable snapshot knows it.
    pub fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| s.metadata.index + 1)
    }

    pub fn maybe_last_index(&self) -> Option<u64> {
        if !self.entries.is_empty() {
            Some(self.offset + self.entries.len() as u64 - 1)
        } else {
            self.snapshot.as_ref().map(|s| s.metadata.index)
        }
    }

    pub fn maybe_term(&self, index: u64) -> Option<u64> {
        if index < self.offset {
            let snapshot = self.snapshot.as_ref()?;
            return (snapshot.metadata.index == index).then_some(snapshot.metadata.term);
        }
        let last = self.maybe_last_index()?;
        if index > last {
            return None;
        }
        Some(self.entries[(index - self.offset) as usize].term)
    }

    /// The owner made entries up to `index` (with term `term`) durable.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        // Entries may have been replaced since the Ready was handed out: only drop them if the
        // durable entry is still the one held here.
        if self.maybe_term(index) == Some(term) && index >= self.offset {
            self.entries.drain(..=(index - self.offset) as usize);
            self.offset = index + 1;
        }
    }

    pub fn stable_snap_to(&mut self, index: u64) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.metadata.index == index)
        {
            self.snapshot = None;
        }
    }

    pub fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot.metadata.index + 1;
        self.entries.clear();
        self.snapshot = Some(snapshot);
    }

    pub fn truncate_and_append(&mut self, entries: &[Entry]) {
        let first = entries[0].index;
        let next = self.offset + self.entries.len() as u64;
        if first == next {
            self.entries.extend_from_slice(entries);
        } else if first <= self.offset {
            // Replaces everything unstable; the new entries start at or before the offset.
            self.offset = first;
            self.entries = entries.to_vec();
        } else {
            self.entries.truncate((first - self.offset) as usize);
            self.entries.extend_from_slice(entries);
        }
    }

    /// Entries in `[lo, hi)`, all of which must be unstable.
    pub fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        assert!(
            lo >= self.offset && hi <= self.offset + self.entries.len() as u64 && lo <= hi,
            "unstable slice [{lo}, {hi}) out of bounds (offset {}, len {})",
            self.offset,
            self.entries.len()
        );
        &self.entries[(lo - self.offset) as usize..(hi - self.offset) as usize]
    }
}
