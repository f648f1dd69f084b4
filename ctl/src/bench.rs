//! `oxctl bench`: a load generator in the spirit of etcd's `benchmark` tool, for any etcd v3
//! endpoint (oxcd or etcd itself), so both are measured with the same client.
//!
//! This module owns the workloads (put, range, txn-put, watch-latency, lease-keepalive), the
//! spread of clients over connections and of connections over endpoints, the latency
//! histogram and the summary it prints (text, or one JSON object with `-w json`). It keeps
//! nothing between runs and decides nothing about what a figure should be: `bench/compare`
//! runs it against both servers and compares.
//!
//! Every request is timed from just before it is sent to when its answer is in; a failed
//! request is counted, not timed, and makes the run exit non-zero after the summary.
//!
//! Security is the global flags': TLS as [`Dial`] says, and with `--user` each connection
//! logs in once before the clock starts (as etcd's `benchmark` logs in once per client it
//! creates) and every request carries that connection's token. A unary request refused
//! because its token went stale (a JWT past its expiry, 5 minutes after the login by
//! default; a simple token unused for `--auth-token-ttl`, which a running bench never leaves
//! it; a change to users or roles) is sent again with a fresh token, as
//! [`token`](super::token) does for every command. The streams of `watch-latency` and
//! `lease-keepalive` keep the token they were opened with and are not reopened.
//!
//! With `--gateway`, put and range go over etcd's JSON gateway on HTTP/1.1 instead
//! ([`gateway`]), without TLS or auth.

mod gateway;

use super::token::{self, Authed, Credentials};
use super::{CtlError, Dial, EXIT_BAD_ARGS, EXIT_ERROR, connect, kv, lease, rpc_error};
use bytes::Bytes;
use hdrhistogram::Histogram;
use oxcd::pb::etcdserverpb as pb;
use pb::watch_client::WatchClient;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Largest latency the histogram holds; a slower request is recorded as this.
const LATENCY_US_MAX: u64 = 60_000_000;
/// How long watchers may take, after the last put was answered, to see its event.
const WATCH_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two redraws of the progress bar.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// Time to live of the leases `lease-keepalive` renews.
const BENCH_LEASE_TTL_S: i64 = 60;

/// Flags shared by every workload.
#[derive(clap::Args, Clone, Debug)]
pub struct BenchArgs {
    /// Number of connections, gRPC or (with --gateway) HTTP/1.1 keep-alive (spread over the
    /// endpoints in turn).
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Number of concurrent clients (spread over the connections in turn).
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Total number of requests (for watch-latency: of puts).
    #[arg(long, global = true, default_value_t = 10_000)]
    total: u64,
    /// Size of each key, in bytes.
    #[arg(long = "key-size", global = true, default_value_t = 8)]
    key_size: usize,
    /// Size of each value, in bytes.
    #[arg(long = "val-size", global = true, default_value_t = 8)]
    val_size: usize,
    /// Number of distinct keys written.
    #[arg(long = "key-space", global = true, default_value_t = 1)]
    key_space: u64,
    /// Write keys 0, 1, 2, ... in turn instead of at random.
    #[arg(long = "sequential-keys", global = true)]
    sequential_keys: bool,
    /// Seed of the random key choice (each client draws from its own stream).
    #[arg(long, global = true, default_value_t = 1)]
    seed: u64,
    /// put and range only: send them as JSON to the gateway's /v3/kv/put and /v3/kv/range
    /// over HTTP/1.1 (plain, no auth), the clients of a connection taking turns on it.
    #[arg(long, global = true)]
    gateway: bool,
    /// put and range only: send them to the v2 API (`PUT /v2/keys/<key>`, `GET` with
    /// `quorum=true` for linearizable reads) over HTTP/1.1 (plain, no auth); servers need
    /// `--enable-v2`.
    #[arg(long, global = true)]
    v2: bool,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(clap::Subcommand, Clone, Debug)]
