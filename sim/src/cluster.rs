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

mod auth;
mod nemesis;

use crate::fnv::Fnv;
use crate::workload::{self, OP_TIMEOUT, Plan, Running, Spawner, client_url, timeline};
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

fn member_ip(i: usize) -> IpAddr {
    format!("10.0.0.{}", i + 1).parse().expect("an IP")
}

/// Madsim gives each workload task a node of its own, with the address it names.
struct Nodes(Handle);

impl Spawner for Nodes {
    fn spawn<F>(&self, name: &str, ip: &str, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0
            .create_node()
            .name(name)
            .ip(ip.parse().expect("an IP"))
            .build()
            .spawn(task)
    }
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
    workload::set_endpoints(
        (0..n)
            .map(|i| {
                let ip = member_ip(i);
                (format!("http://{ip}:2379"), format!("http://{ip}:2380"))
            })
            .collect(),
    );
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
    let spawner = Nodes(handle.clone());
    let running = Running::start(
        &spawner,
        Plan {
            seed: opts.seed,
            nodes: n,
            clients: if opts.auth { 0 } else { opts.clients },
            others: !opts.auth,
            start: start_at,
            until,
        },
    );

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
        jumps: Vec::new(),
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
    let mut auth_failed = Vec::new();
    for t in auth_tasks {
        if t.await.is_err() {
            auth_failed.push("an auth client task failed".to_string());
        }
    }
    let auth_ops = auth_log.lock().expect("one thread").ops();
    let found = running.finish(&spawner, healed, world.jumps.clone()).await;
    let mut violations = found.violations();
    violations.extend(auth_failed);
    violations.extend(auth::check(&auth_log.lock().expect("one thread")));
    let sim_ms = start_at.elapsed().as_millis() as u64;
    let recorded = &found.recorded;

    let mut hash = Fnv::default();
    for r in recorded {
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
    for &c in &found.counts {
        hash.u64(c);
    }
    hash.u64(auth_ops as u64);
    if std::env::var_os("SIM_DEBUG").is_some() {
        let unknown = recorded.iter().filter(|r| r.op.output.is_none()).count();
        eprintln!(
            "seed {}: {} ops, {unknown} with unknown outcomes; counts {:?}",
            opts.seed,
            recorded.len(),
            found.counts
        );
        for r in recorded.iter().take(40) {
            eprintln!("  {}", workload::registers::describe(r));
        }
    }
    if std::env::var_os("SIM_DEBUG").is_some() {
        eprintln!("fault log of seed {}:\n{}", opts.seed, world.log.join("\n"));
    }
    let timeline_html = (!violations.is_empty()).then(|| {
        timeline::page(&timeline::Page {
            seed: opts.seed,
            replay: &replay_command(&opts),
            lanes: opts.clients,
            history: recorded,
            marked: &found.marked,
            shaded: &[],
            faults: &world.log,
            violations: &violations,
        })
    });
    Report {
        timeline_html,
        seed: opts.seed,
        ops: recorded.len() + auth_ops,
        faults: world.counts,
        violations,
        undecided: found.undecided,
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
    bug.name()
}

pub fn parse_bug(name: &str) -> Result<ServerBug, String> {
    ServerBug::parse(name)
}
