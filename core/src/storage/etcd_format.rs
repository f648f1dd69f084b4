//! A member's state machine (the `mvcc`, `lease` and `meta` keyspaces) to and from etcd's
//! backend ([`etcdb::etcd::Backend`]): what `Maintenance.Snapshot` sends (so that
//! `etcdctl snapshot restore` and etcd start from it) and what a restore of etcd's snapshot
//! file writes into a new data dir.
//!
//! What it does not do: open files or read bytes (the [`etcdb`] crate encodes and decodes the
//! bbolt file; the server crate moves it), or decide who the restored cluster's members are
//! (the restore's `--initial-cluster`, written by the caller). Raft snapshots keep oxcd's own
//! format ([`super::snapshot`]): this mapping drops things a Raft snapshot must carry.
//!
//! # What maps to what
//!
//! | oxcd (keyspace: key) | etcd (bucket: key) |
//! |---|---|
//! | `mvcc`: revision → record | `key`: revision → mvccpb.KeyValue (a tombstone's holds only the key; oxcd's also holds the deleting revision as `mod_revision`, restored from the bucket key) |
//! | `lease`: id → id, TTL, remaining ms | `lease`: id → leasepb.Lease (`remainingTTL` in seconds, 0 for "the whole TTL") |
//! | `meta`: `compact_revision` | `meta`: `scheduledCompactRev` and `finishedCompactRev` |
//! | `meta`: `applied_index` | `meta`: `consistent_index` (both restores rewrite it) |
//! | `meta`: `current_revision` | not stored: etcd derives it as the larger of the last key revision and the compact revision, and so does [`from_etcd`] |
//! | `meta`: `member/<id>` | `members`: id in hex → membership.Member JSON (never a learner: the state machine does not know; restores replace members anyway) |
//! | `meta`: `alarm/<kind><id>` | `alarm`: etcdserverpb.AlarmMember |
//! | `meta`: `auth/state` | `auth` (`authEnabled`, `authRevision`), `authUsers`, `authRoles` |
//! | — | `cluster`: `clusterVersion` [`CLUSTER_VERSION`] (oxcd speaks etcd 3.4's API) |
//!
//! Dropped by [`from_etcd`], and why:
//! - `members`, `members_removed`: a restore founds a new cluster whose members are its
//!   `--initial-cluster`, as etcd 3.5's restore empties them and adds the restored members.
//! - `meta`'s `consistent_index`, `term`, `confState`: Raft's, and the new cluster's Raft log
//!   starts afresh (both etcd restores rewrite them too).
//! - `cluster` (`clusterVersion`, `downgrade`): oxcd has one version.
//! - A `scheduledCompactRev` past `finishedCompactRev` (a compaction etcd had not finished):
//!   etcd would finish it at start; the restored store is compacted at the finished one.
//! - Anything in [`etcd::Backend::other`] (buckets and keys this mapping does not know).
//!
//! [`to_etcd`] drops nothing of the three keyspaces: an unknown `meta` key is an error, so a
//! new kind of state cannot silently miss from a snapshot.

use super::backend::meta_key;
use super::codec;
use super::engine::{EngineRead, Result, Space, StorageError, WriteBatch};
use super::snapshot::{self, Restored};
use crate::auth::{AuthStore, PermKind, Permission, Role, User};
use crate::mvcc::{KeyValue, LeaseRecord, MetaKey, Record, Revision};
use crate::node::MemberRecord;
use bytes::Bytes;
use etcdb::etcd;
use std::collections::BTreeMap;

pub use etcdb;

/// The `cluster`/`clusterVersion` written: etcd 3.4's, the API oxcd serves.
pub const CLUSTER_VERSION: &str = "3.4.0";

fn inconsistent(why: impl std::fmt::Display) -> StorageError {
    StorageError::Inconsistent(format!("etcd backend: {why}"))
}

