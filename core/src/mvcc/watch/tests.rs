//! Unit tests of the watchers, each pinning one behaviour, against a small in-memory history.

use super::*;
use crate::mvcc::kv::{EventKind, KeyValue, prefix_end};
use std::cell::Cell;

/// A store reduced to what watchers read: every revision's events, the live keys (to fill
/// `prev_kv`), and a compaction point. Counts `events` calls so tests see who reads history.
#[derive(Default)]
struct Mem {
    revisions: Vec<Vec<Event>>,
    live: BTreeMap<Bytes, KeyValue>,
    compacted: i64,
    reads: Cell<usize>,
}

impl Mem {
    /// One revision writing each `(key, Some(value))` and deleting each `(key, None)`.
    fn write(&mut self, ops: &[(&str, Option<&str>)]) -> Vec<Event> {
        let revision = self.revisions.len() as i64 + 1;
        let mut events = Vec::new();
        for (key, value) in ops {
            let key = Bytes::copy_from_slice(key.as_bytes());
            let prev = self.live.get(&key).cloned();
            let event = match value {
                Some(value) => {
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                        mod_revision: revision,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        value: Bytes::copy_from_slice(value.as_bytes()),
                        lease: 0,
                    };
                    self.live.insert(key, kv.clone());
                    Event {
                        kind: EventKind::Put,
                        kv,
                        prev_kv: prev,
                    }
                }
                None => {
                    let prev = self.live.remove(&key).expect("deletes a live key");
                    let kv = KeyValue {
                        key,
                        mod_revision: revision,
                        ..KeyValue::default()
                    };
                    Event {
                        kind: EventKind::Delete,
                        kv,
                        prev_kv: Some(prev),
                    }
                }
            };
            events.push(event);
        }
        self.revisions.push(events.clone());
        events
    }
}

impl History for Mem {
    fn current_revision(&self) -> i64 {
        self.revisions.len() as i64
    }

    fn compact_revision(&self) -> i64 {
        self.compacted
    }

