//! `oxctl`, the command-line client: etcdctl 3.4's commands, flags, outputs and exit codes,
//! against any etcd v3 endpoint (oxcd or etcd).
//!
//! This crate owns the command line ([`Cli`]), talking to the endpoints, and turning each
//! command's answer into what etcdctl prints ([`print`]); [`txn`] parses the transaction
//! language and the put / get / del arguments; [`json`] and [`table`] are etcdctl's text
//! forms. It does not serve anything, and it keeps no state between runs.
//!
//! Auth: `auth`, `user` and `role` ([`auth`]) and `--user` / `--password`, whose token
//! [`token`] puts on every request (`bench` too, on each of its connections). TLS: etcdctl's
//! `--cacert`, `--cert`, `--key` and `--insecure-*` flags ([`Dial`]). `lock` and `elect`
//! run etcd's concurrency recipes ([`recipes`]) under a session lease ([`session`]). Not here
//! yet: `make-mirror`, `check`, `-w protobuf`.
//!
//! It uses the server crate only for the generated gRPC types ([`oxcd::pb`]), the snapshot
//! file format (`snapshot restore` and `status`) and the requests of etcd's concurrency
//! recipes (`lock`, `elect`). The client talks to real endpoints, so the simulation build
//! (`--cfg madsim`) leaves this crate empty.
#![cfg(not(madsim))]

mod auth;
pub mod bench;
mod elect;
pub mod json;
mod lock;
pub mod print;
mod recipes;
mod session;
pub mod table;
pub mod token;
pub mod txn;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use oxcd::pb::etcdserverpb as pb;
use pb::cluster_client::ClusterClient;
use pb::kv_client::KvClient;
use pb::lease_client::LeaseClient;
use pb::maintenance_client::MaintenanceClient;
use pb::watch_client::WatchClient;
use print::{Format, Health, LeaseTtl, Printer, WatchOut};
use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use token::{Authed, Credentials};
use tonic::transport::Channel;

/// etcdctl's exit codes.
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_BAD_CONNECTION: i32 = 2;
pub const EXIT_INVALID_INPUT: i32 = 3;
pub const EXIT_BAD_FEATURE: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 5;
pub const EXIT_IO: i32 = 6;
pub const EXIT_BAD_ARGS: i32 = 128;

/// Largest response the client accepts (a large range).
const RESPONSE_BYTES_MAX: usize = 512 << 20;

/// A failed command: the exit code and what follows `Error: ` on stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlError {
    pub code: i32,
    pub message: String,
}

impl CtlError {
    pub fn new(code: i32, message: String) -> CtlError {
        CtlError { code, message }
    }
}

/// A gRPC failure as etcdctl words it: etcd's own errors by their message, others in
/// grpc-go's words.
fn rpc_error(s: tonic::Status) -> CtlError {
    let message = if s.message().starts_with("etcdserver: ") {
        s.message().to_string()
    } else if s.code() == tonic::Code::DeadlineExceeded || s.code() == tonic::Code::Cancelled {
        "context deadline exceeded".to_string()
    } else {
        format!("rpc error: code = {:?} desc = {}", s.code(), s.message())
    };
    CtlError::new(EXIT_ERROR, message)
}

#[derive(Parser)]
#[command(
    name = "oxctl",
    version,
    about = "A simple command line client for oxcd and etcd (etcdctl's commands and flags)",
    // cobra's prefix matching, which etcdctl turns on: `role grant` is `role grant-permission`.
    infer_subcommands = true
)]
pub struct Cli {
    /// gRPC endpoints, comma-separated.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2379",
        env = "ETCDCTL_ENDPOINTS"
    )]
    endpoints: String,
    /// Dial timeout for a client connection.
    #[arg(long = "dial-timeout", global = true, default_value = "2s", value_parser = parse_duration)]
    dial_timeout: Duration,
    /// Timeout for a short-running command (excluding dial timeout).
    #[arg(long = "command-timeout", global = true, default_value = "5s", value_parser = parse_duration)]
    command_timeout: Duration,
    /// Output format: simple, json, fields or table.
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_enum,
        default_value = "simple"
    )]
    write_out: Format,
    /// Print byte strings as hex-encoded strings.
    #[arg(long, global = true)]
    hex: bool,
    /// username[:password] for authentication (prompt if password is not supplied).
    #[arg(long, global = true, default_value = "", env = "ETCDCTL_USER")]
    user: String,
    /// Password for authentication (if this option is used, --user option shouldn't include
    /// password).
    #[arg(long, global = true, default_value = "", env = "ETCDCTL_PASSWORD")]
    password: String,
    /// The credentials of `--user` / `--password`, read once (a prompt asks only once).
    #[arg(skip)]
    credentials: OnceLock<Result<Option<Credentials>, CtlError>>,
    /// Verify certificates of TLS-enabled secure servers using this CA bundle.
    #[arg(long, global = true, env = "ETCDCTL_CACERT")]
    cacert: Option<std::path::PathBuf>,
    /// Identify secure client using this TLS certificate file.
    #[arg(long, global = true, env = "ETCDCTL_CERT")]
    cert: Option<std::path::PathBuf>,
    /// Identify secure client using this TLS key file.
    #[arg(long, global = true, env = "ETCDCTL_KEY")]
    key: Option<std::path::PathBuf>,
    /// Skip server certificate verification (CAUTION: this option should be enabled only for
    /// testing purposes).
    #[arg(
        long = "insecure-skip-tls-verify",
        global = true,
        env = "ETCDCTL_INSECURE_SKIP_TLS_VERIFY"
    )]
    insecure_skip_tls_verify: bool,
    /// Disable transport security for client connections (endpoints without a scheme).
    #[arg(long = "insecure-transport", global = true, default_value = "true", num_args = 0..=1,
      default_missing_value = "true", action = clap::ArgAction::Set,
      env = "ETCDCTL_INSECURE_TRANSPORT")]
    insecure_transport: bool,
    #[command(subcommand)]
    command: Command,
}

