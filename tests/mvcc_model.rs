//! Model-based property test of the MVCC store: every KV operation (put, delete-range, range
//! with all its options, txn with nested txns, compaction, historical reads, the history the
//! watchers read) against a deliberately simple model that keeps a full copy of the key space
//! for every revision. Request validation (`check_txn`'s duplicate-key rules) is shared; it
//! has its own unit tests.

use bytes::Bytes;
use oxcd::mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Error, Event,
    EventKind, History, KeyValue, KvStore, MemBackend, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
    check_txn,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

const OPS_MAX: usize = 8;
const LEASES: [i64; 2] = [7, 8];

fn lease_exists(id: i64) -> bool {
    LEASES.contains(&id)
}

type Keys = BTreeMap<Bytes, KeyValue>;

/// The model: the whole key space after every revision, and each revision's events.
struct Model {
    states: Vec<Keys>,
    events: Vec<Vec<Event>>,
    compact: i64,
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == [0] {
        key >= start
    } else {
        key >= start && key < end
    }
}

fn future(cur: i64) -> Error {
    Error::FutureRevision {
        current_revision: cur,
    }
}

impl Model {
    fn new() -> Model {
        Model {
            states: vec![Keys::new()],
            events: vec![Vec::new()],
            compact: 0,
        }
    }

    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn view(&self, requested: i64, working: Option<&Keys>) -> Result<Keys, Error> {
        let cur = self.current() + working.is_some() as i64;
        if requested > cur {
            return Err(future(cur));
        }
        let rev = if requested <= 0 { cur } else { requested };
        if rev < self.compact {
            return Err(Error::Compacted {
                compact_revision: self.compact,
            });
        }
        Ok(match working {
            Some(w) if rev == cur => w.clone(),
            _ => self.states[rev as usize].clone(),
        })
    }

    fn range(&self, r: &RangeRequest, working: Option<&Keys>) -> Result<RangeResponse, Error> {
        if r.key.is_empty() {
            return Err(Error::KeyNotProvided);
        }
        let view = self.view(r.revision, working)?;
        let all: Vec<KeyValue> = view
            .values()
            .filter(|kv| in_range(&kv.key, &r.key, &r.range_end))
            .cloned()
            .collect();
        let count = all.len() as i64;
        if r.count_only {
            return Ok(RangeResponse {
                kvs: vec![],
                more: false,
                count,
            });
        }
        let filtered = r.min_mod_revision != 0
            || r.max_mod_revision != 0
            || r.min_create_revision != 0
            || r.max_create_revision != 0;
        let mut kvs = all;
        if r.sort_order == SortOrder::None && !filtered && r.limit > 0 {
            kvs.truncate(r.limit as usize + 1);
        }
        kvs.retain(|kv| {
            (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
                && (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
                && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
                && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
        });
        let order = match (r.sort_order, r.sort_target) {
            (SortOrder::None, SortTarget::Key) => SortOrder::None,
            (SortOrder::None, _) => SortOrder::Ascend,
            (o, _) => o,
        };
        let field = |kv: &KeyValue| -> (i64, Bytes) {
            match r.sort_target {
                SortTarget::Key => (0, kv.key.clone()),
                SortTarget::Version => (kv.version, Bytes::new()),
                SortTarget::Create => (kv.create_revision, Bytes::new()),
                SortTarget::Mod => (kv.mod_revision, Bytes::new()),
                SortTarget::Value => (0, kv.value.clone()),
            }
        };
        match order {
            SortOrder::None => {}
            SortOrder::Ascend => kvs.sort_by_key(|kv| field(kv)),
            SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(field(kv))),
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() > r.limit as usize {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        Ok(RangeResponse { kvs, more, count })
    }

    /// An event's prev_kv: the key as it was before the revision (etcd reads it at rev - 1).
    fn before(&self, key: &Bytes) -> Option<KeyValue> {
        self.states.last().unwrap().get(key).cloned()
    }

    fn check_put(&self, p: &PutRequest, base: &Keys) -> Result<(), Error> {
        if p.key.is_empty() {
            return Err(Error::KeyNotProvided);
        }
        if p.ignore_value && !p.value.is_empty() {
            return Err(Error::ValueProvided);
        }
        if p.ignore_lease && p.lease != 0 {
            return Err(Error::LeaseProvided);
        }
        if (p.ignore_value || p.ignore_lease) && !base.contains_key(&p.key) {
            return Err(Error::KeyNotFound);
        }
        if p.lease != 0 && !lease_exists(p.lease) {
            return Err(Error::LeaseNotFound { lease: p.lease });
        }
        Ok(())
    }

    fn put_on(&self, p: &PutRequest, w: &mut Keys, events: &mut Vec<Event>) -> PutResponse {
        let rev = self.current() + 1;
        let prev = w.get(&p.key).cloned();
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: prev.as_ref().map_or(rev, |k| k.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |k| k.version + 1),
            value: match (&prev, p.ignore_value) {
                (Some(k), true) => k.value.clone(),
                _ => p.value.clone(),
            },
            lease: match (&prev, p.ignore_lease) {
                (Some(k), true) => k.lease,
                _ => p.lease,
            },
        };
        w.insert(p.key.clone(), kv.clone());
        events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: self.before(&p.key),
        });
        PutResponse {
            prev_kv: if p.prev_kv { prev } else { None },
        }
    }