    fn events(&self, from: i64, to: i64, events_max: usize) -> Result<(Vec<Event>, i64)> {
        self.reads.set(self.reads.get() + 1);
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

/// Watchers, a history and one open stream.
struct Fx {
    w: Watchers,
    h: Mem,
    s: StreamId,
}

fn config() -> WatchConfig {
    WatchConfig {
        progress_interval_ms: 1000,
        ..WatchConfig::default()
    }
}

fn fx_with(config: WatchConfig) -> Fx {
    let mut w = Watchers::new(config, 0).unwrap();
    let s = w.open_stream();
    Fx {
        w,
        h: Mem::default(),
        s,
    }
}

fn fx() -> Fx {
    fx_with(config())
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn on(key: &str) -> WatchCreate {
    WatchCreate {
        key: b(key),
        ..WatchCreate::default()
    }
}

fn keys(response: &WatchResponse) -> Vec<String> {
    let key = |e: &Event| String::from_utf8(e.kv.key.to_vec()).unwrap();
    response.events.iter().map(key).collect()
}

impl Fx {
    fn write(&mut self, ops: &[(&str, Option<&str>)]) {
        let events = self.h.write(ops);
        self.w.notify(&events, &self.h);
    }

    fn put(&mut self, key: &str, value: &str) {
        self.write(&[(key, Some(value))]);
    }

    fn create(&mut self, request: WatchCreate) -> Result<i64> {
        self.w.create(self.s, request, &self.h)
    }

    fn drain(&mut self) -> Vec<WatchResponse> {
        self.drain_stream(self.s)
    }

    fn drain_stream(&mut self, s: StreamId) -> Vec<WatchResponse> {
        std::iter::from_fn(|| self.w.poll_response(s)).collect()
    }

    /// Syncs until nothing is left to do, draining the stream between calls.
    fn settle(&mut self) -> Vec<WatchResponse> {
        let mut out = self.drain();
        for _ in 0..1000 {
            if !self.w.needs_sync() {
                return out;
            }
            self.w.sync(&self.h).unwrap();
            out.extend(self.drain());
        }
        panic!("sync does not finish");
    }

    /// Creates a watcher and takes its `created` response.
    fn watch(&mut self, request: WatchCreate) -> i64 {
        let id = self.create(request).unwrap();
        let created = self.drain();
        assert_eq!(created.len(), 1);
        assert!(created[0].created && !created[0].canceled);
        assert_eq!(created[0].watch_id, id);
        id
    }
}

#[test]
fn server_chosen_ids_start_at_zero_and_skip_ids_in_use() {
    let mut f = fx();
    assert_eq!(
        f.create(WatchCreate {
            watch_id: 1,
            ..on("a")
        }),
        Ok(1)
    );
    assert_eq!(f.create(on("a")), Ok(0));
    assert_eq!(f.create(on("a")), Ok(2));
    assert!(f.w.cancel(f.s, 0));
    // The server never hands out an id twice; a client may reuse one that is free.
    assert_eq!(f.create(on("a")), Ok(3));
    assert_eq!(
        f.create(WatchCreate {
            watch_id: 0,
            ..on("b")
        }),
        Ok(4)
    );
    let responses = f.drain();
    let ids: Vec<i64> = responses.iter().map(|r| r.watch_id).collect();
    assert_eq!(ids, [1, 0, 2, 0, 3, 4]);
    assert!(responses[3].canceled && !responses[3].created);
    assert!(
        responses
            .iter()
            .all(|r| r.header_revision == 0 && r.cancel_reason.is_empty())
    );
    assert_eq!(f.w.watchers_len(), 4);
}

#[test]
fn created_carries_the_current_revision() {
    let mut f = fx();
    f.put("a", "1");
    f.put("a", "2");
    f.create(on("a")).unwrap();
    let created = f.drain();
    assert_eq!(created[0].header_revision, 2);
    assert!(created[0].created && created[0].events.is_empty());
}

#[test]
fn a_duplicate_watch_id_fails_the_create() {
    let mut f = fx();
    f.watch(WatchCreate {
        watch_id: 7,
        ..on("a")
    });
    let err = f
        .create(WatchCreate {
            watch_id: 7,
            ..on("b")
        })
        .unwrap_err();
    assert_eq!(err, Error::WatchIdDuplicate { watch_id: 7 });
    let failed = f.drain();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].created && failed[0].canceled);
    assert_eq!(failed[0].watch_id, INVALID_WATCH_ID);
    assert_eq!(
        failed[0].cancel_reason,
        "mvcc: duplicate watch ID provided on the WatchStream"
    );
    assert_eq!(f.w.watchers_len(), 1);
}

#[test]
fn a_range_that_holds_no_key_fails_the_create() {
    let mut f = fx();
    for (key, end) in [("b", "a"), ("b", "b")] {
        let request = WatchCreate {
            range_end: b(end),
            ..on(key)
        };
        assert_eq!(f.create(request), Err(Error::WatchRangeEmpty));
        let failed = f.drain();
        assert_eq!(failed[0].cancel_reason, "mvcc: watcher range is empty");
        assert_eq!(
            (failed[0].watch_id, failed[0].created, failed[0].canceled),
            (-1, true, true)
        );
    }
    // "\0" means every key from the key on, whatever the key.
    f.watch(WatchCreate {
        range_end: b("\0"),
        ..on("zzz")
    });
    assert_eq!(f.w.watchers_len(), 1);
}

#[test]
fn negative_ids_and_revisions_fail_the_create() {
    let mut f = fx();
    let err = f.create(WatchCreate {
        watch_id: -1,
        ..on("a")
    });
    assert_eq!(err, Err(Error::WatchIdNegative { watch_id: -1 }));
    let err = f.create(WatchCreate {
        start_revision: -3,
        ..on("a")
    });
    assert_eq!(
        err,
        Err(Error::WatchRevisionNegative { start_revision: -3 })
    );
    assert_eq!(
        f.drain()
            .iter()
            .filter(|r| r.canceled && r.watch_id == -1)
            .count(),
        2
    );
    assert_eq!(f.w.watchers_len(), 0);
}

#[test]
fn an_empty_key_watches_the_smallest_key() {
    let mut f = fx();
    f.watch(WatchCreate {
        key: Bytes::new(),
        range_end: b("\0"),
        ..WatchCreate::default()
    });
    f.watch(on("\0"));
    f.put("\0", "x");
    f.put("a", "y");
    let got = f.drain();
    assert_eq!(
        got.iter()
            .map(|r| (r.watch_id, keys(r)))
            .collect::<Vec<_>>(),
        [
            (0, vec!["\0".to_string()]),
            (1, vec!["\0".to_string()]),
            (0, vec!["a".to_string()]),
        ]
    );
}

#[test]
fn start_zero_sees_only_later_writes() {
    let mut f = fx();
    f.put("a", "1");
    let id = f.watch(on("a"));
    f.put("a", "2");
    f.put("b", "3");
    let got = f.drain();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].watch_id, got[0].header_revision), (id, 2));
    assert_eq!(got[0].events[0].kv.value, b("2"));
    assert!(!f.w.needs_sync());
}

