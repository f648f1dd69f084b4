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

mod leases;
mod watcher;

use crate::checker::history_files::{RegisterInput, RegisterOutput};
use crate::checker::linearizability::{Limits, Operation, Verdict, check_operations};
use crate::checker::registers::{KeyedInput, RegistersModel};
use crate::fnv::Fnv;
use bytes::Bytes;
use madsim::runtime::{Handle, Runtime};
use oxcd::clock::Clock;
use oxcd::pb::etcdserverpb::cluster_client::ClusterClient;
use oxcd::pb::etcdserverpb::kv_client::KvClient;
use oxcd::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use oxcd::pb::etcdserverpb::{self as pb, compare, request_op};
use oxcd::server::{ClusterState, ServerBug, ServerConfig, start};
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

    pub fn name(&self) -> String {
        if *self == Faults::ALL {
            return "all".into();
        }
        if *self == Faults::NONE {
            return "none".into();
        }
        let mut names = Vec::new();
        for (on, name) in [
            (self.partition, "partition"),
            (self.crash, "crash"),
            (self.pause, "pause"),
            (self.skew, "skew"),
            (self.disk, "disk"),
            (self.net, "net"),
            (self.transfer, "transfer"),
            (self.member, "member"),
        ] {
            if on {
                names.push(name);
            }
        }
        names.join(",")
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
/// After the faults stop: the bound for a write to succeed again.
const LIVENESS_BOUND: Duration = Duration::from_secs(30);
/// Beyond a lease's lapse (or the healing, if later): a leader change's grace of one election
/// timeout, and time for the revoke to commit.
const LEASE_GRACE: Duration = Duration::from_secs(3);
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
    c
}

/// One recorded operation: the checker's input plus the response revision.
#[derive(Clone, Debug)]
struct Recorded {
    op: Operation<KeyedInput, RegisterOutput>,
    revision: Option<i64>,
    member: usize,
    /// An unknown outcome that the store's history resolved (its return time is the end).
    resolved: bool,
}

type History = Arc<Mutex<Vec<Recorded>>>;

fn nanos(since: Instant) -> u64 {
    since.elapsed().as_nanos() as u64
}

/// How one operation ended.
enum Outcome {
    Done(RegisterOutput, i64),
    /// Never sent (no connection): it did not happen.
    NotSent,
    /// Sent, and then no answer or an error: it may or may not have happened.
    Unknown,
}

/// Sends one operation to member `m`.
async fn perform(m: usize, key: u32, op: RegisterInput) -> Outcome {
    let connect = tokio::time::timeout(OP_TIMEOUT, KvClient::connect(client_url(m))).await;
    let Ok(Ok(c)) = connect else {
        return Outcome::NotSent;
    };
    match tokio::time::timeout(OP_TIMEOUT, send(c, key, op)).await {
        Ok(Some((output, revision))) => Outcome::Done(output, revision),
        _ => Outcome::Unknown,
    }
}