/// Go-style durations: `5s`, `500ms`, `1m`, `1.5s`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Subcommand)]
enum Command {
    /// Puts the given key into the store.
    Put {
        #[command(flatten)]
        opts: txn::PutOpts,
        args: Vec<String>,
    },
    /// Gets the key or a range of keys.
    Get {
        #[command(flatten)]
        opts: txn::GetOpts,
        args: Vec<String>,
    },
    /// Removes the specified key or range of keys [key, range_end).
    Del {
        #[command(flatten)]
        opts: txn::DelOpts,
        args: Vec<String>,
    },
    /// Txn processes all the requests in one transaction (read from stdin).
    Txn {
        /// Input transaction in interactive mode.
        #[arg(short, long)]
        interactive: bool,
    },
    /// Compacts the event history in etcd.
    Compaction {
        /// Wait for the compaction to physically remove all old revisions.
        #[arg(long)]
        physical: bool,
        revision: String,
    },
    /// Watches events stream on keys or prefixes.
    Watch(WatchArgs),
    /// Lease related commands.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Acquires a named lock.
    Lock(lock::LockArgs),
    /// Observes and participates in leader election.
    Elect(elect::ElectArgs),
    /// Membership related commands.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Endpoint related commands.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Transfers leadership to another member.
    MoveLeader { target: String },
    /// Alarm related commands.
    #[command(subcommand)]
    Alarm(AlarmCommand),
    /// Defragments the storage of the members.
    Defrag {
        /// Use all endpoints from the cluster member list.
        #[arg(long)]
        cluster: bool,
    },
    /// Manages snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Enable or disable authentication.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// User related commands.
    #[command(subcommand)]
    User(auth::UserCommand),
    /// Role related commands.
    #[command(subcommand)]
    Role(auth::RoleCommand),
    /// Benchmarks an etcd v3 endpoint (oxcd or etcd): throughput and latency percentiles.
    Bench(bench::BenchArgs),
    /// Prints the version of oxctl.
    Version,
}

#[derive(clap::Args)]
struct WatchArgs {
    /// Watch on a prefix.
    #[arg(long)]
    prefix: bool,
    /// Revision to start watching from.
    #[arg(long, default_value_t = 0)]
    rev: i64,
    /// Get the previous key-value pair before the event happened.
    #[arg(long = "prev-kv")]
    prev_kv: bool,
    /// Get periodic watch progress notifications from the server.
    #[arg(long = "progress-notify")]
    progress_notify: bool,
    /// Key, and an optional range end.
    args: Vec<String>,
    /// After `--`: a command to run on each event (with ETCD_WATCH_* in its environment).
    #[arg(last = true)]
    exec: Vec<String>,
}

#[derive(Subcommand)]
enum LeaseCommand {
    /// Creates leases.
    Grant { ttl: String },
    /// Revokes leases.
    Revoke { id: String },
    /// Gets lease information.
    Timetolive {
        /// Get the keys attached to this lease.
        #[arg(long)]
        keys: bool,
        id: String,
    },
    /// Lists all active leases.
    List,
    /// Keeps leases alive (renew).
    KeepAlive {
        /// Resets the keep-alive time to its original value and exits immediately.
        #[arg(long)]
        once: bool,
        id: String,
    },
}

#[derive(Subcommand)]
enum MemberCommand {
    /// Adds a member into the cluster.
    Add {
        #[arg(long = "peer-urls", default_value = "")]
        peer_urls: String,
        /// Add as a learner.
        #[arg(long)]
        learner: bool,
        args: Vec<String>,
    },
    /// Removes a member from the cluster.
    Remove { id: String },
    /// Updates a member in the cluster.
    Update {
        #[arg(long = "peer-urls", default_value = "")]
        peer_urls: String,
        id: String,
    },
    /// Lists all members in the cluster.
    List,
    /// Promotes a non-voting member in the cluster.
    Promote { id: String },
}

#[derive(Subcommand)]
enum EndpointCommand {
    /// Checks the healthiness of endpoints.
    Health {
        #[arg(long)]
        cluster: bool,
    },
    /// Prints out the status of endpoints.
    Status {
        #[arg(long)]
        cluster: bool,
    },
    /// Prints the KV history hash for each endpoint.
    Hashkv {
        #[arg(long)]
        cluster: bool,
        /// Maximum revision to hash (0 = latest).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

#[derive(Subcommand)]
enum AlarmCommand {
    /// Disarms all alarms.
    Disarm,
    /// Lists all alarms.
    List,
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Stores a snapshot of a member to the given file.
    Save { path: String },
    /// Restores a snapshot file (etcd's format, or oxcd's own) into a new data dir.
    Restore {
        path: String,
        /// Human-readable name for this member.
        #[arg(long, default_value = "default")]
        name: String,
        /// Path to the data directory (default: ${name}.oxcd).
        #[arg(long = "data-dir")]
        data_dir: Option<String>,
        /// Initial cluster configuration for restore bootstrap.
        #[arg(
            long = "initial-cluster",
            default_value = "default=http://localhost:2380"
        )]
        initial_cluster: String,
        /// Initial cluster token for the etcd cluster during restore bootstrap.
        #[arg(long = "initial-cluster-token", default_value = "etcd-cluster")]
        initial_cluster_token: String,
        /// List of this member's peer URLs to advertise to the rest of the cluster.
        #[arg(
            long = "initial-advertise-peer-urls",
            default_value = "http://localhost:2380"
        )]
        initial_advertise_peer_urls: String,
        /// Ignore snapshot integrity hash value (required if copied from data directory).
        #[arg(long = "skip-hash-check")]
        skip_hash_check: bool,
    },
    /// Gets the status of a snapshot file.
    Status { path: String },
}