#[test]
fn a_past_start_catches_up_from_history_then_follows_writes() {
    let mut f = fx();
    f.put("a", "1");
    f.put("b", "2");
    f.put("a", "3");
    let id = f.watch(WatchCreate {
        start_revision: 1,
        ..on("a")
    });
    assert!(f.w.needs_sync());
    assert_eq!(f.w.unsynced_len(), 1);
    f.put("a", "4"); // while unsynced: sync delivers it, notify must not
    assert!(f.drain().is_empty());
    let got = f.settle();
    assert_eq!(got.len(), 1, "one catch-up response with whole revisions");
    let revisions: Vec<i64> = got[0].events.iter().map(Event::revision).collect();
    assert_eq!(revisions, [1, 3, 4]);
    assert_eq!((got[0].watch_id, got[0].header_revision), (id, 4));
    assert_eq!(f.w.unsynced_len(), 0);
    f.put("a", "5");
    let got = f.drain();
    assert_eq!(
        (got[0].header_revision, got[0].events[0].revision()),
        (5, 5)
    );
}

#[test]
fn a_future_start_skips_earlier_writes() {
    let mut f = fx();
    f.put("a", "1");
    f.watch(WatchCreate {
        start_revision: 4,
        ..on("a")
    });
    assert!(!f.w.needs_sync());
    f.put("a", "2");
    f.put("a", "3");
    assert!(f.drain().is_empty());
    f.put("a", "4");
    f.put("a", "5");
    let revisions: Vec<i64> = f.drain().iter().map(|r| r.events[0].revision()).collect();
    assert_eq!(revisions, [4, 5]);
}

#[test]
fn a_compacted_start_is_canceled_with_the_compact_revision() {
    let mut f = fx();
    for v in ["1", "2", "3", "4"] {
        f.put("a", v);
    }
    f.h.compacted = 3;
    // Below the compaction point is compacted; at it is not (as in etcd: the store keeps what
    // a watch from there needs).
    for start in [1, 2] {
        let id = f
            .create(WatchCreate {
                start_revision: start,
                ..on("a")
            })
            .unwrap();
        let got = f.drain();
        assert_eq!(got.len(), 2);
        assert!(got[0].created && !got[0].canceled && got[0].watch_id == id);
        assert!(got[1].canceled && got[1].watch_id == id);
        // etcd 3.4.23's answer has no revision in its header (tests/gateway.rs sees it).
        assert_eq!((got[1].compact_revision, got[1].header_revision), (3, 0));
    }
    assert_eq!(f.w.watchers_len(), 0);
    f.watch(WatchCreate {
        start_revision: 3,
        ..on("a")
    });
    let got = f.settle();
    assert_eq!(got[0].events[0].revision(), 3);
}