/// etcd's backend holding `view`'s state machine. The view is read page by page; the result
/// holds all of it (a snapshot's size in memory).
pub fn to_etcd<R: EngineRead>(view: &R) -> Result<etcd::Backend> {
    let mut b = etcd::Backend {
        cluster_version: Some(CLUSTER_VERSION.to_string()),
        ..etcd::Backend::default()
    };
    snapshot::for_each_pair(view, Space::Mvcc, |key, value| {
        let rev = codec::decode_revision_key(&key).expect("checked by for_each_pair");
        let r = codec::decode_record(&key, &value).expect("checked by for_each_pair");
        let kv = if r.tombstone {
            etcd::KeyValue {
                key: r.kv.key.to_vec(),
                ..etcd::KeyValue::default()
            }
        } else {
            etcd::KeyValue {
                key: r.kv.key.to_vec(),
                create_revision: r.kv.create_revision,
                mod_revision: r.kv.mod_revision,
                version: r.kv.version,
                value: r.kv.value.to_vec(),
                lease: r.kv.lease,
            }
        };
        b.kvs.push(etcd::Record {
            main: rev.main,
            sub: rev.sub,
            tombstone: r.tombstone,
            kv,
        });
        Ok(())
    })?;
    snapshot::for_each_pair(view, Space::Lease, |key, value| {
        let l = codec::decode_lease(&key, &value).expect("checked by for_each_pair");
        b.leases.insert(l.id, to_etcd_lease(l));
        Ok(())
    })?;
    let applied = meta_key(MetaKey::AppliedIndex);
    let compact = meta_key(MetaKey::CompactRevision);
    let current = meta_key(MetaKey::CurrentRevision);
    snapshot::for_each_pair(view, Space::Meta, |key, value| {
        if let Some(id) = codec::decode_member_key(&key) {
            let bytes = codec::decode_member(&key, &value).expect("checked by for_each_pair");
            let m = MemberRecord::decode(id, &bytes)
                .map_err(|e| StorageError::corrupt(Space::Meta, &key, e))?;
            b.members.insert(
                id,
                etcd::Member {
                    id,
                    peer_urls: m.peer_urls,
                    is_learner: false,
                    name: m.name,
                    client_urls: m.client_urls,
                },
            );
        } else if let Some(a) = codec::decode_alarm_key(&key) {
            b.alarms.insert(etcd::AlarmMember {
                member_id: a.member,
                alarm: a.kind,
            });
        } else if key == codec::AUTH_KEY {
            let bytes = codec::decode_auth(&key, &value).expect("checked by for_each_pair");
            let auth = AuthStore::decode(&bytes).expect("checked by for_each_pair");
            put_auth(&mut b, &auth);
        } else if key.starts_with(codec::V2_KEY_PREFIX) || key == meta_key(MetaKey::V2Index) {
            // The v2 store has no place in etcd's backend (etcd keeps it in its WAL and
            // `.snap` files): an etcd snapshot carries the v3 data only, as etcd's does.
        } else {
            let n = codec::decode_meta(&key, &value).expect("checked by for_each_pair");
            if key == applied {
                b.consistent_index = Some(
                    u64::try_from(n)
                        .map_err(|_| inconsistent(format!("applied index {n} is negative")))?,
                );
            } else if key == compact {
                if n > 0 {
                    b.scheduled_compact_rev = Some(n);
                    b.finished_compact_rev = Some(n);
                }
            } else if key != current {
                return Err(inconsistent(format!(
                    "meta key {} has no place in etcd's backend",
                    super::engine::hex(&key)
                )));
            }
        }
        Ok(())
    })?;
    debug_assert!(
        b.kvs
            .windows(2)
            .all(|w| (w[0].main, w[0].sub) < (w[1].main, w[1].sub)),
        "the mvcc keyspace scans in revision order"
    );
    Ok(b)
}

/// [`to_etcd`] written as `etcdctl snapshot save` stores it: bbolt pages, then their SHA-256.
pub fn encode<R: EngineRead>(view: &R) -> Result<Vec<u8>> {
    Ok(etcd::encode(&to_etcd(view)?))
}

fn to_etcd_lease(l: LeaseRecord) -> etcd::Lease {
    let ttl_ms = u64::try_from(l.ttl_s).unwrap_or(0).saturating_mul(1000);
    // etcd's 0 means "never checkpointed: the whole TTL"; a part of a second left rounds up,
    // so that a lease never reaches etcd with less time than it had.
    let remaining_ttl = if l.remaining_ms >= ttl_ms {
        0
    } else {
        i64::try_from(l.remaining_ms.div_ceil(1000)).unwrap_or(i64::MAX)
    };
    etcd::Lease {
        id: l.id,
        ttl: l.ttl_s,
        remaining_ttl,
    }
}

