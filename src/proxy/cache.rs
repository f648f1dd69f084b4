//! The proxy's cache of serializable range answers, as etcd's grpc-proxy keeps one: a
//! serializable range is answered from it when the same request (by the same credential) was
//! answered before, and a write that passes through the proxy drops every answer whose range
//! it touches. Least recently used answers go first when the cache is full.
//!
//! Two bounds etcd's cache lacks, so a stale answer cannot live on: an answer of the latest
//! revision is kept for [`LATEST_AGE_MAX`] at most (writes made by other clients, straight to
//! the members, invalidate nothing here), and the cache holds at most
//! [`RangeCache::bytes_max`] bytes of answers. An answer at a fixed revision never changes,
//! so only a compaction (which clears the cache) ends it.
//!
//! What it does not do: send requests, or read a clock (time is an argument).

use crate::pb::etcdserverpb as pb;
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How long an answer of the latest revision is served from the cache.
pub const LATEST_AGE_MAX: Duration = Duration::from_secs(1);
/// Answers kept at most (etcd's proxy keeps 2048).
const ENTRIES_MAX: usize = 2048;
/// Bytes of answers kept at most.
const BYTES_MAX: usize = 64 << 20;
/// An answer larger than this is not kept.
const ENTRY_BYTES_MAX: usize = 1 << 20;

/// A cached range's interval in the member's keyspace (prefixed), for invalidation: its first
/// key, and the first key after it (`None`: it runs to the end of the keyspace), worked out
/// once so that a write's scan over the cache allocates nothing.
#[derive(Clone, Debug)]
struct Interval {
    key: Bytes,
    upper: Option<Bytes>,
}

impl Interval {
    /// The keys a range request names: `end` empty is the key alone, `\0` every key from
    /// `key` on.
    fn new(key: &Bytes, end: &Bytes) -> Interval {
        let upper = if end.is_empty() {
            let mut k = key.to_vec();
            k.push(0);
            Some(Bytes::from(k))
        } else if end.as_ref() == b"\0" {
            None
        } else {
            Some(end.clone())
        };
        Interval {
            key: key.clone(),
            upper,
        }
    }

    fn overlaps(&self, other: &Interval) -> bool {
        let below = |key: &Bytes, upper: &Option<Bytes>| upper.as_ref().is_none_or(|u| key < u);
        below(&self.key, &other.upper) && below(&other.key, &self.upper)
    }
}

struct Entry {
    interval: Interval,
    response: pb::RangeResponse,
    /// When it was stored; `None` for an answer at a fixed revision (it never goes stale).
    stored_at: Option<Instant>,
    bytes: usize,
    /// Its place in the use order.
    used: u64,
}

/// The cache. See the module docs.
pub struct RangeCache {
    entries: HashMap<Vec<u8>, Entry>,
    /// Use order: the least recently used first.
    order: BTreeMap<u64, Vec<u8>>,
    clock: u64,
    bytes: usize,
    /// Bumped by every invalidation: an answer fetched across one is not stored.
    generation: u64,
    pub hits: u64,
    pub misses: u64,
}

impl Default for RangeCache {
    fn default() -> Self {
        RangeCache::new()
    }
}