#[test]
fn an_unsynced_watcher_overtaken_by_compaction_is_canceled() {
    let mut f = fx();
    for v in ["1", "2", "3"] {
        f.put("a", v);
    }
    let id = f.watch(WatchCreate {
        start_revision: 2,
        ..on("a")
    });
    f.put("a", "4");
    f.h.compacted = 3;
    let reads = f.h.reads.get();
    f.w.sync(&f.h).unwrap();
    assert_eq!(
        f.h.reads.get(),
        reads,
        "a compacted watcher needs no history read"
    );
    let got = f.drain();
    assert_eq!(got.len(), 1);
    assert!(got[0].canceled && got[0].events.is_empty());
    assert_eq!((got[0].watch_id, got[0].compact_revision), (id, 3));
    assert_eq!(f.w.watchers_len(), 0);
    assert!(!f.w.cancel(f.s, id), "already gone");
}

#[test]
fn cancel_answers_and_stops_events_and_ignores_unknown_ids() {
    let mut f = fx();
    let id = f.watch(on("a"));
    f.put("a", "1");
    assert!(f.w.cancel(f.s, id));
    f.put("a", "2");
    let got = f.drain();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].events.len(), 1);
    assert!(got[1].canceled && !got[1].created && got[1].watch_id == id);
    assert_eq!((got[1].header_revision, got[1].compact_revision), (1, 0));
    assert!(!f.w.cancel(f.s, id));
    assert!(!f.w.cancel(f.s, 99));
    assert!(f.drain().is_empty());
}

#[test]
fn prev_kv_only_for_watchers_that_ask() {
    let mut f = fx();
    f.put("a", "1");
    let plain = f.watch(on("a"));
    let with = f.watch(WatchCreate {
        prev_kv: true,
        ..on("a")
    });
    f.put("a", "2");
    f.write(&[("a", None)]);
    let got = f.drain();
    assert_eq!(got.len(), 4);
    for r in &got {
        let prev = r.events[0].prev_kv.as_ref();
        if r.watch_id == plain {
            assert!(prev.is_none());
        } else {
            assert_eq!(r.watch_id, with);
            let want = if r.header_revision == 2 { "1" } else { "2" };
            assert_eq!(prev.unwrap().value, b(want));
        }
    }
}

#[test]
fn filters_drop_puts_or_deletes_and_send_nothing_when_all_are_dropped() {
    let mut f = fx();
    let no_put = WatchFilters {
        no_put: true,
        no_delete: false,
    };
    let no_delete = WatchFilters {
        no_put: false,
        no_delete: true,
    };
    let p = f.watch(WatchCreate {
        filters: no_put,
        ..on("a")
    });
    let d = f.watch(WatchCreate {
        filters: no_delete,
        ..on("a")
    });
    f.put("a", "1");
    f.write(&[("a", None)]);
    let got = f.drain();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].watch_id, got[0].events[0].kind),
        (d, EventKind::Put)
    );
    assert_eq!(
        (got[1].watch_id, got[1].events[0].kind),
        (p, EventKind::Delete)
    );
}

#[test]
fn ranges_prefixes_and_from_key_match_their_keys_and_a_revision_travels_whole() {
    let mut f = fx();
    let range = f.watch(WatchCreate {
        range_end: b("c"),
        ..on("b")
    });
    let prefix = f.watch(WatchCreate {
        range_end: prefix_end(b"a"),
        ..on("a")
    });
    let from = f.watch(WatchCreate {
        range_end: b("\0"),
        ..on("b")
    });
    let all = f.watch(WatchCreate {
        key: b("\0"),
        range_end: b("\0"),
        ..on("")
    });
    f.write(&[
        ("a", Some("1")),
        ("ab", Some("2")),
        ("b", Some("3")),
        ("bz", Some("4")),
        ("c", Some("5")),
    ]);
    let got: BTreeMap<i64, Vec<String>> = f.drain().iter().map(|r| (r.watch_id, keys(r))).collect();
    assert_eq!(got.len(), 4, "one response per watcher for the revision");
    assert_eq!(got[&range], ["b", "bz"]);
    assert_eq!(got[&prefix], ["a", "ab"]);
    assert_eq!(got[&from], ["b", "bz", "c"]);
    assert_eq!(got[&all], ["a", "ab", "b", "bz", "c"]);
}