fn put_auth(b: &mut etcd::Backend, auth: &AuthStore) {
    b.auth_enabled = Some(auth.enabled());
    b.auth_revision = Some(auth.revision());
    for (name, u) in auth.users() {
        let user = etcd::User {
            name: name.as_bytes().to_vec(),
            password: u.password.to_vec(),
            roles: u.roles.clone(),
            options: Some(etcd::UserAddOptions {
                no_password: u.no_password,
            }),
        };
        b.users.insert(user.name.clone(), user);
    }
    for (name, r) in auth.roles() {
        let role = etcd::Role {
            name: name.as_bytes().to_vec(),
            key_permission: r
                .perms
                .iter()
                .map(|p| etcd::Permission {
                    perm_type: p.kind as i32,
                    key: p.key.to_vec(),
                    range_end: p.range_end.to_vec(),
                })
                .collect(),
        };
        b.roles.insert(role.name.clone(), role);
    }
}

fn text(what: &str, name: &[u8]) -> Result<String> {
    String::from_utf8(name.to_vec())
        .map_err(|_| inconsistent(format!("{what} name {name:?} is not UTF-8")))
}

fn auth_from_etcd(b: &etcd::Backend) -> Result<AuthStore> {
    let mut users = BTreeMap::new();
    for (name, u) in &b.users {
        users.insert(
            text("user", name)?,
            User {
                password: Bytes::copy_from_slice(&u.password),
                no_password: u.options.as_ref().is_some_and(|o| o.no_password),
                roles: u.roles.clone(),
            },
        );
    }
    let mut roles = BTreeMap::new();
    for (name, r) in &b.roles {
        let mut perms = Vec::with_capacity(r.key_permission.len());
        for p in &r.key_permission {
            let kind = PermKind::from_i32(p.perm_type).ok_or_else(|| {
                inconsistent(format!("role {name:?}: permission type {}", p.perm_type))
            })?;
            perms.push(Permission {
                kind,
                key: Bytes::copy_from_slice(&p.key),
                range_end: Bytes::copy_from_slice(&p.range_end),
            });
        }
        roles.insert(text("role", name)?, Role { perms });
    }
    // etcd reads an absent (or zero) revision as 0 and commits 1 at start.
    let revision = b.auth_revision.filter(|&r| r > 0).unwrap_or(1);
    Ok(AuthStore::from_parts(
        b.auth_enabled.unwrap_or(false),
        revision,
        users,
        roles,
    ))
}

