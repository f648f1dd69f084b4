//! `sim bench-mvcc`: how fast the sans-IO MVCC store and its watchers are, single-threaded, in
//! memory. A program that prints figures, not a test: the numbers go to the README.

use crate::alloc_count::live_bytes;
use bytes::Bytes;
use oxcd::mvcc::{
    Compare, CompareResult, CompareTarget, KvStore, MemBackend, PutRequest, RangeRequest,
    RequestOp, TXN_OPS_MAX_DEFAULT, TxnRequest, WatchConfig, WatchCreate, Watchers,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Instant;

pub struct Options {
    pub keys: usize,
    pub value_bytes: usize,
    pub seed: u64,
}

/// One measured figure.
pub struct Figure {
    pub name: String,
    pub ops: u64,
    pub seconds: f64,
    pub unit: &'static str,
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<34} {:>10} {:<7} {:>8.3} s {:>14.0} {}/s",
            self.name,
            self.ops,
            self.unit,
            self.seconds,
            self.ops as f64 / self.seconds,
            self.unit
        )
    }
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("key/{i:010}"))
}

fn no_lease(_: i64) -> bool {
    false
}

fn timed(name: &str, unit: &'static str, ops: u64, f: impl FnOnce()) -> Figure {
    let started = Instant::now();
    f();
    Figure {
        name: name.into(),
        ops,
        seconds: started.elapsed().as_secs_f64(),
        unit,
    }
}

/// Runs the KV figures; returns them with the heap bytes each stored key costs.
pub fn run_kv(o: &Options) -> (Vec<Figure>, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let value = Bytes::from(vec![b'v'; o.value_bytes]);
    let mut order: Vec<usize> = (0..o.keys).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    // The requests' keys and values become the store's: count from before they are made.
    let before = live_bytes();
    let puts: Vec<PutRequest> = order
        .iter()
        .map(|&i| PutRequest {
            key: key(i),
            // A buffer of its own per key, as values arriving from clients have.
            value: Bytes::from(value.to_vec()),
            ..Default::default()
        })
        .collect();
    let mut figures = Vec::new();
    let mut store = KvStore::open(MemBackend::new()).expect("empty store opens");
    figures.push(timed(
        "put (new keys, random order)",
        "ops",
        o.keys as u64,
        || {
            for p in &puts {
                black_box(store.put(p, &no_lease).expect("put"));
            }
        },
    ));
    drop(puts);
    let bytes_per_key = (live_bytes().saturating_sub(before)) as f64 / o.keys as f64;

    let gets: Vec<RangeRequest> = (0..o.keys)
        .map(|_| RangeRequest {
            key: key(rng.gen_range(0..o.keys)),
            ..Default::default()
        })
        .collect();
    figures.push(timed("range, one key", "ops", gets.len() as u64, || {
        for g in &gets {
            black_box(store.range(g).expect("range"));
        }
    }));

    let span = 1000.min(o.keys);
    let wide: Vec<RangeRequest> = (0..1000)
        .map(|_| {
            let start = rng.gen_range(0..=o.keys - span);
            RangeRequest {
                key: key(start),
                range_end: key(start + span),
                ..Default::default()
            }
        })
        .collect();
    figures.push(timed("range, 1000 keys", "ops", wide.len() as u64, || {
        for g in &wide {
            let r = store.range(g).expect("range");
            assert_eq!(r.kvs.len(), span);
            black_box(r);
        }
    }));

    let txns: Vec<TxnRequest> = (0..o.keys)
        .map(|_| {
            let k = key(rng.gen_range(0..o.keys));
            TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Greater,
                    target: CompareTarget::Mod(0),
                    key: k.clone(),
                    range_end: Bytes::new(),
                }],
                success: vec![RequestOp::Put(PutRequest {
                    key: k.clone(),
                    value: value.clone(),
                    ..Default::default()
                })],
                failure: vec![RequestOp::Range(RangeRequest {
                    key: k,
                    ..Default::default()
                })],
            }
        })
        .collect();
    figures.push(timed(
        "txn (compare mod, put)",
        "ops",
        txns.len() as u64,
        || {
            for t in &txns {
                let w = store.txn(t, TXN_OPS_MAX_DEFAULT, &no_lease).expect("txn");
                assert!(w.response.succeeded);
                black_box(w);
            }
        },
    ));
    (figures, bytes_per_key)
}

/// Watch fan-out: `watchers` watchers spread over streams of `per_stream` watchers each, all on
/// one key (`distinct` false: every put reaches every watcher) or each on its own key (every
/// put reaches one). Each put is applied, notified, and every ready stream drained; the figure
/// counts events delivered.
pub fn run_watch(o: &Options, watchers: usize, per_stream: usize, distinct: bool) -> Figure {
    let mut rng = ChaCha8Rng::seed_from_u64(o.seed);
    let mut store = KvStore::open(MemBackend::new()).expect("empty store opens");
    let mut hub = Watchers::new(WatchConfig::default(), 0).expect("default config is valid");
    let keys: Vec<Bytes> = (0..watchers).map(key).collect();
    let streams: Vec<_> = (0..watchers.div_ceil(per_stream))
        .map(|_| hub.open_stream())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        let watched = if distinct { k.clone() } else { keys[0].clone() };
        hub.create(
            streams[i / per_stream],
            WatchCreate {
                key: watched,
                ..WatchCreate::default()
            },
            &store,
        )
        .expect("create");
        // A driver sends each `created` answer on before reading the client's next request.
        drain(&mut hub);
    }
    let puts = if distinct { o.keys } else { 200 };
    let value = Bytes::from(vec![b'v'; 64]);
    let requests: Vec<PutRequest> = (0..puts)
        .map(|_| PutRequest {
            key: if distinct {
                keys[rng.gen_range(0..watchers)].clone()
            } else {
                keys[0].clone()
            },
            value: value.clone(),
            ..Default::default()
        })
        .collect();
    let mut events = 0u64;
    let name = if distinct {
        format!("watch, {watchers} watchers on distinct keys")
    } else {
        format!("watch, {watchers} watchers on one key")
    };
    let mut figure = timed(&name, "events", 0, || {
        for p in &requests {
            let w = store.put(p, &no_lease).expect("put");
            hub.notify(&w.events, &store);
            events += drain(&mut hub);
        }
    });
    assert_eq!(hub.unsynced_len(), 0, "every watcher kept up");
    let expected = if distinct { puts } else { puts * watchers };
    assert_eq!(events, expected as u64, "every event delivered once");
    figure.ops = events;
    figure
}

/// Drains every ready stream; returns the events delivered.
fn drain(hub: &mut Watchers) -> u64 {
    let ready: Vec<_> = hub.ready_streams().collect();
    let mut events = 0;
    for s in ready {
        while let Some(r) = hub.poll_response(s) {
            events += r.events.len() as u64;
            black_box(r);
        }
    }
    events
}
