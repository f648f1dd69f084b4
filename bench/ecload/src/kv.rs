//! The request-response workloads on keys: put (optionally behind slow watchers), range and
//! txn-put, and the driver the other families reuse for their puts: `--clients` tasks on the
//! connections in turn, taking request numbers from one counter until its total.
//!
//! It does not open the connections of the run (see `connect_all`), only the slow watchers'
//! own ones.

use crate::report::{Report, Tally, why};
use crate::{Args, Work, connect, connect_all};
use etcd_client::{Client, GetOptions, KvClient, Txn, TxnOp, WatchOptions, WatchStream};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What each request of a [`requests`] run is.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    /// A put into a key of the key space.
    Put,
    /// A get of the key space's first key.
    Range { serializable: bool },
    /// A transaction with no compare and one put into a key of the key space.
    TxnPut,
    /// A put of request number `i` into "big/<i>".
    BigPut,
    /// A put of request number `i` into "w/<i % keys>": every key in turn.
    WatchedPut { keys: u64 },
}

/// `total` requests of `op` by `--clients` tasks over `conns` (in turn); their tally and the
/// wall time from the first task's start to the last one's end.
pub(crate) async fn requests(
    args: &Arc<Args>,
    conns: &[Client],
    op: Op,
    total: u64,
) -> Result<(Tally, Duration), String> {
    let work = Arc::new(Work::new(total));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for c in 0..args.clients {
        let kv = conns[c % conns.len()].kv_client();
        let (args, work) = (args.clone(), work.clone());
        let rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(c as u64));
        tasks.push(tokio::spawn(client(args, kv, work, op, rng)));
    }
    let mut tally = Tally::new();
    for t in tasks {
        tally.merge(t.await.map_err(|e| e.to_string())?);
    }
    Ok((tally, started.elapsed()))
}

/// One client: requests until the counter runs out.
async fn client(
    args: Arc<Args>,
    mut kv: KvClient,
    work: Arc<Work>,
    op: Op,
    mut rng: ChaCha8Rng,
) -> Tally {
    let mut tally = Tally::new();
    let value = args.value();
    let first_key = args.key(0);
    while let Some(i) = work.take() {
        match op {
            Op::Put => {
                let key = args.key(args.key_index(i, &mut rng));
                let t = Instant::now();
                tally.settle(t, kv.put(key, value.clone(), None).await);
            }
            Op::Range { serializable } => {
                let options = serializable.then(|| GetOptions::new().with_serializable());
                let t = Instant::now();
                tally.settle(t, kv.get(first_key.clone(), options).await);
            }
            Op::TxnPut => {
                let key = args.key(args.key_index(i, &mut rng));
                let txn = Txn::new().and_then([TxnOp::put(key, value.clone(), None)]);
                let t = Instant::now();
                tally.settle(t, kv.txn(txn).await);
            }
            Op::BigPut => {
                let key = format!("big/{i}");
                let t = Instant::now();
                tally.settle(t, kv.put(key, value.clone(), None).await);
            }
            Op::WatchedPut { keys } => {
                let key = format!("w/{}", i % keys);
                let t = Instant::now();
                tally.settle(t, kv.put(key, value.clone(), None).await);
            }
        }
    }
    tally
}

/// A report of `total` requests, `tally.errors` of which failed.
pub(crate) fn report(
    name: &'static str,
    total: u64,
    (tally, elapsed): (Tally, Duration),
) -> Report {
    Report::new(name, total - tally.errors, tally, elapsed)
}

/// `put`: after opening `slow_watchers` watch streams that are never read.
pub(crate) async fn put(args: Arc<Args>, slow_watchers: usize) -> Result<Report, String> {
    let conns = connect_all(&args).await?;
    // Held open (and unread) until the report is made.
    let watchers = open_slow_watchers(&args, slow_watchers).await?;
    let run = requests(&args, &conns, Op::Put, args.total).await?;
    let report = report("put", args.total, run).with("slow_watchers", slow_watchers);
    drop(watchers);
    Ok(report)
}

/// `k` watch streams, each on its own connection (endpoints in turn), each watching every key;
/// only the answer to the create request is read, so the server must hold or drop the rest.
async fn open_slow_watchers(args: &Args, k: usize) -> Result<Vec<(Client, WatchStream)>, String> {
    let mut open = Vec::with_capacity(k);
    for i in 0..k {
        let client = connect(&args.endpoints[i % args.endpoints.len()]).await?;
        let mut stream = client
            .watch_client()
            .watch("", Some(WatchOptions::new().with_all_keys()))
            .await
            .map_err(|e| format!("slow watcher {i}: {}", why(e)))?;
        match stream.message().await {
            Ok(Some(r)) if r.created() => {}
            Ok(_) => return Err(format!("slow watcher {i} was not created")),
            Err(e) => return Err(format!("slow watcher {i}: {}", why(e))),
        }
        open.push((client, stream));
    }
    Ok(open)
}

/// `range`: gets of the key space's first key.
pub(crate) async fn range(args: Arc<Args>, serializable: bool) -> Result<Report, String> {
    let conns = connect_all(&args).await?;
    let run = requests(&args, &conns, Op::Range { serializable }, args.total).await?;
    Ok(report("range", args.total, run))
}

/// `txn-put`: one-put transactions.
pub(crate) async fn txn_put(args: Arc<Args>) -> Result<Report, String> {
    let conns = connect_all(&args).await?;
    let run = requests(&args, &conns, Op::TxnPut, args.total).await?;
    Ok(report("txn-put", args.total, run))
}
