//! Crash recovery on the simulated disk: random commands against a one-member cluster, crashes
//! at random points (the disk loses, keeps or tears what was not synced), failed syncs, then
//! recovery, compared with a model of the acknowledged commands.
//!
//! After every recovery the member must hold exactly the model's state: every acknowledged
//! write present, nothing invented (a command whose Ready failed may be there or not, whole),
//! and revisions equal to the model's, so no entry was applied twice.
//! A second test rots one bit of each stored value in turn: the member must refuse to start or
//! refuse the read, never return wrong data.

mod support;

use bytes::Bytes;
use oxcd::mvcc::{DeleteRangeRequest, KeyValue, PutRequest, RangeRequest};
use oxcd::node::{Applied, Command, Member, Outcome};
use oxcd::storage::wal::{self, WalDir};
use oxcd::storage::{DiskFaults, Engine, SimDisk, Space};
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: u8,
        lease: Option<usize>,
    },
    Delete {
        key: u8,
    },
    Grant,
    Revoke {
        which: usize,
    },
    Compact,
    Crash,
    /// The next command's sync fails: the member stops, then the disk crashes.
    FailSync,
    /// Drop the log up to the applied index.
    CompactLog,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..8, prop::option::of(0usize..4)).prop_map(|(key, lease)| Op::Put { key, lease }),
        2 => (0u8..8).prop_map(|key| Op::Delete { key }),
        2 => Just(Op::Grant),
        1 => (0usize..4).prop_map(|which| Op::Revoke { which }),
        1 => Just(Op::Compact),
        2 => Just(Op::Crash),
        1 => Just(Op::FailSync),
        1 => Just(Op::CompactLog),
    ]
}

/// What an etcd store holds after the acknowledged commands.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Model {
    kvs: BTreeMap<Bytes, KeyValue>,
    revision: i64,
    compact_revision: i64,
    leases: BTreeMap<i64, i64>,
}

impl Default for Model {
    /// A founded cluster: empty, at revision 1 (as etcd's).
    fn default() -> Self {
        Model {
            kvs: BTreeMap::new(),
            revision: 1,
            compact_revision: 0,
            leases: BTreeMap::new(),
        }
    }
}

impl Model {
    fn apply(&mut self, cmd: &Command) {
        match cmd {
            Command::Put(p) => {
                if p.lease != 0 && !self.leases.contains_key(&p.lease) {
                    return;
                }
                self.revision += 1;
                let rev = self.revision;
                let kv = self.kvs.entry(p.key.clone()).or_insert_with(|| KeyValue {
                    key: p.key.clone(),
                    create_revision: rev,
                    ..KeyValue::default()
                });
                kv.mod_revision = rev;
                kv.version += 1;
                kv.value = p.value.clone();
                kv.lease = p.lease;
            }
            Command::DeleteRange(d) => {
                if self.kvs.remove(&d.key).is_some() {
                    self.revision += 1;
                }
            }
            Command::LeaseGrant { id, ttl_s } => {
                self.leases.insert(*id, *ttl_s);
            }
            Command::LeaseRevoke { id } => {
                if self.leases.remove(id).is_some() {
                    let before = self.kvs.len();
                    self.kvs.retain(|_, kv| kv.lease != *id);
                    if self.kvs.len() != before {
                        self.revision += 1;
                    }
                }
            }
            Command::Compact { revision } => {
                if *revision > self.compact_revision && *revision <= self.revision {
                    self.compact_revision = *revision;
                }
            }
            other => unreachable!("not generated: {other:?}"),
        }
    }
}

/// The member's state, read the way a client would.
fn observe<E: Engine>(m: &mut Member<E>) -> Result<Model, String> {
    let all = RangeRequest {
        key: Bytes::from_static(b"\0"),
        range_end: Bytes::from_static(b"\0"),
        ..RangeRequest::default()
    };
    let r = m.range(&all).map_err(|e| e.to_string())?;
    let kv = m.applier().kv();
    let lessor = m.applier().lessor();
    for kv in &r.kvs {
        if kv.lease != 0 {
            let l = lessor.lease(kv.lease).ok_or("key names a missing lease")?;
            assert!(
                l.keys().contains(&kv.key),
                "lease key list lost {:?}",
                kv.key
            );
        }
    }
    Ok(Model {
        kvs: r.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
        revision: kv.current_revision(),
        compact_revision: kv.compact_revision(),
        leases: lessor
            .leases()
            .into_iter()
            .map(|id| (id, lessor.lease(id).expect("listed").ttl_s()))
            .collect(),
    })
}

