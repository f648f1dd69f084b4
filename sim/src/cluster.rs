//! The full-stack simulation: real oxcd members (driver, gRPC services, Raft, MVCC, leases) as
//! madsim nodes, each on its own simulated disk, driven by clients through the real gRPC client
//! path while a seeded nemesis partitions, kills, pauses and slows them; then every history is
//! checked. Built only with `--cfg madsim` (see `sim/run`).
//!
//! This module owns one seed's run ([`run`]): the world, the workload, the nemesis, the
//! recorded history and the checks (linearizability of the register map, revision
//! invariants, equal HashKV on every member, liveness after the faults stop). It does not own
//! the search itself ([`crate::checker`]) or printing a run set's report (the `sim` command).
//!
//! A run is a function of its seed: madsim schedules every task, message and timer from it,
//! and the workload and nemesis draw from ChaCha generators seeded from it. The trace hash
//! covers the history and the fault log, so the same seed gives the same hash.

mod appends;
mod auth;
mod elections;
mod leases;
mod locks;
mod nemesis;
mod registers;
mod timeline;
mod watcher;

use crate::checker::history_files::{RegisterInput, RegisterOutput};
use crate::checker::linearizability::{Limits, Operation, Verdict, check_operations};
use crate::checker::registers::{KeyedInput, RegistersModel};
use crate::fnv::Fnv;
use madsim::runtime::{Handle, Runtime};
use nemesis::{Slot, World, nemesis_step};
use oxcd::clock::Clock;
use oxcd::pb::etcdserverpb as pb;
use oxcd::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd::server::{ClusterState, ServerBug, ServerConfig};
use oxcd::start;
use oxcd::storage::{DiskFaults, SimDisk};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use registers::{
    History, Outcome, client, describe, nanos, perform, resolve, revision_violations,
    written_values,
};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Which faults the nemesis injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    pub partition: bool,
    pub crash: bool,
    pub pause: bool,
    /// Members' clocks drift (a rate each) and jump forward.
    pub skew: bool,
    pub disk: bool,
    /// Packet loss (retransmitted: delays) and latency spikes.
    pub net: bool,
    /// Leadership moved to another member (etcd's MoveLeader).
    pub transfer: bool,
    /// A member removed from the cluster and added back as a new member on an empty disk.
    pub member: bool,
}

impl Faults {
    pub const ALL: Faults = Faults {
        partition: true,
        crash: true,
        pause: true,
        skew: true,
        disk: true,
        net: true,
        transfer: true,
        member: true,
    };
    pub const NONE: Faults = Faults {
        partition: false,
        crash: false,
        pause: false,
        skew: false,
        disk: false,
        net: false,
        transfer: false,
        member: false,
    };

    /// `all`, `none`, or a comma-separated list of `partition`, `crash`, `pause`, `skew`,
    /// `disk`, `net`, `transfer`, `member`.
    pub fn parse(s: &str) -> Result<Faults, String> {
        match s {
            "all" => return Ok(Faults::ALL),
            "none" => return Ok(Faults::NONE),
            _ => {}
        }
        let mut f = Faults::NONE;
        for name in s.split(',') {
            match name.trim() {
                "partition" => f.partition = true,
                "crash" => f.crash = true,
                "pause" => f.pause = true,
                "skew" => f.skew = true,
                "disk" => f.disk = true,
                "net" => f.net = true,
                "transfer" => f.transfer = true,
                "member" => f.member = true,
                other => return Err(format!("unknown fault {other:?}")),
            }
        }
        Ok(f)
    }

    /// Every kind of fault, in the order the nemesis draws from.
    pub const KINDS: [&'static str; 8] = [
        "partition",
        "crash",
        "pause",
        "skew",
        "disk",
        "net",
        "transfer",
        "member",
    ];

    /// The kinds switched on, in [`Faults::KINDS`] order.
    pub fn enabled(&self) -> Vec<&'static str> {
        let on = [
            self.partition,
            self.crash,
            self.pause,
            self.skew,
            self.disk,
            self.net,
            self.transfer,
            self.member,
        ];
        Faults::KINDS
            .into_iter()
            .zip(on)
            .filter_map(|(kind, on)| on.then_some(kind))
            .collect()
    }

    pub fn name(&self) -> String {
        if *self == Faults::ALL {
            return "all".into();
        }
        if *self == Faults::NONE {
            return "none".into();
        }
        self.enabled().join(",")
    }
}

