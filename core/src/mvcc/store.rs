//! The key-value store: range, put, delete-range, txn, compact and hash-kv over a [`Backend`],
//! with the in-memory key index. Every write is one revision; its changes come back as events
//! (with `prev_kv` whenever the key had a live version) for the watchers and the lessor.

use super::backend::{Backend, BackendError, Batch, MetaKey, Record};
use super::error::{Error, Result};
use super::footprint::Footprint;
use super::history::History;
use super::key_index::{KeyIndex, LiveVersion};
use super::kv::{Event, EventKind, KeyValue, Revision};
use super::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget,
    TxnRequest, TxnResponse, check_delete, check_put, check_range, check_txn,
};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Bound;

/// What a write did: its response, the revision it leaves the store at (the response header's
/// revision), and its events in sub-revision order (empty when it changed nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write<T> {
    /// The operation's response.
    pub response: T,
    /// The store's revision after the write.
    pub revision: i64,
    /// The changes the write made, for the watchers and the lessor.
    pub events: Vec<Event>,
}

/// HashKV's answer: a hash of every version held at or below `revision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKv {
    /// FNV-1a over every record (versions and tombstones) at or below `revision`.
    pub hash: u32,
    /// The revision the hash covers.
    pub revision: i64,
    /// The store's compaction revision when hashed.
    pub compact_revision: i64,
}

/// The store over backend `B`. Writes are applied in log order on every member, so they are
/// deterministic functions of the store and the request; a lease's existence is the one fact
/// from outside, asked of the caller through `lease_exists`.
pub struct KvStore<B: Backend> {
    backend: B,
    index: BTreeMap<Bytes, KeyIndex>,
    current_revision: i64,
    compact_revision: i64,
    /// Changes from the layer above that ride in the next batch written (see `stage`).
    staged: Batch,
    /// Set when the backend refused a write: the index may be ahead of the backend, so the
    /// store answers nothing more.
    broken: Option<BackendError>,
    /// Whether put events must carry `prev_kv` (some watcher asked for it). Without it a
    /// put reads nothing from the backend unless its request needs the previous value.
    prev_values_wanted: bool,
    /// What the records take in etcd's backend (`dbSizeInUse`, the quota).
    footprint: Footprint,
}

/// Live keys that name a lease, with the lease, in key order.
pub type LeasedKeys = Vec<(Bytes, i64)>;

/// Records read per backend scan while opening.
const OPEN_SCAN_CHUNK: usize = 4096;

/// A write in progress: one revision, changes numbered by sub-revision, visible to the reads
/// of the same transaction before they reach the backend.
struct Pending {
    main: i64,
    records: Vec<Record>,
    events: Vec<Event>,
}

impl<B: Backend> KvStore<B> {
    /// A store over `backend`, rebuilding the key index from its records.
    pub fn open(backend: B) -> Result<KvStore<B>> {
        Ok(KvStore::open_with_leases(backend)?.0)
    }

    /// [`KvStore::open`], also returning each live key that names a lease, with the lease, in
    /// key order: what the lessor's key lists are rebuilt from.
    pub fn open_with_leases(backend: B) -> Result<(KvStore<B>, LeasedKeys)> {
        let mut store = KvStore {
            backend,
            index: BTreeMap::new(),
            current_revision: 0,
            compact_revision: 0,
            staged: Batch::default(),
            broken: None,
            prev_values_wanted: true,
            footprint: Footprint::default(),
        };
        let mut leased: BTreeMap<Bytes, i64> = BTreeMap::new();
        let mut cursor = Revision::new(0, 0);
        loop {
            let records =
                store
                    .backend
                    .scan(cursor, Revision::new(i64::MAX, 0), OPEN_SCAN_CHUNK)?;
            let n = records.len();
            for (rev, record) in records {
                store.footprint.add(&record);
                let ki = store.index.entry(record.kv.key.clone()).or_default();
                if record.tombstone {
                    ki.tombstone(rev);
                } else {
                    ki.put_version(rev, LiveVersion::of(&record.kv));
                }
                if record.tombstone || record.kv.lease == 0 {
                    leased.remove(&record.kv.key);
                } else {
                    leased.insert(record.kv.key, record.kv.lease);
                }
                store.current_revision = store.current_revision.max(rev.main);
                cursor = Revision::new(rev.main, rev.sub + 1);
            }
            if n < OPEN_SCAN_CHUNK {
                break;
            }
        }
        let meta = |k| store.backend.meta(k).map_err(Error::from);
        store.compact_revision = meta(MetaKey::CompactRevision)?.unwrap_or(0);
        let stored_current = meta(MetaKey::CurrentRevision)?.unwrap_or(0);
        store.current_revision = store.current_revision.max(stored_current);
        store.check_invariants();
        Ok((store, leased.into_iter().collect()))
    }