/// The pairs of a fresh data dir's `mvcc`, `lease` and `meta` keyspaces holding `b`'s state
/// machine, in stream order, as a restore of oxcd's own snapshot yields them (the applied
/// index 0: the member founded on the dir sets its own). Members are left out (see the module
/// docs). Refuses a record that is not what etcd writes (a put whose `mod_revision` is not its
/// revision, a negative revision or lease TTL, a name that is not UTF-8).
pub fn from_etcd(b: &etcd::Backend) -> Result<Restored> {
    let mut pairs: BTreeMap<(Space, Bytes), Bytes> = BTreeMap::new();
    let mut put = |space: Space, key: Bytes, value: Bytes| {
        let replaced = pairs.insert((space, key), value);
        assert!(replaced.is_none(), "each key is written once");
    };
    let mut last_main = 1;
    for r in &b.kvs {
        if r.main < 1 || r.sub < 0 {
            return Err(inconsistent(format!("revision {}_{}", r.main, r.sub)));
        }
        if !r.tombstone && r.kv.mod_revision != r.main {
            return Err(inconsistent(format!(
                "the key at revision {} says it was written at {}",
                r.main, r.kv.mod_revision
            )));
        }
        let rev = Revision::new(r.main, r.sub);
        let record = Record {
            kv: if r.tombstone {
                KeyValue {
                    key: Bytes::copy_from_slice(&r.kv.key),
                    mod_revision: r.main,
                    ..KeyValue::default()
                }
            } else {
                KeyValue {
                    key: Bytes::copy_from_slice(&r.kv.key),
                    create_revision: r.kv.create_revision,
                    mod_revision: r.kv.mod_revision,
                    version: r.kv.version,
                    value: Bytes::copy_from_slice(&r.kv.value),
                    lease: r.kv.lease,
                }
            },
            tombstone: r.tombstone,
        };
        let key = codec::revision_key(rev);
        put(
            Space::Mvcc,
            Bytes::copy_from_slice(&key),
            codec::encode_record(&key, &record),
        );
        last_main = last_main.max(r.main);
    }
    for l in b.leases.values() {
        if l.ttl < 0 || l.remaining_ttl < 0 {
            return Err(inconsistent(format!("lease {:x}: negative TTL", l.id)));
        }
        let ttl_ms = (l.ttl as u64).saturating_mul(1000);
        let remaining_ms = match l.remaining_ttl {
            0 => ttl_ms,
            s => (s as u64).saturating_mul(1000).min(ttl_ms),
        };
        let record = LeaseRecord {
            id: l.id,
            ttl_s: l.ttl,
            remaining_ms,
        };
        put(
            Space::Lease,
            Bytes::copy_from_slice(&codec::lease_key(l.id)),
            codec::encode_lease(&record),
        );
    }
    let compact = b.finished_compact_rev.unwrap_or(0);
    if compact < 0 {
        return Err(inconsistent(format!("compact revision {compact}")));
    }
    let mut meta = |key: MetaKey, n: i64| {
        let k = meta_key(key);
        put(Space::Meta, Bytes::from_static(k), codec::encode_meta(k, n));
    };
    meta(MetaKey::CurrentRevision, last_main.max(compact));
    if compact > 0 {
        meta(MetaKey::CompactRevision, compact);
    }
    for a in &b.alarms {
        let key = codec::alarm_key(crate::mvcc::Alarm {
            kind: a.alarm,
            member: a.member_id,
        });
        let value = codec::encode_meta(&key, i64::from(a.alarm));
        put(Space::Meta, Bytes::from(key), value);
    }
    let auth = auth_from_etcd(b)?;
    let key = codec::AUTH_KEY;
    put(
        Space::Meta,
        Bytes::from_static(key),
        codec::encode_auth(key, &auth.encode()),
    );

    let mut batch = WriteBatch::default();
    for ((space, key), value) in pairs {
        // Paired check: every pair reads back as a snapshot's pair must.
        snapshot::check_pair(space, &key, &value)?;
        batch.put(space, key, value);
    }
    Ok(Restored {
        applied_index: 0,
        pairs: batch.ops.len() as u64,
        batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{Backend, Batch};
    use crate::storage::{Engine, stage_meta};
    use crate::storage::{EngineBackend, SimDisk};

    fn kv(key: &str, create: i64, rev: i64, version: i64, value: &str, lease: i64) -> Record {
        Record {
            kv: KeyValue {
                key: Bytes::copy_from_slice(key.as_bytes()),
                create_revision: create,
                mod_revision: rev,
                version,
                value: Bytes::copy_from_slice(value.as_bytes()),
                lease,
            },
            tombstone: false,
        }
    }

    /// A store with history, a tombstone, a compaction, a lease, an alarm and auth.
    fn store() -> SimDisk {
        let disk = SimDisk::new(7, crate::storage::DiskFaults::default());
        let mut backend = EngineBackend::new(disk.clone());
        let tomb = Record {
            kv: KeyValue {
                key: Bytes::from_static(b"a"),
                mod_revision: 4,
                ..KeyValue::default()
            },
            tombstone: true,
        };
        let mut auth = AuthStore::from_parts(
            true,
            5,
            BTreeMap::from([(
                "root".to_string(),
                User {
                    password: Bytes::from_static(b"$2a$10$hash"),
                    no_password: false,
                    roles: vec!["root".into()],
                },
            )]),
            BTreeMap::from([
                ("root".to_string(), Role::default()),
                (
                    "r".to_string(),
                    Role {
                        perms: vec![Permission {
                            kind: PermKind::ReadWrite,
                            key: Bytes::from_static(b"k"),
                            range_end: Bytes::from_static(b"l"),
                        }],
                    },
                ),
            ]),
        );
        assert!(auth.enabled());
        auth = AuthStore::decode(&auth.encode()).unwrap();
        backend
            .write(Batch {
                puts: vec![
                    (Revision::new(2, 0), kv("a", 2, 2, 1, "1", 0)),
                    (Revision::new(3, 0), kv("a", 2, 3, 2, "2", 0)),
                    (Revision::new(3, 1), kv("b", 3, 3, 1, "leased", 0x77)),
                    (Revision::new(4, 0), tomb),
                    (Revision::new(5, 0), kv("a", 5, 5, 1, "3", 0)),
                ],
                meta: vec![
                    (MetaKey::CurrentRevision, 5),
                    (MetaKey::CompactRevision, 3),
                    (MetaKey::AppliedIndex, 9),
                ],
                leases: vec![(
                    0x77,
                    Some(LeaseRecord {
                        id: 0x77,
                        ttl_s: 60,
                        remaining_ms: 60_000,
                    }),
                )],
                alarms: vec![(
                    crate::mvcc::Alarm {
                        kind: 1,
                        member: 0xabc,
                    },
                    true,
                )],
                auth: Some(auth.encode()),
                ..Batch::default()
            })
            .unwrap();
        disk
    }

    #[test]
    fn a_state_machine_goes_to_etcd_and_back() {
        let disk = store();
        let b = to_etcd(&disk.view()).unwrap();
        assert_eq!(b.kvs.len(), 5);
        assert_eq!(b.kvs[3].kv.key, b"a");
        assert!(b.kvs[3].tombstone);
        assert_eq!(
            b.kvs[3].kv.mod_revision, 0,
            "etcd's tombstone holds the key only"
        );
        assert_eq!(b.finished_compact_rev, Some(3));
        assert_eq!(b.scheduled_compact_rev, Some(3));
        assert_eq!(b.consistent_index, Some(9));
        assert_eq!(b.leases[&0x77].ttl, 60);
        assert_eq!(b.leases[&0x77].remaining_ttl, 0);
        assert_eq!(b.auth_enabled, Some(true));
        assert_eq!(b.auth_revision, Some(5));
        assert_eq!(b.users.len(), 1);
        assert_eq!(b.roles[&b"r"[..]].key_permission[0].perm_type, 2);
        assert_eq!(b.alarms.len(), 1);

        // Through the file and back: the same pairs, but for the applied index.
        let file = etcd::encode(&b);
        let back = from_etcd(&etcd::decode(&file, true).unwrap()).unwrap();
        let want: Vec<_> = snapshot::SPACES
            .iter()
            .flat_map(|&s| {
                disk.scan(s, &[], None, 0)
                    .unwrap()
                    .into_iter()
                    .map(move |(k, v)| (s, k, v))
            })
            .filter(|(s, k, _)| !(*s == Space::Meta && &k[..] == meta_key(MetaKey::AppliedIndex)))
            .collect();
        let got: Vec<_> = back
            .batch
            .ops
            .iter()
            .map(|op| (op.space, op.key.clone(), op.value.clone().unwrap()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_v2_store_stays_out_of_an_etcd_snapshot() {
        let without = etcd::encode(&to_etcd(&store().view()).unwrap());
        let disk = store();
        let mut v2 = crate::v2::V2Store::new();
        let set = crate::v2::V2Command::Set {
            path: "/d/k".into(),
            dir: false,
            value: "v".into(),
            expiry: crate::v2::Expiry::default(),
        };
        v2.apply(&set).unwrap();
        EngineBackend::new(disk.clone())
            .write(Batch {
                meta: vec![(MetaKey::V2Index, v2.index() as i64)],
                v2: v2.take_changes(),
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(etcd::encode(&to_etcd(&disk.view()).unwrap()), without);
    }

    #[test]
    fn current_revision_is_the_compact_revision_when_it_is_past_every_record() {
        let b = etcd::Backend {
            kvs: vec![etcd::Record {
                main: 2,
                sub: 0,
                tombstone: false,
                kv: etcd::KeyValue {
                    key: b"k".to_vec(),
                    create_revision: 2,
                    mod_revision: 2,
                    version: 1,
                    ..Default::default()
                },
            }],
            finished_compact_rev: Some(7),
            scheduled_compact_rev: Some(7),
            ..Default::default()
        };
        let r = from_etcd(&b).unwrap();
        let k = meta_key(MetaKey::CurrentRevision);
        let v = r.batch.ops.iter().find(|op| op.key == k).unwrap();
        assert_eq!(codec::decode_meta(k, v.value.as_ref().unwrap()).unwrap(), 7);
    }

    #[test]
    fn a_put_written_at_another_revision_is_refused() {
        let mut b = to_etcd(&store().view()).unwrap();
        b.kvs[0].kv.mod_revision += 1;
        assert!(from_etcd(&b).is_err());
    }

    #[test]
    fn an_unknown_meta_key_is_refused() {
        let disk = store();
        let mut batch = WriteBatch::default();
        stage_meta(&mut batch, Space::Meta, b"something_new", 1);
        disk.write(batch).unwrap();
        assert!(to_etcd(&disk.view()).is_err());
    }
}
