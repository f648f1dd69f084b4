//! Members exchanging real messages over durable (simulated) disks: a member that falls behind
//! a compacted log catches up from a snapshot stream of the leader's state machine, ends with
//! the leader's data (equal HashKV), and keeps it across a crash.

mod support;

use bytes::Bytes;
use oxcd::mvcc::PutRequest;
use oxcd::node::{Command, Member};
use oxcd::raft::{Message, MessageKind};
use oxcd::storage::{DiskFaults, SimDisk};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

struct Cluster {
    disks: BTreeMap<u64, SimDisk>,
    members: BTreeMap<u64, Member<SimDisk>>,
    /// Members whose messages are dropped both ways.
    cut: Vec<u64>,
    snapshots_sent: usize,
}

impl Cluster {
    fn new(ids: &[u64]) -> Cluster {
        let mut c = Cluster {
            disks: BTreeMap::new(),
            members: BTreeMap::new(),
            cut: Vec::new(),
            snapshots_sent: 0,
        };
        for &id in ids {
            c.disks.insert(id, SimDisk::new(id, DiskFaults::default()));
        }
        for &id in ids {
            c.open(id);
        }
        c
    }

    fn open(&mut self, id: u64) {
        let voters: Vec<u64> = self.disks.keys().copied().collect();
        let m = Member::open(
            self.disks[&id].reopen(),
            support::config(id, &voters),
            ChaCha8Rng::seed_from_u64(id),
            0,
        )
        .expect("open");
        self.members.insert(id, m);
    }

    /// Handles every member's Readies and delivers their messages until all is quiet. A
    /// snapshot message gets the sender's state machine as its data, as the server does.
    fn settle(&mut self) {
        loop {
            let mut mail: Vec<Message> = Vec::new();
            for (id, m) in &mut self.members {
                while let Some(out) = m.handle_ready(0).expect("ready") {
                    for mut msg in out.messages {
                        if msg.kind == MessageKind::Snapshot {
                            let snap = msg.snapshot.as_mut().expect("a snapshot message");
                            snap.data = m.snapshot_data().expect("snapshot data");
                            self.snapshots_sent += 1;
                        }
                        if !self.cut.contains(id) && !self.cut.contains(&msg.to) {
                            mail.push(msg);
                        }
                    }
                }
            }
            if mail.is_empty() {
                return;
            }
            for msg in mail {
                if let Some(m) = self.members.get_mut(&msg.to) {
                    let _ = m.raw_mut().step(msg);
                }
            }
        }
    }

    fn put(&mut self, leader: u64, i: u64) {
        let cmd = Command::Put(PutRequest {
            key: Bytes::from(format!("k{}", i % 10)),
            value: Bytes::from(format!("v{i}")),
            ..PutRequest::default()
        });
        self.members
            .get_mut(&leader)
            .expect("leader")
            .propose(&cmd)
            .expect("propose");
        self.settle();
    }

    fn hash(&self, id: u64) -> (u32, i64) {
        let kv = self.members[&id].applier().kv();
        let h = kv.hash_kv(0).expect("hash");
        (h.hash, h.revision)
    }
}

#[test]
fn a_lagging_member_catches_up_from_a_snapshot_and_keeps_it() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.members.get_mut(&1).unwrap().raw_mut().campaign().unwrap();
    c.settle();
    assert_eq!(c.members[&1].raw().status().soft_state.leader_id, 1);
    c.cut.push(3);
    for i in 0..40 {
        c.put(1, i);
    }
    for id in [1, 2] {
        c.members.get_mut(&id).unwrap().compact_log(5).unwrap();
    }
    c.cut.clear();
    // A heartbeat round brings 3 back into view; its log is behind the leader's first index.
    for _ in 0..3 {
        for m in c.members.values_mut() {
            m.raw_mut().tick();
        }
        c.settle();
    }
    c.put(1, 40);
    assert!(c.snapshots_sent > 0, "the leader had to send a snapshot");
    let want = c.hash(1);
    assert_eq!(c.hash(2), want);
    assert_eq!(c.hash(3), want, "the snapshot carried the leader's data");

    // The restored state survives a crash of the member that received it: it reopens at
    // least at the snapshot (applies after it were not synced, so the log replays them
    // once the leader says what is committed), and catches up.
    let restored_at = c.members[&3].raw().storage().snapshot_metadata().index;
    c.members.remove(&3);
    c.disks[&3].crash();
    c.open(3);
    assert!(c.members[&3].raw().status().applied >= restored_at);
    assert!(c.hash(3).1 >= 40, "the restored data is still there");
    c.put(1, 41);
    for _ in 0..3 {
        for m in c.members.values_mut() {
            m.raw_mut().tick();
        }
        c.settle();
    }
    assert_eq!(c.hash(3), c.hash(1));
}