    fn delete_on(
        &self,
        d: &DeleteRangeRequest,
        w: &mut Keys,
        events: &mut Vec<Event>,
    ) -> DeleteRangeResponse {
        let rev = self.current() + 1;
        let victims: Vec<KeyValue> = w
            .values()
            .filter(|kv| in_range(&kv.key, &d.key, &d.range_end))
            .cloned()
            .collect();
        for v in &victims {
            w.remove(&v.key);
            events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: v.key.clone(),
                    mod_revision: rev,
                    ..Default::default()
                },
                prev_kv: self.before(&v.key),
            });
        }
        DeleteRangeResponse {
            deleted: victims.len() as i64,
            prev_kvs: if d.prev_kv { victims } else { vec![] },
        }
    }

    fn finish(&mut self, w: Keys, events: Vec<Event>) -> i64 {
        if !events.is_empty() {
            self.states.push(w);
            self.events.push(events);
        }
        self.current()
    }

    fn put(&mut self, p: &PutRequest) -> Result<(PutResponse, i64, Vec<Event>), Error> {
        let base = self.states.last().unwrap().clone();
        self.check_put(p, &base)?;
        let (mut w, mut ev) = (base, vec![]);
        let resp = self.put_on(p, &mut w, &mut ev);
        let rev = self.finish(w, ev.clone());
        Ok((resp, rev, ev))
    }

    fn delete(
        &mut self,
        d: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, i64, Vec<Event>), Error> {
        if d.key.is_empty() {
            return Err(Error::KeyNotProvided);
        }
        let (mut w, mut ev) = (self.states.last().unwrap().clone(), vec![]);
        let resp = self.delete_on(d, &mut w, &mut ev);
        let rev = self.finish(w, ev.clone());
        Ok((resp, rev, ev))
    }

    fn compares_hold(&self, t: &TxnRequest, base: &Keys) -> bool {
        t.compare.iter().all(|c| {
            let hits: Vec<&KeyValue> = base
                .values()
                .filter(|kv| in_range(&kv.key, &c.key, &c.range_end))
                .collect();
            let zero = KeyValue::default();
            let hits = if hits.is_empty() {
                if matches!(c.target, CompareTarget::Value(_)) {
                    return false;
                }
                vec![&zero]
            } else {
                hits
            };
            hits.iter().all(|kv| {
                let ord = match &c.target {
                    CompareTarget::Version(v) => kv.version.cmp(v),
                    CompareTarget::Create(v) => kv.create_revision.cmp(v),
                    CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
                    CompareTarget::Lease(v) => kv.lease.cmp(v),
                    CompareTarget::Value(v) => kv.value.cmp(v),
                };
                match c.result {
                    CompareResult::Equal => ord.is_eq(),
                    CompareResult::NotEqual => ord.is_ne(),
                    CompareResult::Greater => ord.is_gt(),
                    CompareResult::Less => ord.is_lt(),
                }
            })
        })
    }

    fn check_branch(&self, t: &TxnRequest, base: &Keys) -> Result<(), Error> {
        let ops = if self.compares_hold(t, base) {
            &t.success
        } else {
            &t.failure
        };
        for op in ops {
            match op {
                RequestOp::Put(p) => self.check_put(p, base)?,
                RequestOp::Range(r) => {
                    self.view(r.revision, None)?;
                }
                RequestOp::DeleteRange(_) => {}
                RequestOp::Txn(n) => self.check_branch(n, base)?,
            }
        }
        Ok(())
    }

    fn run_txn(
        &self,
        t: &TxnRequest,
        base: &Keys,
        w: &mut Keys,
        ev: &mut Vec<Event>,
    ) -> TxnResponse {
        let succeeded = self.compares_hold(t, base);
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = vec![];
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    let working = if ev.is_empty() { None } else { Some(&*w) };
                    ResponseOp::Range(self.range(r, working).expect("checked"))
                }
                RequestOp::Put(p) => ResponseOp::Put(self.put_on(p, w, ev)),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.delete_on(d, w, ev)),
                RequestOp::Txn(n) => ResponseOp::Txn(self.run_txn(n, base, w, ev)),
            });
        }
        TxnResponse {
            succeeded,
            responses,
        }
    }

    fn txn(&mut self, t: &TxnRequest) -> Result<(TxnResponse, i64, Vec<Event>), Error> {
        check_txn(t, OPS_MAX)?;
        let base = self.states.last().unwrap().clone();
        self.check_branch(t, &base)?;
        let (mut w, mut ev) = (base.clone(), vec![]);
        let resp = self.run_txn(t, &base, &mut w, &mut ev);
        let rev = self.finish(w, ev.clone());
        Ok((resp, rev, ev))
    }

    fn compact(&mut self, rev: i64) -> Result<(), Error> {
        if rev <= self.compact {
            return Err(Error::Compacted {
                compact_revision: self.compact,
            });
        }
        if rev > self.current() {
            return Err(future(self.current()));
        }
        self.compact = rev;
        Ok(())
    }

    fn history(&self, from: i64, to: i64) -> Result<Vec<Event>, Error> {
        if from < self.compact {
            return Err(Error::Compacted {
                compact_revision: self.compact,
            });
        }
        let to = to.min(self.current());
        Ok((from..=to)
            .flat_map(|r| self.events[r as usize].clone())
            .collect())
    }
}