/// What a command printed (stdout and stderr) before it ended.
#[derive(Default)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
}

/// How to dial the endpoints: the dial timeout, and TLS as etcdctl's flags ask.
#[derive(Clone)]
pub struct Dial {
    pub timeout: Duration,
    /// The TLS configuration for `https://` endpoints (and scheme-less ones when `secure`).
    pub tls: oxcd::server::DialTls,
    /// Whether an endpoint without a scheme is dialed with TLS (etcdctl: when a certificate
    /// flag is given or `--insecure-transport=false`).
    pub secure: bool,
}

/// Connects to the first of `endpoints` that answers within the dial timeout.
async fn connect(endpoints: &[String], dial: &Dial) -> Result<Channel, CtlError> {
    // grpc-go (etcdctl) retries a connection that fails to become ready (a refused TLS
    // handshake, a TLS port dialed in plaintext) until the deadline, and the command then
    // fails with "context deadline exceeded", exit 1.
    let not_ready = || CtlError::new(EXIT_ERROR, "context deadline exceeded".to_string());
    let mut last = CtlError::new(EXIT_BAD_CONNECTION, String::from("no endpoints"));
    for ep in endpoints {
        let url = if ep.contains("://") {
            ep.clone()
        } else if dial.secure {
            format!("https://{ep}")
        } else {
            format!("http://{ep}")
        };
        if url.starts_with("https://") && dial.tls.is_none() {
            last = CtlError::new(EXIT_BAD_CONNECTION, format!("{url}: TLS is not set up"));
            continue;
        }
        let connecting = oxcd::server::tls::dial(&url, dial.tls.as_ref(), dial.timeout);
        let channel = match tokio::time::timeout(dial.timeout, connecting).await {
            Ok(Ok(ch)) => ch,
            Ok(Err(_)) if url.starts_with("https://") => {
                last = not_ready();
                continue;
            }
            Ok(Err(e)) => {
                last = CtlError::new(EXIT_BAD_CONNECTION, e);
                continue;
            }
            Err(_) => {
                last = CtlError::new(EXIT_BAD_CONNECTION, "context deadline exceeded".into());
                continue;
            }
        };
        // A connection is ready once the server answered on it: with TLS 1.3 a server
        // refuses a client certificate only after the client's side of the handshake
        // ended, and a TLS port dialed in plaintext accepts the TCP connection.
        let mut health = oxcd::pb::health::health_client::HealthClient::new(channel.clone());
        let probe = health.check(oxcd::pb::health::HealthCheckRequest {
            service: String::new(),
        });
        match tokio::time::timeout(dial.timeout, probe).await {
            // A status the client made from a transport failure carries its cause; one the
            // server sent does not.
            Ok(Err(s))
                if std::error::Error::source(&s).is_some()
                    || matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Cancelled) =>
            {
                last = not_ready()
            }
            Err(_) => last = not_ready(),
            // Any answer, even an error status, came over a working connection.
            Ok(_) => return Ok(channel),
        }
    }
    Err(last)
}

fn parse_hex_id(s: &str, what: &str) -> Result<u64, CtlError> {
    u64::from_str_radix(s, 16).map_err(|e| {
        CtlError::new(
            EXIT_BAD_ARGS,
            format!("bad {what} ID arg ({e}), expecting ID in Hex"),
        )
    })
}

fn stdin_all() -> Result<Vec<u8>, CtlError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| CtlError::new(EXIT_IO, e.to_string()))?;
    Ok(buf)
}

/// Writes `text` to stdout at once: a command that holds a lock or leads an election shows
/// its key while it runs, not when it ends.
fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// A Go duration's `String()`: "1.234567ms", "12.3µs", "2.5s".
fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let trim = |v: f64, digits: usize| {
        let s = format!("{v:.digits$}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{}µs", trim(ns as f64 / 1e3, 3))
    } else if ns < 1_000_000_000 {
        format!("{}ms", trim(ns as f64 / 1e6, 6))
    } else {
        format!("{}s", trim(ns as f64 / 1e9, 9))
    }
}

impl Cli {
    /// Whether the command is `bench`, which wants a runtime with a worker per core.
    pub fn is_bench(&self) -> bool {
        matches!(self.command, Command::Bench(_))
    }

