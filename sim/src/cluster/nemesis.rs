//! The nemesis: the faults of a run, drawn from the seed one at a time (partitions, crashes
//! with power loss, pauses, clock jumps, disk faults, packet loss and latency, leader
//! transfers, membership changes), each held for a while and undone, and the world they act on.

use super::Faults;
use crate::workload::membership::{
    add_member, member_list, move_leader, peer_url, promote, remove_member,
};
use madsim::runtime::Handle;
use oxcd::storage::{DiskFaults, SimDisk};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What a member node starts from when (re)started.
pub(super) struct Slot {
    pub(super) disk: SimDisk,
    /// Added to a running cluster (after a removal): it joins instead of founding.
    pub(super) joining: bool,
}

/// The world of one run: member nodes and their disks.
pub(super) struct World {
    pub(super) handle: Handle,
    pub(super) nodes: Vec<madsim::task::NodeId>,
    pub(super) disks: Vec<SimDisk>,
    /// A node of the nemesis's own, to send the requests its faults need (MoveLeader).
    pub(super) ctl: madsim::runtime::NodeHandle,
    /// What each member node starts from (its disk, and whether it joins a running cluster).
    pub(super) slots: Vec<Arc<Mutex<Slot>>>,
    /// Each member's clock skew.
    pub(super) skews: Vec<Arc<oxcd::clock::Skew>>,
    /// When a member's clock jumped forward (the lease-renewal check excuses those windows).
    pub(super) jumps: Vec<Instant>,
    /// Members down (killed, not yet restarted) or paused.
    pub(super) killed: Vec<bool>,
    pub(super) paused: Vec<bool>,
    pub(super) log: Vec<String>,
    pub(super) counts: BTreeMap<&'static str, u64>,
    pub(super) start: Instant,
}

impl World {
    /// Logs what a fault in progress did (not counted as another fault).
    fn detail(&mut self, what: String) {
        let at = self.start.elapsed().as_millis();
        self.log.push(format!("{at:>7} ms  {what}"));
    }

