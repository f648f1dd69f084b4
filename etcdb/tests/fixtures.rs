//! The snapshots etcd 3.4.23 and 3.5.1 wrote (made by fixtures/make.sh, which says what they
//! hold): decoded into the expected backend, `status` as etcd printed it, round trips.

use oxcd_etcdb::bbolt;
use oxcd_etcdb::etcd::{self, AlarmMember, Backend, KeyValue, Permission, Record, Role};

const V34: &[u8] = include_bytes!("fixtures/etcd-3.4.23.db");
const V35: &[u8] = include_bytes!("fixtures/etcd-3.5.1.db");
const V34_STATUS: &str = include_str!("fixtures/etcd-3.4.23.status.json");
const V35_STATUS: &str = include_str!("fixtures/etcd-3.5.1.status.json");

fn kv(key: &str, create: i64, rev: i64, version: i64, value: &str, lease: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        create_revision: create,
        mod_revision: rev,
        version,
        value: value.into(),
        lease,
    }
}

fn record(main: i64, kv: KeyValue) -> Record {
    Record {
        main,
        sub: 0,
        tombstone: false,
        kv,
    }
}

/// What make.sh wrote, the same in both versions except where the version shows.
fn check_common(b: &Backend) {
    let lease_id = *b.leases.keys().next().expect("one lease");
    let expected_kvs = vec![
        // rev 2 (k1 = v1) went with the compaction at 3.
        record(3, kv("k1", 2, 3, 2, "v2", 0)),
        record(4, kv("gone", 4, 4, 1, "g", 0)),
        record(5, kv("k1", 2, 5, 3, "v3", 0)),
        Record {
            main: 6,
            sub: 0,
            tombstone: true,
            kv: KeyValue {
                key: b"gone".to_vec(),
                ..Default::default()
            },
        },
        record(7, kv("leased", 7, 7, 1, "l", lease_id)),
    ];
    assert_eq!(b.kvs, expected_kvs);
    assert_eq!(b.scheduled_compact_rev, Some(3));
    assert_eq!(b.finished_compact_rev, Some(3));
    assert_eq!(b.leases.len(), 1);
    let lease = &b.leases[&lease_id];
    assert_eq!((lease.ttl, lease.remaining_ttl), (600, 0));
    // The one member raised NOSPACE against the 32 KiB quota.
    let member_id = *b.members.keys().next().expect("one member");
    assert_eq!(b.members.len(), 1);
    assert_eq!(b.members[&member_id].name, "fixture");
    assert_eq!(b.members[&member_id].peer_urls.len(), 1);
    assert!(b.members_removed.is_empty());
    let nospace = AlarmMember {
        member_id,
        alarm: 1,
    };
    assert_eq!(b.alarms.iter().collect::<Vec<_>>(), vec![&nospace]);
    // Auth stayed disabled: the switch was never written.
    assert_eq!(b.auth_enabled, None);
    assert_eq!(b.auth_revision, Some(7));
    assert_eq!(
        b.users.keys().collect::<Vec<_>>(),
        vec![&b"alice".to_vec(), &b"bob".to_vec()]
    );
    assert_eq!(
        b.users[&b"alice".to_vec()].roles,
        vec!["reader".to_string()]
    );
    assert!(b.users[&b"bob".to_vec()].roles.is_empty());
    assert!(b.users[&b"alice".to_vec()].password.starts_with(b"$2a$10$"));
    let reader = Role {
        name: b"reader".to_vec(),
        key_permission: vec![
            Permission {
                perm_type: 0,
                key: b"/a".to_vec(),
                range_end: b"/b".to_vec(),
            },
            Permission {
                perm_type: 2,
                key: b"k1".to_vec(),
                range_end: Vec::new(),
            },
        ],
    };
    assert_eq!(b.roles.values().collect::<Vec<_>>(), vec![&reader]);
    assert_eq!(b.downgrade, None);
    assert!(b.other.buckets.is_empty(), "{:?}", b.other);
}

#[test]
fn etcd_3_4_23_snapshot_decodes() {
    let b = etcd::decode(V34, true).unwrap();
    check_common(&b);
    assert_eq!(b.cluster_version.as_deref(), Some("3.4.0"));
    // 3.4 keeps neither the term nor the conf state in the backend.
    assert_eq!((b.term, &b.conf_state), (None, &None));
    assert!(b.consistent_index.is_some());
    let m = b.members.values().next().unwrap();
    assert_eq!(
        m.client_urls.len(),
        1,
        "3.4.23 records client URLs in the backend"
    );
}

#[test]
fn etcd_3_5_1_snapshot_decodes() {
    let b = etcd::decode(V35, true).unwrap();
    check_common(&b);
    assert_eq!(b.cluster_version.as_deref(), Some("3.5.0"));
    assert!(b.term.is_some_and(|t| t >= 1));
    let member_id = *b.members.keys().next().unwrap();
    assert_eq!(b.conf_state.as_ref().unwrap().voters, vec![member_id]);
    let m = b.members.values().next().unwrap();
    assert!(
        m.client_urls.is_empty(),
        "3.5.1 keeps them in the v2 store only"
    );
}

#[test]
fn status_is_what_etcd_printed() {
    for (bytes, printed) in [(V34, V34_STATUS), (V35, V35_STATUS)] {
        let status = etcd::status(bytes).unwrap();
        assert_eq!(status.to_json(), printed.trim());
    }
}

#[test]
fn fixtures_round_trip_through_encode() {
    for bytes in [V34, V35] {
        let b = etcd::decode(bytes, true).unwrap();
        let again = etcd::encode(&b);
        assert_eq!(etcd::decode(&again, true).unwrap(), b);
        // The same keys and values, so the same status hash and revision; the size differs
        // (etcd inlines small buckets, we never do).
        let (ours, theirs) = (etcd::status(&again).unwrap(), etcd::status(bytes).unwrap());
        assert_eq!(
            (ours.hash, ours.revision, ours.total_key),
            (theirs.hash, theirs.revision, theirs.total_key)
        );
        // The bbolt layer alone round trips too.
        let (db_bytes, _) = etcd::split_trailer(bytes);
        let db = bbolt::read(db_bytes).unwrap();
        assert_eq!(bbolt::read(&bbolt::write(&db)).unwrap(), db);
    }
}

#[test]
fn a_wrong_trailer_is_refused_in_etcds_words() {
    let mut bytes = V34.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = etcd::decode(&bytes, true).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("expected sha256 ["), "{text}");
    assert!(text.contains("], got ["), "{text}");
    // Unchecked, the same bytes decode; without the trailer too.
    assert!(etcd::decode(&bytes, false).is_ok());
    assert!(etcd::decode(&bytes[..bytes.len() - 32], true).is_ok());
}
