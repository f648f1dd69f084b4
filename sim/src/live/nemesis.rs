//! The live nemesis: faults on real processes, drawn from the run's seed, one at a time, each
//! held a few seconds and then healed, and what each did at the OS level written to the fault
//! timeline.
//!
//! - `partition`: nftables rules in the members' namespaces drop packets between groups:
//!   majority/minority, the leader alone, a bridge (one member sees both sides), or one-way
//!   (a member hears nobody, everybody hears it).
//! - `net`: packet loss (an nftables `numgen random` rule) and latency on one member's link
//!   (`tc netem` delay, jitter and reordering where the kernel has netem; otherwise a `tbf`
//!   token bucket that queues its packets).
//! - `crash`: `kill -9`, then a restart on the same data dir.
//! - `pause`: SIGSTOP for longer than a lease's TTL, then SIGCONT.
//! - `clock`: CLOCK_REALTIME jumps (forward and back, minutes to days) through libfaketime's
//!   timestamp file; and each (re)start puts the member in a time namespace of its own with a
//!   new CLOCK_MONOTONIC/BOOTTIME offset, so a restarted member's monotonic clock jumps.
//! - `disk`: through the preload shim, slow fsyncs (a delay each) or failing ones (EIO).
//! - `member`: a member removed, wiped, added back as a learner, started, promoted.
//! - `transfer`: leadership moved to another member (MoveLeader).

use super::lab::Lab;
use crate::workload::membership::{add_member, member_list, move_leader, promote, remove_member};
use crate::workload::{OP_TIMEOUT, client_url};
use oxcd::pb::etcdserverpb as pb;
use oxcd::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Which faults the live nemesis injects.
pub const KINDS: [&str; 8] = [
    "partition",
    "net",
    "crash",
    "pause",
    "clock",
    "disk",
    "member",
    "transfer",
];

/// `all`, `none`, or a comma-separated list of [`KINDS`].
pub fn parse(s: &str) -> Result<Vec<&'static str>, String> {
    match s {
        "all" => return Ok(KINDS.to_vec()),
        "none" => return Ok(Vec::new()),
        _ => {}
    }
    s.split(',')
        .map(|k| {
            KINDS
                .into_iter()
                .find(|&known| known == k.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown fault {k:?} (known: all, none, {})",
                        KINDS.join(", ")
                    )
                })
        })
        .collect()
}

/// One fault, from injection to healing, in milliseconds since the run's start.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: &'static str,
    pub from_ms: u64,
    pub to_ms: u64,
    pub what: String,
}

/// The nemesis's state: the lab and what it did.
pub struct Nemesis {
    pub lab: Lab,
    pub rng: ChaCha8Rng,
    pub start: Instant,
    pub faults: Vec<Fault>,
    /// The kinds still to come in this round.
    pub round: Vec<&'static str>,
    pub counts: BTreeMap<&'static str, u64>,
    /// Processes that ended on their own outside a fault meant to end them.
    pub unexpected_exits: Vec<String>,
    /// Clock faults are on (each start draws a monotonic offset), and libfaketime reaches
    /// the server's CLOCK_REALTIME.
    pub clock_enabled: bool,
    pub clock_ok: bool,
    /// The fsync shim reaches the server.
    pub disk_ok: bool,
}