/// One run's settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub nodes: usize,
    /// The fault phase, in simulated time.
    pub duration: Duration,
    pub faults: Faults,
    pub clients: usize,
    /// A planted server mistake the run must catch.
    pub bug: Option<ServerBug>,
    /// Run the auth workload ([`auth`]) instead of the others: users with partial
    /// permissions, granted and revoked during the run.
    pub auth: bool,
}

/// What one run found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub ops: usize,
    /// Faults injected, by kind (`partition`, `crash`, `pause`, `disk`).
    pub faults: BTreeMap<&'static str, u64>,
    /// Properties that failed, each with what shows it.
    pub violations: Vec<String>,
    /// Partitions the linearizability search gave up on (neither verdict).
    pub undecided: usize,
    pub hash: u64,
    pub sim_ms: u64,
    /// For a run with violations: an HTML timeline of its history (clients as lanes,
    /// operations as bars, the operations that show a violation marked), to open in a browser.
    pub timeline_html: Option<String>,
}

/// Registers the workload uses: few, so that operations contend.
pub(crate) const KEYS: u32 = 3;
/// How long a client waits for one answer before it counts the outcome as unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one member gets to hand over a history after the run before the next is asked.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(20);
/// After the faults stop: the bound for a write to succeed again.
const LIVENESS_BOUND: Duration = Duration::from_secs(30);
/// Beyond a lease's lapse (or the healing, if later): a leader change's grace of one election
/// timeout, and time for the revoke to commit.
const LEASE_GRACE: Duration = Duration::from_secs(3);
/// Clients taking the one lock: the even ones through the Lock service, the odd ones with the
/// client-side recipe.
const LOCK_CLIENTS: usize = 3;
/// Candidates in the one election (and one observer).
const ELECTION_CANDIDATES: usize = 2;
/// Clients of the multi-key transaction (list-append) workload.
const TXN_CLIENTS: usize = 2;
/// A client's pause between operations, at most.
const THINK_MS_MAX: u64 = 30;
/// The linearizability search's budget per run.
const SEARCH_STEPS_MAX: u64 = 5_000_000;

fn member_ip(i: usize) -> IpAddr {
    format!("10.0.0.{}", i + 1).parse().expect("an IP")
}

pub(crate) fn client_url(i: usize) -> String {
    format!("http://{}:2379", member_ip(i))
}

fn config(i: usize, nodes: usize, bug: Option<ServerBug>, clock: Clock) -> ServerConfig {
    let peer = |j: usize| format!("http://{}:2380", member_ip(j));
    let mut c = ServerConfig::single(&format!("m{i}"), "unused".into());
    c.listen_client = vec![format!("{}:2379", member_ip(i))];
    c.advertise_client_urls = vec![client_url(i)];
    c.listen_peer = vec![format!("{}:2380", member_ip(i))];
    c.advertise_peer_urls = vec![peer(i)];
    c.initial_cluster = (0..nodes)
        .map(|j| (format!("m{j}"), vec![peer(j)]))
        .collect();
    // Log compaction and snapshots happen within a run.
    c.snapshot_count = 200;
    c.snapshot_catchup_entries = 50;
    c.planted_bug = bug;
    c.clock = clock;
    // bcrypt's cheapest cost: the auth workload logs in again after every restart.
    c.bcrypt_cost = 4;
    c
}

/// A put that succeeds within `bound`, through any member: the cluster is live.
async fn live_within(nodes: usize, bound: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let mut attempt = 0;
    while started.elapsed() < bound {
        let m = attempt % nodes;
        attempt += 1;
        if let Outcome::Done(..) = perform(m, KEYS, RegisterInput::Write(attempt as u64)).await {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "no write succeeded within {bound:?} after the faults stopped"
    ))
}

