//! `ecload`: a load generator for etcd v3 endpoints built on the third-party `etcd-client`
//! crate, so that oxcd's benchmark figures do not rest only on a client oxcd wrote
//! (`oxctl bench`). `bench/compare` runs it against oxcd and etcd alike.
//!
//! It owns the command line (fixed by `/work/coord/ecload-spec.md`: the global flags and
//! defaults of `oxctl bench`), the connections (`--conns` separate etcd-client `Client`s, each
//! on one endpoint in turn, the clients spread over them in turn), the workloads (one module
//! per family) and the one JSON object it prints on stdout, in `oxctl -w json bench`'s shape.
//! It exits 0 when no request failed and 1 otherwise; diagnostics go to stderr only.
//!
//! It does not do TLS or auth, it keeps nothing between runs, and it judges no figure: the
//! comparison is `bench/compare`'s. It never runs under madsim.

mod big;
mod kv;
mod lease;
mod report;
mod rss;
mod watchers;

use clap::{Parser, Subcommand};
use etcd_client::{Client, ConnectOptions};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use report::Report;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long opening a connection may take before the run gives up on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The command line: global flags (before or after the workload) and one workload.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "ecload",
    about = "Load generator on the etcd-client crate; prints one JSON object"
)]
pub(crate) struct Args {
    /// Endpoints as host:port, comma separated (required).
    #[arg(long, global = true, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// Number of gRPC connections (etcd-client Clients), on the endpoints in turn.
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Number of concurrent clients, spread over the connections in turn.
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Total number of requests.
    #[arg(long, global = true, default_value_t = 10_000)]
    total: u64,
    /// Size of each key, in bytes (digits).
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
    /// A member process whose RSS the memory workloads sample (repeatable).
    #[arg(long = "member-pid", global = true)]
    member_pid: Vec<u32>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand, Clone, Debug)]
enum Workload {
    /// Puts values into keys of the key space.
    Put {
        /// Watch streams opened first (each on its own connection, watching every key) and
        /// never read.
        #[arg(long = "slow-watchers", default_value_t = 0)]
        slow_watchers: usize,
    },
    /// Gets the key space's first key.
    Range {
        /// l (linearizable) or s (serializable).
        #[arg(long, default_value = "l")]
        consistency: String,
    },
    /// One-put transactions (no compare).
    TxnPut,
    /// Each client grants a lease and renews it over its keep-alive stream.
    LeaseKeepalive,
    /// Puts ceil(bytes / val-size) keys "big/<index>".
    BigLoad {
        /// Bytes of values to load.
        #[arg(long)]
        bytes: u64,
    },
    /// One unlimited serializable range over "big/", sampling member RSS meanwhile.
    BigRead,
    /// Grants leases that expire while the put workload runs.
    LeaseStorm {
        /// Number of leases (one key "storm/<i>" on each).
        #[arg(long)]
        leases: u64,
        /// Their time to live, in seconds.
        #[arg(long)]
        ttl: i64,
    },
    /// Many watchers on distinct keys; counts the events of puts to every key.
    Watchers {
        /// Number of watch streams (spread over the connections).
        #[arg(long)]
        streams: usize,
        /// Watchers on each stream.
        #[arg(long = "per-stream")]
        per_stream: usize,
        /// Puts to every watched key.
        #[arg(long = "events-per-key")]
        events_per_key: u64,
    },
}

impl Workload {
    fn name(&self) -> &'static str {
        match self {
            Workload::Put { .. } => "put",
            Workload::Range { .. } => "range",
            Workload::TxnPut => "txn-put",
            Workload::LeaseKeepalive => "lease-keepalive",
            Workload::BigLoad { .. } => "big-load",
            Workload::BigRead => "big-read",
            Workload::LeaseStorm { .. } => "lease-storm",
            Workload::Watchers { .. } => "watchers",
        }
    }
}

impl Args {
    /// The bytes of key number `i`: its decimal digits, zero-padded to the key size.
    pub(crate) fn key(&self, i: u64) -> Vec<u8> {
        format!("{i:0width$}", width = self.key_size).into_bytes()
    }

    pub(crate) fn value(&self) -> Vec<u8> {
        vec![b'v'; self.val_size]
    }

    /// Which key request `i` of a client writes.
    pub(crate) fn key_index(&self, i: u64, rng: &mut ChaCha8Rng) -> u64 {
        if self.sequential_keys {
            i % self.key_space
        } else {
            rng.gen_range(0..self.key_space)
        }
    }