fn command(op: &Op, i: usize, model: &Model, next_lease: &mut i64) -> Option<Command> {
    let lease_at = |which: usize| {
        let ids: Vec<i64> = model.leases.keys().copied().collect();
        // Sometimes a lease that no longer exists: the put must fail the same way every time.
        ids.get(which).copied().unwrap_or(1000 + which as i64)
    };
    Some(match op {
        Op::Put { key, lease } => Command::Put(PutRequest {
            key: Bytes::from(vec![b'k', b'0' + key]),
            value: Bytes::from(format!("v{i}")),
            lease: lease.map_or(0, lease_at),
            ..PutRequest::default()
        }),
        Op::Delete { key } => Command::DeleteRange(DeleteRangeRequest {
            key: Bytes::from(vec![b'k', b'0' + key]),
            ..DeleteRangeRequest::default()
        }),
        Op::Grant => {
            *next_lease += 1;
            Command::LeaseGrant {
                id: *next_lease,
                ttl_s: 60,
            }
        }
        Op::Revoke { which } => Command::LeaseRevoke {
            id: lease_at(*which),
        },
        Op::Compact => Command::Compact {
            revision: model.revision,
        },
        _ => return None,
    })
}

fn run(seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let disk = SimDisk::new(seed, DiskFaults::default());
    let mut member = support::open_single(disk.reopen(), seed).unwrap();
    let mut model = Model::default();
    let mut next_lease = 0;
    let mut fail_next_sync = false;
    let mut in_doubt: Option<Command> = None;
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Crash => {
                disk.crash();
                drop(member);
                member = support::open_single(disk.reopen(), seed + i as u64).unwrap();
                let got = observe(&mut member).unwrap();
                let mut with = model.clone();
                if let Some(cmd) = in_doubt.take() {
                    with.apply(&cmd);
                    if got == with {
                        model = with;
                    }
                }
                prop_assert_eq!(&got, &model, "after a crash at op {}", i);
            }
            Op::FailSync => fail_next_sync = true,
            Op::CompactLog => member.compact_log(2).unwrap(),
            _ => {
                let cmd = command(op, i, &model, &mut next_lease).expect("a command op");
                if fail_next_sync {
                    disk.set_faults(DiskFaults {
                        sync_failure: 1.0,
                        ..DiskFaults::default()
                    });
                }
                member.propose(&cmd).unwrap();
                let applied = support::settle(&mut member);
                if fail_next_sync {
                    fail_next_sync = false;
                    disk.set_faults(DiskFaults::default());
                    prop_assert!(applied.is_err(), "the sync failed, so the Ready must");
                    prop_assert!(
                        member.handle_ready(0).is_err(),
                        "a stopped member stays stopped"
                    );
                    prop_assert!(member.range(&RangeRequest::default()).is_err());
                    // Its fate is decided by the crash that must follow.
                    in_doubt = Some(cmd);
                    disk.crash();
                    drop(member);
                    member = support::open_single(disk.reopen(), seed + i as u64).unwrap();
                    let got = observe(&mut member).unwrap();
                    let mut with = model.clone();
                    with.apply(in_doubt.as_ref().expect("set"));
                    in_doubt = None;
                    if got == with {
                        model = with;
                    }
                    prop_assert_eq!(&got, &model, "after a failed sync at op {}", i);
                    continue;
                }
                let applied = applied.unwrap();
                let last = applied.last().expect("the proposal applied");
                let is_command = matches!(last.outcome, Outcome::Command { .. });
                prop_assert!(is_command, "the proposal applied as a command");
                model.apply(&cmd);
                if let Outcome::Command {
                    result: Ok(Applied::Put(_)),
                    revision,
                } = &last.outcome
                {
                    prop_assert_eq!(*revision, model.revision);
                }
                prop_assert_eq!(&observe(&mut member).unwrap(), &model, "after op {}", i);
            }
        }
    }
    // A last crash, and every acknowledged command is still there.
    disk.crash();
    drop(member);
    let mut member = support::open_single(disk.reopen(), seed ^ 0xffff).unwrap();
    prop_assert_eq!(
        &observe(&mut member).unwrap(),
        &model,
        "after the final crash"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_acknowledged_write_survives_crashes_exactly_once(
        seed in any::<u64>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(seed, &ops)?;
    }
}

/// Builds a member with some of everything stored: log entries, hard state, snapshot
/// metadata, membership, MVCC records, leases, meta numbers.
fn populated(seed: u64) -> (SimDisk, Model) {
    let (disk, model, _) = populated_unsynced(seed);
    disk.sync().unwrap();
    (disk, model)
}

