//! Properties: the reader never panics on any bytes (random, or a valid file mutated), and
//! encode/decode round trip on random databases and backends.

use std::collections::BTreeMap;

use oxcd_etcdb::bbolt::{self, Bucket, Db};
use oxcd_etcdb::etcd::{self, AlarmMember, Backend, KeyValue, Lease, Member, Record, User};
use proptest::prelude::*;

const V35: &[u8] = include_bytes!("fixtures/etcd-3.5.1.db");

fn db_strategy() -> impl Strategy<Value = Db> {
    let value = prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 3000..9000),
    ];
    let bucket = proptest::collection::btree_map(
        proptest::collection::vec(any::<u8>(), 1..40),
        value,
        0..120,
    )
    .prop_map(|entries| Bucket { entries });
    proptest::collection::btree_map(proptest::collection::vec(any::<u8>(), 1..12), bucket, 0..6)
        .prop_map(|buckets| Db { buckets })
}

fn backend_strategy() -> impl Strategy<Value = Backend> {
    let record = (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 1..20),
        proptest::collection::vec(any::<u8>(), 0..50),
        0i64..5,
    );
    (
        proptest::collection::vec(record, 0..60),
        proptest::option::of(any::<u64>()),
        proptest::option::of(0i64..100),
        proptest::collection::btree_map(1i64..i64::MAX, 1i64..100_000, 0..5),
        proptest::collection::btree_set((any::<u64>(), 1i32..3), 0..3),
        proptest::collection::btree_map(any::<u64>(), "[a-z]{0,8}", 0..4),
        proptest::option::of(any::<bool>()),
        proptest::collection::btree_map("[a-z]{1,8}", "[a-z]{0,3}", 0..4),
    )
        .prop_map(
            |(records, ci, compact, leases, alarms, members, auth, users)| {
                let mut b = Backend::default();
                let mut main = 1;
                for (i, (tombstone, key, value, lease)) in records.into_iter().enumerate() {
                    main += 1 + i as i64 % 2;
                    let kv = if tombstone {
                        KeyValue {
                            key,
                            ..Default::default()
                        }
                    } else {
                        KeyValue {
                            key,
                            create_revision: main,
                            mod_revision: main,
                            version: 1,
                            value,
                            lease,
                        }
                    };
                    b.kvs.push(Record {
                        main,
                        sub: (i % 3) as i64,
                        tombstone,
                        kv,
                    });
                }
                b.kvs.dedup_by_key(|r| r.main);
                b.consistent_index = ci;
                b.term = ci.map(|c| c / 7);
                b.scheduled_compact_rev = compact;
                b.finished_compact_rev = compact;
                b.leases = leases
                    .into_iter()
                    .map(|(id, ttl)| {
                        let lease = Lease {
                            id,
                            ttl,
                            remaining_ttl: ttl / 2,
                        };
                        (id, lease)
                    })
                    .collect();
                b.alarms = alarms
                    .into_iter()
                    .map(|(member_id, alarm)| AlarmMember { member_id, alarm })
                    .collect();
                b.members = members
                    .into_iter()
                    .map(|(id, name)| {
                        let m = Member {
                            id,
                            peer_urls: vec![format!("http://{name}:2380")],
                            name,
                            ..Default::default()
                        };
                        (id, m)
                    })
                    .collect();
                b.members_removed = b.members.keys().map(|id| id ^ 1).collect();
                b.auth_enabled = auth;
                b.auth_revision = auth.map(|_| 9);
                b.users = users
                    .into_iter()
                    .map(|(name, role)| {
                        let user = User {
                            name: name.clone().into_bytes(),
                            password: b"$2a$10$x".to_vec(),
                            roles: vec![role].into_iter().filter(|r| !r.is_empty()).collect(),
                            options: Some(Default::default()),
                        };
                        (name.into_bytes(), user)
                    })
                    .collect::<BTreeMap<_, _>>();
                b.cluster_version = Some("3.5.0".into());
                b
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn bbolt_write_then_read_is_identity(db in db_strategy()) {
        let bytes = bbolt::write(&db);
        prop_assert_eq!(bytes.len() % bbolt::PAGE_SIZE, 0);
        let layout = bbolt::layout(&bytes).unwrap();
        prop_assert_eq!(layout.size_bytes(), bytes.len() as u64);
        prop_assert_eq!(bbolt::read(&bytes).unwrap(), db);
    }

    #[test]
    fn etcd_encode_then_decode_is_identity(backend in backend_strategy()) {
        let bytes = etcd::encode(&backend);
        let mut expected = backend.clone();
        expected.other = Db::default();
        prop_assert_eq!(etcd::decode(&bytes, true).unwrap(), expected);
        let status = etcd::status(&bytes).unwrap();
        prop_assert_eq!(status.revision, backend.kvs.last().map_or(0, |r| r.main));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bytes: an error or a database, never a panic.
    #[test]
    fn read_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..20000)) {
        let _ = bbolt::read(&bytes);
        let _ = etcd::decode(&bytes, true);
        let _ = etcd::status(&bytes);
    }

    /// A real file with a few bytes changed, its meta checksums fixed up so the damage reaches
    /// the page walk.
    #[test]
    fn read_survives_mutated_files(
        edits in proptest::collection::vec((0usize..V35.len() - 32, any::<u8>()), 1..8),
        fix_meta in any::<bool>(),
    ) {
        let mut bytes = V35[..V35.len() - 32].to_vec();
        for (at, b) in edits {
            bytes[at] = b;
        }
        if fix_meta {
            for page in 0..2 {
                let m = page * 4096 + 16;
                let sum = fnv64a(&bytes[m..m + 56]);
                bytes[m + 56..m + 64].copy_from_slice(&sum.to_le_bytes());
            }
        }
        let _ = bbolt::read(&bytes);
        let _ = etcd::decode(&bytes, false);
        let _ = etcd::status(&bytes);
    }
}

fn fnv64a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