enum Workload {
    /// Puts values into keys of the key space.
    Put,
    /// Ranges over one key (by default the key space's first) or [key, range_end).
    Range {
        // Not the id `key`: that is the global TLS flag's, and clap panics on the clash.
        #[arg(id = "range-key", value_name = "KEY")]
        key: Option<String>,
        range_end: Option<String>,
        /// l (linearizable) or s (serializable).
        #[arg(long, default_value = "l")]
        consistency: String,
    },
    /// Puts values in transactions.
    TxnPut {
        /// Puts per transaction (distinct keys).
        #[arg(long = "txn-ops", default_value_t = 1)]
        txn_ops: u64,
    },
    /// Watchers on one key; measures put-sent to event-received for every watcher.
    WatchLatency {
        /// Number of watchers (spread over the connections in turn).
        #[arg(long, default_value_t = 10)]
        watchers: usize,
    },
    /// Each client grants a lease and keeps renewing it over a keep-alive stream.
    LeaseKeepalive,
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range { .. } => "range",
            Workload::TxnPut { .. } => "txn-put",
            Workload::WatchLatency { .. } => "watch-latency",
            Workload::LeaseKeepalive => "lease-keepalive",
        }
    }
}

/// Whether `--consistency` asks for serializable reads (`s`) or linearizable ones (`l`).
fn serializable(consistency: &str) -> Result<bool, CtlError> {
    match consistency {
        "l" => Ok(false),
        "s" => Ok(true),
        other => Err(CtlError::new(
            EXIT_BAD_ARGS,
            format!("unknown consistency flag {other:?}"),
        )),
    }
}

/// What a run measured.
pub struct Report {
    workload: &'static str,
    /// Operations completed (for watch-latency: events delivered).
    ops: u64,
    errors: u64,
    /// The first error seen, to show why.
    first_error: Option<String>,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

impl Report {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    /// One JSON object, for scripts.
    pub fn json(&self) -> String {
        let h = &self.latency_us;
        serde_json::json!({
            "workload": self.workload,
            "total": self.ops,
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": self.elapsed.as_secs_f64(),
            "ops_per_sec": self.ops_per_sec(),
            "latency_ms": {
                "mean": h.mean() / 1000.0,
                "stddev": h.stdev() / 1000.0,
                "min": h.min() as f64 / 1000.0,
                "p50": self.ms(0.50),
                "p90": self.ms(0.90),
                "p99": self.ms(0.99),
                "p999": self.ms(0.999),
                "max": h.max() as f64 / 1000.0,
            },
        })
        .to_string()
            + "\n"
    }

    /// etcd benchmark's summary, with the percentiles in milliseconds.
    pub fn text(&self) -> String {
        let h = &self.latency_us;
        let secs = |us: f64| us / 1e6;
        let mut s = format!(
            "\nSummary ({}):\n  Total:\t{:.4} secs.\n  Slowest:\t{:.4} secs.\n  Fastest:\t{:.4} secs.\n  \
             Average:\t{:.4} secs.\n  Stddev:\t{:.4} secs.\n  {}/sec:\t{:.4}\n\nLatency percentiles:\n",
            self.workload,
            self.elapsed.as_secs_f64(),
            secs(h.max() as f64),
            secs(h.min() as f64),
            secs(h.mean()),
            secs(h.stdev()),
            if self.workload == "watch-latency" {
                "Events"
            } else {
                "Requests"
            },
            self.ops_per_sec(),
        );
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            s += &format!("  {name}:\t{:.3} ms\n", self.ms(q));
        }
        s += &format!("  max:\t{:.3} ms\n", h.max() as f64 / 1000.0);
        if self.errors > 0 {
            s += &format!(
                "\nErrors: {} (first: {})\n",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            );
        }
        s
    }

    /// The run as a command result: failed requests make it fail.
    pub fn verdict(&self) -> Result<(), CtlError> {
        if self.errors == 0 {
            Ok(())
        } else {
            Err(CtlError::new(
                EXIT_ERROR,
                format!("{} of the requests failed", self.errors),
            ))
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// What each client task hands back.
struct Tally {
    latency_us: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency_us: histogram(),
            errors: 0,
            first_error: None,
        }
    }

    fn record(&mut self, started: Instant) {
        let us = (started.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
        self.latency_us.record(us).expect("clamped into bounds");
    }

    /// Times an answer, or counts a failure.
    fn settle<T>(&mut self, started: Instant, answer: Result<T, tonic::Status>) {
        match answer {
            Ok(_) => self.record(started),
            Err(s) => self.fail(rpc_error(s).message),
        }
    }

    fn fail(&mut self, why: String) {
        self.errors += 1;
        self.first_error.get_or_insert(why);
    }

    fn merge(&mut self, other: Tally) {
        self.latency_us.add(other.latency_us).expect("same bounds");
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// The shared work counter: hands out request numbers until `total`, and counts completions
/// for the progress bar.
struct Work {
    next: AtomicU64,
    done: AtomicU64,
    total: u64,
}

impl Work {
    fn take(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.total).then_some(i)
    }

    fn finish_one(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Draws `[=====>    ] 12345/20000` on stderr while the run lasts, when stderr is a terminal.
fn progress(work: Arc<Work>, total: u64) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        const WIDTH: u64 = 40;
        loop {
            let done = work.done.load(Ordering::Relaxed).min(total);
            let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
            let bar: String = (0..WIDTH)
                .map(|i| match i.cmp(&filled) {
                    std::cmp::Ordering::Less => '=',
                    std::cmp::Ordering::Equal => '>',
                    std::cmp::Ordering::Greater => ' ',
                })
                .collect();
            {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r[{bar}] {done}/{total}");
                if done >= total {
                    let _ = writeln!(err);
                }
                let _ = err.flush();
            }
            if done >= total {
                return;
            }
            tokio::time::sleep(PROGRESS_INTERVAL).await;
        }
    }))
}

impl BenchArgs {
    /// The bytes of key number `i`: its decimal digits, zero-padded to the key size.
    fn key(&self, i: u64) -> Bytes {
        Bytes::from(format!("{i:0width$}", width = self.key_size))
    }