/// [`populated`] without the state machine's store synced at the end; also the model as of
/// before the last command.
fn populated_unsynced(seed: u64) -> (SimDisk, Model, Model) {
    let disk = SimDisk::new(seed, DiskFaults::default());
    let mut m = support::open_single(disk.reopen(), seed).unwrap();
    let mut model = Model::default();
    let mut next_lease = 0;
    let ops = [
        Op::Grant,
        Op::Put {
            key: 1,
            lease: Some(0),
        },
        Op::Put {
            key: 2,
            lease: None,
        },
        Op::Put {
            key: 2,
            lease: None,
        },
        Op::Delete { key: 1 },
        Op::Put {
            key: 3,
            lease: None,
        },
        Op::Compact,
        Op::Put {
            key: 3,
            lease: Some(0),
        },
    ];
    let mut before_last = model.clone();
    for (i, op) in ops.iter().enumerate() {
        let cmd = command(op, i, &model, &mut next_lease).unwrap();
        m.propose(&cmd).unwrap();
        support::settle(&mut m).unwrap();
        before_last = model.clone();
        model.apply(&cmd);
        if i == 5 {
            m.compact_log(3).unwrap();
        }
    }
    (disk, model, before_last)
}

#[test]
fn a_rotten_bit_in_any_stored_value_is_refused_never_served() {
    let (disk, model) = populated(7);
    let mut checked = 0;
    for space in Space::ALL {
        let keys = disk.keys(space);
        if space == Space::Log {
            assert!(
                keys.is_empty(),
                "the log lives in its own file (rotted below)"
            );
            continue;
        }
        assert!(!keys.is_empty(), "{space} holds something to rot");
        for key in keys {
            for bit in [0, 13, 77, 1000] {
                let (disk, _) = populated(7);
                assert!(disk.rot(space, &key, bit));
                let outcome = support::open_single(disk.reopen(), 1);
                if let Ok(mut m) = outcome {
                    // Opened (the rotten value was not needed yet): reads must fail or be right.
                    if let Ok(got) = observe(&mut m) {
                        assert_eq!(got, model, "{space} {key:?} bit {bit}: wrong data served");
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "rotted {checked} values");
    // The log file: a flipped bit anywhere in what was written, at bits spread over it,
    // with the state machine's store as a crash left it (what was synced: little), so that
    // opening replays the log. A bit of the last record of the last segment is the one place
    // the reader cannot tell rot from a torn write (a crash keeps a prefix of what was not
    // synced; nothing follows a torn record, and nothing follows this one): it reads as torn,
    // and that record is dropped, the last command with it. etcd's WAL has the same limit
    // (docs/raft-log-file.md). Anywhere else, a whole record after the bad one gives it away.
    let unsynced = || {
        let (disk, model, before_last) = populated_unsynced(7);
        disk.crash_losing_unsynced();
        (disk.reopen(), model, before_last)
    };
    let segments = unsynced().0.wal_dir().unwrap().list().unwrap();
    let mut rotted = 0;
    let mut in_last_record = 0;
    for (i, name) in segments.iter().enumerate() {
        let bytes = unsynced().0.wal_dir().unwrap().read(*name).unwrap();
        let written = wal::read_segment(&bytes).unwrap().written_bytes;
        let last_record = if i + 1 == segments.len() {
            let records = wal::read_segment(&bytes).unwrap().records;
            written - records.last().unwrap().encode().len()
        } else {
            written
        };
        for bit in (0..written * 8).step_by(13) {
            let (disk, model, before_last) = unsynced();
            assert!(disk.rot_wal(i, bit));
            let tail = bit / 8 >= last_record;
            in_last_record += usize::from(tail);
            if let Ok(mut m) = support::open_single(disk.reopen(), 1)
                && let Ok(got) = observe(&mut m)
            {
                assert!(
                    got == model || (tail && got == before_last),
                    "log segment {i} bit {bit}: wrong data served: {got:?}"
                );
            }
            rotted += 1;
        }
    }
    assert!(
        in_last_record > 3,
        "{in_last_record} bits of the last record"
    );
    assert!(rotted > 400, "rotted {rotted} bits of the log file");
}

#[test]
fn transient_read_corruption_is_an_error_never_data() {
    let (disk, model) = populated(3);
    let mut m = support::open_single(disk.reopen(), 3).unwrap();
    disk.set_faults(DiskFaults {
        read_corruption: 0.05,
        ..DiskFaults::default()
    });
    let mut errors = 0;
    for _ in 0..400 {
        match observe(&mut m) {
            Ok(got) => assert_eq!(got, model, "a corrupted read was served"),
            Err(_) => {
                errors += 1;
                assert!(
                    m.stopped().is_some(),
                    "the member stops after a corrupt read"
                );
                disk.set_faults(DiskFaults::default());
                m = support::open_single(disk.reopen(), 3).unwrap();
                disk.set_faults(DiskFaults {
                    read_corruption: 0.05,
                    ..DiskFaults::default()
                });
            }
        }
    }
    assert!(errors > 0, "the fault rate produced corrupt reads");
}