// ---- generators ----

fn key() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["a", "aa", "ab", "b", "c", "d\u{ff}"]).prop_map(Bytes::from)
}

fn range_end() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        3 => Just(""),
        1 => Just("\0"),
        1 => Just("b"),
        1 => Just("c"),
        1 => Just("a"),
        1 => Just("z"),
    ]
    .prop_map(Bytes::from)
}

fn value() -> impl Strategy<Value = Bytes> {
    prop::sample::select(vec!["", "x", "y", "zz"]).prop_map(Bytes::from)
}

fn put() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        value(),
        prop::sample::select(vec![0i64, 0, 7, 8, 9]),
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(key, value, lease, prev_kv, ignore_value, ignore_lease)| PutRequest {
                key,
                value,
                lease,
                prev_kv,
                ignore_value,
                ignore_lease,
            },
        )
}

fn delete() -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

/// Revisions are generated as small numbers and mean "current minus n" for n < 0, so reads hit
/// recent history, compacted history and the future alike.
fn range() -> impl Strategy<Value = RangeRequest> {
    let order = prop::sample::select(vec![SortOrder::None, SortOrder::Ascend, SortOrder::Descend]);
    let target = prop::sample::select(vec![
        SortTarget::Key,
        SortTarget::Version,
        SortTarget::Create,
        SortTarget::Mod,
        SortTarget::Value,
    ]);
    let filter = prop_oneof![4 => Just(0i64), 1 => 1i64..12];
    (
        (key(), range_end(), 0i64..4, -6i64..3),
        (order, target, any::<bool>(), prop::bool::weighted(0.1)),
        (filter.clone(), filter.clone(), filter.clone(), filter),
    )
        .prop_map(
            |((key, range_end, limit, revision), (so, st, keys_only, count_only), f)| {
                RangeRequest {
                    key,
                    range_end,
                    limit,
                    revision,
                    sort_order: so,
                    sort_target: st,
                    serializable: false,
                    keys_only,
                    count_only,
                    min_mod_revision: f.0,
                    max_mod_revision: f.1,
                    min_create_revision: f.2,
                    max_create_revision: f.3,
                }
            },
        )
}