impl RangeCache {
    pub fn new() -> RangeCache {
        RangeCache {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            clock: 0,
            bytes: 0,
            generation: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The bytes of answers the cache holds at most.
    pub fn bytes_max() -> usize {
        BYTES_MAX
    }

    /// Answers held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cache's name for `request` as `credential` sends it: the request's encoding,
    /// without its `serializable` flag (a linearizable answer may serve a later serializable
    /// read), after the credential.
    pub fn key(request: &pb::RangeRequest, credential: Option<&[u8]>) -> Vec<u8> {
        let mut r = request.clone();
        r.serializable = false;
        let mut k = credential.unwrap_or_default().to_vec();
        k.push(0xff);
        prost::Message::encode(&r, &mut k).expect("a Vec grows");
        k
    }

    /// The answer to the request named `key`, if one is held and fresh at `now`.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<pb::RangeResponse> {
        let fresh = self.entries.get(key).map(|e| {
            e.stored_at
                .is_none_or(|t| now.saturating_duration_since(t) < LATEST_AGE_MAX)
        });
        match fresh {
            Some(true) => {
                self.hits += 1;
                self.clock += 1;
                let used = self.clock;
                let e = self.entries.get_mut(key).expect("just found");
                self.order.remove(&e.used);
                e.used = used;
                self.order.insert(used, key.to_vec());
                Some(e.response.clone())
            }
            Some(false) => {
                self.remove(key);
                self.misses += 1;
                None
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// The generation to hand back to [`RangeCache::store`] with the answer of a read that
    /// starts now.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Keeps the answer to `request` (already under the namespace) named `key`, fetched by a
    /// read that began at `generation`, unless a write has invalidated anything since.
    pub fn store(
        &mut self,
        key: Vec<u8>,
        request: &pb::RangeRequest,
        response: pb::RangeResponse,
        generation: u64,
        now: Instant,
    ) {
        if generation != self.generation {
            return;
        }
        let bytes = prost::Message::encoded_len(&response) + key.len();
        if bytes > ENTRY_BYTES_MAX {
            return;
        }
        self.remove(&key);
        while !self.order.is_empty()
            && (self.entries.len() >= ENTRIES_MAX || self.bytes + bytes > BYTES_MAX)
        {
            let (_, oldest) = self.order.pop_first().expect("not empty");
            self.drop_entry(&oldest);
        }
        self.clock += 1;
        self.order.insert(self.clock, key.clone());
        self.bytes += bytes;
        let entry = Entry {
            interval: Interval::new(&request.key, &request.range_end),
            response,
            stored_at: (request.revision <= 0).then_some(now),
            bytes,
            used: self.clock,
        };
        self.entries.insert(key, entry);
        debug_assert_eq!(self.entries.len(), self.order.len());
    }

    /// Drops every answer whose range meets `key`..`end` (a write's keys, as a range request
    /// names them).
    pub fn invalidate(&mut self, key: &Bytes, end: &Bytes) {
        self.generation += 1;
        let written = Interval::new(key, end);
        let hit: Vec<Vec<u8>> = self
            .entries
            .iter()
            .filter(|(_, e)| e.interval.overlaps(&written))
            .map(|(k, _)| k.clone())
            .collect();
        for k in hit {
            self.remove(&k);
        }
    }

    /// Drops every answer (a compaction).
    pub fn clear(&mut self) {
        self.generation += 1;
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.entries.get(key) {
            self.order.remove(&e.used);
            self.drop_entry(key);
        }
    }

    fn drop_entry(&mut self, key: &[u8]) {
        if let Some(e) = self.entries.remove(key) {
            self.bytes -= e.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(key: &str, end: &str) -> pb::RangeRequest {
        pb::RangeRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            range_end: Bytes::copy_from_slice(end.as_bytes()),
            serializable: true,
            ..Default::default()
        }
    }

    fn answer(count: i64) -> pb::RangeResponse {
        pb::RangeResponse {
            count,
            ..Default::default()
        }
    }

    #[test]
    fn a_write_drops_the_answers_it_touches_and_no_other() {
        let now = Instant::now();
        let mut c = RangeCache::new();
        let (single, prefix, all) = (range("a", ""), range("b", "c"), range("x", "\0"));
        for (i, r) in [&single, &prefix, &all].into_iter().enumerate() {
            let g = c.generation();
            c.store(RangeCache::key(r, None), r, answer(i as i64), g, now);
        }
        assert_eq!(c.len(), 3);
        c.invalidate(&Bytes::from_static(b"a0"), &Bytes::new());
        assert_eq!(c.len(), 3, "a key after 'a' touches none");
        c.invalidate(&Bytes::from_static(b"bz"), &Bytes::new());
        assert!(c.get(&RangeCache::key(&prefix, None), now).is_none());
        assert!(c.get(&RangeCache::key(&single, None), now).is_some());
        c.invalidate(&Bytes::from_static(b"zzz"), &Bytes::new());
        assert!(
            c.get(&RangeCache::key(&all, None), now).is_none(),
            "'x' onwards holds 'zzz'"
        );
        c.invalidate(&Bytes::from_static(b"0"), &Bytes::from_static(b"\0"));
        assert!(c.is_empty(), "a delete of everything drops everything");
    }

    #[test]
    fn an_answer_fetched_across_a_write_is_not_kept() {
        let now = Instant::now();
        let mut c = RangeCache::new();
        let r = range("a", "");
        let g = c.generation();
        c.invalidate(&Bytes::from_static(b"a"), &Bytes::new());
        c.store(RangeCache::key(&r, None), &r, answer(1), g, now);
        assert!(c.is_empty());
    }

    #[test]
    fn latest_answers_age_out_and_credentials_are_apart() {
        let now = Instant::now();
        let mut c = RangeCache::new();
        let r = range("a", "");
        let g = c.generation();
        c.store(RangeCache::key(&r, Some(b"alice")), &r, answer(1), g, now);
        assert!(c.get(&RangeCache::key(&r, Some(b"bob")), now).is_none());
        assert!(c.get(&RangeCache::key(&r, Some(b"alice")), now).is_some());
        let later = now + LATEST_AGE_MAX;
        assert!(c.get(&RangeCache::key(&r, Some(b"alice")), later).is_none());
        let mut fixed = range("a", "");
        fixed.revision = 5;
        let g = c.generation();
        c.store(RangeCache::key(&fixed, None), &fixed, answer(2), g, now);
        assert!(c.get(&RangeCache::key(&fixed, None), later).is_some());
    }

    #[test]
    fn the_least_recently_used_goes_first() {
        let now = Instant::now();
        let mut c = RangeCache::new();
        for i in 0..ENTRIES_MAX + 1 {
            let r = range(&format!("k{i}"), "");
            let g = c.generation();
            c.store(RangeCache::key(&r, None), &r, answer(0), g, now);
            if i == 1 {
                // The first is used again, so the second is the oldest when the cache fills.
                let first = range("k0", "");
                assert!(c.get(&RangeCache::key(&first, None), now).is_some());
            }
        }
        assert_eq!(c.len(), ENTRIES_MAX);
        assert!(
            c.get(&RangeCache::key(&range("k0", ""), None), now)
                .is_some()
        );
        assert!(
            c.get(&RangeCache::key(&range("k1", ""), None), now)
                .is_none()
        );
    }
}