/// Every member's HashKV at one revision they all have: equal, or a violation.
async fn hashes_agree(nodes: usize) -> Result<(), String> {
    // Wait (bounded) until every member has applied the same revision.
    let mut revisions = Vec::new();
    for _ in 0..100 {
        revisions.clear();
        for m in 0..nodes {
            let Ok(mut c) = MaintenanceClient::connect(client_url(m)).await else {
                break;
            };
            let Ok(r) = c.hash_kv(pb::HashKvRequest { revision: 0 }).await else {
                break;
            };
            revisions.push(r.into_inner().header.map_or(0, |h| h.revision));
        }
        if revisions.len() == nodes && revisions.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if revisions.len() != nodes {
        return Err(format!("not every member answered HashKV: {revisions:?}"));
    }
    let at = *revisions.iter().min().expect("members");
    let mut hashes = Vec::new();
    for m in 0..nodes {
        let mut c = MaintenanceClient::connect(client_url(m))
            .await
            .map_err(|e| format!("m{m}: {e}"))?;
        let r = c
            .hash_kv(pb::HashKvRequest { revision: at })
            .await
            .map_err(|e| format!("m{m} HashKV at {at}: {e}"))?
            .into_inner();
        hashes.push(r.hash);
    }
    if hashes.windows(2).all(|w| w[0] == w[1]) {
        Ok(())
    } else {
        Err(format!(
            "HashKV at revision {at} differs between members: {hashes:?}"
        ))
    }
}

/// Runs one seed to the end and checks it.
///
/// Each run gets a thread of its own: std's hash maps draw their keys once per thread (from
/// madsim's seeded randomness inside a run), so a second run on the same thread would iterate
/// its maps in another order and not replay bit for bit.
pub fn run(opts: &Options) -> Report {
    let opts = opts.clone();
    std::thread::spawn(move || {
        let mut rt = Runtime::with_seed_and_config(opts.seed, madsim::Config::default());
        // A run that cannot end is a bug too: bound it generously in simulated time.
        rt.set_time_limit(opts.duration + Duration::from_secs(600));
        rt.block_on(scenario(opts))
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

async fn scenario(opts: Options) -> Report {
    let handle = Handle::current();
    let n = opts.nodes;
    let disks: Vec<SimDisk> = (0..n)
        .map(|i| {
            SimDisk::new(
                opts.seed.wrapping_mul(31).wrapping_add(i as u64),
                DiskFaults::default(),
            )
        })
        .collect();
    // Each member's clock drifts by up to ±2% (with skew faults), drawn from the seed.
    let mut clock_rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x636c_6f63_6b73);
    let (clocks, skews): (Vec<Clock>, Vec<_>) = (0..n)
        .map(|_| {
            let drift = if opts.faults.skew {
                clock_rng.gen_range(-20_000..=20_000)
            } else {
                0
            };
            Clock::skewed(drift)
        })
        .unzip();
    let mut nodes = Vec::new();
    let slots: Vec<Arc<Mutex<Slot>>> = disks
        .iter()
        .map(|d| {
            Arc::new(Mutex::new(Slot {
                disk: d.clone(),
                joining: false,
            }))
        })
        .collect();
    for (i, slot) in slots.iter().enumerate() {
        let slot = slot.clone();
        let bug = opts.bug;
        let clock = clocks[i].clone();
        let node = handle
            .create_node()
            .name(format!("m{i}"))
            .ip(member_ip(i))
            .init(move || {
                let (disk, joining) = {
                    let s = slot.lock().expect("one thread");
                    (s.disk.reopen(), s.joining)
                };
                let clock = clock.clone();
                async move {
                    let mut c = config(i, n, bug, clock);
                    if joining {
                        c.cluster_state = ClusterState::Existing;
                    }
                    // A member that cannot start (its disk refuses) stays down until the
                    // next restart; the checks see it as an unavailable member.
                    let server = start(c, disk).await;
                    std::future::pending::<()>().await;
                    drop(server);
                }
            })
            .build();
        nodes.push(node.id());
    }
    let start_at = Instant::now();
    let until = start_at + opts.duration;
    let history: History = Arc::new(Mutex::new(Vec::new()));
    let client_node = |name: String, ip: &str| {
        handle
            .create_node()
            .name(name)
            .ip(ip.parse().expect("an IP"))
            .build()
    };
    // The auth workload replaces the others (they do not log in); auth is set up before the
    // faults start.
    let auth_log = auth::Shared::default();
    let mut auth_tasks = Vec::new();
    if opts.auth {
        let setup = client_node("auth-setup".into(), "10.0.1.130")
            .spawn(auth::setup(opts.seed, n, auth_log.clone()))
            .await;
        if let Ok(Err(e)) | Err(e) = setup.map_err(|e| e.to_string()) {
            auth_log.lock().expect("one thread").problem(e);
        }
        let (seed, log) = (opts.seed, auth_log.clone());
        auth_tasks.push(
            client_node("auth-admin".into(), "10.0.1.131").spawn(auth::admin(seed, n, until, log)),
        );
        let log = auth_log.clone();
        auth_tasks.push(
            client_node("auth-writer".into(), "10.0.1.132")
                .spawn(auth::writer(seed, n, until, log)),
        );
    }
    let clients = if opts.auth { 0 } else { opts.clients };
    // Clients run on nodes of their own, so that killing a member never kills a client.
    let mut tasks = Vec::new();
    for c in 0..clients {
        let node = handle
            .create_node()
            .name(format!("client{c}"))
            .ip(format!("10.0.1.{}", c + 1).parse().expect("an IP"))
            .build();
        let (seed, history) = (opts.seed, history.clone());
        tasks.push(node.spawn(client(c, seed, n, start_at, until, history)));
    }
    let others = !opts.auth;
    let watch_task = others.then(|| {
        client_node("watcher".into(), "10.0.1.100").spawn(watcher::follow(opts.seed, n, until))
    });
    let lease_task = others.then(|| {
        client_node("leaser".into(), "10.0.1.101").spawn(leases::run(opts.seed, n, until))
    });
    let lock_tasks: Vec<_> = (0..if others { LOCK_CLIENTS } else { 0 })
        .map(|c| {
            client_node(format!("locker{c}"), &format!("10.0.1.{}", 110 + c)).spawn(async move {
                if c % 2 == 0 {
                    locks::run_service(c, opts.seed, n, until).await
                } else {
                    locks::run(c, opts.seed, n, until).await
                }
            })
        })
        .collect();
    let candidate_tasks: Vec<_> = (0..if others { ELECTION_CANDIDATES } else { 0 })
        .map(|c| {
            client_node(format!("candidate{c}"), &format!("10.0.1.{}", 140 + c))
                .spawn(elections::candidate(c, opts.seed, n, until))
        })
        .collect();
    let observer_task = others.then(|| {
        client_node("observer".into(), "10.0.1.150").spawn(elections::observer(opts.seed, n, until))
    });
    let txn_tasks: Vec<_> = (0..if others { TXN_CLIENTS } else { 0 })
        .map(|c| {
            client_node(format!("txn{c}"), &format!("10.0.1.{}", 120 + c))
                .spawn(appends::run(c, opts.seed, n, start_at, until))
        })
        .collect();

    let mut world = World {
        handle: handle.clone(),
        nodes,
        disks,
        slots,
        skews,
        ctl: handle
            .create_node()
            .name("nemesis")
            .ip("10.0.4.1".parse().expect("an IP"))
            .build(),
        killed: vec![false; n],
        paused: vec![false; n],
        log: Vec::new(),
        counts: BTreeMap::new(),
        start: start_at,
    };
    if std::env::var_os("SIM_DEBUG").is_some() {
        let probe = handle
            .create_node()
            .name("probe")
            .ip("10.0.2.1".parse().expect("an IP"))
            .build();
        probe.spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                for m in 0..n {
                    let s = match MaintenanceClient::connect(client_url(m)).await {
                        Ok(mut c) => format!(
                            "{:?}",
                            c.status(pb::StatusRequest {}).await.map(|r| {
                                let r = r.into_inner();
                                (r.leader, r.raft_term, r.raft_index, r.raft_applied_index)
                            })
                        ),
                        Err(e) => format!("connect: {e}"),
                    };
                    eprintln!("probe m{m}: {s}");
                }
            }
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x006e_656d_6573_6973);
    // Safety phase: faults until the deadline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while Instant::now() < until {
        nemesis_step(&mut world, &mut rng, opts.faults).await;
    }
    world.heal_all();
    nemesis::restore_membership(&mut world).await;
    let healed = Instant::now();
    let mut violations = Vec::new();
    for t in tasks {
        if t.await.is_err() {
            violations.push("a client task failed".to_string());
        }
    }
    let watch_log = match watch_task {
        Some(t) => t.await.unwrap_or_else(|_| {
            violations.push("the watcher task failed".to_string());
            watcher::WatchLog::default()
        }),
        None => watcher::WatchLog::default(),
    };
    let leased = match lease_task {
        Some(t) => t.await.unwrap_or_else(|_| {
            violations.push("the lease task failed".to_string());
            Vec::new()
        }),
        None => Vec::new(),
    };
    for t in auth_tasks {
        if t.await.is_err() {
            violations.push("an auth client task failed".to_string());
        }
    }
    let auth_ops = auth_log.lock().expect("one thread").ops();
    violations.extend(auth::check(&auth_log.lock().expect("one thread")));
    let leased_n = leased.len();
    let acquired = join_lists(lock_tasks, "a lock client failed", &mut violations).await;
    let mut elected = Vec::new();
    for t in candidate_tasks {
        match t.await {
            Ok(c) => {
                elected.extend(c.elected);
                violations.extend(c.problems);
            }
            Err(_) => violations.push("an election candidate failed".to_string()),
        }
    }
    let observed = match observer_task {
        Some(t) => t.await.unwrap_or_else(|_| {
            violations.push("the election observer failed".to_string());
            Vec::new()
        }),
        None => Vec::new(),
    };
    let (elected_n, observed_n) = (elected.len(), observed.iter().map(Vec::len).sum::<usize>());
    let acquired_n = acquired.len();
    let txns = join_lists(txn_tasks, "a transaction client failed", &mut violations).await;
    let txns_n = txns.len();
    let committed_n = txns
        .iter()
        .filter(|t| matches!(t.outcome, appends::Outcome::Committed { .. }))
        .count();
    // Liveness phase: faults stopped, the cluster must serve again. (From a node of its own:
    // the runtime's main node has no address to talk from.)
    let checker = handle
        .create_node()
        .name("checker")
        .ip("10.0.3.1".parse().expect("an IP"))
        .build();
    let after = checker
        .spawn(async move {
            if let Err(e) = live_within(n, LIVENESS_BOUND).await {
                return Err(format!("liveness: {e}"));
            }
            hashes_agree(n)
                .await
                .map_err(|e| format!("revision invariants: {e}"))?;
            let written = written_values(n)
                .await
                .map_err(|e| format!("history: {e}"))?;
            let lock_keys = locks::history(n, "lock/", "lock0")
                .await
                .map_err(|e| format!("history: {e}"))?;
            let mut more = locks::check("lock", &acquired, &lock_keys);
            let election_keys = locks::history(n, elections::PREFIX, elections::PREFIX_END)
                .await
                .map_err(|e| format!("history: {e}"))?;
            more.extend(locks::check("election", &elected, &election_keys));
            more.extend(elections::check_observed(&observed, &election_keys));
            let lists = appends::history(n)
                .await
                .map_err(|e| format!("history: {e}"))?;
            more.extend(appends::check(&txns, &lists));
            more.extend(leases::check(&leased, n, healed, LEASE_GRACE).await);
            Ok((written, more))
        })
        .await;
    let written = match after {
        Ok(Ok((written, lease_violations))) => {
            violations.extend(lease_violations);
            violations.extend(watcher::check(&watch_log, &written));
            Some(written)
        }
        Ok(Err(e)) => {
            violations.push(e);
            None
        }
        Err(e) => {
            violations.push(format!("the liveness checker failed: {e}"));
            None
        }
    };
    let sim_ms = start_at.elapsed().as_millis() as u64;

    let mut recorded = history.lock().expect("one thread").clone();
    recorded.sort_by_key(|r| (r.op.call, r.op.client));
    // Without the store's history (a violation already), writes of unknown outcome stay unknown.
    if let Some(written) = &written {
        let end = nanos(start_at);
        for v in resolve(&mut recorded, written, end) {
            violations.push(format!("lost or invented writes: {v}"));
        }
    }
    for v in revision_violations(&recorded) {
        violations.push(format!("revision invariants: {v}"));
    }
    let ops: Vec<Operation<KeyedInput, RegisterOutput>> =
        recorded.iter().map(|r| r.op.clone()).collect();
    let mut undecided = 0;
    let mut marked: Vec<usize> = Vec::new();
    match check_operations::<RegistersModel>(
        &ops,
        Limits {
            steps_max: SEARCH_STEPS_MAX,
        },
    ) {
        Verdict::Linearizable => {}
        Verdict::Unknown { unfinished, .. } => undecided = unfinished.len(),
        Verdict::NotLinearizable(cx) => {
            marked = cx.window.clone();
            let mut window: Vec<String> =
                cx.window.iter().map(|&i| describe(&recorded[i])).collect();
            window.insert(0, format!(
                "linearizability: register reg/{} has no linearization; the operations that show it:",
                recorded[cx.blocked].op.input.key
            ));
            violations.push(window.join("\n    "));
        }
    }

    let mut hash = Fnv::default();
    for r in &recorded {
        hash.u64(r.op.client)
            .u64(u64::from(r.op.input.key))
            .bytes(format!("{:?}{:?}", r.op.input.op, r.op.output).as_bytes())
            .u64(r.op.call)
            .u64(r.op.ret)
            .u64(r.revision.unwrap_or(-1) as u64);
    }
    for line in &world.log {
        hash.bytes(line.as_bytes());
    }
    hash.u64(acquired_n as u64)
        .u64(txns_n as u64)
        .u64(watch_log.events.len() as u64)
        .u64(watch_log.resumes)
        .u64(leased_n as u64)
        .u64(auth_ops as u64)
        .u64(elected_n as u64)
        .u64(observed_n as u64);
    if std::env::var_os("SIM_DEBUG").is_some() {
        let unknown = recorded.iter().filter(|r| r.op.output.is_none()).count();
        eprintln!(
            "seed {}: {} ops, {unknown} with unknown outcomes",
            opts.seed,
            recorded.len()
        );
        eprintln!(
            "{txns_n} transactions, {committed_n} committed; {acquired_n} lock acquisitions; {elected_n} terms as leader, {observed_n} leaders observed; {} watch events, progress {}/{}",
            watch_log.events.len(),
            watch_log.progress_seen,
            watch_log.progress_asked
        );
        for r in recorded.iter().take(40) {
            eprintln!("  {}", describe(r));
        }
    }
    if std::env::var_os("SIM_DEBUG").is_some() {
        eprintln!("fault log of seed {}:\n{}", opts.seed, world.log.join("\n"));
    }
    let timeline_html = (!violations.is_empty())
        .then(|| timeline::page(&opts, &recorded, &marked, &world.log, &violations));
    Report {
        timeline_html,
        seed: opts.seed,
        ops: recorded.len() + auth_ops,
        faults: world.counts,
        violations,
        undecided,
        hash: hash.finish(),
        sim_ms,
    }
}

/// The command that replays `opts`' seed alone.
pub fn replay_command(opts: &Options) -> String {
    let mut cmd = format!(
        "sim/run cluster --seed {} --count 1 --nodes {} --duration {}s --faults {}",
        opts.seed,
        opts.nodes,
        opts.duration.as_secs(),
        opts.faults.name()
    );
    if opts.auth {
        cmd += " --auth";
    }
    if let Some(bug) = opts.bug {
        cmd += &format!(" --bug {}", bug_name(bug));
    }
    cmd
}

pub fn bug_name(bug: ServerBug) -> &'static str {
    match bug {
        ServerBug::LocalLinearizableReads => "local-linearizable-reads",
        ServerBug::ExpiredLeasesKept => "expired-leases-kept",
        ServerBug::AuthCheckedOnEntryOnly => "auth-checked-on-entry-only",
        ServerBug::CampaignWithoutWaiting => "campaign-without-waiting",
        ServerBug::ObserveSkipsLeaders => "observe-skips-leaders",
    }
}

