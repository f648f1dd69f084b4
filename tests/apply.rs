//! The apply side of a member: the store, the lessor's key lists and the watchers kept in step
//! by `node::Applier`. Unit cases for what etcd users see (a revoke deletes the lease's keys in
//! one revision, watchers see it as one), and a property test: over random commands, every live
//! key with a lease is on that lease's key list and nothing else is.

use bytes::Bytes;
use oxcd::lease::{Lessor, LessorConfig};
use oxcd::mvcc::{
    Alarm, DeleteRangeRequest, Error as MvccError, EventKind, KvStore, MemBackend, PutRequest,
    RangeRequest, RequestOp, StreamId, TxnRequest, WatchConfig, WatchCreate, Watchers, prefix_end,
};
use oxcd::node::{
    ALARM_CORRUPT, ALARM_NOSPACE, AlarmAction, Applied, Applier, ApplyError, Command,
};
use proptest::prelude::*;

fn applier() -> Applier<MemBackend> {
    Applier::new(
        KvStore::open(MemBackend::new()).unwrap(),
        Lessor::new(LessorConfig::new(1000, 100)),
        Watchers::new(WatchConfig::default(), 0).unwrap(),
        128,
    )
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(k: &str, lease: i64) -> Command {
    Command::Put(PutRequest {
        key: b(k),
        value: b("v"),
        lease,
        ..Default::default()
    })
}

fn ok(a: &mut Applier<MemBackend>, cmd: Command) -> Applied {
    a.apply(&cmd, 0)
        .0
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn watch_prefix(a: &mut Applier<MemBackend>, prefix: &str) -> StreamId {
    let (w, kv) = a.watchers_mut();
    let s = w.open_stream();
    w.create(
        s,
        WatchCreate {
            key: b(prefix),
            range_end: prefix_end(prefix.as_bytes()),
            ..Default::default()
        },
        kv,
    )
    .unwrap();
    let created = w.poll_response(s).unwrap();
    assert!(created.created);
    s
}

#[test]
fn a_revoke_deletes_the_leases_keys_in_one_revision_that_watchers_see_as_one() {
    let mut a = applier();
    ok(&mut a, Command::LeaseGrant { id: 5, ttl_s: 10 });
    ok(&mut a, put("svc/a", 5));
    ok(&mut a, put("svc/b", 5));
    ok(&mut a, put("svc/c", 0));
    let s = watch_prefix(&mut a, "svc/");
    let (result, revision) = a.apply(&Command::LeaseRevoke { id: 5 }, 0);
    assert_eq!(result, Ok(Applied::LeaseRevoke { deleted: 2 }));
    assert_eq!(revision, 4);
    let (w, _) = a.watchers_mut();
    let r = w.poll_response(s).expect("the revoke's events");
    assert!(
        w.poll_response(s).is_none(),
        "one response for the revision"
    );
    let keys: Vec<_> = r
        .events
        .iter()
        .map(|e| (e.kind, e.kv.key.clone()))
        .collect();
    assert_eq!(
        keys,
        [
            (EventKind::Delete, b("svc/a")),
            (EventKind::Delete, b("svc/b"))
        ]
    );
    assert!(r.events.iter().all(|e| e.kv.mod_revision == 4));
    assert!(!a.lessor().contains(5));
    let left = a
        .kv()
        .range(&RangeRequest {
            key: b("svc/"),
            range_end: prefix_end(b"svc/"),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(left.count, 1);
    assert_eq!(
        a.apply(&Command::LeaseRevoke { id: 5 }, 0).0,
        Err(ApplyError::Lease(oxcd::lease::Error::NotFound { id: 5 }))
    );
}

#[test]
fn a_put_naming_an_unknown_lease_changes_nothing() {
    let mut a = applier();
    let (result, revision) = a.apply(&put("k", 9), 0);
    assert_eq!(
        result,
        Err(ApplyError::Mvcc(MvccError::LeaseNotFound { lease: 9 }))
    );
    assert_eq!(revision, 0);
}

#[test]
fn keys_follow_their_lease_through_puts_deletes_and_transactions() {
    let mut a = applier();
    ok(&mut a, Command::LeaseGrant { id: 1, ttl_s: 10 });
    ok(&mut a, Command::LeaseGrant { id: 2, ttl_s: 10 });
    ok(&mut a, put("k", 1));
    assert_eq!(a.lessor().key_lease(b"k"), Some(1));
    ok(&mut a, put("k", 2));
    assert_eq!(a.lessor().key_lease(b"k"), Some(2));
    assert!(a.lessor().lease(1).unwrap().keys().is_empty());
    ok(
        &mut a,
        Command::Put(PutRequest {
            key: b("k"),
            value: b("w"),
            ignore_lease: true,
            ..Default::default()
        }),
    );
    assert_eq!(a.lessor().key_lease(b"k"), Some(2));
    ok(&mut a, put("k", 0));
    assert_eq!(a.lessor().key_lease(b"k"), None);
    // A nested transaction puts the key with a lease; a later one deletes it: the key ends up
    // deleted and on no lease's list.
    let nested = |op: RequestOp| {
        RequestOp::Txn(TxnRequest {
            success: vec![op],
            ..Default::default()
        })
    };
    let Command::Put(p) = put("k", 1) else {
        unreachable!()
    };
    ok(
        &mut a,
        Command::Txn(TxnRequest {
            success: vec![
                nested(RequestOp::Put(p)),
                nested(RequestOp::DeleteRange(DeleteRangeRequest {
                    key: b("k"),
                    ..Default::default()
                })),
            ],
            ..Default::default()
        }),
    );
    assert_eq!(a.lessor().key_lease(b"k"), None);
    assert!(a.lessor().lease(1).unwrap().keys().is_empty());
}

// ---- property: key lists agree with the store ----

#[derive(Clone, Debug)]
enum Op {
    Grant(i64),
    Revoke(i64),
    Put(usize, i64),
    Delete(usize, bool),
    Txn(Vec<(usize, i64, bool)>),
}

const KEYS: [&str; 4] = ["a", "ab", "b", "c"];

fn op() -> impl Strategy<Value = Op> {
    let lease = prop::sample::select(vec![0i64, 1, 2, 3]);
    prop_oneof![
        (1i64..4).prop_map(Op::Grant),
        (1i64..4).prop_map(Op::Revoke),
        (0..KEYS.len(), lease.clone()).prop_map(|(k, l)| Op::Put(k, l)),
        (0..KEYS.len(), any::<bool>()).prop_map(|(k, p)| Op::Delete(k, p)),
        prop::collection::vec((0..KEYS.len(), lease, any::<bool>()), 1..4).prop_map(Op::Txn),
    ]
}

fn command(op: &Op) -> Command {
    let key = |k: usize| b(KEYS[k]);
    match op {
        Op::Grant(id) => Command::LeaseGrant { id: *id, ttl_s: 5 },
        Op::Revoke(id) => Command::LeaseRevoke { id: *id },
        Op::Put(k, l) => put(KEYS[*k], *l),
        Op::Delete(k, prefix) => Command::DeleteRange(DeleteRangeRequest {
            key: key(*k),
            range_end: if *prefix {
                prefix_end(KEYS[*k].as_bytes())
            } else {
                Bytes::new()
            },
            prev_kv: false,
        }),
        // Each write in its own nested transaction, so a put may be followed by a delete of the
        // same key in the same revision.
        Op::Txn(writes) => Command::Txn(TxnRequest {
            success: writes
                .iter()
                .map(|&(k, l, delete)| {
                    let w = if delete {
                        RequestOp::DeleteRange(DeleteRangeRequest {
                            key: key(k),
                            ..Default::default()
                        })
                    } else {
                        let Command::Put(p) = put(KEYS[k], l) else {
                            unreachable!()
                        };
                        RequestOp::Put(p)
                    };
                    RequestOp::Txn(TxnRequest {
                        success: vec![w],
                        ..Default::default()
                    })
                })
                .collect(),
            ..Default::default()
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn lease_key_lists_match_the_store(ops in prop::collection::vec(op(), 1..40)) {
        let mut a = applier();
        for op in &ops {
            let (result, _) = a.apply(&command(op), 0);
            // Failures are the refusals etcd makes (unknown or duplicate leases, duplicate keys).
            if let Err(e) = &result {
                prop_assert!(matches!(
                    e,
                    ApplyError::Lease(_)
                        | ApplyError::Mvcc(MvccError::LeaseNotFound { .. })
                        | ApplyError::Mvcc(MvccError::DuplicateKey)
                ), "{:?}: {}", op, e);
            }
            let all = a.kv().range(&RangeRequest {
                key: b("\0"),
                range_end: b("\0"),
                ..Default::default()
            }).unwrap();
            let mut attached = 0;
            for kv in &all.kvs {
                let held = a.lessor().key_lease(&kv.key);
                prop_assert_eq!(held, (kv.lease != 0).then_some(kv.lease), "key {:?}", kv.key);
                attached += (kv.lease != 0) as usize;
            }
            let listed: usize = a
                .lessor()
                .leases()
                .iter()
                .map(|id| a.lessor().lease(*id).unwrap().keys().len())
                .sum();
            prop_assert_eq!(listed, attached, "every listed key is live with its lease");
        }
    }
}

fn alarm(action: AlarmAction, member: u64, kind: i32) -> Command {
    Command::Alarm {
        action,
        member,
        kind,
    }
}

fn raised(list: &[(u64, i32)]) -> Applied {
    Applied::Alarm(
        list.iter()
            .map(|&(member, kind)| Alarm { kind, member })
            .collect(),
    )
}

/// Alarms are applied state: stored with the command that raised them, recovered after a
/// restart, and gating the commands etcd gates (NOSPACE what adds data, CORRUPT every change
/// but a read-only transaction).
#[test]
fn alarms_gate_commands_and_survive_recovery() {
    use AlarmAction::{Activate, Deactivate, Get};
    let mut a = applier();
    let applied = |a: &mut Applier<MemBackend>, index: u64, cmd: Command| {
        let (r, _) = a.apply_at(index, &cmd, 0);
        r
    };
    assert_eq!(
        applied(&mut a, 1, alarm(Activate, 7, ALARM_NOSPACE)),
        Ok(raised(&[(7, ALARM_NOSPACE)]))
    );
    let revision = a.kv().current_revision();
    assert_eq!(applied(&mut a, 2, put("k", 0)), Err(ApplyError::NoSpace));
    assert_eq!(
        applied(&mut a, 3, Command::LeaseGrant { id: 5, ttl_s: 10 }),
        Err(ApplyError::NoSpace)
    );
    assert_eq!(a.kv().current_revision(), revision, "nothing was written");
    let delete = Command::DeleteRange(DeleteRangeRequest {
        key: b("k"),
        ..Default::default()
    });
    assert!(applied(&mut a, 4, delete.clone()).is_ok());
    assert!(
        applied(
            &mut a,
            5,
            Command::Txn(TxnRequest {
                success: vec![RequestOp::Range(RangeRequest {
                    key: b("k"),
                    ..Default::default()
                })],
                ..Default::default()
            })
        )
        .is_ok()
    );

    // A restart on the same data: the alarm is still raised, and still gates.
    let backend = a.kv().backend().clone();
    let mut a = Applier::recover(
        backend,
        Lessor::new(LessorConfig::new(1000, 100)),
        Watchers::new(WatchConfig::default(), 0).unwrap(),
        128,
        0,
    )
    .unwrap();
    assert_eq!(
        applied(&mut a, 6, alarm(Get, 0, 0)),
        Ok(raised(&[(7, ALARM_NOSPACE)]))
    );
    assert_eq!(applied(&mut a, 7, put("k", 0)), Err(ApplyError::NoSpace));
    assert_eq!(
        applied(&mut a, 8, alarm(Activate, 0, ALARM_CORRUPT)),
        Ok(raised(&[(0, ALARM_CORRUPT)]))
    );
    assert_eq!(applied(&mut a, 9, delete), Err(ApplyError::Corrupt));
    assert_eq!(
        applied(&mut a, 10, alarm(Get, 0, ALARM_CORRUPT)),
        Ok(raised(&[(0, ALARM_CORRUPT)]))
    );
    // Clearing names the member and type exactly; clearing what is not raised answers none.
    assert_eq!(
        applied(&mut a, 11, alarm(Deactivate, 7, ALARM_CORRUPT)),
        Ok(raised(&[]))
    );
    assert_eq!(
        applied(&mut a, 12, alarm(Deactivate, 0, ALARM_CORRUPT)),
        Ok(raised(&[(0, ALARM_CORRUPT)]))
    );
    assert_eq!(
        applied(&mut a, 13, alarm(Deactivate, 7, ALARM_NOSPACE)),
        Ok(raised(&[(7, ALARM_NOSPACE)]))
    );
    assert!(applied(&mut a, 14, put("k", 0)).is_ok());
    assert!(a.alarms().is_empty());
}