impl Nemesis {
    fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Injects one fault of a kind drawn from `kinds`, holds it, heals it.
    pub async fn step(&mut self, kinds: &[&'static str]) {
        let n = self.lab.nodes;
        // Kinds come in rounds, each a seeded shuffle of all of them: every kind early on.
        if self.round.is_empty() {
            self.round = kinds.to_vec();
            self.round.shuffle(&mut self.rng);
        }
        let Some(kind) = self.round.pop() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        };
        let hold = Duration::from_millis(self.rng.gen_range(2_000..8_000));
        let victim = self.rng.gen_range(0..n);
        let from_ms = self.ms();
        let what = match kind {
            "partition" => self.partition(hold).await,
            "net" => {
                let loss = self.rng.gen_range(2..30);
                let delay = self.rng.gen_range(20..400);
                let _ = self.lab.set_rules(victim, &[], loss);
                let latency = self.lab.set_latency(victim, Some(delay));
                tokio::time::sleep(hold).await;
                let _ = self.lab.set_rules(victim, &[], 0);
                let _ = self.lab.set_latency(victim, None);
                format!(
                    "m{victim}: {loss}% of incoming packets dropped, outgoing {} for {hold:?}{}",
                    if self.lab.netem {
                        format!(
                            "delayed {delay} ms ± {} ms, 10% reordered (netem)",
                            delay / 2
                        )
                    } else {
                        format!("queued up to {delay} ms behind a 512 kbit/s token bucket (tbf)")
                    },
                    latency
                        .err()
                        .map(|e| format!(" [tc: {e}]"))
                        .unwrap_or_default()
                )
            }
            "crash" => {
                self.lab.kill(victim);
                tokio::time::sleep(hold / 2).await;
                let started = self.restart(victim);
                format!(
                    "m{victim}: kill -9, restarted after {:?}{started}",
                    hold / 2
                )
            }
            "pause" => {
                // Longer than a lease's TTL (3 s in the workloads).
                let hold = Duration::from_millis(self.rng.gen_range(4_000..9_000));
                let victim = if self.rng.gen_bool(0.5) {
                    leader(n).await.unwrap_or(victim)
                } else {
                    victim
                };
                self.lab.signal(victim, "-STOP");
                tokio::time::sleep(hold).await;
                self.lab.signal(victim, "-CONT");
                format!("m{victim}: SIGSTOP for {hold:?}, then SIGCONT")
            }
            "clock" => {
                let secs: i64 = self.rng.gen_range(60..172_800);
                let spec = if self.rng.gen_bool(0.5) {
                    format!("+{secs}")
                } else {
                    format!("-{secs}")
                };
                let _ = self.lab.set_clock_offset(victim, &spec);
                tokio::time::sleep(hold).await;
                let _ = self.lab.set_clock_offset(victim, "+0");
                format!(
                    "m{victim}: CLOCK_REALTIME {spec} s for {hold:?} (libfaketime{})",
                    if self.clock_ok {
                        ""
                    } else {
                        ": not reached, static binary"
                    }
                )
            }
            "disk" => {
                if self.rng.gen_bool(0.7) {
                    let delay = self.rng.gen_range(50..600);
                    let _ = self.lab.set_disk(victim, delay, 0);
                    tokio::time::sleep(hold).await;
                    let _ = self.lab.set_disk(victim, 0, 0);
                    format!(
                        "m{victim}: every fsync/fdatasync {delay} ms slower for {hold:?}{}",
                        self.unreached()
                    )
                } else {
                    let _ = self.lab.set_disk(victim, 0, 100);
                    tokio::time::sleep(hold).await;
                    let _ = self.lab.set_disk(victim, 0, 0);
                    let exited = self.lab.reap().into_iter().find(|(i, _)| *i == victim);
                    let restarted = if exited.is_some() || !self.lab.running(victim) {
                        self.restart(victim)
                    } else {
                        String::new()
                    };
                    format!(
                        "m{victim}: fsync/fdatasync fail with EIO for {hold:?}{}; {}{restarted}",
                        self.unreached(),
                        match exited {
                            Some((_, status)) => format!("it stopped ({status}), restarted"),
                            None => "it kept running".to_string(),
                        }
                    )
                }
            }
            "member" => self.membership(victim).await,
            _ => {
                let to = victim;
                match move_leader(n, to).await {
                    Ok(from) => format!("leadership moved from m{from} to m{to}"),
                    Err(e) => format!("no leadership move to m{to}: {e}"),
                }
            }
        };
        let to_ms = self.ms();
        *self.counts.entry(kind).or_default() += 1;
        self.faults.push(Fault {
            kind,
            from_ms,
            to_ms,
            what,
        });
        self.after_exits().await;
        let quiet = Duration::from_millis(self.rng.gen_range(500..2_000));
        tokio::time::sleep(quiet).await;
    }

