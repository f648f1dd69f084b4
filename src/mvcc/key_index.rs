//! The in-memory index from a key to the revisions of its versions, grouped in generations: a
//! generation runs from the put that creates the key to the delete that tombstones it. It is
//! rebuilt from the backend on start and never persisted itself.

use super::kv::Revision;

/// One life of a key: created by `revs[0]`, ended by a tombstone as the last revision of every
/// generation but the newest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Generation {
    revs: Vec<Revision>,
}

/// The revisions of one key, oldest generation first. The newest generation is empty after a
/// delete (the key is not live) and non-empty while the key is live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyIndex {
    generations: Vec<Generation>,
}

/// Which revisions a compaction lets go of, and whether the key is gone from the index.
pub struct Compacted {
    pub removed: Vec<Revision>,
    pub key_gone: bool,
}

impl Default for KeyIndex {
    fn default() -> KeyIndex {
        KeyIndex::new()
    }
}

impl KeyIndex {
    pub fn new() -> KeyIndex {
        KeyIndex {
            generations: vec![Generation::default()],
        }
    }

    /// Records a put at `rev`, which must be newer than everything recorded.
    pub fn put(&mut self, rev: Revision) {
        assert!(
            self.last_revision().is_none_or(|last| last < rev),
            "key index: put at {rev:?} is not newer than {:?}",
            self.last_revision()
        );
        self.generations
            .last_mut()
            .expect("never empty")
            .revs
            .push(rev);
    }

    /// Records a delete at `rev` of a live key, ending its generation.
    pub fn tombstone(&mut self, rev: Revision) {
        assert!(
            self.is_live(),
            "key index: tombstone of a key that is not live"
        );
        self.put(rev);
        self.generations.push(Generation::default());
    }

    /// Whether the key has a live version now.
    pub fn is_live(&self) -> bool {
        !self
            .generations
            .last()
            .expect("never empty")
            .revs
            .is_empty()
    }

    pub fn last_revision(&self) -> Option<Revision> {
        self.generations
            .iter()
            .rev()
            .find_map(|g| g.revs.last().copied())
    }

    /// The revision of the version live at main revision `at`, if the key was live then.
    pub fn get(&self, at: i64) -> Option<Revision> {
        let newest = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let Some(first) = g.revs.first() else {
                continue;
            };
            if first.main > at {
                continue;
            }
            // `at` falls in this generation's span or after its tombstone.
            if i != newest && g.revs.last().expect("non-empty").main <= at {
                return None;
            }
            let n = g.revs.partition_point(|r| r.main <= at);
            return Some(g.revs[n - 1]);
        }
        None
    }

    /// Whether any revision recorded has `main` in `from..=to`, i.e. the key changed then.
    pub fn changed_between(&self, from: i64, to: i64) -> bool {
        self.generations.iter().any(|g| {
            let n = g.revs.partition_point(|r| r.main < from);
            g.revs.get(n).is_some_and(|r| r.main <= to)
        })
    }

    /// Forgets history at or below main revision `at`, keeping the version live at `at` (if any).
    /// A generation that ended by `at` goes entirely, tombstone included.
    pub fn compact(&mut self, at: i64) -> Compacted {
        let mut removed = Vec::new();
        let newest = self.generations.len() - 1;
        let mut first_kept = 0;
        for (i, g) in self.generations.iter_mut().enumerate() {
            if i == newest {
                let n = g.revs.partition_point(|r| r.main <= at);
                if n > 1 {
                    removed.extend(g.revs.drain(..n - 1));
                }
                break;
            }
            let tomb = g.revs.last().expect("ended generations are non-empty").main;
            if tomb <= at {
                removed.append(&mut g.revs);
                first_kept = i + 1;
                continue;
            }
            let n = g.revs.partition_point(|r| r.main <= at);
            if n > 1 {
                removed.extend(g.revs.drain(..n - 1));
            }
            break;
        }
        self.generations.drain(..first_kept);
        debug_assert!(!self.generations.is_empty());
        let key_gone = self.generations.len() == 1 && self.generations[0].revs.is_empty();
        Compacted { removed, key_gone }
    }

    /// Every revision held, oldest first.
    pub fn revisions(&self) -> impl Iterator<Item = Revision> + '_ {
        self.generations.iter().flat_map(|g| g.revs.iter().copied())
    }

    /// Checks the structure: revisions strictly increase; only the newest generation may be
    /// empty; ended generations hold their tombstone last.
    pub fn check(&self) {
        let newest = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate() {
            assert!(i == newest || !g.revs.is_empty(), "empty ended generation");
        }
        let revs: Vec<_> = self.revisions().collect();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "revisions out of order"
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
    #[should_panic(expected = "not newer")]
    fn puts_must_move_forward() {
        let mut ki = KeyIndex::new();
        ki.put(rev(3));
        ki.put(rev(3));
    }
}