    /// Adds `part` to the next batch the store writes, so changes of the layer above (the
    /// applied index, lease records) land atomically with the write they belong to.
    pub fn stage(&mut self, part: Batch) {
        self.staged.append(part);
    }

    /// Takes what is staged, for the caller to write in a batch of its own (with which it
    /// must land atomically).
    pub fn take_staged(&mut self) -> Batch {
        std::mem::take(&mut self.staged)
    }

    /// Writes what is staged, if the command wrote nothing that carried it.
    pub fn flush_staged(&mut self) -> Result<()> {
        if self.staged.is_empty() {
            return Ok(());
        }
        self.write_batch(Batch::default())
    }

    /// Stops the store after a storage failure in the middle of applying a command: what is
    /// staged (the command's applied index among it) is dropped, never written, so recovery
    /// applies the command again instead of skipping it, and every later call is refused.
    pub fn stop_after(&mut self, e: &Error) {
        self.staged = Batch::default();
        if self.broken.is_none() {
            self.broken = Some(BackendError(format!(
                "stopped after a storage failure: {e}"
            )));
        }
    }

    /// Writes `batch` with what is staged. A refusal breaks the store.
    fn write_batch(&mut self, mut batch: Batch) -> Result<()> {
        self.check_whole()?;
        batch.append(std::mem::take(&mut self.staged));
        let mut footprint = self.footprint;
        batch.puts.iter().for_each(|(_, r)| footprint.add(r));
        footprint.remove(batch.deletes.len() as u64);
        if let Err(e) = self.backend.write(batch) {
            self.broken = Some(e.clone());
            return Err(e.into());
        }
        self.footprint = footprint;
        Ok(())
    }

    /// What the records take in etcd's backend, as counted so far (see [`Footprint`]).
    pub fn footprint(&self) -> Footprint {
        self.footprint
    }

    /// Counts the footprint again, record by record (a full scan: for defragment).
    pub fn recount_footprint(&mut self) -> Result<()> {
        let mut counted = Footprint::default();
        let mut cursor = Revision::new(0, 0);
        loop {
            let records = self
                .backend
                .scan(cursor, Revision::new(i64::MAX, 0), OPEN_SCAN_CHUNK)?;
            let n = records.len();
            for (rev, record) in records {
                counted.add(&record);
                cursor = Revision::new(rev.main, rev.sub + 1);
            }
            if n < OPEN_SCAN_CHUNK {
                break;
            }
        }
        self.footprint = counted;
        Ok(())
    }

    /// Refuses to work after the backend refused a write.
    fn check_whole(&self) -> Result<()> {
        match &self.broken {
            None => Ok(()),
            Some(e) => Err(Error::Backend(BackendError(format!(
                "the store stopped after a refused write: {e}"
            )))),
        }
    }