    /// Members whose process ended on its own: one that exited 0 was removed from the
    /// cluster (a removal that landed after its request gave up: etcd and oxcd exit 0 then),
    /// and rejoins on an empty data dir; any other exit is unexpected, and the member restarts.
    async fn after_exits(&mut self) {
        for (i, status) in self.lab.reap() {
            let from_ms = self.ms();
            if status.success() {
                self.lab.procs[i].removed = true;
                let _ = std::fs::remove_dir_all(self.lab.data_dir(i));
                let note = self.rejoin(i).await;
                self.faults.push(Fault {
                    kind: "member",
                    from_ms,
                    to_ms: self.ms(),
                    what: format!("m{i} exited 0 (removed by a request that landed late){note}"),
                });
            } else {
                self.unexpected_exits
                    .push(format!("m{i} exited ({status}) at {from_ms} ms"));
                let _ = self.restart(i);
            }
        }
    }

    fn unreached(&self) -> &'static str {
        if self.disk_ok {
            ""
        } else {
            " (shim: not reached, static binary)"
        }
    }

    /// Starts member `i` again, with a new monotonic offset when clock faults are on.
    fn restart(&mut self, i: usize) -> String {
        if self.lab.procs[i].removed {
            return String::new();
        }
        let offset = if self.clock_enabled {
            self.rng.gen_range(0i64..30) * 86_400
        } else {
            0
        };
        self.lab.time_offsets[i] = offset;
        match self.lab.start(i) {
            Ok(()) if offset != 0 => format!(" (CLOCK_MONOTONIC offset {offset} s)"),
            Ok(()) => String::new(),
            Err(e) => format!(" (restart failed: {e})"),
        }
    }

    async fn partition(&mut self, hold: Duration) -> String {
        let n = self.lab.nodes;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        // blocked[i]: whom member i no longer hears.
        let mut blocked: Vec<Vec<usize>> = vec![Vec::new(); n];
        let shape = self.rng.gen_range(0..4);
        let what = match shape {
            0 => {
                let (minority, majority) = order.split_at(n / 2);
                cut(&mut blocked, minority, majority);
                format!("partition: {minority:?} | {majority:?} (minority | majority)")
            }
            1 => {
                let alone = leader(n).await.unwrap_or(order[0]);
                let rest: Vec<usize> = (0..n).filter(|&j| j != alone).collect();
                cut(&mut blocked, &[alone], &rest);
                format!("partition: the leader m{alone} alone")
            }
            2 => {
                // A bridge: the middle member hears both sides, the sides not each other.
                let mid = order[0];
                let (a, b) = order[1..].split_at((n - 1) / 2);
                cut(&mut blocked, a, b);
                format!("partition: bridge {a:?} - m{mid} - {b:?}")
            }
            _ => {
                let deaf = order[0];
                blocked[deaf] = (0..n).filter(|&j| j != deaf).collect();
                format!("partition: one-way, m{deaf} hears nobody, everybody hears it")
            }
        };
        let mut failed = Vec::new();
        for (i, from) in blocked.iter().enumerate() {
            if let Err(e) = self.lab.set_rules(i, from, 0) {
                failed.push(e.to_string());
            }
        }
        tokio::time::sleep(hold).await;
        for i in 0..n {
            let _ = self.lab.set_rules(i, &[], 0);
        }
        if failed.is_empty() {
            format!("{what} for {hold:?} (nftables)")
        } else {
            format!("{what}: rules failed: {}", failed.join("; "))
        }
    }

    /// Removes `victim`, wipes it, adds it back as a learner, starts it, promotes it.
    async fn membership(&mut self, victim: usize) -> String {
        let n = self.lab.nodes;
        if leader(n).await == Some(victim) {
            return format!("m{victim} leads: not removed");
        }
        let id = match remove_member(n, victim).await {
            Ok(id) => id,
            Err(e) if e.contains("is not a member") => {
                // An earlier removal landed late: the member is out; it comes back.
                self.lab.kill(victim);
                self.lab.procs[victim].removed = true;
                let _ = std::fs::remove_dir_all(self.lab.data_dir(victim));
                return format!(
                    "m{victim} was no longer a member (a late removal){}",
                    self.rejoin(victim).await
                );
            }
            Err(e) => return format!("m{victim} not removed: {e}"),
        };
        self.lab.kill(victim);
        self.lab.procs[victim].removed = true;
        let _ = std::fs::remove_dir_all(self.lab.data_dir(victim));
        let mut out = format!("m{victim} ({id:x}) removed, stopped, wiped");
        out += &self.rejoin(victim).await;
        out
    }

    /// Adds `victim` back as a learner, starts it on an empty data dir, promotes it.
    pub async fn rejoin(&mut self, victim: usize) -> String {
        let n = self.lab.nodes;
        let new_id = match add_member(n, victim, true).await {
            Ok(id) => id,
            Err(e) => return format!("; not added back: {e}"),
        };
        let Some(members) = member_list(n).await else {
            return "; no member list to start it with".to_string();
        };
        let initial: Vec<String> = members
            .iter()
            .filter_map(|m| {
                let url = m.peer_ur_ls.first()?;
                let name = if m.name.is_empty() {
                    format!("m{victim}")
                } else {
                    m.name.clone()
                };
                Some(format!("{name}={url}"))
            })
            .collect();
        {
            let p = &mut self.lab.procs[victim];
            p.removed = false;
            p.state = "existing";
            p.initial_cluster = initial.join(",");
        }
        let started = self.restart(victim);
        let promoted = match promote(n, new_id).await {
            Ok(()) => "promoted".to_string(),
            Err(e) => format!("not promoted: {e}"),
        };
        format!("; added back as learner {new_id:x}, started{started}, {promoted}")
    }

    /// Lifts every fault: rules, latency, clocks, disks, pauses; restarts dead members and
    /// brings removed ones back.
    pub async fn heal(&mut self) {
        let n = self.lab.nodes;
        for i in 0..n {
            let _ = self.lab.set_rules(i, &[], 0);
            let _ = self.lab.set_latency(i, None);
            let _ = self.lab.set_clock_offset(i, "+0");
            let _ = self.lab.set_disk(i, 0, 0);
            if self.lab.procs[i].paused {
                self.lab.signal(i, "-CONT");
            }
        }
        self.after_exits().await;
        // A removal that landed after its request gave up leaves a member out of the list
        // that may still run, cut off: it rejoins too.
        if let Some(members) = member_list(n).await {
            for i in 0..n {
                let listed = members
                    .iter()
                    .any(|m| m.peer_ur_ls.contains(&self.lab.peer_url(i)));
                if !listed && !self.lab.procs[i].removed {
                    self.lab.kill(i);
                    self.lab.procs[i].removed = true;
                    let _ = std::fs::remove_dir_all(self.lab.data_dir(i));
                }
            }
        }
        for i in 0..n {
            if self.lab.procs[i].removed {
                let note = self.rejoin(i).await;
                self.faults.push(Fault {
                    kind: "member",
                    from_ms: self.ms(),
                    to_ms: self.ms(),
                    what: format!("healing: m{i} rejoins{note}"),
                });
            } else if !self.lab.running(i) {
                let _ = self.restart(i);
            }
        }
    }
}

/// Member `blocked[i]` of each side stops hearing the other side.
fn cut(blocked: &mut [Vec<usize>], a: &[usize], b: &[usize]) {
    for &i in a {
        blocked[i].extend_from_slice(b);
    }
    for &i in b {
        blocked[i].extend_from_slice(a);
    }
}

/// The member that leads, as the members' Status says (the first that claims it).
pub async fn leader(nodes: usize) -> Option<usize> {
    let mut ids = Vec::new();
    let mut leader_id = None;
    for m in 0..nodes {
        let status = async {
            let mut c = MaintenanceClient::connect(client_url(m)).await.ok()?;
            c.status(pb::StatusRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        };
        match tokio::time::timeout(OP_TIMEOUT, status).await {
            Ok(Some(s)) => {
                ids.push(s.header.map_or(0, |h| h.member_id));
                if s.leader != 0 {
                    leader_id = Some(s.leader);
                }
            }
            _ => ids.push(0),
        }
    }
    let l = leader_id?;
    ids.iter().position(|&id| id == l)
}