fn compare() -> impl Strategy<Value = Compare> {
    let result = prop::sample::select(vec![
        CompareResult::Equal,
        CompareResult::Greater,
        CompareResult::Less,
        CompareResult::NotEqual,
    ]);
    let target = prop_oneof![
        (0i64..4).prop_map(CompareTarget::Version),
        (0i64..12).prop_map(CompareTarget::Create),
        (0i64..12).prop_map(CompareTarget::Mod),
        value().prop_map(CompareTarget::Value),
        prop::sample::select(vec![0i64, 7, 8]).prop_map(CompareTarget::Lease),
    ];
    (
        result,
        target,
        key(),
        prop_oneof![3 => Just(Bytes::new()), 1 => range_end()],
    )
        .prop_map(|(result, target, key, range_end)| Compare {
            result,
            target,
            key,
            range_end,
        })
}

fn op_leaf() -> impl Strategy<Value = RequestOp> {
    prop_oneof![
        range().prop_map(RequestOp::Range),
        put().prop_map(RequestOp::Put),
        delete().prop_map(RequestOp::DeleteRange),
    ]
}

fn txn() -> impl Strategy<Value = TxnRequest> {
    let leaf_txn = (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op_leaf(), 0..3),
        prop::collection::vec(op_leaf(), 0..3),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        });
    let op = prop_oneof![4 => op_leaf(), 1 => leaf_txn.prop_map(RequestOp::Txn)];
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op.clone(), 0..4),
        prop::collection::vec(op, 0..4),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

#[derive(Clone, Debug)]
enum Op {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Range(RangeRequest),
    Txn(TxnRequest),
    /// Compact at current minus n.
    Compact(i64),
    /// Read the history from current minus n, at most `events_max` per call.
    History(i64, usize),
    /// Rebuild the store from its backend and carry on with the copy.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => put().prop_map(Op::Put),
        3 => delete().prop_map(Op::Delete),
        5 => range().prop_map(Op::Range),
        5 => txn().prop_map(Op::Txn),
        1 => (-1i64..6).prop_map(Op::Compact),
        2 => (-1i64..8, 1usize..5).prop_map(|(n, m)| Op::History(n, m)),
        1 => Just(Op::Reopen),
    ]
}

/// Maps the generated relative revision onto the store's history.
fn absolute(rel: i64, current: i64) -> i64 {
    if rel <= 0 {
        current + rel
    } else {
        current + rel - 1
    }
}

fn resolve_range(r: &RangeRequest, current: i64) -> RangeRequest {
    let mut r = r.clone();
    r.revision = if r.revision == 0 {
        0
    } else {
        absolute(r.revision, current).max(1)
    };
    r
}

fn resolve_ops(ops: &[RequestOp], current: i64) -> Vec<RequestOp> {
    ops.iter()
        .map(|op| match op {
            RequestOp::Range(r) => RequestOp::Range(resolve_range(r, current)),
            RequestOp::Txn(t) => RequestOp::Txn(resolve_txn(t, current)),
            other => other.clone(),
        })
        .collect()
}