#[test]
fn a_slow_stream_falls_behind_without_holding_up_writers_or_other_streams() {
    let mut f = fx_with(WatchConfig {
        stream_responses_max: 2,
        ..config()
    });
    let slow = f.watch(on("a"));
    let fast_stream = f.w.open_stream();
    f.w.create(fast_stream, on("a"), &f.h).unwrap();
    f.drain_stream(fast_stream);
    let reads = f.h.reads.get();
    for i in 0..6 {
        f.put("a", &i.to_string());
        assert_eq!(
            f.drain_stream(fast_stream).len(),
            1,
            "the other stream keeps up"
        );
    }
    assert_eq!(f.h.reads.get(), reads, "notify never reads history");
    assert_eq!(f.w.unsynced_len(), 1);
    assert!(!f.w.needs_sync(), "a full stream gives sync nothing to do");
    let got = f.settle();
    let revisions: Vec<i64> = got
        .iter()
        .flat_map(|r| r.events.iter().map(Event::revision))
        .collect();
    assert_eq!(revisions, [1, 2, 3, 4, 5, 6]);
    assert!(got.iter().all(|r| r.watch_id == slow));
    assert!(f.h.reads.get() > reads);
    assert_eq!(f.w.unsynced_len(), 0);
    f.put("a", "again");
    assert_eq!(f.drain()[0].events[0].revision(), 7, "synced again");
}

#[test]
fn a_full_stream_takes_no_catch_up_until_drained() {
    let mut f = fx_with(WatchConfig {
        stream_responses_max: 1,
        ..config()
    });
    f.put("a", "0");
    f.watch(on("a"));
    f.watch(WatchCreate {
        start_revision: 1,
        ..on("a")
    });
    f.put("a", "1"); // fills the stream: the synced watcher's response
    f.put("a", "2"); // the synced watcher falls behind too
    assert_eq!(f.w.unsynced_len(), 2);
    assert!(!f.w.needs_sync());
    let reads = f.h.reads.get();
    f.w.sync(&f.h).unwrap();
    assert_eq!(f.h.reads.get(), reads);
    let first = f.w.poll_response(f.s).unwrap();
    assert_eq!(first.header_revision, 2);
    assert!(f.w.needs_sync());
    let got = f.settle();
    let mut per: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in std::iter::once(&first).chain(&got) {
        per.entry(r.watch_id)
            .or_default()
            .extend(r.events.iter().map(Event::revision));
    }
    assert_eq!(per[&0], [2, 3]);
    assert_eq!(per[&1], [1, 2, 3]);
}

#[test]
fn catch_up_reads_bounded_batches_and_headers_never_run_ahead() {
    let limits = WatchConfig {
        sync_events_max: 3,
        stream_responses_max: 1,
        ..config()
    };
    let mut f = fx_with(limits);
    for i in 0..10 {
        f.write(&[("a", Some(&i.to_string())), ("b", Some("x"))]);
    }
    f.watch(WatchCreate {
        start_revision: 1,
        ..on("a")
    });
    let mut delivered = 0;
    let mut calls = 0;
    while f.w.needs_sync() {
        let reads = f.h.reads.get();
        f.w.sync(&f.h).unwrap();
        calls += 1;
        assert_eq!(f.h.reads.get(), reads + 1, "one bounded read per call");
        for r in f.drain() {
            assert!(
                r.events.len() <= 2,
                "at most sync_events_max (3) rounded to whole revisions"
            );
            delivered += r.events.len();
            let last = r.events.last().unwrap().revision();
            assert_eq!(
                r.header_revision, last,
                "nothing matched after it in this window"
            );
        }
    }
    assert_eq!((delivered, calls), (10, 5));
}

