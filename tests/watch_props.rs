//! Watch guarantees over random interleavings of writes (single- and multi-event revisions,
//! deletes of ranges), compactions, watcher creates (past, compacted and future start
//! revisions; keys, ranges, prefixes; filters, prev_kv, fragment with small byte limits),
//! cancels, progress requests and ticks, and consumers that drain slowly (slots 0 and 1) or
//! not at all until the end (slot 2), with tiny outboxes.
//!
//! Each case records every response each stream delivered, drains everything at the end, and
//! checks each watcher against the reference history: exactly the matching events from its
//! start revision, in order, once each, none skipped (a prefix of them if it was canceled or
//! its stream closed; canceled for compaction only when it still needed compacted history);
//! a revision's events in one response unless fragmented, and fragments that reassemble to
//! exactly one revision; `prev_kv` iff asked; no header revision ahead of the events
//! delivered; and `notify` never reading history.

use bytes::Bytes;
use oxcd::mvcc::{
    Error, Event, EventKind, History, INVALID_WATCH_ID, KeyValue, Result, StreamId, WatchConfig,
    WatchCreate, WatchFilters, WatchResponse, Watchers, in_range, prefix_end,
};
use proptest::prelude::*;
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};

const KEYS: [&str; 5] = ["a", "ab", "b", "ba", "c"];
const SLOTS: usize = 3;
/// Slots a `Poll` op may drain; the others are drained only at the end.
const POLLED_SLOTS: usize = 2;

/// The reference store: every revision's events with `prev_kv` filled, as the real store's
/// `History` promises. Counts `events` calls.
#[derive(Default)]
struct Store {
    revisions: Vec<Vec<Event>>,
    live: BTreeMap<Bytes, KeyValue>,
    compacted: i64,
    reads: Cell<usize>,
}

impl Store {
    /// Applies one revision: a put for each `Some(value)`, a delete for each `None` (of a live
    /// key). Returns its events, or `None` when it changed nothing (no revision).
    fn apply(&mut self, ops: &[(Bytes, Option<Bytes>)]) -> Option<Vec<Event>> {
        let revision = self.revisions.len() as i64 + 1;
        let mut events = Vec::new();
        for (key, value) in ops {
            let prev = self.live.get(key).cloned();
            match value {
                Some(value) => {
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                        mod_revision: revision,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        value: value.clone(),
                        lease: 0,
                    };
                    self.live.insert(key.clone(), kv.clone());
                    events.push(Event {
                        kind: EventKind::Put,
                        kv,
                        prev_kv: prev,
                    });
                }
                None if prev.is_some() => {
                    self.live.remove(key);
                    let kv = KeyValue {
                        key: key.clone(),
                        mod_revision: revision,
                        ..KeyValue::default()
                    };
                    events.push(Event {
                        kind: EventKind::Delete,
                        kv,
                        prev_kv: prev,
                    });
                }
                None => {}
            }
        }
        if events.is_empty() {
            return None;
        }
        self.revisions.push(events.clone());
        Some(events)
    }
}

impl History for Store {
    fn current_revision(&self) -> i64 {
        self.revisions.len() as i64
    }

    fn compact_revision(&self) -> i64 {
        self.compacted
    }

    fn events(&self, from: i64, to: i64, events_max: usize) -> Result<(Vec<Event>, i64)> {
        self.reads.set(self.reads.get() + 1);
        assert!(from <= to && to <= self.current_revision());
        if from < self.compacted {
            return Err(Error::Compacted {
                compact_revision: self.compacted,
            });
        }
        let mut out = Vec::new();
        for revision in from..=to {
            out.extend(self.revisions[revision as usize - 1].iter().cloned());
            if out.len() >= events_max {
                return Ok((out, revision));
            }
        }
        Ok((out, to))
    }
}

#[derive(Clone, Debug)]
enum Range {
    Single,
    Prefix,
    FromKey,
    /// Empty key and `"\0"`: every key.
    All,
    /// `[key, KEYS[i])`; holds no key when `KEYS[i] <= key`.
    To(usize),
}

#[derive(Clone, Debug)]
enum Start {
    Now,
    /// That many revisions back (at least revision 1): catch-up, or compacted.
    Back(i64),
    /// That many revisions after the next.
    Future(i64),
}