fn resolve_txn(t: &TxnRequest, current: i64) -> TxnRequest {
    TxnRequest {
        compare: t.compare.clone(),
        success: resolve_ops(&t.success, current),
        failure: resolve_ops(&t.failure, current),
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut store = KvStore::open(MemBackend::new()).unwrap();
    let mut model = Model::new();
    for op in ops {
        let cur = model.current();
        prop_assert_eq!(store.current_revision(), cur);
        match op {
            Op::Put(p) => {
                let got = store
                    .put(&p, &lease_exists)
                    .map(|w| (w.response, w.revision, w.events));
                prop_assert_eq!(got, model.put(&p), "put {:?}", p);
            }
            Op::Delete(d) => {
                let got = store
                    .delete_range(&d)
                    .map(|w| (w.response, w.revision, w.events));
                prop_assert_eq!(got, model.delete(&d), "delete {:?}", d);
            }
            Op::Range(r) => {
                let r = resolve_range(&r, cur);
                prop_assert_eq!(store.range(&r), model.range(&r, None), "range {:?}", r);
            }
            Op::Txn(t) => {
                let t = resolve_txn(&t, cur);
                let got = store
                    .txn(&t, OPS_MAX, &lease_exists)
                    .map(|w| (w.response, w.revision, w.events));
                prop_assert_eq!(got, model.txn(&t), "txn {:?}", t);
            }
            Op::Compact(n) => {
                let rev = absolute(n, cur);
                prop_assert_eq!(store.compact(rev), model.compact(rev), "compact {}", rev);
            }
            Op::History(n, events_max) => {
                let from = absolute(n, cur).clamp(1, cur + 1);
                let want = model.history(from, cur);
                // Read the window in batches as a watcher catching up would.
                let mut got = Vec::new();
                let mut next = from;
                let outcome = loop {
                    match store.events(next, cur, events_max) {
                        Err(e) => break Err(e),
                        Ok((evs, through)) => {
                            prop_assert!(through >= next - 1 && through <= cur);
                            if let Some(last) = evs.last() {
                                prop_assert!(last.revision() <= through);
                                prop_assert!(evs.iter().all(|e| e.revision() >= next));
                            }
                            // Only the last revision of a batch may take it past the limit.
                            if let Some(last) = evs.last() {
                                let before = evs.iter().filter(|e| e.revision() < last.revision());
                                prop_assert!(before.count() < events_max, "batch past events_max");
                            }
                            got.extend(evs);
                            if through >= cur {
                                break Ok(got);
                            }
                            prop_assert!(through >= next, "no progress");
                            next = through + 1;
                        }
                    }
                };
                prop_assert_eq!(outcome, want, "history from {}", from);
            }
            Op::Reopen => {
                let before = store.hash_kv(0).unwrap();
                let copy = store.backend().clone();
                store = KvStore::open(copy).unwrap();
                prop_assert_eq!(store.hash_kv(0).unwrap(), before);
                prop_assert_eq!(store.compact_revision(), model.compact);
            }
        }
    }
    // Every revision still readable reads as the model says.
    for rev in model.compact.max(1)..=model.current() {
        let all = RangeRequest {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            revision: rev,
            ..Default::default()
        };
        prop_assert_eq!(
            store.range(&all),
            model.range(&all, None),
            "all keys at {}",
            rev
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn the_store_behaves_like_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}

#[test]
fn equal_histories_hash_equal_and_different_ones_do_not() {
    let put = |k: &'static str, v: &'static str| PutRequest {
        key: Bytes::from_static(k.as_bytes()),
        value: Bytes::from_static(v.as_bytes()),
        ..Default::default()
    };
    let mut a = KvStore::open(MemBackend::new()).unwrap();
    let mut b = KvStore::open(MemBackend::new()).unwrap();
    for s in [&mut a, &mut b] {
        s.put(&put("k", "1"), &lease_exists).unwrap();
        s.put(&put("k", "2"), &lease_exists).unwrap();
    }
    assert_eq!(a.hash_kv(0), b.hash_kv(0));
    assert_eq!(a.hash_kv(1), b.hash_kv(1));
    assert_ne!(a.hash_kv(1).unwrap().hash, a.hash_kv(2).unwrap().hash);
    b.put(&put("k", "3"), &lease_exists).unwrap();
    assert_eq!(a.hash_kv(2), b.hash_kv(2));
    assert_ne!(a.hash_kv(0).unwrap().hash, b.hash_kv(0).unwrap().hash);
    a.compact(2).unwrap();
    assert_eq!(
        a.hash_kv(1),
        Err(Error::Compacted {
            compact_revision: 2
        })
    );
    assert_eq!(a.hash_kv(5), Err(future(2)));
}