#[test]
fn catch_up_groups_revisions_up_to_the_byte_limit() {
    let mut f = fx_with(WatchConfig {
        response_bytes_max: 200,
        ..config()
    });
    for _ in 0..6 {
        f.put("a", "0123456789"); // about 86 bytes with prev_kv
    }
    f.watch(WatchCreate {
        start_revision: 1,
        prev_kv: true,
        ..on("a")
    });
    let got = f.settle();
    let sizes: Vec<usize> = got.iter().map(|r| r.events.len()).collect();
    assert_eq!(sizes, [2, 2, 2]);
    let headers: Vec<i64> = got.iter().map(|r| r.header_revision).collect();
    assert_eq!(headers, [2, 4, 6]);
    for r in &got {
        assert!(r.events.iter().map(Event::size_bytes).sum::<usize>() <= 200);
    }
}

#[test]
fn fragment_splits_a_large_revision_and_only_for_watchers_that_ask() {
    let mut f = fx_with(WatchConfig {
        response_bytes_max: 100,
        ..config()
    });
    let whole = f.watch(WatchCreate {
        range_end: b("\0"),
        ..on("a")
    });
    let split = f.watch(WatchCreate {
        range_end: b("\0"),
        fragment: true,
        ..on("a")
    });
    let ops: Vec<(String, String)> = (0..5).map(|i| (format!("k{i}"), "v".repeat(30))).collect();
    let ops: Vec<(&str, Option<&str>)> = ops
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    f.write(&ops);
    let got = f.drain();
    assert_eq!(got[0].watch_id, whole);
    assert_eq!((got[0].events.len(), got[0].fragment), (5, false));
    let pieces = &got[1..];
    assert!(pieces.len() > 1);
    assert!(
        pieces
            .iter()
            .all(|p| p.watch_id == split && p.header_revision == 1)
    );
    let flags: Vec<bool> = pieces.iter().map(|p| p.fragment).collect();
    assert!(flags[..flags.len() - 1].iter().all(|&f| f) && !flags[flags.len() - 1]);
    let joined: Vec<Event> = pieces.iter().flat_map(|p| p.events.clone()).collect();
    assert_eq!(joined, got[0].events);
    for p in pieces {
        let bytes: usize = p.events.iter().map(Event::size_bytes).sum();
        assert!(bytes <= 100 || p.events.len() == 1);
    }
}

#[test]
fn a_fragmented_revision_takes_one_slot_and_pieces_stay_together() {
    let mut f = fx_with(WatchConfig {
        response_bytes_max: 60,
        stream_responses_max: 1,
        ..config()
    });
    f.watch(WatchCreate {
        range_end: b("\0"),
        fragment: true,
        ..on("a")
    });
    f.write(&[("a", Some("1")), ("b", Some("2")), ("c", Some("3"))]);
    f.write(&[("a", Some("4"))]);
    assert_eq!(f.w.unsynced_len(), 1, "one slot taken by the three pieces");
    let got = f.settle();
    let flags: Vec<(i64, bool)> = got
        .iter()
        .map(|r| (r.header_revision, r.fragment))
        .collect();
    assert_eq!(flags, [(1, true), (1, true), (1, false), (2, false)]);
}

#[test]
fn a_progress_request_answers_at_once_when_synced() {
    let mut f = fx();
    f.w.progress_request(f.s, &f.h).unwrap();
    let got = f.drain();
    assert_eq!(
        (got[0].watch_id, got[0].header_revision),
        (INVALID_WATCH_ID, 0),
        "no watchers"
    );
    f.put("a", "1");
    f.watch(on("a"));
    f.w.progress_request(f.s, &f.h).unwrap();
    let got = f.drain();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].watch_id, got[0].header_revision), (-1, 1));
    assert!(!got[0].created && !got[0].canceled && got[0].events.is_empty());
}

#[test]
fn a_progress_request_waits_for_catch_up_and_comes_after_the_events() {
    let mut f = fx_with(WatchConfig {
        stream_responses_max: 1,
        ..config()
    });
    for i in 0..3 {
        f.put("a", &i.to_string());
    }
    f.watch(WatchCreate {
        start_revision: 1,
        ..on("a")
    });
    f.w.progress_request(f.s, &f.h).unwrap();
    f.w.progress_request(f.s, &f.h).unwrap(); // joins the waiting one
    assert!(f.drain().is_empty(), "not before the watcher caught up");
    let got = f.settle();
    let progress: Vec<usize> = (0..got.len()).filter(|&i| got[i].watch_id == -1).collect();
    assert_eq!(progress, [got.len() - 1], "one answer, after every event");
    assert_eq!(got.last().unwrap().header_revision, 3);
    assert_eq!(got.iter().map(|r| r.events.len()).sum::<usize>(), 3);
}