    fn value(&self) -> Bytes {
        Bytes::from(vec![b'v'; self.val_size])
    }

    /// Which key request `i` of a client writes.
    fn key_index(&self, i: u64, rng: &mut ChaCha8Rng) -> u64 {
        if self.sequential_keys {
            i % self.key_space
        } else {
            rng.gen_range(0..self.key_space)
        }
    }

    fn check(&self) -> Result<(), CtlError> {
        let bad = |m: &str| Err(CtlError::new(EXIT_BAD_ARGS, m.to_string()));
        if self.conns == 0 || self.clients == 0 {
            return bad("--conns and --clients must be at least 1");
        }
        if self.key_space == 0 {
            return bad("--key-space must be at least 1");
        }
        if let Workload::TxnPut { txn_ops } = self.workload
            && (txn_ops == 0 || txn_ops > self.key_space)
        {
            return bad("--txn-ops must be between 1 and --key-space");
        }
        if matches!(self.workload, Workload::WatchLatency { .. }) && self.val_size < 8 {
            return bad("watch-latency needs --val-size of at least 8 (the put's number)");
        }
        if self.gateway && !matches!(self.workload, Workload::Put | Workload::Range { .. }) {
            return bad("--gateway runs put and range only");
        }
        if self.v2 && !matches!(self.workload, Workload::Put | Workload::Range { .. }) {
            return bad("--v2 runs put and range only");
        }
        if self.v2 && self.gateway {
            return bad("--v2 and --gateway are two ways to send the same request: pick one");
        }
        Ok(())
    }

    /// Opens the connections (logged in as `credentials`, if any), runs the workload, and
    /// reports.
    pub async fn run(
        &self,
        endpoints: &[String],
        dial: &Dial,
        credentials: Option<&Credentials>,
    ) -> Result<Report, CtlError> {
        self.check()?;
        if endpoints.is_empty() {
            return Err(CtlError::new(EXIT_BAD_ARGS, "no endpoints".into()));
        }
        let args = Arc::new(self.clone());
        if self.gateway || self.v2 {
            let bad = |m: &str| Err(CtlError::new(EXIT_BAD_ARGS, m.to_string()));
            let flag = if self.v2 { "--v2" } else { "--gateway" };
            if credentials.is_some() {
                return bad(&format!("{flag} does not log in: no --user"));
            }
            let plain = |ep: &String| !ep.contains("://") || ep.starts_with("http://");
            if dial.secure || !endpoints.iter().all(plain) {
                return bad(&format!(
                    "{flag} speaks plain HTTP: no TLS flags, no https:// endpoints"
                ));
            }
            let mut conns = Vec::with_capacity(self.conns);
            for i in 0..self.conns {
                let ep = &endpoints[i % endpoints.len()];
                let conn = gateway::Conn::open(ep, dial.timeout).await?;
                conns.push(Link::Gateway(Arc::new(conn)));
            }
            return requests(args, conns).await;
        }
        let mut conns = Vec::with_capacity(self.conns);
        for i in 0..self.conns {
            let ep = &endpoints[i % endpoints.len()];
            let ch = connect(std::slice::from_ref(ep), dial).await?;
            conns.push(token::authed(ch, credentials, dial.timeout).await?);
        }
        match &self.workload {
            Workload::WatchLatency { watchers } => watch_latency(args, conns, *watchers).await,
            _ => requests(args, conns.into_iter().map(Link::Grpc).collect()).await,
        }
    }
}

/// A connection that clients of the request-response workloads share.
#[derive(Clone)]
enum Link {
    /// A gRPC channel, logged in if the run is.
    Grpc(Authed),
    /// An HTTP/1.1 connection to the JSON gateway (`--gateway`).
    Gateway(Arc<gateway::Conn>),
}

/// The request-response workloads: `clients` tasks take request numbers until `total`.
async fn requests(args: Arc<BenchArgs>, conns: Vec<Link>) -> Result<Report, CtlError> {
    let work = Arc::new(Work {
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        total: args.total,
    });
    let bar = progress(work.clone(), args.total);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.clients);
    for c in 0..args.clients {
        let link = conns[c % conns.len()].clone();
        let (args, work) = (args.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            let rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(c as u64));
            match link {
                Link::Grpc(ch) => client(&args, ch, &work, rng).await,
                Link::Gateway(conn) => gateway::client(&args, conn, &work, rng).await,
            }
        }));
    }
    let mut tally = Tally::new();
    for t in tasks {
        tally.merge(
            t.await
                .map_err(|e| CtlError::new(EXIT_ERROR, e.to_string()))??,
        );
    }
    let elapsed = started.elapsed();
    if let Some(bar) = bar {
        let _ = bar.await;
    }
    Ok(Report {
        workload: args.workload.name(),
        ops: args.total - tally.errors,
        errors: tally.errors,
        first_error: tally.first_error,
        elapsed,
        latency_us: tally.latency_us,
    })
}