#[derive(Clone, Debug)]
struct Spec {
    key: usize,
    range: Range,
    start: Start,
    filters: WatchFilters,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// 0 lets the server choose; small ids collide on purpose.
    watch_id: i64,
}

#[derive(Clone, Debug)]
enum Op {
    /// One revision: `(key, Some(value length))` puts, `(key, None)` deletes.
    Write(Vec<(usize, Option<usize>)>),
    DeleteRange(usize, usize),
    /// Compact that many revisions behind the current one.
    Compact(i64),
    Create(usize, Spec),
    Cancel(usize, i64),
    Progress(usize),
    Tick(u64),
    Poll(usize, usize),
    Sync(usize),
    /// Close the slot's stream and open a fresh one in its place.
    Reopen(usize),
}

fn spec() -> impl Strategy<Value = Spec> {
    let range = prop_oneof![
        3 => Just(Range::Single),
        1 => Just(Range::Prefix),
        1 => Just(Range::FromKey),
        1 => Just(Range::All),
        1 => (0..KEYS.len()).prop_map(Range::To),
    ];
    let start = prop_oneof![
        2 => Just(Start::Now),
        3 => (0i64..8).prop_map(Start::Back),
        1 => (0i64..4).prop_map(Start::Future),
    ];
    let flags = (any::<bool>(), any::<bool>(), any::<bool>());
    let filters = prop_oneof![
        4 => Just(WatchFilters::default()),
        1 => Just(WatchFilters { no_put: true, no_delete: false }),
        1 => Just(WatchFilters { no_put: false, no_delete: true }),
    ];
    let watch_id = prop_oneof![3 => Just(0i64), 1 => 1i64..4];
    (0..KEYS.len(), range, start, filters, flags, watch_id).prop_map(
        |(key, range, start, filters, (prev_kv, fragment, progress_notify), watch_id)| Spec {
            key,
            range,
            start,
            filters,
            prev_kv,
            fragment,
            progress_notify,
            watch_id,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    let write = proptest::collection::vec(
        (
            0..KEYS.len(),
            prop_oneof![3 => (0usize..40).prop_map(Some), 1 => Just(None)],
        ),
        1..4,
    );
    prop_oneof![
        6 => write.prop_map(Op::Write),
        1 => (0..KEYS.len(), 0..KEYS.len()).prop_map(|(a, b)| Op::DeleteRange(a, b)),
        1 => (0i64..6).prop_map(Op::Compact),
        3 => (0..SLOTS, spec()).prop_map(|(s, spec)| Op::Create(s, spec)),
        1 => (0..SLOTS, 0i64..5).prop_map(|(s, id)| Op::Cancel(s, id)),
        1 => (0..SLOTS).prop_map(Op::Progress),
        1 => (0u64..150).prop_map(Op::Tick),
        4 => (0..POLLED_SLOTS, 0usize..4).prop_map(|(s, n)| Op::Poll(s, n)),
        2 => (1usize..3).prop_map(Op::Sync),
        1 => (0..SLOTS).prop_map(Op::Reopen),
    ]
}

fn config() -> impl Strategy<Value = WatchConfig> {
    (
        1usize..4,
        2usize..8,
        40usize..300,
        1usize..6,
        1usize..4,
        2usize..6,
    )
        .prop_map(
            |(responses, control, bytes, events, watchers, per_stream)| WatchConfig {
                stream_responses_max: responses,
                control_responses_max: control,
                response_bytes_max: bytes,
                progress_interval_ms: 100,
                sync_events_max: events,
                sync_watchers_max: watchers,
                watchers_per_stream_max: per_stream,
            },
        )
}

fn key(i: usize) -> Bytes {
    Bytes::from_static(KEYS[i].as_bytes())
}

/// What a successful create asked for, as the checker needs it.
#[derive(Clone, Debug)]
struct Watch {
    /// The normalized key (an empty key is `"\0"`).
    key: Bytes,
    range_end: Bytes,
    /// The first revision it wants (a start of 0 resolved to the revision after creation).
    start: i64,
    filters: WatchFilters,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    created_revision: i64,
}

/// One stream's life as its client saw it.
#[derive(Default)]
struct Log {
    responses: Vec<WatchResponse>,
    /// Successful creates per watch id, in order: their `created` responses claim them.
    creates: BTreeMap<i64, VecDeque<Watch>>,
    /// Cancels that found a watcher, per watch id.
    cancels: BTreeMap<i64, usize>,
    /// Still open and drained at the end: every watcher must be complete.
    open: bool,
}

struct Slot {
    id: StreamId,
    log: Log,
}

fn run(config: WatchConfig, ops: Vec<Op>) {
    let bytes_max = config.response_bytes_max;
    let mut store = Store::default();
    let mut w = Watchers::new(config, 0).unwrap();
    let mut now_ms = 0;
    let mut slots: Vec<Slot> = (0..SLOTS)
        .map(|_| Slot {
            id: w.open_stream(),
            log: Log::default(),
        })
        .collect();
    let mut closed: Vec<Log> = Vec::new();
    for op in ops {
        match op {
            Op::Write(writes) => {
                let mut ops: Vec<(Bytes, Option<Bytes>)> = Vec::new();
                for (k, value) in writes {
                    if ops.iter().all(|(key, _)| *key != self::key(k)) {
                        let value = value.map(|n| Bytes::from("v".repeat(n)));
                        ops.push((self::key(k), value));
                    }
                }
                notify(&mut w, &mut store, &ops);
            }
            Op::DeleteRange(a, b) => {
                let end = key(b);
                let ops: Vec<(Bytes, Option<Bytes>)> = (store.live.keys())
                    .filter(|k| in_range(k, &key(a), &end))
                    .map(|k| (k.clone(), None))
                    .collect();
                notify(&mut w, &mut store, &ops);
            }
            Op::Compact(back) => {
                let target = store.current_revision() - back;
                if target > store.compacted {
                    store.compacted = target;
                }
            }
            Op::Create(s, spec) => create(&mut w, &store, &mut slots[s], &spec),
            Op::Cancel(s, id) => {
                if w.cancel(slots[s].id, id) {
                    *slots[s].log.cancels.entry(id).or_default() += 1;
                }
            }
            Op::Progress(s) => match w.progress_request(slots[s].id, &store) {
                Ok(()) | Err(Error::WatchStreamFull { .. }) => {}
                Err(e) => panic!("progress request: {e}"),
            },
            Op::Tick(ms) => {
                now_ms += ms;
                w.tick(now_ms, &store);
            }
            Op::Poll(s, n) => {
                let slot = &mut slots[s];
                for _ in 0..n {
                    let Some(r) = w.poll_response(slot.id) else {
                        break;
                    };
                    slot.log.responses.push(r);
                }
            }
            Op::Sync(n) => {
                for _ in 0..n {
                    w.sync(&store).unwrap();
                }
            }
            Op::Reopen(s) => {
                w.close_stream(slots[s].id);
                assert_eq!(w.poll_response(slots[s].id), None);
                let fresh = Slot {
                    id: w.open_stream(),
                    log: Log::default(),
                };
                closed.push(std::mem::replace(&mut slots[s], fresh).log);
            }
        }
    }

    // Liveness: with every client draining, sync catches every watcher up.
    let mut rounds = 0;
    loop {
        for slot in &mut slots {
            slot.log
                .responses
                .extend(std::iter::from_fn(|| w.poll_response(slot.id)));
        }
        if !w.needs_sync() {
            break;
        }
        w.sync(&store).unwrap();
        rounds += 1;
        assert!(rounds < 100_000, "sync does not finish");
    }
    assert_eq!(w.unsynced_len(), 0);
    assert_eq!(w.ready_streams().count(), 0);
    // A progress request is answered at once now; a request that still waited would swallow
    // this one.
    for slot in &mut slots {
        w.progress_request(slot.id, &store).unwrap();
        let r = w.poll_response(slot.id).expect("a progress response");
        assert_eq!(r.watch_id, INVALID_WATCH_ID);
        assert_eq!(r.header_revision, store.current_revision());
        slot.log.responses.push(r);
        slot.log.open = true;
    }
    for log in closed.iter().chain(slots.iter().map(|s| &s.log)) {
        check(log, &store, bytes_max);
    }
}

/// Applies a revision and hands it to the watchers, checking that this reads no history.
fn notify(w: &mut Watchers, store: &mut Store, ops: &[(Bytes, Option<Bytes>)]) {
    let Some(events) = store.apply(ops) else {
        return;
    };
    let reads = store.reads.get();
    w.notify(&events, store);
    assert_eq!(store.reads.get(), reads, "notify read history");
}

fn create(w: &mut Watchers, store: &Store, slot: &mut Slot, spec: &Spec) {
    let current = store.current_revision();
    let mut k = key(spec.key);
    let range_end = match spec.range {
        Range::Single => Bytes::new(),
        Range::Prefix => prefix_end(&k),
        Range::FromKey => Bytes::from_static(b"\0"),
        Range::All => {
            k = Bytes::new();
            Bytes::from_static(b"\0")
        }
        Range::To(i) => key(i),
    };
    let start_revision = match spec.start {
        Start::Now => 0,
        Start::Back(n) => (current - n).max(1),
        Start::Future(n) => current + 1 + n,
    };
    let request = WatchCreate {
        key: k.clone(),
        range_end: range_end.clone(),
        start_revision,
        progress_notify: spec.progress_notify,
        filters: spec.filters,
        prev_kv: spec.prev_kv,
        watch_id: spec.watch_id,
        fragment: spec.fragment,
    };
    let key = if k.is_empty() {
        Bytes::from_static(b"\0")
    } else {
        k
    };
    let empty = !range_end.is_empty() && range_end.as_ref() != b"\0" && key >= range_end;
    let reads = store.reads.get();
    let result = w.create(slot.id, request, store);
    assert_eq!(store.reads.get(), reads, "create reads no history");
    match result {
        Ok(id) => {
            assert!(!empty && id >= 0);
            assert!(spec.watch_id == 0 || id == spec.watch_id);
            let watch = Watch {
                key,
                range_end,
                start: if start_revision == 0 {
                    current + 1
                } else {
                    start_revision
                },
                filters: spec.filters,
                prev_kv: spec.prev_kv,
                fragment: spec.fragment,
                progress_notify: spec.progress_notify,
                created_revision: current,
            };
            slot.log.creates.entry(id).or_default().push_back(watch);
        }
        Err(Error::WatchStreamFull { .. }) => {}
        Err(Error::WatchRangeEmpty) => assert!(empty),
        Err(Error::WatchIdDuplicate { watch_id }) => {
            assert!(!empty && watch_id == spec.watch_id && watch_id > 0)
        }
        Err(Error::WatchersFull { .. }) => assert!(!empty),
        Err(e) => panic!("unexpected refusal: {e}"),
    }
}

/// A watcher as the checker follows it through its stream's responses.
struct Follow {
    watch: Watch,
    /// Every event of the final history it should get, shaped as it should get them.
    expected: Vec<Event>,
    delivered: usize,
    last_header: i64,
}

impl Follow {
    fn new(watch: Watch, store: &Store) -> Follow {
        let expected = (store.revisions.iter().flatten())
            .filter(|e| e.revision() >= watch.start)
            .filter(|e| in_range(&e.kv.key, &watch.key, &watch.range_end))
            .filter(|e| match e.kind {
                EventKind::Put => !watch.filters.no_put,
                EventKind::Delete => !watch.filters.no_delete,
            })
            .map(|e| {
                let mut e = e.clone();
                if !watch.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect();
        Follow {
            watch,
            expected,
            delivered: 0,
            last_header: 0,
        }
    }

    /// The header rule: every matching event up to `header` was delivered.
    fn header(&mut self, header: i64) {
        let next = self.expected.get(self.delivered).map(Event::revision);
        assert!(
            next.is_none_or(|next| next > header),
            "header {header} runs ahead of undelivered revision {next:?}"
        );
        assert!(header >= self.last_header, "headers go back");
        self.last_header = header;
    }

    /// One (reassembled) event response: `pieces` holds each piece's event bytes and count.
    fn events(
        &mut self,
        header: i64,
        events: &[Event],
        pieces: &[(usize, usize)],
        bytes_max: usize,
    ) {
        let (d, n) = (self.delivered, events.len());
        assert!(n > 0);
        assert!(
            d + n <= self.expected.len(),
            "more events than the history holds"
        );
        assert_eq!(
            events,
            &self.expected[d..d + n],
            "wrong events (order, gap, twice, prev_kv)"
        );
        let (first, last) = (events[0].revision(), events[n - 1].revision());
        assert!(header >= last);
        if d > 0 {
            assert!(
                self.expected[d - 1].revision() < first,
                "revision {first} split"
            );
        }
        if let Some(next) = self.expected.get(d + n) {
            assert!(next.revision() > last, "revision {last} split");
        }
        self.delivered += n;
        self.header(header);
        let bytes: usize = events.iter().map(Event::size_bytes).sum();
        if pieces.len() > 1 {
            assert!(
                self.watch.fragment,
                "fragments for a watcher that did not ask"
            );
            assert_eq!(first, last, "a fragmented response holds one revision");
            assert!(bytes > bytes_max);
            for &(piece_bytes, count) in pieces {
                assert!(
                    piece_bytes <= bytes_max || count == 1,
                    "a piece over the limit"
                );
            }
        } else if bytes > bytes_max {
            assert!(first == last, "several revisions over the byte limit");
            assert!(
                !self.watch.fragment || n == 1,
                "should have been fragmented"
            );
        }
    }
}

/// A fragmented response being reassembled.
struct Partial {
    watch_id: i64,
    header: i64,
    events: Vec<Event>,
    /// Each piece's event bytes and event count.
    pieces: Vec<(usize, usize)>,
}

fn check(log: &Log, store: &Store, bytes_max: usize) {
    let mut creates = log.creates.clone();
    let mut cancels = log.cancels.clone();
    let mut live: BTreeMap<i64, Follow> = BTreeMap::new();
    let mut partial: Option<Partial> = None;
    for r in &log.responses {
        let bytes = r.events.iter().map(Event::size_bytes).sum::<usize>();
        if let Some(p) = &mut partial {
            assert!(
                r.watch_id == p.watch_id && r.header_revision == p.header,
                "pieces interleaved"
            );
            assert!(!r.created && !r.canceled && !r.events.is_empty());
            p.events.extend(r.events.iter().cloned());
            p.pieces.push((bytes, r.events.len()));
            if !r.fragment {
                let p = partial.take().unwrap();
                let follow = live.get_mut(&p.watch_id).unwrap();
                follow.events(p.header, &p.events, &p.pieces, bytes_max);
            }
            continue;
        }
        let id = r.watch_id;
        if r.created && r.canceled {
            assert!(id == INVALID_WATCH_ID && !r.cancel_reason.is_empty() && r.events.is_empty());
        } else if r.created {
            let watch = creates.get_mut(&id).and_then(VecDeque::pop_front);
            let watch = watch.expect("created answers a successful create");
            assert_eq!(r.header_revision, watch.created_revision);
            assert!(r.events.is_empty() && !live.contains_key(&id));
            live.insert(id, Follow::new(watch, store));
        } else if r.canceled {
            let follow = live.remove(&id).expect("canceled answers a live watcher");
            assert!(r.events.is_empty() && r.cancel_reason.is_empty());
            if r.compact_revision == 0 {
                let count = cancels.get_mut(&id).expect("a client cancel");
                assert!(*count > 0, "canceled twice");
                *count -= 1;
            } else {
                // Canceled for compaction only while it still needed compacted history.
                let c = r.compact_revision;
                assert!(c <= store.compacted);
                let delivered = follow.delivered.checked_sub(1);
                let last = delivered.map_or(0, |d| follow.expected[d].revision());
                assert!(
                    follow.watch.start.max(last + 1) < c,
                    "canceled at {c} needlessly"
                );
            }
        } else if id == INVALID_WATCH_ID {
            assert!(r.events.is_empty() && !r.fragment);
            for follow in live.values_mut() {
                follow.header(r.header_revision);
            }
        } else {
            let follow = live.get_mut(&id).expect("a response for a live watcher");
            if r.events.is_empty() {
                assert!(follow.watch.progress_notify && !r.fragment);
                follow.header(r.header_revision);
            } else if r.fragment {
                assert!(follow.watch.fragment);
                partial = Some(Partial {
                    watch_id: id,
                    header: r.header_revision,
                    events: r.events.clone(),
                    pieces: vec![(bytes, r.events.len())],
                });
            } else {
                follow.events(
                    r.header_revision,
                    &r.events,
                    &[(bytes, r.events.len())],
                    bytes_max,
                );
            }
        }
    }
    if !log.open {
        return;
    }
    assert!(partial.is_none(), "a fragment never finished");
    assert!(
        creates.values().all(VecDeque::is_empty),
        "a create never answered"
    );
    assert!(cancels.values().all(|&n| n == 0), "a cancel never answered");
    for (id, follow) in &live {
        let missing = &follow.expected[follow.delivered..];
        assert!(missing.is_empty(), "watch {id} never got {missing:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn watchers_deliver_every_matching_event_once_in_order(
        config in config(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        run(config, ops);
    }
}
