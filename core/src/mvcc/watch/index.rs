//! The index of synced watchers by what they watch, so that a write finds the watchers of its
//! keys without looking at the others. Single-key watchers (the common case, and the one that
//! fans out to thousands) sit in a map by key; range watchers in a separate set ordered by the
//! start of their range.
//!
//! It owns only the lookup structure: which watchers are synced, and what a watcher is, belong
//! to [`super::Watchers`].

use super::WatcherRef;
use crate::mvcc::kv::in_range;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

#[derive(Debug, Default)]
pub(super) struct SyncedIndex {
    /// Watchers of one key (empty `range_end`), by that key. No set is ever empty.
    keys: BTreeMap<Bytes, BTreeSet<WatcherRef>>,
    /// Range watchers by (start, watcher), each with its `range_end` (`"\0"` for every key from
    /// the start on).
    ranges: BTreeMap<(Bytes, WatcherRef), Bytes>,
    len: usize,
}

impl SyncedIndex {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn insert(&mut self, watcher: WatcherRef, key: &Bytes, range_end: &Bytes) {
        let fresh = if range_end.is_empty() {
            self.keys.entry(key.clone()).or_default().insert(watcher)
        } else {
            self.ranges
                .insert((key.clone(), watcher), range_end.clone())
                .is_none()
        };
        assert!(fresh, "watcher {watcher:?} is in the synced index twice");
        self.len += 1;
    }

    pub(super) fn remove(&mut self, watcher: WatcherRef, key: &Bytes, range_end: &Bytes) {
        let found = if range_end.is_empty() {
            let set = self
                .keys
                .get_mut(key)
                .expect("a synced key watcher is indexed");
            let found = set.remove(&watcher);
            if set.is_empty() {
                self.keys.remove(key);
            }
            found
        } else {
            let end = self.ranges.remove(&(key.clone(), watcher));
            debug_assert!(end.as_ref().is_none_or(|end| end == range_end));
            end.is_some()
        };
        assert!(found, "watcher {watcher:?} is not in the synced index");
        self.len -= 1;
    }

    pub(super) fn contains(&self, watcher: WatcherRef, key: &Bytes, range_end: &Bytes) -> bool {
        if range_end.is_empty() {
            self.keys.get(key).is_some_and(|set| set.contains(&watcher))
        } else {
            self.ranges
                .get(&(key.clone(), watcher))
                .is_some_and(|end| end == range_end)
        }
    }

    /// Calls `found` for every synced watcher whose key or range holds `key`: the key's own
    /// watchers by one lookup, then the range watchers whose range starts at or below `key`.
    pub(super) fn for_each_match(&self, key: &Bytes, mut found: impl FnMut(WatcherRef)) {
        if let Some(set) = self.keys.get(key) {
            set.iter().copied().for_each(&mut found);
        }
        if self.ranges.is_empty() {
            return;
        }
        let upper = Bound::Included((key.clone(), WatcherRef(u64::MAX)));
        for ((start, watcher), end) in self.ranges.range((Bound::Unbounded, upper)) {
            if in_range(key, start, end) {
                found(*watcher);
            }
        }
    }

    /// Every indexed watcher, for invariant checks.
    pub(super) fn iter(&self) -> impl Iterator<Item = WatcherRef> + '_ {
        let keys = self.keys.values().flat_map(|set| set.iter().copied());
        keys.chain(self.ranges.keys().map(|(_, watcher)| *watcher))
    }

    pub(super) fn debug_assert_invariants(&self) {
        debug_assert!(self.keys.values().all(|set| !set.is_empty()));
        debug_assert!(self.ranges.values().all(|end| !end.is_empty()));
        debug_assert_eq!(
            self.len,
            self.keys.values().map(BTreeSet::len).sum::<usize>() + self.ranges.len()
        );
    }
}