    /// Flags that parse but cannot run.
    fn check(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("--endpoints is required".into());
        }
        if self.conns == 0 || self.clients == 0 {
            return Err("--conns and --clients must be at least 1".into());
        }
        if self.key_space == 0 {
            return Err("--key-space must be at least 1".into());
        }
        match &self.workload {
            Workload::Range { consistency } if !["l", "s"].contains(&consistency.as_str()) => {
                Err(format!("unknown consistency flag {consistency:?}"))
            }
            Workload::BigLoad { .. } if self.val_size == 0 => {
                Err("big-load needs --val-size of at least 1".into())
            }
            Workload::LeaseStorm { ttl, .. } if *ttl < 2 => {
                Err("lease-storm needs --ttl of at least 2".into())
            }
            Workload::Watchers {
                streams,
                per_stream,
                ..
            } if *streams == 0 || *per_stream == 0 => {
                Err("watchers needs --streams and --per-stream of at least 1".into())
            }
            _ => Ok(()),
        }
    }
}

/// The shared work counter: hands out request numbers until `total`.
pub(crate) struct Work {
    next: AtomicU64,
    total: u64,
}

impl Work {
    pub(crate) fn new(total: u64) -> Work {
        Work {
            next: AtomicU64::new(0),
            total,
        }
    }

    pub(crate) fn take(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.total).then_some(i)
    }
}

/// One etcd-client `Client` on one endpoint: one HTTP/2 connection.
pub(crate) async fn connect(endpoint: &str) -> Result<Client, String> {
    let options = ConnectOptions::new().with_connect_timeout(CONNECT_TIMEOUT);
    Client::connect([endpoint], Some(options))
        .await
        .map_err(|e| format!("connecting to {endpoint}: {}", report::why(e)))
}

/// `--conns` clients, on the endpoints in turn.
pub(crate) async fn connect_all(args: &Args) -> Result<Vec<Client>, String> {
    let mut conns = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        conns.push(connect(&args.endpoints[i % args.endpoints.len()]).await?);
    }
    Ok(conns)
}

async fn run(args: Arc<Args>) -> Result<Report, String> {
    args.check()?;
    match &args.workload {
        Workload::Put { slow_watchers } => kv::put(args.clone(), *slow_watchers).await,
        Workload::Range { consistency } => kv::range(args.clone(), consistency == "s").await,
        Workload::TxnPut => kv::txn_put(args.clone()).await,
        Workload::LeaseKeepalive => lease::keepalive(args.clone()).await,
        Workload::BigLoad { bytes } => big::load(args.clone(), *bytes).await,
        Workload::BigRead => big::read(args.clone()).await,
        Workload::LeaseStorm { leases, ttl } => lease::storm(args.clone(), *leases, *ttl).await,
        Workload::Watchers {
            streams,
            per_stream,
            events_per_key,
        } => watchers::run(args.clone(), *streams, *per_stream, *events_per_key).await,
    }
}

fn main() {
    let args = Arc::new(Args::parse());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let name = args.workload.name();
    // A run that could not start still prints its one JSON object, as a failure.
    let report = runtime
        .block_on(run(args))
        .unwrap_or_else(|why| Report::failed(name, why));
    if let Some(why) = &report.tally.first_error {
        eprintln!(
            "ecload {name}: {} errors, first: {why}",
            report.tally.errors
        );
    }
    print!("{}", report.json());
    // Streams left open (slow watchers, keep-alives) must not hold the exit.
    drop(runtime);
    std::process::exit(if report.ok() { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("ecload").chain(argv.iter().copied())).unwrap()
    }

    #[test]
    fn flags_go_before_or_after_the_workload() {
        let a = parse(&[
            "--endpoints",
            "a:1,b:2",
            "--conns",
            "10",
            "put",
            "--clients",
            "100",
        ]);
        assert_eq!(a.endpoints, ["a:1", "b:2"]);
        assert_eq!(
            (a.conns, a.clients, a.total, a.key_size),
            (10, 100, 10_000, 8)
        );
        assert!(matches!(a.workload, Workload::Put { slow_watchers: 0 }));
        let a = parse(&[
            "range",
            "--endpoints",
            "a:1",
            "--member-pid",
            "7",
            "--member-pid",
            "8",
        ]);
        assert_eq!(a.member_pid, [7, 8]);
        assert!(a.check().is_ok());
        let missing = [
            "--endpoints",
            "a:1",
            "watchers",
            "--streams",
            "2",
            "--per-stream",
            "3",
        ];
        assert!(Args::try_parse_from(std::iter::once("ecload").chain(missing)).is_err());
    }

    #[test]
    fn keys_are_padded_numbers_and_bad_flags_are_refused() {
        let a = parse(&["--endpoints", "a:1", "--key-size", "6", "put"]);
        assert_eq!(a.key(42), b"000042");
        for argv in [
            &["put"][..],
            &["--endpoints", "a:1", "--clients", "0", "put"],
            &["--endpoints", "a:1", "range", "--consistency", "x"],
            &[
                "--endpoints",
                "a:1",
                "lease-storm",
                "--leases",
                "1",
                "--ttl",
                "1",
            ],
        ] {
            assert!(parse(argv).check().is_err(), "{argv:?}");
        }
    }
}