#[test]
fn canceling_the_last_unsynced_watcher_answers_a_waiting_progress_request() {
    let mut f = fx();
    f.put("a", "1");
    let id = f.watch(WatchCreate {
        start_revision: 1,
        ..on("a")
    });
    f.w.progress_request(f.s, &f.h).unwrap();
    assert!(f.drain().is_empty());
    f.w.cancel(f.s, id);
    let got = f.drain();
    assert_eq!(got.len(), 2);
    assert!(got[0].canceled);
    assert_eq!((got[1].watch_id, got[1].header_revision), (-1, 1));
}

#[test]
fn ticks_notify_quiet_synced_watchers_that_asked() {
    let mut f = fx();
    assert_eq!(f.w.poll_timeout(), None);
    let quiet = f.watch(WatchCreate {
        progress_notify: true,
        ..on("a")
    });
    let busy = f.watch(WatchCreate {
        progress_notify: true,
        ..on("b")
    });
    f.watch(on("c"));
    assert_eq!(f.w.poll_timeout(), Some(1000));
    f.put("b", "1");
    f.drain();
    f.w.tick(999, &f.h);
    assert!(f.drain().is_empty(), "not before the interval");
    f.w.tick(1000, &f.h);
    let got = f.drain();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].watch_id, got[0].header_revision), (quiet, 1));
    assert!(got[0].events.is_empty() && !got[0].created && !got[0].canceled);
    assert_eq!(f.w.poll_timeout(), Some(2000));
    f.w.tick(2000, &f.h);
    let ids: Vec<i64> = f.drain().iter().map(|r| r.watch_id).collect();
    assert_eq!(ids, [quiet, busy], "busy was quiet this interval");
    f.w.cancel(f.s, quiet);
    f.w.cancel(f.s, busy);
    assert_eq!(f.w.poll_timeout(), None);
}

#[test]
fn ticks_skip_unsynced_watchers() {
    let mut f = fx();
    f.put("a", "1");
    f.watch(WatchCreate {
        progress_notify: true,
        start_revision: 1,
        ..on("a")
    });
    f.w.tick(1000, &f.h);
    assert!(f.drain().is_empty());
    f.settle();
    f.w.tick(2000, &f.h);
    assert!(
        f.drain().is_empty(),
        "the catch-up was its news for this interval"
    );
    f.w.tick(3000, &f.h);
    assert_eq!(f.drain().len(), 1);
}

#[test]
fn a_full_control_budget_refuses_creates_and_progress_requests_without_answering() {
    let mut f = fx_with(WatchConfig {
        control_responses_max: 2,
        ..config()
    });
    f.create(on("a")).unwrap();
    f.create(on("b")).unwrap();
    let full = Error::WatchStreamFull {
        control_responses_max: 2,
    };
    assert_eq!(f.create(on("c")), Err(full.clone()));
    assert_eq!(f.w.progress_request(f.s, &f.h), Err(full));
    assert_eq!(f.w.watchers_len(), 2);
    assert!(f.w.cancel(f.s, 0), "cancels are never refused");
    assert_eq!(f.drain().len(), 3);
    assert_eq!(f.create(on("c")), Ok(2));
}

#[test]
fn a_stream_holds_at_most_watchers_per_stream_max() {
    let mut f = fx_with(WatchConfig {
        watchers_per_stream_max: 2,
        ..config()
    });
    f.watch(on("a"));
    f.watch(on("b"));
    assert_eq!(
        f.create(on("c")),
        Err(Error::WatchersFull { watchers_max: 2 })
    );
    assert_eq!(
        f.drain()[0].cancel_reason,
        "mvcc: too many watchers on the WatchStream"
    );
    let other = f.w.open_stream();
    assert_eq!(
        f.w.create(other, on("c"), &f.h),
        Ok(0),
        "the limit is per stream"
    );
}

