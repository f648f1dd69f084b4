//! The in-memory index from a key to the revisions of its versions, grouped in generations: a
//! generation runs from the put that creates the key to the delete that tombstones it. It is
//! rebuilt from the backend on start and never persisted itself.

use super::kv::Revision;

/// The revisions of one key, oldest first, cut into generations: a generation runs from the
/// put that creates the key to the delete that tombstones it, and the newest one is empty
/// while the key is deleted. Stored flat to keep a key's index small: `revs` holds every
/// revision, and `ends` the index one past each ended generation's tombstone (empty, and
/// without an allocation, for a key never deleted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyIndex {
    revs: Vec<Revision>,
    ends: Vec<u32>,
    /// What the newest put wrote besides its value; meaningful while the key is live. A put
    /// builds its version from it without reading the previous one from the backend, as
    /// etcd's key index keeps each generation's creation and version count.
    live: LiveVersion,
}

/// The fields of a key's live version that the next put carries forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveVersion {
    pub create_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl LiveVersion {
    pub fn of(kv: &super::kv::KeyValue) -> LiveVersion {
        LiveVersion {
            create_revision: kv.create_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// Which revisions a compaction lets go of, and whether the key is gone from the index.
pub struct Compacted {
    pub removed: Vec<Revision>,
    pub key_gone: bool,
}

impl KeyIndex {
    /// An index with no revisions.
    pub fn new() -> KeyIndex {
        KeyIndex::default()
    }

    /// Records a put at `rev`, which must be newer than everything recorded.
    pub fn put(&mut self, rev: Revision) {
        assert!(
            self.last_revision().is_none_or(|last| last < rev),
            "key index: put at {rev:?} is not newer than {:?}",
            self.last_revision()
        );
        if self.revs.capacity() == 0 {
            // Most keys hold one or two versions: grow from one, not from Vec's default four.
            self.revs.reserve_exact(1);
        }
        self.revs.push(rev);
    }

    /// Records a put at `rev` that wrote `live`.
    pub fn put_version(&mut self, rev: Revision, live: LiveVersion) {
        self.put(rev);
        self.live = live;
    }

    /// The live version's carried fields, when the key is live now.
    pub fn live_version(&self) -> Option<LiveVersion> {
        self.is_live().then_some(self.live)
    }

    /// Records a delete at `rev` of a live key, ending its generation.
    pub fn tombstone(&mut self, rev: Revision) {
        assert!(
            self.is_live(),
            "key index: tombstone of a key that is not live"
        );
        self.put(rev);
        let end = u32::try_from(self.revs.len()).expect("fewer than 2^32 versions per key");
        self.ends.push(end);
    }

    fn newest_start(&self) -> usize {
        self.ends.last().map_or(0, |e| *e as usize)
    }

    fn is_tombstone(&self, i: usize) -> bool {
        self.ends.binary_search(&(i as u32 + 1)).is_ok()
    }

    /// Whether the key has a live version now.
    pub fn is_live(&self) -> bool {
        self.revs.len() > self.newest_start()
    }

    /// The newest revision recorded (put or tombstone), if any.
    pub fn last_revision(&self) -> Option<Revision> {
        self.revs.last().copied()
    }

    /// The revision of the version live at main revision `at`, if the key was live then.
    pub fn get(&self, at: i64) -> Option<Revision> {
        let n = self.revs.partition_point(|r| r.main <= at);
        // The newest change at or before `at` is a put (live) or a tombstone (deleted).
        let i = n.checked_sub(1)?;
        (!self.is_tombstone(i)).then(|| self.revs[i])
    }

    /// Whether any revision recorded has `main` in `from..=to`, i.e. the key changed then.
    pub fn changed_between(&self, from: i64, to: i64) -> bool {
        let n = self.revs.partition_point(|r| r.main < from);
        self.revs.get(n).is_some_and(|r| r.main <= to)
    }

    /// Forgets history at or below main revision `at`, keeping the version live at `at` (if any).
    /// A generation that ended by `at` goes entirely, tombstone included.
    pub fn compact(&mut self, at: i64) -> Compacted {
        let n = self.revs.partition_point(|r| r.main <= at);
        let cut = match n.checked_sub(1) {
            None => 0,
            Some(i) if self.is_tombstone(i) => i + 1,
            Some(i) => i,
        };
        let removed: Vec<Revision> = self.revs.drain(..cut).collect();
        let cut = cut as u32;
        self.ends.retain(|e| *e > cut);
        for e in &mut self.ends {
            *e -= cut;
        }
        if self.revs.is_empty() {
            self.revs = Vec::new();
        }
        Compacted {
            removed,
            key_gone: self.revs.is_empty(),
        }
    }

    /// Every revision held, oldest first.
    pub fn revisions(&self) -> impl Iterator<Item = Revision> + '_ {
        self.revs.iter().copied()
    }

    /// Checks the structure: revisions strictly increase; generations that ended are not empty
    /// and end within the revisions held.
    pub fn check(&self) {
        assert!(
            self.revs.windows(2).all(|w| w[0] < w[1]),
            "revisions out of order"
        );
        let mut start = 0;
        for &e in &self.ends {
            assert!(e > start, "empty ended generation");
            start = e;
        }
        assert!(
            start as usize <= self.revs.len(),
            "a generation ends past the revisions"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn get_follows_generations() {
        let mut ki = KeyIndex::new();
        ki.put(rev(2));
        ki.put(rev(4));
        ki.tombstone(rev(6));
        ki.put(rev(8));
        assert_eq!(ki.get(1), None);
        assert_eq!(ki.get(2), Some(rev(2)));
        assert_eq!(ki.get(5), Some(rev(4)));
        assert_eq!(ki.get(6), None);
        assert_eq!(ki.get(7), None);
        assert_eq!(ki.get(8), Some(rev(8)));
        assert_eq!(ki.get(100), Some(rev(8)));
        assert!(ki.is_live());
        assert!(ki.changed_between(5, 6));
        assert!(!ki.changed_between(7, 7));
    }

    #[test]
    fn compaction_keeps_the_version_live_at_the_point() {
        let mut ki = KeyIndex::new();
        ki.put(rev(2));
        ki.put(rev(4));
        ki.tombstone(rev(6));
        ki.put(rev(8));
        ki.put(rev(9));
        let c = ki.compact(5);
        assert_eq!(c.removed, vec![rev(2)]);
        assert!(!c.key_gone);
        assert_eq!(ki.get(5), Some(rev(4)));
        let c = ki.compact(6);
        assert_eq!(c.removed, vec![rev(4), rev(6)]);
        assert_eq!(ki.get(9), Some(rev(9)));
        let c = ki.compact(9);
        assert_eq!(c.removed, vec![rev(8)]);
        assert_eq!(ki.revisions().collect::<Vec<_>>(), vec![rev(9)]);
        ki.check();
    }

    #[test]
    fn a_deleted_key_leaves_the_index_once_compacted_past_its_tombstone() {
        let mut ki = KeyIndex::new();
        ki.put(rev(2));
        ki.tombstone(rev(3));
        let c = ki.compact(2);
        assert!(c.removed.is_empty() && !c.key_gone);
        let c = ki.compact(3);
        assert_eq!(c.removed, vec![rev(2), rev(3)]);
        assert!(c.key_gone);
    }

    #[test]
    fn the_live_version_is_known_only_while_the_key_is_live() {
        let mut ki = KeyIndex::new();
        assert_eq!(ki.live_version(), None);
        let live = LiveVersion {
            create_revision: 2,
            version: 1,
            lease: 7,
        };
        ki.put_version(rev(2), live);
        assert_eq!(ki.live_version(), Some(live));
        ki.tombstone(rev(3));
        assert_eq!(ki.live_version(), None);
    }

    #[test]
    #[should_panic(expected = "not newer")]
    fn puts_must_move_forward() {
        let mut ki = KeyIndex::new();
        ki.put(rev(3));
        ki.put(rev(3));
    }
}