    fn endpoint_list(&self) -> Vec<String> {
        self.endpoints
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn printer(&self, value_only: bool) -> Printer {
        Printer {
            format: self.write_out,
            hex: self.hex,
            value_only,
        }
    }

    async fn channel(&self) -> Result<Authed, CtlError> {
        self.dial(&self.endpoint_list()).await
    }

    /// The credentials of `--user` / `--password` (asked for once at most).
    fn credentials(&self) -> Result<Option<Credentials>, CtlError> {
        self.credentials
            .get_or_init(|| token::credentials(&self.user, &self.password))
            .clone()
    }

    /// Connects to the first of `endpoints` that answers, with the token of `--user` on
    /// every request.
    async fn dial(&self, endpoints: &[String]) -> Result<Authed, CtlError> {
        let credentials = self.credentials()?;
        let ch = connect(endpoints, &self.dial_options()?).await?;
        token::authed(ch, credentials.as_ref(), self.dial_timeout).await
    }

    /// How the global flags say to dial (`--dial-timeout`, `--cacert`, `--cert`, `--key`,
    /// `--insecure-skip-tls-verify`, `--insecure-transport`).
    fn dial_options(&self) -> Result<Dial, CtlError> {
        let files = self.cacert.is_some() || self.cert.is_some() || self.key.is_some();
        let secure = files || !self.insecure_transport;
        let https = self
            .endpoint_list()
            .iter()
            .any(|e| e.starts_with("https://"));
        let tls = if secure || https {
            let client = oxcd::server::tls::ClientTls {
                ca_file: self.cacert.clone(),
                cert_file: self.cert.clone(),
                key_file: self.key.clone(),
                skip_verify: self.insecure_skip_tls_verify,
            };
            Some(
                client
                    .config()
                    .map_err(|e| CtlError::new(EXIT_BAD_ARGS, e))?,
            )
        } else {
            None
        };
        Ok(Dial {
            timeout: self.dial_timeout,
            tls,
            secure,
        })
    }

    /// Runs `fut` under the command timeout.
    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CtlError> {
        match tokio::time::timeout(self.command_timeout, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(rpc_error(s)),
            Err(_) => Err(CtlError::new(
                EXIT_ERROR,
                "context deadline exceeded".into(),
            )),
        }
    }

    /// The endpoints a per-endpoint command visits: the flag's, or (`--cluster`) every
    /// member's client URLs.
    async fn targets(&self, cluster: bool) -> Result<Vec<String>, CtlError> {
        if !cluster {
            return Ok(self.endpoint_list());
        }
        let ch = self.channel().await?;
        let r = self
            .timed(ClusterClient::new(ch).member_list(pb::MemberListRequest {
                linearizable: false,
            }))
            .await?;
        let mut eps: Vec<String> = r
            .members
            .iter()
            .flat_map(|m| m.client_ur_ls.clone())
            .collect();
        eps.sort();
        eps.dedup();
        Ok(eps)
    }

    /// Runs the command; what it printed, or why it failed (with what it printed before).
    pub async fn run(&self) -> Result<Out, (Out, CtlError)> {
        let mut out = Out::default();
        match self.run_into(&mut out).await {
            Ok(()) => Ok(out),
            Err(e) => Err((out, e)),
        }
    }

    async fn run_into(&self, out: &mut Out) -> Result<(), CtlError> {
        let p = self.printer(false);
        match &self.command {
            Command::Put { opts, args } => {
                let stdin = if args.len() < 2 && !opts.ignore_value {
                    Some(stdin_all()?)
                } else {
                    None
                };
                let req = txn::put_request(args, stdin, opts)?;
                let ch = self.channel().await?;
                let r = self.timed(kv(ch).put(req)).await?;
                out.stdout += &p.put(&r)?;
            }
            Command::Get { opts, args } => {
                let req = txn::range_request(args, opts)?;
                let ch = self.channel().await?;
                let r = self.timed(kv(ch).range(req)).await?;
                out.stdout += &self.printer(opts.print_value_only).get(&r)?;
            }
            Command::Del { opts, args } => {
                let req = txn::delete_request(args, opts)?;
                let ch = self.channel().await?;
                let r = self.timed(kv(ch).delete_range(req)).await?;
                out.stdout += &p.del(&r)?;
            }
            Command::Txn { interactive } => {
                let input = stdin_all()?;
                let input = String::from_utf8_lossy(&input);
                let mut prompts = String::new();
                let req = txn::read_txn(&input, |prompt| {
                    if *interactive {
                        prompts += prompt;
                        prompts.push('\n');
                    }
                });
                out.stdout += &prompts;
                let req = req?;
                let ch = self.channel().await?;
                let r = self.timed(kv(ch).txn(req)).await?;
                out.stdout += &p.txn(&r)?;
            }
            Command::Compaction { physical, revision } => {
                let rev: i64 = revision.parse().map_err(|e| {
                    CtlError::new(
                        EXIT_ERROR,
                        format!("strconv.ParseInt: parsing {revision:?}: {e}"),
                    )
                })?;
                let ch = self.channel().await?;
                self.timed(kv(ch).compact(pb::CompactionRequest {
                    revision: rev,
                    physical: *physical,
                }))
                .await?;
                out.stdout += &format!("compacted revision {rev}\n");
            }
            Command::Watch(w) => return self.watch(w, out).await,
            Command::Lease(l) => return self.lease(l, out).await,
            Command::Lock(l) => return self.lock(l).await,
            Command::Elect(e) => return self.elect(e).await,
            Command::Member(m) => return self.member(m, out).await,
            Command::Endpoint(e) => return self.endpoint(e, out).await,
            Command::MoveLeader { target } => {
                let target = parse_hex_id(target, "member")?;
                // Find the leader among the endpoints, and ask it.
                let mut leader = None;
                for ep in self.endpoint_list() {
                    let Ok(ch) = self.dial(std::slice::from_ref(&ep)).await else {
                        continue;
                    };
                    let s = self
                        .timed(maintenance(ch.clone()).status(pb::StatusRequest {}))
                        .await?;
                    let me = s.header.map_or(0, |h| h.member_id);
                    if s.leader == me && me != 0 {
                        leader = Some((ch, me));
                        break;
                    }
                }
                let Some((ch, from)) = leader else {
                    return Err(CtlError::new(
                        EXIT_ERROR,
                        "no leader endpoint given at [".to_string()
                            + &self.endpoint_list().join(" ")
                            + "]",
                    ));
                };
                let r = self
                    .timed(maintenance(ch).move_leader(pb::MoveLeaderRequest { target_id: target }))
                    .await?;
                out.stdout += &p.move_leader(from, target, &r)?;
            }
            Command::Alarm(a) => {
                let ch = self.channel().await?;
                let action = match a {
                    AlarmCommand::List => 0,
                    AlarmCommand::Disarm => 2,
                };
                // Disarm: every alarm raised (list first, then disarm each).
                let list = self
                    .timed(maintenance(ch.clone()).alarm(pb::AlarmRequest::default()))
                    .await?;
                // etcdctl prints what each disarm answered: the alarms it cleared.
                let r = if action == 0 {
                    list
                } else {
                    let mut cleared = pb::AlarmResponse::default();
                    for a in &list.alarms {
                        let r = self
                            .timed(maintenance(ch.clone()).alarm(pb::AlarmRequest {
                                action,
                                member_id: a.member_id,
                                alarm: a.alarm,
                            }))
                            .await?;
                        cleared.header = r.header;
                        cleared.alarms.extend(r.alarms);
                    }
                    cleared
                };
                out.stdout += &p.alarms(&r)?;
            }
            Command::Defrag { cluster } => {
                let mut failed = false;
                for ep in self.targets(*cluster).await? {
                    let r = match self.dial(std::slice::from_ref(&ep)).await {
                        Ok(ch) => self
                            .timed(maintenance(ch).defragment(pb::DefragmentRequest {}))
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    };
                    match r {
                        Ok(()) => {
                            out.stdout += &format!("Finished defragmenting etcd member[{ep}]\n")
                        }
                        Err(e) => {
                            failed = true;
                            out.stderr += &format!(
                                "Failed to defragment etcd member[{ep}] ({})\n",
                                e.message
                            );
                        }
                    }
                }
                if failed {
                    return Err(CtlError::new(EXIT_ERROR, String::new()));
                }
            }
            Command::Snapshot(s) => return self.snapshot(s, out).await,
            Command::Auth(a) => return self.auth(a, out).await,
            Command::User(u) => return self.user(u, out).await,
            Command::Role(r) => return self.role(r, out).await,
            Command::Bench(b) => {
                let credentials = self.credentials()?;
                let dial = self.dial_options()?;
                let r = b
                    .run(&self.endpoint_list(), &dial, credentials.as_ref())
                    .await?;
                out.stdout += &match self.write_out {
                    Format::Json => r.json(),
                    _ => r.text(),
                };
                return r.verdict();
            }
            Command::Version => {
                out.stdout += &format!(
                    "oxctl version: {}\nAPI version: 3.4\n",
                    env!("CARGO_PKG_VERSION")
                );
            }
        }
        Ok(())
    }

    async fn watch(&self, w: &WatchArgs, out: &mut Out) -> Result<(), CtlError> {
        let (keys, exec) = (&w.args, &w.exec);
        if keys.is_empty() || keys.len() > 2 || (w.prefix && keys.len() > 1) {
            return Err(CtlError::new(
                EXIT_BAD_ARGS,
                "bad number of arguments".into(),
            ));
        }
        let mut key = keys[0].clone().into_bytes();
        let range_end = match (keys.get(1), w.prefix) {
            (Some(end), _) => end.clone().into_bytes(),
            (None, true) if key.is_empty() => {
                key = vec![0];
                vec![0]
            }
            (None, true) => txn::prefix_end(&key),
            (None, false) => Vec::new(),
        };
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: Bytes::from(key),
                    range_end: Bytes::from(range_end),
                    start_revision: w.rev,
                    progress_notify: w.progress_notify,
                    prev_kv: w.prev_kv,
                    ..Default::default()
                },
            )),
        };
        let ch = self.channel().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(create).await.expect("the channel is open");
        let mut stream = WatchClient::new(ch)
            .max_decoding_message_size(RESPONSE_BYTES_MAX)
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(rpc_error)?
            .into_inner();
        let p = self.printer(false);
        // Output is written as it comes: a watch runs until it is stopped.
        let stdout = std::io::stdout();
        loop {
            let msg = stream.message().await.map_err(rpc_error)?;
            let Some(r) = msg else { break };
            if r.created && !r.canceled && r.events.is_empty() {
                continue;
            }
            if r.canceled {
                let why = if r.compact_revision > 0 {
                    "etcdserver: mvcc: required revision has been compacted".to_string()
                } else {
                    r.cancel_reason.clone()
                };
                eprintln!("watch was canceled ({why})");
            }
            let header = r.header.unwrap_or_default();
            if r.events.is_empty() && !r.canceled && r.watch_id != -1 {
                // A progress notification.
                let mut lock = stdout.lock();
                let _ = writeln!(lock, "progress notify: {}", header.revision);
            }
            let text = p.watch(&WatchOut {
                header,
                events: &r.events,
                compact_revision: r.compact_revision,
                canceled: r.canceled,
                created: false,
            })?;
            {
                let mut lock = stdout.lock();
                let _ = lock.write_all(text.as_bytes());
                let _ = lock.flush();
            }
            for e in &r.events {
                if exec.is_empty() {
                    break;
                }
                let kv = e.kv.clone().unwrap_or_default();
                let kind = if e.r#type == 1 { "DELETE" } else { "PUT" };
                let status = std::process::Command::new(&exec[0])
                    .args(&exec[1..])
                    .env("ETCD_WATCH_REVISION", header.revision.to_string())
                    .env("ETCD_WATCH_EVENT_TYPE", json::go_quote(kind.as_bytes()))
                    .env("ETCD_WATCH_KEY", json::go_quote(&kv.key))
                    .env("ETCD_WATCH_VALUE", json::go_quote(&kv.value))
                    .status();
                if !matches!(status, Ok(s) if s.success()) {
                    return Err(CtlError::new(
                        EXIT_ERROR,
                        format!("command {exec:?} error ({status:?})"),
                    ));
                }
            }
            if r.canceled {
                break;
            }
        }
        let _ = out;
        Err(CtlError::new(
            EXIT_INTERRUPTED,
            "watch is canceled by the server".into(),
        ))
    }

    async fn lease(&self, l: &LeaseCommand, out: &mut Out) -> Result<(), CtlError> {
        let p = self.printer(false);
        let ch = self.channel().await?;
        match l {
            LeaseCommand::Grant { ttl } => {
                let ttl: i64 = ttl
                    .parse()
                    .map_err(|e| CtlError::new(EXIT_BAD_ARGS, format!("bad TTL ({e})")))?;
                let r = self
                    .timed(lease(ch).lease_grant(pb::LeaseGrantRequest { ttl, id: 0 }))
                    .await?;
                if !r.error.is_empty() {
                    return Err(CtlError::new(
                        EXIT_ERROR,
                        format!("failed to grant lease ({})", r.error),
                    ));
                }
                out.stdout += &p.grant(&LeaseTtl {
                    header: r.header.unwrap_or_default(),
                    id: r.id,
                    ttl: r.ttl,
                })?;
            }
            LeaseCommand::Revoke { id } => {
                let id = parse_hex_id(id, "lease")? as i64;
                let r = self
                    .timed(lease(ch).lease_revoke(pb::LeaseRevokeRequest { id }))
                    .await
                    .map_err(|e| {
                        CtlError::new(e.code, format!("failed to revoke lease ({})", e.message))
                    })?;
                out.stdout += &p.revoke(id, &r)?;
            }
            LeaseCommand::Timetolive { keys, id } => {
                let id = parse_hex_id(id, "lease")? as i64;
                let r = self
                    .timed(
                        lease(ch)
                            .lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys: *keys }),
                    )
                    .await?;
                out.stdout += &p.time_to_live(&r, *keys)?;
            }
            LeaseCommand::List => {
                let r = self
                    .timed(lease(ch).lease_leases(pb::LeaseLeasesRequest {}))
                    .await?;
                out.stdout += &p.leases(&r)?;
            }
            LeaseCommand::KeepAlive { once, id } => {
                let id = parse_hex_id(id, "lease")? as i64;
                let ended = || CtlError::new(EXIT_ERROR, "the keep-alive stream ended".into());
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                // etcd (grpc-go) sends nothing, not even the response headers, before the
                // first request: queue it before the call waits for them.
                tx.send(pb::LeaseKeepAliveRequest { id })
                    .await
                    .map_err(|_| ended())?;
                let mut stream = lease(ch)
                    .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                    .map_err(rpc_error)?
                    .into_inner();
                loop {
                    let r = tokio::time::timeout(self.command_timeout, stream.message())
                        .await
                        .map_err(|_| CtlError::new(EXIT_ERROR, "context deadline exceeded".into()))?
                        .map_err(rpc_error)?
                        .ok_or_else(ended)?;
                    if r.ttl <= 0 {
                        if *once {
                            return Err(CtlError::new(
                                EXIT_BAD_CONNECTION,
                                "etcdserver: requested lease not found".into(),
                            ));
                        }
                        println!("lease {id:016x} expired or revoked.");
                        return Ok(());
                    }
                    let text = p.keep_alive(&LeaseTtl {
                        header: r.header.unwrap_or_default(),
                        id: r.id,
                        ttl: r.ttl,
                    })?;
                    if *once {
                        out.stdout += &text;
                        return Ok(());
                    }
                    print!("{text}");
                    let _ = std::io::stdout().flush();
                    // Renew at a third of the TTL, as etcd's client does.
                    tokio::time::sleep(Duration::from_secs((r.ttl as u64 / 3).max(1))).await;
                    tx.send(pb::LeaseKeepAliveRequest { id })
                        .await
                        .map_err(|_| ended())?;
                }
            }
        }
        Ok(())
    }

    async fn member(&self, m: &MemberCommand, out: &mut Out) -> Result<(), CtlError> {
        let p = self.printer(false);
        let ch = self.channel().await?;
        let mut cluster = ClusterClient::new(ch);
        match m {
            MemberCommand::Add {
                peer_urls,
                learner,
                args,
            } => {
                let Some(name) = args.first() else {
                    return Err(CtlError::new(
                        EXIT_BAD_ARGS,
                        "member name not provided".into(),
                    ));
                };
                if args.len() > 1 {
                    let mut why = "too many arguments".to_string();
                    for a in args {
                        if a.to_lowercase().starts_with("http") {
                            why += &format!(", did you mean --peer-urls={a}");
                        }
                    }
                    return Err(CtlError::new(EXIT_BAD_ARGS, why));
                }
                if peer_urls.is_empty() {
                    return Err(CtlError::new(
                        EXIT_BAD_ARGS,
                        "member peer urls not provided".into(),
                    ));
                }
                let urls: Vec<String> = peer_urls.split(',').map(str::to_string).collect();
                let r = self
                    .timed(cluster.member_add(pb::MemberAddRequest {
                        peer_ur_ls: urls,
                        is_learner: *learner,
                    }))
                    .await?;
                let new = r.member.clone().unwrap_or_default();
                out.stdout +=
                    &p.member_change("added to", new.id, &r.header, Some(&new), &r.members)?;
                if p.format == Format::Simple {
                    let conf: Vec<String> = r
                        .members
                        .iter()
                        .flat_map(|m| {
                            let n = if m.id == new.id {
                                name.clone()
                            } else {
                                m.name.clone()
                            };
                            m.peer_ur_ls.iter().map(move |u| format!("{n}={u}"))
                        })
                        .collect();
                    out.stdout += &format!(
                        "\nETCD_NAME={}\nETCD_INITIAL_CLUSTER={}\nETCD_INITIAL_ADVERTISE_PEER_URLS={}\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n",
                        json::go_quote(name.as_bytes()),
                        json::go_quote(conf.join(",").as_bytes()),
                        json::go_quote(peer_urls.as_bytes())
                    );
                }
            }
            MemberCommand::Remove { id } => {
                let id = parse_hex_id(id, "member")?;
                let r = self
                    .timed(cluster.member_remove(pb::MemberRemoveRequest { id }))
                    .await?;
                out.stdout += &p.member_change("removed from", id, &r.header, None, &r.members)?;
            }
            MemberCommand::Update { peer_urls, id } => {
                let id = parse_hex_id(id, "member")?;
                if peer_urls.is_empty() {
                    return Err(CtlError::new(
                        EXIT_BAD_ARGS,
                        "member peer urls not provided".into(),
                    ));
                }
                let r = self
                    .timed(cluster.member_update(pb::MemberUpdateRequest {
                        id,
                        peer_ur_ls: peer_urls.split(',').map(str::to_string).collect(),
                    }))
                    .await?;
                out.stdout += &p.member_change("updated in", id, &r.header, None, &r.members)?;
            }
            MemberCommand::List => {
                let r = self
                    .timed(cluster.member_list(pb::MemberListRequest {
                        linearizable: false,
                    }))
                    .await?;
                out.stdout += &p.member_list(&r)?;
            }
            MemberCommand::Promote { id } => {
                let id = parse_hex_id(id, "member")?;
                let r = self
                    .timed(cluster.member_promote(pb::MemberPromoteRequest { id }))
                    .await?;
                out.stdout += &p.member_change("promoted in", id, &r.header, None, &r.members)?;
            }
        }
        Ok(())
    }

    async fn endpoint(&self, e: &EndpointCommand, out: &mut Out) -> Result<(), CtlError> {
        let p = self.printer(false);
        match e {
            EndpointCommand::Health { cluster } => {
                let mut list = Vec::new();
                for ep in self.targets(*cluster).await? {
                    let started = Instant::now();
                    let r = match self.dial(std::slice::from_ref(&ep)).await {
                        Ok(ch) => self
                            .timed(kv(ch).range(pb::RangeRequest {
                                key: Bytes::from_static(b"health"),
                                ..Default::default()
                            }))
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    };
                    let took = go_duration(started.elapsed());
                    list.push(match r {
                        Ok(()) => Health {
                            endpoint: ep,
                            health: true,
                            took,
                            error: String::new(),
                        },
                        Err(e) => Health {
                            endpoint: ep,
                            health: false,
                            took,
                            error: e.message,
                        },
                    });
                }
                let unhealthy = list.iter().any(|h| !h.health);
                let (o, e) = p.endpoint_health(&list)?;
                out.stdout += &o;
                out.stderr += &e;
                if unhealthy {
                    return Err(CtlError::new(EXIT_ERROR, "unhealthy cluster".into()));
                }
            }
            EndpointCommand::Status { cluster } => {
                let (list, failed) = self
                    .each_endpoint(*cluster, "status", out, async |ch| {
                        self.timed(maintenance(ch).status(pb::StatusRequest {}))
                            .await
                    })
                    .await?;
                out.stdout += &p.endpoint_status(&list)?;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            EndpointCommand::Hashkv { cluster, rev } => {
                let (list, failed) = self
                    .each_endpoint(*cluster, "hash", out, async |ch| {
                        let req = pb::HashKvRequest { revision: *rev };
                        self.timed(maintenance(ch).hash_kv(req)).await
                    })
                    .await?;
                out.stdout += &p.endpoint_hashkv(&list)?;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Asks each endpoint (or, with `cluster`, each member) with `ask`: the answers, and
    /// the last failure (each failure is also reported on stderr as etcdctl words it).
    async fn each_endpoint<T>(
        &self,
        cluster: bool,
        what: &str,
        out: &mut Out,
        ask: impl AsyncFn(Authed) -> Result<T, CtlError>,
    ) -> Result<(Vec<(String, T)>, Option<CtlError>), CtlError> {
        let mut list = Vec::new();
        let mut failed = None;
        for ep in self.targets(cluster).await? {
            let r = match self.dial(std::slice::from_ref(&ep)).await {
                Ok(ch) => ask(ch).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(v) => list.push((ep, v)),
                Err(e) => {
                    out.stderr += &format!(
                        "Failed to get the {what} of endpoint {ep} ({})\n",
                        e.message
                    );
                    failed = Some(e);
                }
            }
        }
        Ok((list, failed))
    }

    async fn snapshot(&self, s: &SnapshotCommand, out: &mut Out) -> Result<(), CtlError> {
        match s {
            SnapshotCommand::Save { path } => {
                let eps = self.endpoint_list();
                if eps.len() != 1 {
                    return Err(CtlError::new(
                        EXIT_BAD_ARGS,
                        format!(
                            "snapshot must be requested to one selected node, not multiple {eps:?}"
                        ),
                    ));
                }
                let ch = self.channel().await?;
                let mut stream = maintenance(ch)
                    .snapshot(pb::SnapshotRequest {})
                    .await
                    .map_err(rpc_error)?
                    .into_inner();
                let part = format!("{path}.part");
                let io = |e: std::io::Error| CtlError::new(EXIT_IO, format!("{part}: {e}"));
                let mut f = std::fs::File::create(&part).map_err(io)?;
                let mut size = 0usize;
                while let Some(chunk) = stream.message().await.map_err(rpc_error)? {
                    size += chunk.blob.len();
                    f.write_all(&chunk.blob).map_err(io)?;
                }
                // etcd ends the download with a SHA-256 over padding to 512 bytes.
                if size % 512 != 32 {
                    let _ = std::fs::remove_file(&part);
                    return Err(CtlError::new(
                        EXIT_ERROR,
                        format!("sha256 checksum not found [bytes: {size}]"),
                    ));
                }
                f.sync_all().map_err(io)?;
                std::fs::rename(&part, path).map_err(io)?;
                out.stdout += &format!("Snapshot saved at {path}\n");
            }
            SnapshotCommand::Restore {
                path,
                name,
                data_dir,
                initial_cluster,
                initial_cluster_token,
                initial_advertise_peer_urls,
                skip_hash_check,
            } => {
                #[cfg(not(madsim))]
                {
                    let fail = |e: String| CtlError::new(EXIT_ERROR, e);
                    let cluster = oxcd::server::cluster::parse_initial_cluster(initial_cluster)
                        .map_err(fail)?;
                    let advertised: Vec<String> = initial_advertise_peer_urls
                        .split(',')
                        .map(str::to_string)
                        .collect();
                    let (_, members) =
                        oxcd::server::founders(&cluster, initial_cluster_token, name, &advertised)
                            .map_err(fail)?;
                    let data_dir = data_dir.clone().unwrap_or_else(|| format!("{name}.oxcd"));
                    let options = oxcd::storage::RestoreOptions {
                        skip_hash_check: *skip_hash_check,
                        members,
                    };
                    oxcd::storage::restore_file(
                        std::path::Path::new(path),
                        std::path::Path::new(&data_dir),
                        &options,
                    )
                    .map_err(|e| fail(e.to_string()))?;
                    out.stdout += &format!("restored snapshot {path} into {data_dir}\n");
                }
            }
            SnapshotCommand::Status { path } => {
                #[cfg(madsim)]
                let _ = path;
                #[cfg(not(madsim))]
                {
                    let status = oxcd::storage::file_status(std::path::Path::new(path))
                        .map_err(|e| CtlError::new(EXIT_ERROR, e.to_string()))?;
                    let row = vec![
                        format!("{:x}", status.hash),
                        status.revision.to_string(),
                        status.total_keys.to_string(),
                        table::humanize_bytes(status.size_bytes),
                    ];
                    out.stdout += &match self.write_out {
                        Format::Simple => row.join(", ") + "\n",
                        Format::Table => {
                            table::render(&["hash", "revision", "total keys", "total size"], &[row])
                        }
                        Format::Json | Format::Fields => {
                            json::Obj::new()
                                .int("hash", status.hash)
                                .int("revision", status.revision)
                                .int("totalKey", status.total_keys)
                                .int("totalSize", status.size_bytes)
                                .end()
                                + "\n"
                        }
                    };
                }
            }
        }
        Ok(())
    }
}

fn kv(ch: Authed) -> KvClient<Authed> {
    KvClient::new(ch).max_decoding_message_size(RESPONSE_BYTES_MAX)
}

fn lease(ch: Authed) -> LeaseClient<Authed> {
    LeaseClient::new(ch)
}

fn maintenance(ch: Authed) -> MaintenanceClient<Authed> {
    MaintenanceClient::new(ch).max_decoding_message_size(RESPONSE_BYTES_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_as_go_does() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("5").is_err());
        assert_eq!(go_duration(Duration::from_micros(1234)), "1.234ms");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_millis(2500)), "2.5s");
    }

    #[test]
    fn the_command_line_takes_etcdctls_flags() {
        let cli = Cli::try_parse_from([
            "oxctl",
            "--endpoints=a:1,b:2",
            "-w",
            "json",
            "get",
            "k",
            "--prefix",
            "--limit",
            "2",
        ])
        .unwrap();
        assert_eq!(cli.endpoint_list(), ["a:1", "b:2"]);
        assert_eq!(cli.write_out, Format::Json);
        let Command::Get { opts, args } = cli.command else {
            panic!("get");
        };
        assert!(opts.prefix);
        assert_eq!((opts.limit, args), (2, vec!["k".to_string()]));
    }

    #[test]
    fn bench_takes_the_global_credentials_and_tls_flags() {
        let root = Some(Credentials {
            user: "root".into(),
            password: "pw".into(),
        });
        for argv in [
            &["oxctl", "--user", "root:pw", "bench", "put"][..],
            &["oxctl", "bench", "--user=root", "--password=pw", "put"],
            &[
                "oxctl", "bench", "put", "--conns", "10", "--user", "root:pw",
            ],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            assert!(cli.is_bench(), "{argv:?}");
            assert_eq!(cli.credentials(), Ok(root.clone()), "{argv:?}");
        }
        let cli = Cli::try_parse_from(["oxctl", "bench", "put"]).unwrap();
        assert_eq!(cli.credentials(), Ok(None));
        assert!(!cli.dial_options().unwrap().secure);
        // range's KEY beside the global --key (a TLS key file): clap once panicked on the clash.
        let cli = Cli::try_parse_from(["oxctl", "--key", "k.pem", "bench", "range", "k"]).unwrap();
        assert!(cli.is_bench());
        assert_eq!(cli.key.as_deref(), Some(std::path::Path::new("k.pem")));

        let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tls");
        let cli = Cli::try_parse_from([
            "oxctl".to_string(),
            "bench".into(),
            format!("--cacert={tls}/ca.crt"),
            format!("--cert={tls}/server.crt"),
            format!("--key={tls}/server.key.insecure"),
            "put".into(),
        ])
        .unwrap();
        let dial = cli.dial_options().unwrap();
        assert!(dial.secure && dial.tls.is_some());
    }
}