#[test]
fn closing_a_stream_drops_its_watchers_and_responses() {
    let mut f = fx();
    f.put("a", "1");
    f.watch(on("a"));
    f.watch(WatchCreate {
        start_revision: 1,
        progress_notify: true,
        ..on("a")
    });
    let other = f.w.open_stream();
    f.w.create(other, on("a"), &f.h).unwrap();
    f.put("a", "2");
    f.w.progress_request(f.s, &f.h).unwrap();
    f.w.close_stream(f.s);
    f.w.close_stream(f.s);
    assert_eq!(
        (f.w.watchers_len(), f.w.unsynced_len(), f.w.streams_len()),
        (1, 0, 1)
    );
    assert_eq!(f.w.poll_response(f.s), None);
    assert_eq!(f.w.ready_streams().collect::<Vec<_>>(), [other]);
    assert_eq!(f.w.poll_timeout(), None);
    assert!(!f.w.needs_sync());
}

#[test]
fn sync_serves_at_most_sync_watchers_max_per_call() {
    let mut f = fx_with(WatchConfig {
        sync_watchers_max: 2,
        ..config()
    });
    f.put("a", "1");
    for _ in 0..5 {
        f.watch(WatchCreate {
            start_revision: 1,
            ..on("a")
        });
    }
    f.w.sync(&f.h).unwrap();
    assert_eq!((f.drain().len(), f.w.unsynced_len()), (2, 3));
    f.w.sync(&f.h).unwrap();
    f.w.sync(&f.h).unwrap();
    assert_eq!((f.drain().len(), f.w.unsynced_len()), (3, 0));
}

#[test]
fn configs_with_a_zero_limit_are_refused() {
    assert_eq!(WatchConfig::default().validate(), Ok(()));
    let zero = WatchConfig {
        sync_events_max: 0,
        ..WatchConfig::default()
    };
    let why = "sync_events_max must be at least 1";
    assert_eq!(
        Watchers::new(zero, 0).unwrap_err(),
        Error::WatchConfigInvalid { why }
    );
    let zero = WatchConfig {
        progress_interval_ms: 0,
        ..WatchConfig::default()
    };
    assert!(zero.validate().is_err());
    assert_eq!(WatchConfig::default().response_bytes_max, 2 * 1024 * 1024);
}

#[test]
#[should_panic(expected = "once per revision")]
fn notify_refuses_a_skipped_revision() {
    let mut f = fx();
    f.put("a", "1");
    f.h.write(&[("a", Some("2"))]);
    let events = f.h.write(&[("a", Some("3"))]);
    f.w.notify(&events, &f.h);
}

#[test]
#[should_panic(expected = "without notifying")]
fn calls_refuse_a_store_that_wrote_without_notifying() {
    let mut f = fx();
    f.create(on("a")).unwrap();
    f.h.write(&[("a", Some("1"))]);
    f.w.sync(&f.h).unwrap();
}

#[test]
fn fan_out_to_ten_thousand_watchers_of_one_key_and_of_distinct_keys() {
    let mut f = fx_with(WatchConfig {
        control_responses_max: 256,
        ..config()
    });
    let streams: Vec<StreamId> = (0..100).map(|_| f.w.open_stream()).collect();
    for i in 0..10_000 {
        let s = streams[i % streams.len()];
        f.w.create(s, on("hot"), &f.h).unwrap();
        f.w.create(s, on(&format!("k{i:05}")), &f.h).unwrap();
    }
    for s in &streams {
        f.drain_stream(*s);
    }
    f.put("hot", "1");
    f.put("k04242", "1");
    let mut got = 0;
    for s in &streams {
        for r in f.drain_stream(*s) {
            assert_eq!(r.events.len(), 1);
            got += 1;
        }
    }
    assert_eq!(got, 10_001);
    assert_eq!(f.w.unsynced_len(), 0);
}