    pub(super) fn note(&mut self, kind: &'static str, what: String) {
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
    pub(super) fn heal_all(&mut self) {
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
pub(super) async fn nemesis_step(w: &mut World, rng: &mut ChaCha8Rng, faults: Faults) {
    let n = w.nodes.len();
    let kinds = faults.enabled();
    if kinds.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return;
    }
    let kind = kinds[rng.gen_range(0..kinds.len())];
    let hold = Duration::from_millis(rng.gen_range(500..4000));
    let victim = rng.gen_range(0..n);
    // A partition needs a majority and a minority; a transfer or a replacement, a second
    // member. A cluster too small for this fault runs without one for the while.
    let members_min = match kind {
        "partition" => 3,
        "transfer" | "member" => 2,
        _ => 1,
    };
    if n < members_min {
        w.note(kind, format!("none: {n} member(s), for {hold:?}"));
        tokio::time::sleep(hold).await;
        return;
    }
    match kind {
        "partition" => {
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, rng.gen_range(0..=i));
            }
            // Links to cut: (from, to), one way each.
            let mut cut: Vec<(usize, usize)> = Vec::new();
            let shape = rng.gen_range(0..3);
            let what = match shape {
                0 => {
                    // A random minority cut off from the rest, both ways (a lone member is
                    // the isolated case, which takes a leader away from its followers often).
                    let side = &order[..rng.gen_range(1..=(n - 1) / 2)];
                    for &a in side {
                        for b in (0..n).filter(|b| !side.contains(b)) {
                            cut.extend([(a, b), (b, a)]);
                        }
                    }
                    format!("partition {side:?} from the rest")
                }
                1 => {
                    // A bridge: two groups that reach each other only through one member.
                    let bridge = order[0];
                    let (left, right) = order[1..].split_at((n - 1) / 2);
                    for &a in left {
                        for &b in right {
                            cut.extend([(a, b), (b, a)]);
                        }
                    }
                    format!("bridge: {left:?} and {right:?} meet only through m{bridge}")
                }
                _ => {
                    // One way: a member that hears everyone but is not heard (or the reverse).
                    let m = order[0];
                    let deaf = rng.gen_bool(0.5);
                    for b in (0..n).filter(|&b| b != m) {
                        cut.push(if deaf { (b, m) } else { (m, b) });
                    }
                    if deaf {
                        format!("m{m} hears no one (it is heard)")
                    } else {
                        format!("m{m} is heard by no one (it hears)")
                    }
                }
            };
            w.note("partition", format!("{what} for {hold:?}"));
            let net = madsim::net::NetSim::current();
            for (a, b) in cut {
                net.clog_link(w.nodes[a], w.nodes[b]);
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
                    let learner = rng.gen_bool(0.5);
                    rejoin(w, victim, learner, rng.gen_range(0..u64::MAX)).await;
                }
                Ok(Err(why)) => w.note("member", format!("m{victim} not removed: {why}")),
                Err(e) => w.note("member", format!("the remove task failed: {e}")),
            }
        }
        "skew" => {
            let ms = rng.gen_range(200..3000);
            w.note("skew", format!("m{victim}'s clock jumps {ms} ms forward"));
            w.skews[victim].jump(ms);
            w.jumps.push(Instant::now());
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
                // A disk the member cannot trust: it stops for good, and a restart from the
                // disk (the fault gone) is the way back.
                let (what, faults) = match rng.gen_range(0..3) {
                    0 => (
                        "failing syncs",
                        DiskFaults {
                            sync_failure: 0.2,
                            ..DiskFaults::default()
                        },
                    ),
                    1 => (
                        "reads that flip a bit",
                        DiskFaults {
                            read_corruption: 0.05,
                            ..DiskFaults::default()
                        },
                    ),
                    _ => (
                        "a full disk",
                        DiskFaults {
                            capacity_bytes: Some(1),
                            ..DiskFaults::default()
                        },
                    ),
                };
                w.note("disk", format!("{what} on m{victim}, then a restart"));
                w.disks[victim].set_faults(faults);
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

/// Brings member `victim` (removed from the cluster) back as a new member on an empty disk:
/// killed, its disk replaced, added (as a learner, then promoted, if `learner`), restarted.
async fn rejoin(w: &mut World, victim: usize, learner: bool, disk_seed: u64) {
    let n = w.nodes.len();
    w.handle.kill(w.nodes[victim]);
    let fresh = SimDisk::new(disk_seed, DiskFaults::default());
    {
        let mut slot = w.slots[victim].lock().expect("one thread");
        slot.disk = fresh.clone();
        slot.joining = true;
    }
    w.disks[victim] = fresh;
    let added = w.ctl.spawn(add_member(n, victim, learner)).await;
    w.handle.restart(w.nodes[victim]);
    match added {
        Ok(Ok(id)) if learner => {
            let promoted = w.ctl.spawn(promote(n, id)).await;
            w.detail(format!(
                "m{victim} back as learner {id:x}, promoted: {promoted:?}"
            ));
        }
        Ok(Ok(id)) => w.detail(format!("m{victim} back as {id:x}")),
        other => w.detail(format!("m{victim} could not be added back: {other:?}")),
    }
}

/// After the faults: a member whose removal landed after the nemesis stopped waiting for it
/// (an unknown outcome) is brought back, so that the checks see the whole cluster.
pub(super) async fn restore_membership(w: &mut World) {
    let n = w.nodes.len();
    let mut members = None;
    for _ in 0..20 {
        members = w.ctl.spawn(member_list(n)).await.ok().flatten();
        if members.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(members) = members else {
        return;
    };
    for victim in 0..n {
        if !members
            .iter()
            .any(|m| m.peer_ur_ls.contains(&peer_url(victim)))
        {
            w.detail(format!("m{victim} was removed after all; it rejoins"));
            rejoin(w, victim, false, 0x5eed_0000 + victim as u64).await;
        }
    }
}