/// The planted server mistakes, by name.
const BUGS: [ServerBug; 5] = [
    ServerBug::LocalLinearizableReads,
    ServerBug::ExpiredLeasesKept,
    ServerBug::AuthCheckedOnEntryOnly,
    ServerBug::CampaignWithoutWaiting,
    ServerBug::ObserveSkipsLeaders,
];

pub fn parse_bug(name: &str) -> Result<ServerBug, String> {
    BUGS.into_iter()
        .find(|&b| bug_name(b) == name)
        .ok_or_else(|| {
            let known: Vec<&str> = BUGS.into_iter().map(bug_name).collect();
            format!("unknown bug {name:?} (known: {})", known.join(", "))
        })
}

/// Asks each member in turn, [`HISTORY_TIMEOUT`] each, until one answers `ask`; otherwise
/// fails with the last member's reason, as "no member gave {what}: m{i}: {why}".
async fn from_any_member<T, Fut>(
    nodes: usize,
    what: &str,
    mut ask: impl FnMut(usize) -> Fut,
) -> Result<T, String>
where
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for m in 0..nodes {
        match tokio::time::timeout(HISTORY_TIMEOUT, ask(m)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => last = format!("m{m}: {e}"),
            Err(_) => last = format!("m{m}: timed out"),
        }
    }
    Err(format!("no member gave {what}: {last}"))
}

/// Joins `tasks` in order and concatenates what they returned; each task that failed adds
/// `failed` to `violations`.
async fn join_lists<T>(
    tasks: Vec<tokio::task::JoinHandle<Vec<T>>>,
    failed: &str,
    violations: &mut Vec<String>,
) -> Vec<T> {
    let mut all = Vec::new();
    for t in tasks {
        match t.await {
            Ok(items) => all.extend(items),
            Err(_) => violations.push(failed.to_string()),
        }
    }
    all
}