async fn send(
    mut c: KvClient<tonic::transport::Channel>,
    key: u32,
    op: RegisterInput,
) -> Option<(RegisterOutput, i64)> {
    let k = Bytes::from(format!("reg/{key}"));
    {
        match op {
            RegisterInput::Read => {
                let r = c
                    .range(pb::RangeRequest {
                        key: k,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                let value = match r.kvs.first() {
                    Some(kv) => Some(std::str::from_utf8(&kv.value).ok()?.parse().ok()?),
                    None => None,
                };
                Some((RegisterOutput::Read(value), r.header?.revision))
            }
            RegisterInput::Write(v) => {
                let r = c
                    .put(pb::PutRequest {
                        key: k,
                        value: Bytes::from(v.to_string()),
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                Some((RegisterOutput::Write, r.header?.revision))
            }
            RegisterInput::Cas { from, to } => {
                let r = c
                    .txn(pb::TxnRequest {
                        compare: vec![pb::Compare {
                            result: compare::CompareResult::Equal as i32,
                            target: compare::CompareTarget::Value as i32,
                            key: k.clone(),
                            target_union: Some(compare::TargetUnion::Value(Bytes::from(
                                from.to_string(),
                            ))),
                            ..Default::default()
                        }],
                        success: vec![pb::RequestOp {
                            request: Some(request_op::Request::RequestPut(pb::PutRequest {
                                key: k,
                                value: Bytes::from(to.to_string()),
                                ..Default::default()
                            })),
                        }],
                        failure: vec![],
                    })
                    .await
                    .ok()?
                    .into_inner();
                Some((RegisterOutput::Cas { ok: r.succeeded }, r.header?.revision))
            }
        }
    }
}

/// A client: random reads, writes of unique values and compare-and-sets on the registers,
/// each to a random member, until `until`.
async fn client(
    id: usize,
    seed: u64,
    nodes: usize,
    start: Instant,
    until: Instant,
    history: History,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x5eed_c11e_u64 + id as u64));
    let mut seq = 0u64;
    let mut last_seen: BTreeMap<u32, u64> = BTreeMap::new();
    while Instant::now() < until {
        let key = rng.gen_range(0..KEYS);
        let m = rng.gen_range(0..nodes);
        seq += 1;
        // Values are unique per client and operation, so every write is told apart.
        let fresh = (id as u64 + 1) * 1_000_000 + seq;
        let op = match rng.gen_range(0..10) {
            0..=3 => RegisterInput::Read,
            4..=6 => RegisterInput::Write(fresh),
            _ => RegisterInput::Cas {
                from: last_seen.get(&key).copied().unwrap_or(0),
                to: fresh,
            },
        };
        let call = nanos(start);
        let result = perform(m, key, op).await;
        let ret = nanos(start);
        let (output, revision) = match result {
            Outcome::Done(output, revision) => {
                match (op, output) {
                    (_, RegisterOutput::Read(Some(v))) => {
                        last_seen.insert(key, v);
                    }
                    (RegisterInput::Write(v), _)
                    | (RegisterInput::Cas { to: v, .. }, RegisterOutput::Cas { ok: true }) => {
                        last_seen.insert(key, v);
                    }
                    _ => {}
                }
                (Some(output), Some(revision))
            }
            Outcome::NotSent => (None, None),
            // A read that failed constrains nothing; a write may or may not have happened
            // (the checks resolve it from the store's history).
            Outcome::Unknown if op == RegisterInput::Read => (None, None),
            Outcome::Unknown => (None, Some(-1)),
        };
        if output.is_some() || revision == Some(-1) {
            history.lock().expect("one thread").push(Recorded {
                op: Operation {
                    client: id as u64,
                    input: KeyedInput { key, op },
                    call,
                    output,
                    ret,
                },
                revision: revision.filter(|&r| r >= 0),
                member: m,
                resolved: false,
            });
        }
        let think = rng.gen_range(0..=THINK_MS_MAX);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
}

/// What a member node starts from when (re)started.
struct Slot {
    disk: SimDisk,
    /// Added to a running cluster (after a removal): it joins instead of founding.
    joining: bool,
}

/// The world of one run: member nodes and their disks.
struct World {
    handle: Handle,
    nodes: Vec<madsim::task::NodeId>,
    disks: Vec<SimDisk>,
    /// A node of the nemesis's own, to send the requests its faults need (MoveLeader).
    ctl: madsim::runtime::NodeHandle,
    /// What each member node starts from (its disk, and whether it joins a running cluster).
    slots: Vec<Arc<Mutex<Slot>>>,
    /// Each member's clock skew.
    skews: Vec<Arc<oxcd::clock::Skew>>,
    /// Members down (killed, not yet restarted) or paused.
    killed: Vec<bool>,
    paused: Vec<bool>,
    log: Vec<String>,
    counts: BTreeMap<&'static str, u64>,
    start: Instant,
}

impl World {
    fn note(&mut self, kind: &'static str, what: String) {
        *self.counts.entry(kind).or_default() += 1;
        let at = self.start.elapsed().as_millis();
        self.log.push(format!("{at:>7} ms  {what}"));
    }

    fn heal_network(&self) {
        let net = madsim::net::NetSim::current();
        for &a in &self.nodes {
            net.unclog_node(a);
            for &b in &self.nodes {
                net.unclog_link(a, b);
            }
        }
    }

    /// Everything back: network healed, paused members resumed, killed ones restarted,
    /// disk faults off.
    fn heal_all(&mut self) {
        self.heal_network();
        for i in 0..self.nodes.len() {
            self.disks[i].set_faults(DiskFaults::default());
            if self.paused[i] {
                self.handle.resume(self.nodes[i]);
                self.paused[i] = false;
            }
            if self.killed[i] {
                self.handle.restart(self.nodes[i]);
                self.killed[i] = false;
            }
        }
    }
}

/// One fault, held for a while, then undone.
async fn nemesis_step(w: &mut World, rng: &mut ChaCha8Rng, faults: Faults) {
    let n = w.nodes.len();
    let mut kinds = Vec::new();
    for (on, kind) in [
        (faults.partition, "partition"),
        (faults.crash, "crash"),
        (faults.pause, "pause"),
        (faults.skew, "skew"),
        (faults.disk, "disk"),
        (faults.net, "net"),
        (faults.transfer, "transfer"),
        (faults.member, "member"),
    ] {
        if on {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return;
    }
    let kind = kinds[rng.gen_range(0..kinds.len())];
    let hold = Duration::from_millis(rng.gen_range(500..4000));
    let victim = rng.gen_range(0..n);
    match kind {
        "partition" => {
            // A random minority cut off from the rest, both ways (a lone member is the
            // "isolated" case, which takes a leader away from its followers half the time).
            let size = rng.gen_range(1..=(n - 1) / 2);
            let mut side: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                side.swap(i, rng.gen_range(0..=i));
            }
            side.truncate(size);
            w.note(
                "partition",
                format!("partition {side:?} from the rest for {hold:?}"),
            );
            let net = madsim::net::NetSim::current();
            for &a in &side {
                for b in (0..n).filter(|b| !side.contains(b)) {
                    net.clog_link(w.nodes[a], w.nodes[b]);
                    net.clog_link(w.nodes[b], w.nodes[a]);
                }
            }
            tokio::time::sleep(hold).await;
            w.heal_network();
        }
        "crash" => {
            w.note("crash", format!("kill m{victim} (power loss) for {hold:?}"));
            w.handle.kill(w.nodes[victim]);
            w.disks[victim].crash();
            w.killed[victim] = true;
            tokio::time::sleep(hold).await;
            w.handle.restart(w.nodes[victim]);
            w.killed[victim] = false;
        }
        "pause" => {
            w.note("pause", format!("pause m{victim} for {hold:?}"));
            w.handle.pause(w.nodes[victim]);
            w.paused[victim] = true;
            tokio::time::sleep(hold).await;
            w.handle.resume(w.nodes[victim]);
            w.paused[victim] = false;
        }
        "net" => {
            let loss = rng.gen_range(0.05..0.3);
            let latency_ms = rng.gen_range(20..200);
            w.note(
                "net",
                format!("packet loss {loss:.2} and latency up to {latency_ms} ms for {hold:?}"),
            );
            let net = madsim::net::NetSim::current();
            net.update_config(|c| {
                c.packet_loss_rate = loss;
                c.send_latency = Duration::from_millis(1)..Duration::from_millis(latency_ms);
            });
            tokio::time::sleep(hold).await;
            net.update_config(|c| *c = madsim::net::Config::default());
        }
        "transfer" => {
            let to = rng.gen_range(0..n);
            let moved = w.ctl.spawn(move_leader(n, to)).await;
            match moved {
                Ok(Ok(from)) => w.note(
                    "transfer",
                    format!("leadership moved from m{from} to m{to}"),
                ),
                Ok(Err(why)) => w.note("transfer", format!("no leader transfer to m{to}: {why}")),
                Err(e) => w.note("transfer", format!("the transfer task failed: {e}")),
            }
        }
        "member" => {
            let removed = w.ctl.spawn(remove_member(n, victim)).await;
            match removed {
                Ok(Ok(id)) => {
                    w.note(
                        "member",
                        format!("m{victim} ({id:x}) removed; it rejoins on an empty disk"),
                    );
                    w.handle.kill(w.nodes[victim]);
                    let fresh = SimDisk::new(rng.gen_range(0..u64::MAX), DiskFaults::default());
                    {
                        let mut slot = w.slots[victim].lock().expect("one thread");
                        slot.disk = fresh.clone();
                        slot.joining = true;
                    }
                    w.disks[victim] = fresh;
                    let added = w.ctl.spawn(add_member(n, victim)).await;
                    if !matches!(added, Ok(Ok(()))) {
                        w.note(
                            "member",
                            format!("m{victim} could not be added back: {added:?}"),
                        );
                    }
                    w.handle.restart(w.nodes[victim]);
                }
                Ok(Err(why)) => w.note("member", format!("m{victim} not removed: {why}")),
                Err(e) => w.note("member", format!("the remove task failed: {e}")),
            }
        }
        "skew" => {
            let ms = rng.gen_range(200..3000);
            w.note("skew", format!("m{victim}'s clock jumps {ms} ms forward"));
            w.skews[victim].jump(ms);
        }
        _ => {
            // A slow disk, or one whose syncs fail (the member stops for good: the way back
            // is a restart from its disk).
            if rng.gen_bool(0.5) {
                w.note("disk", format!("slow disk on m{victim} for {hold:?}"));
                w.disks[victim].set_faults(DiskFaults {
                    slow_io: 0.5,
                    slow_io_delay: Duration::from_millis(rng.gen_range(5..100)),
                    ..DiskFaults::default()
                });
                tokio::time::sleep(hold).await;
                w.disks[victim].set_faults(DiskFaults::default());
            } else {
                w.note(
                    "disk",
                    format!("failing syncs on m{victim}, then a restart"),
                );
                w.disks[victim].set_faults(DiskFaults {
                    sync_failure: 0.2,
                    ..DiskFaults::default()
                });
                tokio::time::sleep(hold).await;
                w.disks[victim].set_faults(DiskFaults::default());
                w.handle.kill(w.nodes[victim]);
                w.disks[victim].crash();
                w.handle.restart(w.nodes[victim]);
            }
        }
    }
    // Quiet time between faults.
    tokio::time::sleep(Duration::from_millis(rng.gen_range(200..2000))).await;
}

/// Asks the leader to hand leadership to member `to`; the leader's index, or why not.
async fn move_leader(nodes: usize, to: usize) -> Result<usize, String> {
    let mut ids = Vec::new();
    let mut leader = None;
    for m in 0..nodes {
        let status = async {
            let mut c = MaintenanceClient::connect(client_url(m)).await.ok()?;
            c.status(pb::StatusRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        };
        let s = tokio::time::timeout(OP_TIMEOUT, status)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| format!("m{m} did not answer Status"))?;
        let id = s.header.map_or(0, |h| h.member_id);
        if s.leader == id {
            leader = Some(m);
        }
        ids.push(id);
    }
    let from = leader.ok_or("no member leads")?;
    if from == to {
        return Err(format!("m{to} leads already"));
    }
    let go = async {
        let mut c = MaintenanceClient::connect(client_url(from))
            .await
            .map_err(|e| e.to_string())?;
        c.move_leader(pb::MoveLeaderRequest { target_id: ids[to] })
            .await
            .map_err(|e| e.message().to_string())
    };
    match tokio::time::timeout(OP_TIMEOUT * 5, go).await {
        Ok(Ok(_)) => Ok(from),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("MoveLeader timed out".into()),
    }
}

/// The cluster's member list, from whichever member answers first.
async fn member_list(nodes: usize) -> Option<Vec<pb::Member>> {
    for m in 0..nodes {
        let list = async {
            let mut c = ClusterClient::connect(client_url(m)).await.ok()?;
            c.member_list(pb::MemberListRequest { linearizable: true })
                .await
                .ok()
                .map(|r| r.into_inner().members)
        };
        if let Ok(Some(members)) = tokio::time::timeout(OP_TIMEOUT, list).await {
            return Some(members);
        }
    }
    None
}

fn peer_url(i: usize) -> String {
    format!("http://{}:2380", member_ip(i))
}

/// Removes member `victim`: its ID once the member list no longer has it.
async fn remove_member(nodes: usize, victim: usize) -> Result<u64, String> {
    let members = member_list(nodes).await.ok_or("no member list")?;
    let id = members
        .iter()
        .find(|m| m.peer_ur_ls.contains(&peer_url(victim)))
        .map(|m| m.id)
        .ok_or_else(|| format!("m{victim} is not a member"))?;
    for m in (0..nodes).filter(|&m| m != victim) {
        let remove = async {
            let mut c = ClusterClient::connect(client_url(m)).await.ok()?;
            c.member_remove(pb::MemberRemoveRequest { id }).await.ok()
        };
        let _ = tokio::time::timeout(OP_TIMEOUT * 3, remove).await;
        // Answered or not, the member list says whether it happened.
        for _ in 0..10 {
            if let Some(members) = member_list(nodes).await {
                if members.iter().all(|m| m.id != id) {
                    return Ok(id);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Err(format!("m{victim} ({id:x}) is still a member"))
}

/// Adds member `victim`'s peer URL back, retrying until the member list has it.
async fn add_member(nodes: usize, victim: usize) -> Result<(), String> {
    for attempt in 0..30 {
        if let Some(members) = member_list(nodes).await
            && members
                .iter()
                .any(|m| m.peer_ur_ls.contains(&peer_url(victim)))
        {
            return Ok(());
        }
        let m = (victim + 1 + attempt) % nodes;
        let add = async {
            let mut c = ClusterClient::connect(client_url(m)).await.ok()?;
            c.member_add(pb::MemberAddRequest {
                peer_ur_ls: vec![peer_url(victim)],
                is_learner: false,
            })
            .await
            .ok()
        };
        let _ = tokio::time::timeout(OP_TIMEOUT * 3, add).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(format!("m{victim} was not added back"))
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

/// Every value the store holds or held for the registers, with the revision that wrote it:
/// a watch from revision 1 (nothing is compacted in a run) read up to the current revision.
async fn written_values(nodes: usize) -> Result<BTreeMap<u64, (u32, i64)>, String> {
    let mut last = String::new();
    for m in 0..nodes {
        let attempt = async {
            let mut kv = KvClient::connect(client_url(m))
                .await
                .map_err(|e| e.to_string())?;
            // The last revision that wrote a register (other keys, the leases', share the
            // revision counter): the history is complete once the watch reaches it.
            let now = kv
                .range(pb::RangeRequest {
                    key: Bytes::from_static(b"reg/"),
                    range_end: Bytes::from_static(b"reg0"),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner()
                .kvs
                .iter()
                .map(|kv| kv.mod_revision)
                .max()
                .unwrap_or(0);
            let (mut stream, tx) = watcher::open(m, 1, false).await?;
            let mut out = BTreeMap::new();
            // Only events say how far the history has come.
            let mut seen = 0;
            while seen < now {
                let Some(r) = stream.message().await.map_err(|e| e.to_string())? else {
                    return Err("the watch ended".to_string());
                };
                if r.canceled {
                    return Err(format!("the watch was canceled: {}", r.cancel_reason));
                }
                for e in r.events {
                    let kv = e.kv.unwrap_or_default();
                    seen = seen.max(kv.mod_revision);
                    let key: u32 = std::str::from_utf8(&kv.key[4..])
                        .ok()
                        .and_then(|k| k.parse().ok())
                        .ok_or_else(|| format!("an unexpected key {:?}", kv.key))?;
                    if key >= KEYS {
                        continue;
                    }
                    let value: u64 = std::str::from_utf8(&kv.value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| format!("an unexpected value {:?}", kv.value))?;
                    if out.insert(value, (key, kv.mod_revision)).is_some() {
                        return Err(format!("value {value} written twice"));
                    }
                }
            }
            drop(tx);
            Ok(out)
        };
        match tokio::time::timeout(Duration::from_secs(20), attempt).await {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(e)) => last = format!("m{m}: {e}"),
            Err(_) => last = format!("m{m}: timed out"),
        }
    }
    Err(format!("no member gave the registers' history: {last}"))
}

/// Resolves writes of unknown outcome from the store's history (a value that is there was
/// written, at its revision; one that is not never was: a run compacts nothing), and checks
/// that the history holds exactly what clients wrote: every acknowledged write at the revision
/// its answer named, and nothing no client wrote.
fn resolve(
    history: &mut Vec<Recorded>,
    written: &BTreeMap<u64, (u32, i64)>,
    end: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut attempted = std::collections::BTreeSet::new();
    history.retain_mut(|r| {
        let value = match r.op.input.op {
            RegisterInput::Write(v) | RegisterInput::Cas { to: v, .. } => v,
            RegisterInput::Read => return true,
        };
        attempted.insert(value);
        let there = written.get(&value);
        match (&r.op.output, there) {
            (None, Some(&(_, rev))) => {
                r.op.output = Some(match r.op.input.op {
                    RegisterInput::Write(_) => RegisterOutput::Write,
                    _ => RegisterOutput::Cas { ok: true },
                });
                r.op.ret = end.max(r.op.call);
                r.revision = Some(rev);
                r.resolved = true;
                true
            }
            // Never written: it did not happen (a compare that failed changes nothing either).
            (None, None) => false,
            (Some(RegisterOutput::Write | RegisterOutput::Cas { ok: true }), there) => {
                match there {
                    Some(&(key, rev)) if key == r.op.input.key && Some(rev) == r.revision => {}
                    other => out.push(format!(
                        "an acknowledged write is not in the store as answered: {:?} (answered revision {:?}; the store: {other:?})",
                        r.op, r.revision
                    )),
                }
                true
            }
            (Some(_), Some(&(_, rev))) => {
                out.push(format!(
                    "a compare-and-set answered 'not applied' but its value is in the store at revision {rev}: {:?}",
                    r.op
                ));
                true
            }
            (Some(_), None) => true,
        }
    });
    for (value, (key, rev)) in written {
        if !attempted.contains(value) {
            out.push(format!(
                "reg/{key} holds {value} at revision {rev}, which no client wrote"
            ));
        }
    }
    out
}

/// Revision invariants of the recorded history: no two acknowledged writes share a revision,
/// and each client's linearizable answers never go back in revision.
fn revision_violations(history: &[Recorded]) -> Vec<String> {
    let mut out = Vec::new();
    let mut writes: BTreeMap<i64, &Recorded> = BTreeMap::new();
    let mut last_by_client: BTreeMap<u64, &Recorded> = BTreeMap::new();
    let mut by_call: Vec<&Recorded> = history.iter().collect();
    by_call.sort_by_key(|r| (r.op.call, r.op.client));
    for r in by_call {
        let Some(rev) = r.revision else { continue };
        let wrote = matches!(
            (r.op.input.op, r.op.output),
            (RegisterInput::Write(_), Some(_)) | (_, Some(RegisterOutput::Cas { ok: true }))
        );
        if wrote && let Some(other) = writes.insert(rev, r) {
            out.push(format!(
                "two acknowledged writes at revision {rev}:\n    {}\n    {}",
                describe(other),
                describe(r)
            ));
        }
        if r.resolved {
            // The client never saw this answer.
            continue;
        }
        if let Some(prev) = last_by_client.get(&r.op.client)
            && prev.revision.is_some_and(|p| rev < p)
        {
            out.push(format!(
                "a client saw the revision go back:\n    {}\n    {}",
                describe(prev),
                describe(r)
            ));
        }
        last_by_client.insert(r.op.client, r);
    }
    out
}

fn describe(r: &Recorded) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    let output = match r.op.output {
        Some(o) => format!("{o:?}"),
        None => "unknown".to_string(),
    };
    format!(
        "client {} via m{}: reg/{} {:?} called {:.3} ms, returned {:.3} ms: {output}, revision {:?}",
        r.op.client,
        r.member,
        r.op.input.key,
        r.op.input.op,
        ms(r.op.call),
        if r.op.output.is_some() {
            ms(r.op.ret)
        } else {
            f64::NAN
        },
        r.revision
    )
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
    // Clients run on nodes of their own, so that killing a member never kills a client.
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let node = handle
            .create_node()
            .name(format!("client{c}"))
            .ip(format!("10.0.1.{}", c + 1).parse().expect("an IP"))
            .build();
        let (seed, history) = (opts.seed, history.clone());
        tasks.push(node.spawn(client(c, seed, n, start_at, until, history)));
    }
    let watch_task = handle
        .create_node()
        .name("watcher")
        .ip("10.0.1.100".parse().expect("an IP"))
        .build()
        .spawn(watcher::follow(opts.seed, n, until));
    let lease_task = handle
        .create_node()
        .name("leaser")
        .ip("10.0.1.101".parse().expect("an IP"))
        .build()
        .spawn(leases::run(opts.seed, n, until));

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
    let healed = Instant::now();
    let mut violations = Vec::new();
    for t in tasks {
        if t.await.is_err() {
            violations.push("a client task failed".to_string());
        }
    }
    let watch_log = watch_task.await.unwrap_or_else(|_| {
        violations.push("the watcher task failed".to_string());
        watcher::WatchLog::default()
    });
    let leased = lease_task.await.unwrap_or_else(|_| {
        violations.push("the lease task failed".to_string());
        Vec::new()
    });
    let leased_n = leased.len();
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
            let lease_violations = leases::check(&leased, n, healed, LEASE_GRACE).await;
            Ok((written, lease_violations))
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
    hash.u64(watch_log.events.len() as u64)
        .u64(watch_log.resumes)
        .u64(leased_n as u64);
    if std::env::var_os("SIM_DEBUG").is_some() {
        let unknown = recorded.iter().filter(|r| r.op.output.is_none()).count();
        eprintln!(
            "seed {}: {} ops, {unknown} with unknown outcomes",
            opts.seed,
            recorded.len()
        );
        for r in recorded.iter().take(40) {
            eprintln!("  {}", describe(r));
        }
    }
    if std::env::var_os("SIM_DEBUG").is_some() {
        eprintln!("fault log of seed {}:\n{}", opts.seed, world.log.join("\n"));
    }
    let timeline_html = (!violations.is_empty())
        .then(|| timeline(&opts, &recorded, &marked, &world.log, &violations));
    Report {
        timeline_html,
        seed: opts.seed,
        ops: recorded.len(),
        faults: world.counts,
        violations,
        undecided,
        hash: hash.finish(),
        sim_ms,
    }
}

/// A self-contained HTML page: one lane per client, a bar per operation from its call to its
/// return (green: done; grey: resolved from the store; red outline: the operations that show
/// the violation), the fault log and the violations below.
fn timeline(
    opts: &Options,
    history: &[Recorded],
    marked: &[usize],
    faults: &[String],
    violations: &[String],
) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let end = history.iter().map(|r| r.op.ret).max().unwrap_or(1).max(1) as f64;
    let (width, lane) = (1800.0, 28.0);
    let lanes = opts.clients.max(1);
    let mut svg = String::new();
    for c in 0..lanes {
        svg += &format!(
            "<text x=\"0\" y=\"{}\" font-size=\"12\">client {c}</text>",
            c as f64 * lane + 18.0
        );
    }
    for (i, r) in history.iter().enumerate() {
        let x = 70.0 + r.op.call as f64 / end * width;
        let w = ((r.op.ret.max(r.op.call) - r.op.call) as f64 / end * width).max(2.0);
        let y = r.op.client as f64 * lane + 4.0;
        let fill = if r.resolved { "#bbb" } else { "#7c7" };
        let stroke = if marked.contains(&i) {
            "stroke=\"red\" stroke-width=\"3\""
        } else {
            ""
        };
        svg += &format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"18\" fill=\"{fill}\" {stroke}><title>{}</title></rect>",
            esc(&describe(r))
        );
    }
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>oxcd seed {seed}</title>\
         <h1>seed {seed}: {n} violation(s)</h1><p>replay: <code>{replay}</code></p>\
         <svg width=\"{w}\" height=\"{h}\">{svg}</svg>\
         <h2>violations</h2><pre>{v}</pre><h2>faults</h2><pre>{f}</pre>",
        seed = opts.seed,
        n = violations.len(),
        replay = esc(&replay_command(opts)),
        w = width + 80.0,
        h = lanes as f64 * lane + 10.0,
        v = esc(&violations.join("\n")),
        f = esc(&faults.join("\n")),
    )
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
    if let Some(bug) = opts.bug {
        cmd += &format!(" --bug {}", bug_name(bug));
    }
    cmd
}

pub fn bug_name(bug: ServerBug) -> &'static str {
    match bug {
        ServerBug::LocalLinearizableReads => "local-linearizable-reads",
        ServerBug::ExpiredLeasesKept => "expired-leases-kept",
    }
}

pub fn parse_bug(name: &str) -> Result<ServerBug, String> {
    match name {
        "local-linearizable-reads" => Ok(ServerBug::LocalLinearizableReads),
        other => Err(format!(
            "unknown bug {other:?} (known: local-linearizable-reads)"
        )),
    }
}