    /// A write that failed part way (a backend read refused after the in-memory index
    /// changed) leaves the index and the backend disagreeing: the store breaks, as after a
    /// refused write, and the member stops.
    fn broken_by<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.broken = Some(BackendError(format!("a write failed part way: {e}")));
        }
        r
    }

    /// The backend the store writes to.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably (for callers that write their own records beside the store's).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The revision of the latest write (0 before the first).
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision the store was last compacted at (0 if never).
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Reads keys as etcd's Range does (see [`RangeRequest`]).
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.check_whole()?;
        check_range(req)?;
        self.range_in(req, None)
    }

    /// Writes one key at a new revision.
    pub fn put(
        &mut self,
        req: &PutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<Write<PutResponse>> {
        self.check_whole()?;
        check_put(req)?;
        self.check_put_state(req, lease_exists)?;
        let mut pending = self.begin();
        let response = self.put_in(req, &mut pending);
        let response = self.broken_by(response)?;
        self.commit(pending, response)
    }

    /// Deletes the keys in a range at one new revision (no revision when nothing is deleted).
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<Write<DeleteRangeResponse>> {
        self.check_whole()?;
        check_delete(req)?;
        let mut pending = self.begin();
        let response = self.delete_in(&req.key, &req.range_end, req.prev_kv, &mut pending);
        let response = self.broken_by(response)?;
        self.commit(pending, response)
    }

    /// Deletes the given keys (a revoked lease's) at one revision; absent keys are skipped.
    pub fn delete_keys(&mut self, keys: &[Bytes]) -> Result<Write<i64>> {
        self.check_whole()?;
        let mut pending = self.begin();
        let mut deleted = 0;
        for key in keys {
            let response = self.delete_in(key, &Bytes::new(), false, &mut pending);
            deleted += self.broken_by(response)?.deleted;
        }
        self.commit(pending, deleted)
    }

    /// A transaction: compares evaluated on the state before it (nested ones too, as etcd does),
    /// then the chosen branch's operations in order, all at one revision.
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        ops_max: usize,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<Write<TxnResponse>> {
        self.check_whole()?;
        check_txn(req, ops_max)?;
        let mut path = Vec::new();
        self.choose_path(req, &mut path)?;
        let mut step = 0;
        self.check_path(req, &path, &mut step, lease_exists)?;
        let mut pending = self.begin();
        let mut step = 0;
        let response = self.txn_in(req, &path, &mut step, &mut pending);
        let response = self.broken_by(response)?;
        debug_assert_eq!(step, path.len());
        self.commit(pending, response)
    }

    /// Forgets history at or below `revision`, keeping each key's version live at it.
    pub fn compact(&mut self, revision: i64) -> Result<()> {
        self.check_whole()?;
        if revision <= self.compact_revision {
            return Err(Error::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        if revision > self.current_revision {
            return Err(Error::FutureRevision {
                current_revision: self.current_revision,
            });
        }
        let mut batch = Batch::default();
        let mut gone = Vec::new();
        // Keep what a read at `revision - 1` needs. etcd serves a watch that starts at the
        // compact revision itself but has dropped that revision's tombstones and the versions
        // before it, so such a watch silently misses deletes and prev_kv there. Keeping one
        // more version of the keys changed at `revision` makes that history complete.
        for (key, ki) in self.index.iter_mut() {
            let c = ki.compact(revision - 1);
            batch.deletes.extend(c.removed);
            if c.key_gone {
                gone.push(key.clone());
            }
        }
        for key in gone {
            self.index.remove(&key);
        }
        batch.meta.push((MetaKey::CompactRevision, revision));
        self.write_batch(batch)?;
        self.compact_revision = revision;
        self.check_invariants();
        Ok(())
    }

    /// A hash of every version held at or below `revision` (0: the current one), which members
    /// that applied the same log agree on.
    pub fn hash_kv(&self, revision: i64) -> Result<HashKv> {
        self.check_whole()?;
        let rev = if revision <= 0 {
            self.current_revision
        } else {
            revision
        };
        if revision > 0 && rev <= self.compact_revision {
            return Err(Error::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        if rev > self.current_revision {
            return Err(Error::FutureRevision {
                current_revision: self.current_revision,
            });
        }
        let records = self
            .backend
            .scan(Revision::new(0, 0), Revision::new(rev + 1, 0), 0)?;
        let mut h = Fnv32::new();
        for (r, rec) in &records {
            h.write_i64(r.main);
            h.write_i64(r.sub);
            h.write(&[rec.tombstone as u8]);
            let kv = &rec.kv;
            h.write_bytes(&kv.key);
            h.write_bytes(&kv.value);
            for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
                h.write_i64(n);
            }
        }
        Ok(HashKv {
            hash: h.finish(),
            revision: rev,
            compact_revision: self.compact_revision,
        })
    }

    // ---- reads ----

    /// The revision a read of `requested` sees: the current one (or, inside a write, the
    /// write's own) for 0; errors for compacted and future revisions.
    fn read_revision(&self, requested: i64, pending: Option<&Pending>) -> Result<i64> {
        let current = match pending {
            Some(p) if !p.records.is_empty() => p.main,
            _ => self.current_revision,
        };
        if requested > current {
            return Err(Error::FutureRevision {
                current_revision: current,
            });
        }
        let rev = if requested <= 0 { current } else { requested };
        if rev < self.compact_revision {
            return Err(Error::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        Ok(rev)
    }

    fn range_in(&self, req: &RangeRequest, pending: Option<&Pending>) -> Result<RangeResponse> {
        let rev = self.read_revision(req.revision, pending)?;
        let revs = self.live_revisions(&req.key, &req.range_end, rev);
        let count = revs.len() as i64;
        if req.count_only {
            return Ok(RangeResponse {
                kvs: Vec::new(),
                more: false,
                count,
            });
        }
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        // etcd reads one more than the limit to learn `more`, unless it must see everything to
        // sort or filter first.
        let fetch = if req.sort_order != SortOrder::None || filtered || req.limit <= 0 {
            revs.len()
        } else {
            revs.len().min(req.limit as usize + 1)
        };
        let mut kvs = Vec::with_capacity(fetch);
        for r in &revs[..fetch] {
            kvs.push(self.record(*r, pending)?.kv);
        }
        if filtered {
            kvs.retain(|kv| {
                (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                    && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                    && (req.min_create_revision == 0
                        || kv.create_revision >= req.min_create_revision)
                    && (req.max_create_revision == 0
                        || kv.create_revision <= req.max_create_revision)
            });
        }
        sort_kvs(&mut kvs, req.sort_order, req.sort_target);
        let mut more = false;
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        Ok(RangeResponse { kvs, more, count })
    }

    /// Revisions of the versions live at `rev` of the keys in the range, in key order.
    fn live_revisions(&self, key: &Bytes, range_end: &Bytes, rev: i64) -> Vec<Revision> {
        self.keys_in(key, range_end)
            .filter_map(|(_, ki)| ki.get(rev))
            .collect()
    }

    fn keys_in<'a>(
        &'a self,
        key: &'a Bytes,
        range_end: &'a Bytes,
    ) -> Box<dyn Iterator<Item = (&'a Bytes, &'a KeyIndex)> + 'a> {
        match range_end.as_ref() {
            [] => Box::new(self.index.get_key_value(key).into_iter()),
            [0] => Box::new(
                self.index
                    .range::<Bytes, _>((Bound::Included(key), Bound::Unbounded)),
            ),
            end if end <= key.as_ref() => Box::new(std::iter::empty()),
            _ => Box::new(
                self.index
                    .range::<Bytes, _>((Bound::Included(key), Bound::Excluded(range_end))),
            ),
        }
    }

    fn record(&self, rev: Revision, pending: Option<&Pending>) -> Result<Record> {
        if let Some(p) = pending
            && rev.main == p.main
        {
            return Ok(p.records[rev.sub as usize].clone());
        }
        match self.backend.get(rev)? {
            Some(r) => Ok(r),
            None => Err(Error::Backend(BackendError(format!(
                "the index names revision {rev:?} but the backend has no record there"
            )))),
        }
    }

    /// The live version of `key` now (including a write in progress).
    fn live(&self, key: &Bytes, pending: Option<&Pending>) -> Result<Option<KeyValue>> {
        let at = match pending {
            Some(p) => p.main,
            None => self.current_revision,
        };
        match self.index.get(key).and_then(|ki| ki.get(at)) {
            Some(r) => Ok(Some(self.record(r, pending)?.kv)),
            None => Ok(None),
        }
    }

    // ---- writes ----

    fn begin(&self) -> Pending {
        Pending {
            main: self.current_revision + 1,
            records: Vec::new(),
            events: Vec::new(),
        }
    }

    fn commit<T>(&mut self, pending: Pending, response: T) -> Result<Write<T>> {
        if pending.records.is_empty() {
            return Ok(Write {
                response,
                revision: self.current_revision,
                events: Vec::new(),
            });
        }
        let main = pending.main;
        let puts = pending
            .records
            .into_iter()
            .enumerate()
            .map(|(sub, r)| (Revision::new(main, sub as i64), r))
            .collect();
        let batch = Batch {
            puts,
            meta: vec![(MetaKey::CurrentRevision, main)],
            ..Batch::default()
        };
        // The in-memory index already holds the revision; a backend that cannot take the batch
        // leaves the two disagreeing, so the store breaks (write_batch) and the member stops.
        self.write_batch(batch)?;
        self.current_revision = main;
        self.check_invariants();
        Ok(Write {
            response,
            revision: main,
            events: pending.events,
        })
    }

    fn check_put_state(&self, req: &PutRequest, lease_exists: &dyn Fn(i64) -> bool) -> Result<()> {
        // Checked before the write begins: the key index holds the committed state.
        let live = || {
            self.index
                .get(&req.key)
                .and_then(KeyIndex::live_version)
                .is_some()
        };
        if (req.ignore_value || req.ignore_lease) && !live() {
            return Err(Error::KeyNotFound);
        }
        if req.lease != 0 && !lease_exists(req.lease) {
            return Err(Error::LeaseNotFound { lease: req.lease });
        }
        Ok(())
    }

    /// Whether put events carry `prev_kv` from now on: set it whenever a watcher that asked
    /// for it appears or the last one goes (see `prev_values_wanted`).
    pub fn set_prev_values_wanted(&mut self, wanted: bool) {
        self.prev_values_wanted = wanted;
    }

    fn put_in(&mut self, req: &PutRequest, pending: &mut Pending) -> Result<PutResponse> {
        let carried = self.index.get(&req.key).and_then(KeyIndex::live_version);
        let read_prev = req.prev_kv || req.ignore_value || self.prev_values_wanted;
        let prev = if read_prev && carried.is_some() {
            self.live(&req.key, Some(pending))?
        } else {
            None
        };
        if let Some(p) = &prev {
            assert_eq!(
                Some(LiveVersion::of(p)),
                carried,
                "the key index agrees with the backend on the live version"
            );
        }
        let rev = Revision::new(pending.main, pending.records.len() as i64);
        let (value, lease) = match (&prev, carried) {
            (Some(p), _) if req.ignore_value => (
                p.value.clone(),
                if req.ignore_lease { p.lease } else { req.lease },
            ),
            (_, Some(c)) if req.ignore_lease => (req.value.clone(), c.lease),
            _ => (req.value.clone(), req.lease),
        };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: carried.map_or(rev.main, |c| c.create_revision),
            mod_revision: rev.main,
            version: carried.map_or(1, |c| c.version + 1),
            value,
            lease,
        };
        let before = if self.prev_values_wanted {
            self.before_revision(&req.key, &prev, pending.main)?
        } else {
            None
        };
        self.index
            .entry(req.key.clone())
            .or_default()
            .put_version(rev, LiveVersion::of(&kv));
        pending.records.push(Record {
            kv: kv.clone(),
            tombstone: false,
        });
        pending.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: before,
        });
        Ok(PutResponse {
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn delete_in(
        &mut self,
        key: &Bytes,
        range_end: &Bytes,
        want_prev: bool,
        pending: &mut Pending,
    ) -> Result<DeleteRangeResponse> {
        let at = pending.main;
        let victims: Vec<(Bytes, Revision)> = self
            .keys_in(key, range_end)
            .filter_map(|(k, ki)| ki.get(at).map(|r| (k.clone(), r)))
            .collect();
        let mut prev_kvs = Vec::new();
        for (k, r) in &victims {
            let prev = self.record(*r, Some(pending))?.kv;
            let before = self.before_revision(k, &Some(prev.clone()), pending.main)?;
            let rev = Revision::new(pending.main, pending.records.len() as i64);
            self.index.get_mut(k).expect("indexed").tombstone(rev);
            let tomb = KeyValue {
                key: k.clone(),
                mod_revision: rev.main,
                ..KeyValue::default()
            };
            pending.records.push(Record {
                kv: tomb.clone(),
                tombstone: true,
            });
            pending.events.push(Event {
                kind: EventKind::Delete,
                kv: tomb,
                prev_kv: before,
            });
            if want_prev {
                prev_kvs.push(prev);
            }
        }
        Ok(DeleteRangeResponse {
            deleted: victims.len() as i64,
            prev_kvs,
        })
    }

    /// An event's `prev_kv`: the version live before the event's revision, as etcd's watchers
    /// see it (a read at revision - 1), not one written or deleted earlier in the same
    /// transaction (nested transactions, and deletes to the end of the key space, let one
    /// transaction write a key twice). `live` is the key's version now, before this change.
    fn before_revision(
        &self,
        key: &Bytes,
        live: &Option<KeyValue>,
        main: i64,
    ) -> Result<Option<KeyValue>> {
        let touched = self
            .index
            .get(key)
            .is_some_and(|ki| ki.changed_between(main, main));
        if !touched {
            return Ok(live.clone());
        }
        self.version_before(key, Revision::new(main, 0))
    }

    /// Evaluates the compares of `req` and of the nested transactions on the branch taken, in
    /// the order the branch is executed, against the state before the transaction.
    fn choose_path(&self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let mut ok = true;
        for c in &req.compare {
            if !self.compare(c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in if ok { &req.success } else { &req.failure } {
            if let RequestOp::Txn(t) = op {
                self.choose_path(t, path)?;
            }
        }
        Ok(())
    }

    /// The checks etcd makes against the state before a transaction, on the branch taken:
    /// puts' leases and ignore flags, ranges' revisions.
    fn check_path(
        &self,
        req: &TxnRequest,
        path: &[bool],
        step: &mut usize,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<()> {
        let ok = path[*step];
        *step += 1;
        for op in if ok { &req.success } else { &req.failure } {
            match op {
                RequestOp::Put(p) => self.check_put_state(p, lease_exists)?,
                RequestOp::Range(r) => {
                    self.read_revision(r.revision, None)?;
                }
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(t) => self.check_path(t, path, step, lease_exists)?,
            }
        }
        Ok(())
    }

    fn txn_in(
        &mut self,
        req: &TxnRequest,
        path: &[bool],
        step: &mut usize,
        pending: &mut Pending,
    ) -> Result<TxnResponse> {
        let succeeded = path[*step];
        *step += 1;
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                // Its revision was checked before the transaction began: what can fail here
                // is a read from the backend.
                RequestOp::Range(r) => ResponseOp::Range(self.range_in(r, Some(pending))?),
                RequestOp::Put(p) => ResponseOp::Put(self.put_in(p, pending)?),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_in(
                    &d.key,
                    &d.range_end,
                    d.prev_kv,
                    pending,
                )?),
                RequestOp::Txn(t) => ResponseOp::Txn(self.txn_in(t, path, step, pending)?),
            });
        }
        Ok(TxnResponse {
            succeeded,
            responses,
        })
    }

    /// One compare, as etcd evaluates it: every key in the range must satisfy it; a missing key
    /// (or an empty range) compares as a key with all fields zero, except that a value compare
    /// on it fails.
    fn compare(&self, c: &Compare) -> Result<bool> {
        let revs = self.live_revisions(&c.key, &c.range_end, self.current_revision);
        if revs.is_empty() {
            if matches!(c.target, CompareTarget::Value(_)) {
                return Ok(false);
            }
            return Ok(compare_kv(c, &KeyValue::default()));
        }
        for r in revs {
            if !compare_kv(c, &self.record(r, None)?.kv) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn check_invariants(&self) {
        debug_assert!(self.compact_revision <= self.current_revision);
        #[cfg(debug_assertions)]
        for ki in self.index.values() {
            ki.check();
            debug_assert!(
                ki.last_revision()
                    .is_some_and(|r| r.main <= self.current_revision)
            );
        }
    }
}

impl<B: Backend> History for KvStore<B> {
    fn current_revision(&self) -> i64 {
        self.current_revision
    }

    fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    fn events(
        &self,
        from_revision: i64,
        to_revision: i64,
        events_max: usize,
    ) -> Result<(Vec<Event>, i64)> {
        if from_revision < self.compact_revision {
            return Err(Error::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        let to_revision = to_revision
            .min(self.current_revision)
            .max(from_revision - 1);
        let limit = events_max.max(1);
        // Read one record more than the limit per chunk, so a chunk that comes back short
        // proves the window is exhausted.
        let chunk = limit + 1;
        let end = Revision::new(to_revision + 1, 0);
        let mut cursor = Revision::new(from_revision, 0);
        let mut events = Vec::new();
        let mut last: Option<i64> = None;
        loop {
            let records = self.backend.scan(cursor, end, chunk)?;
            let n = records.len();
            for (rev, rec) in records {
                if last != Some(rev.main) && events.len() >= limit {
                    // Every revision up to `last` is complete; stop before starting another.
                    return Ok((events, last.expect("events were taken")));
                }
                last = Some(rev.main);
                cursor = Revision::new(rev.main, rev.sub + 1);
                let prev_kv = self.version_before(&rec.kv.key, rev)?;
                let kind = if rec.tombstone {
                    EventKind::Delete
                } else {
                    EventKind::Put
                };
                events.push(Event {
                    kind,
                    kv: rec.kv,
                    prev_kv,
                });
            }
            if n < chunk {
                return Ok((events, to_revision));
            }
        }
    }
}

impl<B: Backend> KvStore<B> {
    /// The version of `key` live just before revision `rev` (within a transaction, a key is
    /// written once, so that is the version before the transaction).
    fn version_before(&self, key: &Bytes, rev: Revision) -> Result<Option<KeyValue>> {
        let Some(ki) = self.index.get(key) else {
            return Ok(None);
        };
        match ki.get(rev.main - 1) {
            Some(r) => match self.backend.get(r)? {
                Some(rec) => Ok(Some(rec.kv)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_ref().cmp(v.as_ref()),
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

/// Sorts as etcd does: a target other than the key with no order means ascending; ties keep
/// key order (etcd's sort is not stable; a stable one is a valid choice of its outcomes).
fn sort_kvs(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let order = if order == SortOrder::None && target != SortTarget::Key {
        SortOrder::Ascend
    } else {
        order
    };
    if order == SortOrder::None {
        return;
    }
    let key = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    match order {
        SortOrder::Ascend => kvs.sort_by(key),
        SortOrder::Descend => kvs.sort_by(|a, b| key(b, a)),
        SortOrder::None => unreachable!(),
    }
}

/// FNV-1a, 32 bits: a fixed, portable hash all members compute alike.
struct Fnv32(u32);

impl Fnv32 {
    fn new() -> Fnv32 {
        Fnv32(0x811c_9dc5)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u32;
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.write(&n.to_be_bytes());
    }

    fn write_bytes(&mut self, b: &[u8]) {
        self.write_i64(b.len() as i64);
        self.write(b);
    }

    fn finish(&self) -> u32 {
        self.0
    }
}