/// One client of a request-response workload.
async fn client(
    args: &BenchArgs,
    ch: Authed,
    work: &Work,
    mut rng: ChaCha8Rng,
) -> Result<Tally, CtlError> {
    let mut tally = Tally::new();
    let value = args.value();
    let mut kv = kv(ch.clone());
    match &args.workload {
        Workload::Put => {
            while let Some(i) = work.take() {
                let key = args.key(args.key_index(i, &mut rng));
                let req = pb::PutRequest {
                    key,
                    value: value.clone(),
                    ..Default::default()
                };
                let t = Instant::now();
                tally.settle(t, kv.put(req).await);
                work.finish_one();
            }
        }
        Workload::Range {
            key,
            range_end,
            consistency,
        } => {
            let serializable = serializable(consistency)?;
            let key = key
                .as_ref()
                .map_or_else(|| args.key(0), |k| Bytes::from(k.clone()));
            let range_end = Bytes::from(range_end.clone().unwrap_or_default());
            while work.take().is_some() {
                let req = pb::RangeRequest {
                    key: key.clone(),
                    range_end: range_end.clone(),
                    serializable,
                    ..Default::default()
                };
                let t = Instant::now();
                tally.settle(t, kv.range(req).await);
                work.finish_one();
            }
        }
        Workload::TxnPut { txn_ops } => {
            while let Some(i) = work.take() {
                let first = args.key_index(i * txn_ops, &mut rng);
                let success = (0..*txn_ops)
                    .map(|j| pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                            key: args.key((first + j) % args.key_space),
                            value: value.clone(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                let req = pb::TxnRequest {
                    success,
                    ..Default::default()
                };
                let t = Instant::now();
                tally.settle(t, kv.txn(req).await);
                work.finish_one();
            }
        }
        Workload::LeaseKeepalive => {
            let mut lease = lease(ch);
            let id = lease
                .lease_grant(pb::LeaseGrantRequest {
                    ttl: BENCH_LEASE_TTL_S,
                    id: 0,
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .id;
            // etcd (grpc-go) sends nothing, not even the response headers, before the first
            // request: the first one is queued before the call waits for them.
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let mut rx = Some(rx);
            let mut stream = None;
            while work.take().is_some() {
                let t = Instant::now();
                let mut answer = Ok(None);
                if tx.send(pb::LeaseKeepAliveRequest { id }).await.is_ok() {
                    if let Some(rx) = rx.take() {
                        let rx = tokio_stream::wrappers::ReceiverStream::new(rx);
                        let opened = lease.lease_keep_alive(rx).await.map_err(rpc_error)?;
                        stream = Some(opened.into_inner());
                    }
                    answer = stream.as_mut().expect("opened above").message().await;
                }
                match answer {
                    Ok(Some(r)) if r.ttl > 0 => tally.record(t),
                    Ok(Some(_)) => tally.fail("the lease expired".into()),
                    Ok(None) => tally.fail("the keep-alive stream ended".into()),
                    Err(s) => tally.fail(rpc_error(s).message),
                }
                work.finish_one();
            }
            drop(tx);
            let _ = lease.lease_revoke(pb::LeaseRevokeRequest { id }).await;
        }
        Workload::WatchLatency { .. } => unreachable!("watch-latency has its own runner"),
    }
    Ok(tally)
}

/// `watchers` watch streams on one key; `clients` putters put `total` times into it, each
/// value carrying the put's number, so every watcher times each event from its put's send.
async fn watch_latency(
    args: Arc<BenchArgs>,
    conns: Vec<Authed>,
    watchers: usize,
) -> Result<Report, CtlError> {
    let key = args.key(0);
    let events_total = args.total * watchers as u64;
    let work = Arc::new(Work {
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        total: args.total,
    });
    // Nanoseconds after `origin` at which put i was sent (0: not yet).
    let origin = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..args.total).map(|_| AtomicU64::new(0)).collect());
    let delivered = Arc::new(Work {
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        total: events_total,
    });

    // Every watcher is created before the first put.
    let mut streams = Vec::with_capacity(watchers);
    for w in 0..watchers {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: key.clone(),
                    ..Default::default()
                },
            )),
        };
        tx.send(create).await.expect("the channel is open");
        let mut stream = WatchClient::new(conns[w % conns.len()].clone())
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(rpc_error)?
            .into_inner();
        match stream.message().await.map_err(rpc_error)? {
            Some(r) if r.created => {}
            _ => {
                return Err(CtlError::new(
                    EXIT_ERROR,
                    "the watch was not created".into(),
                ));
            }
        }
        streams.push((tx, stream));
    }

    let bar = progress(delivered.clone(), events_total);
    let started = Instant::now();
    let mut watch_tasks = Vec::with_capacity(watchers);
    for (tx, mut stream) in streams {
        let (sent, delivered) = (sent.clone(), delivered.clone());
        let per_watcher = args.total;
        watch_tasks.push(tokio::spawn(async move {
            let _keep_open = tx;
            let mut tally = Tally::new();
            let mut seen = 0u64;
            while seen < per_watcher {
                let r = match stream.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        tally.fail("the watch stream ended".into());
                        break;
                    }
                    Err(s) => {
                        tally.fail(rpc_error(s).message);
                        break;
                    }
                };
                let now = origin.elapsed().as_nanos() as u64;
                for e in &r.events {
                    let Some(kv) = &e.kv else { continue };
                    let Some(n) = kv.value.get(..8) else { continue };
                    let n = u64::from_be_bytes(n.try_into().expect("8 bytes")) as usize;
                    let Some(at) = sent.get(n).map(|s| s.load(Ordering::Acquire)) else {
                        continue;
                    };
                    let us = (now.saturating_sub(at) / 1000).clamp(1, LATENCY_US_MAX);
                    tally.latency_us.record(us).expect("clamped into bounds");
                    seen += 1;
                    delivered.finish_one();
                }
            }
            tally
        }));
    }

    let mut put_tasks = Vec::with_capacity(args.clients);
    for c in 0..args.clients {
        let mut kv = kv(conns[c % conns.len()].clone());
        let (args, work, sent, key) = (args.clone(), work.clone(), sent.clone(), key.clone());
        put_tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            while let Some(i) = work.take() {
                let mut value = vec![b'v'; args.val_size];
                value[..8].copy_from_slice(&i.to_be_bytes());
                let at = (origin.elapsed().as_nanos() as u64).max(1);
                sent[i as usize].store(at, Ordering::Release);
                let req = pb::PutRequest {
                    key: key.clone(),
                    value: Bytes::from(value),
                    ..Default::default()
                };
                if let Err(s) = kv.put(req).await {
                    tally.fail(rpc_error(s).message);
                }
            }
            tally
        }));
    }

    let mut tally = Tally::new();
    let join = |e: tokio::task::JoinError| CtlError::new(EXIT_ERROR, e.to_string());
    let mut put_errors = Tally::new();
    for t in put_tasks {
        put_errors.merge(t.await.map_err(join)?);
    }
    let mut timed_out = 0;
    for t in watch_tasks {
        match tokio::time::timeout(WATCH_DRAIN_TIMEOUT, t).await {
            Ok(r) => tally.merge(r.map_err(join)?),
            Err(_) => timed_out += 1,
        }
    }
    let elapsed = started.elapsed();
    if let Some(bar) = bar {
        bar.abort();
        eprintln!();
    }
    let delivered = delivered.done.load(Ordering::Relaxed);
    // A failed put has no event to wait for, and a watcher short of events is an error.
    if put_errors.errors == 0 && delivered < events_total {
        tally.fail(format!(
            "{} of {events_total} events not delivered ({timed_out} watchers timed out)",
            events_total - delivered
        ));
    }
    tally.merge(put_errors);
    Ok(Report {
        workload: "watch-latency",
        ops: delivered,
        errors: tally.errors,
        first_error: tally.first_error,
        elapsed,
        latency_us: tally.latency_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchArgs {
        Cmd::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .unwrap()
            .bench
    }

    #[test]
    fn flags_go_before_or_after_the_workload() {
        let a = parse(&[
            "--clients",
            "100",
            "put",
            "--conns",
            "10",
            "--key-space",
            "5",
        ]);
        assert_eq!((a.clients, a.conns, a.key_space), (100, 10, 5));
        assert!(matches!(a.workload, Workload::Put));
        let a = parse(&["range", "k", "--consistency", "s"]);
        let Workload::Range {
            key, consistency, ..
        } = a.workload
        else {
            panic!("range");
        };
        assert_eq!((key.as_deref(), consistency.as_str()), (Some("k"), "s"));
        assert!(!a.gateway);
        let a = parse(&["range", "--gateway", "--consistency", "s"]);
        assert!(a.gateway && a.check().is_ok());
        assert!(parse(&["--gateway", "put"]).gateway);
    }

    #[test]
    fn the_gateway_refuses_tls_and_auth_before_it_connects() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let a = parse(&["--gateway", "put"]);
        let plain = Dial {
            timeout: Duration::from_secs(1),
            tls: None,
            secure: false,
        };
        let secure = Dial {
            secure: true,
            ..plain.clone()
        };
        let root = Credentials {
            user: "root".into(),
            password: "pw".into(),
        };
        // Nothing listens on port 9 (discard): a connection attempt would fail with another code.
        for (ep, dial, credentials) in [
            ("127.0.0.1:9", &plain, Some(&root)),
            ("https://127.0.0.1:9", &plain, None),
            ("127.0.0.1:9", &secure, None),
        ] {
            let refused = rt.block_on(a.run(&[ep.to_string()], dial, credentials));
            assert_eq!(refused.err().map(|e| e.code), Some(EXIT_BAD_ARGS), "{ep}");
        }
    }

    #[test]
    fn keys_are_padded_numbers_and_stay_in_the_key_space() {
        let a = parse(&[
            "--key-size",
            "6",
            "--key-space",
            "3",
            "--sequential-keys",
            "put",
        ]);
        assert_eq!(a.key(42), Bytes::from_static(b"000042"));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let picked: Vec<u64> = (0..5).map(|i| a.key_index(i, &mut rng)).collect();
        assert_eq!(picked, [0, 1, 2, 0, 1]);
        let a = parse(&["--key-space", "3", "put"]);
        assert!((0..100).all(|i| a.key_index(i, &mut rng) < 3));
    }

    #[test]
    fn bad_flags_are_refused() {
        for args in [
            &["--clients", "0", "put"][..],
            &["--key-space", "0", "put"],
            &["--key-space", "2", "txn-put", "--txn-ops", "3"],
            &["--val-size", "4", "watch-latency"],
            &["--gateway", "txn-put"],
            &["lease-keepalive", "--gateway"],
        ] {
            assert_eq!(
                parse(args).check().unwrap_err().code,
                EXIT_BAD_ARGS,
                "{args:?}"
            );
        }
    }

    #[test]
    fn the_report_counts_and_orders_percentiles() {
        let mut latency_us = histogram();
        for us in 1..=1000 {
            latency_us.record(us).unwrap();
        }
        let r = Report {
            workload: "put",
            ops: 1000,
            errors: 0,
            first_error: None,
            elapsed: Duration::from_secs(2),
            latency_us,
        };
        assert_eq!(r.ops_per_sec(), 500.0);
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        let p = |k: &str| j["latency_ms"][k].as_f64().unwrap();
        assert!((p("p50") - 0.5).abs() < 0.01, "{j}");
        assert!(p("p50") < p("p90") && p("p90") < p("p99") && p("p99") <= p("max"));
        assert!(r.text().contains("Requests/sec:\t500.0000"));
        assert!(r.verdict().is_ok());
    }
}
