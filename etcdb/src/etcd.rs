//! etcd 3.4/3.5's schema on a bbolt database, and the snapshot file around it.
//!
//! Owns: [`Backend`], the typed contents of etcd's buckets; [`encode`] and [`decode`] between
//! it and the bytes of `etcdctl snapshot save` (bbolt pages, then a SHA-256 of them);
//! [`status`], what `etcdctl snapshot status` prints. Does not own: what the values mean to a
//! running member (revisions, lease expiry, auth checks), the WAL and raft snapshot that
//! `snapshot restore` writes beside the database, or any IO.
//!
//! The buckets (etcd creates all ten at start, so [`encode`] writes all ten, empty or not):
//!
//! | bucket | key | value |
//! |---|---|---|
//! | `key` | main revision (8 bytes BE) `_` sub revision (8 bytes BE), `t` for a tombstone | mvccpb.KeyValue (a tombstone's holds only the key) |
//! | `meta` | `consistent_index`, `term` (3.5) | 8 bytes BE |
//! | `meta` | `scheduledCompactRev`, `finishedCompactRev` | 17 bytes: a revision as in `key`, sub 0 |
//! | `meta` | `confState` (3.5) | raftpb.ConfState as JSON |
//! | `lease` | the lease id, 8 bytes BE | leasepb.Lease |
//! | `alarm` | etcdserverpb.AlarmMember | empty |
//! | `members` | member id in lower-case hex | membership.Member as JSON |
//! | `members_removed` | member id in lower-case hex | `removed` |
//! | `auth` | `authEnabled` | one byte, 1 or 0 (absent until auth was first enabled) |
//! | `auth` | `authRevision` | 8 bytes BE |
//! | `authUsers` | user name | authpb.User |
//! | `authRoles` | role name | authpb.Role |
//! | `cluster` | `clusterVersion` | `3.4.0`, `3.5.0`: major.minor.0 |
//! | `cluster` | `downgrade` (3.5) | `{"target-version":..,"enabled":..}` |
//!
//! Anything else (another bucket, another key in `meta`, `auth` or `cluster`) is kept verbatim
//! in [`Backend::other`], so a newer etcd's file survives a round trip.

mod member;
mod proto;
mod status;

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

pub use member::{ConfState, Member};
pub use proto::{AlarmMember, KeyValue, Lease, Permission, Role, User, UserAddOptions};
pub use status::{Status, status};

use crate::bbolt::{self, Bucket, Db};
use crate::{Error, Result};

/// Length of the SHA-256 trailer `etcdctl snapshot save` appends.
pub const TRAILER_LEN: usize = 32;

/// Bucket names, as etcd spells them.
pub mod buckets {
    /// Revisions to mvccpb.KeyValue.
    pub const KEY: &[u8] = b"key";
    /// The consistent index, term, conf state and compaction revisions.
    pub const META: &[u8] = b"meta";
    /// Leases.
    pub const LEASE: &[u8] = b"lease";
    /// Raised alarms.
    pub const ALARM: &[u8] = b"alarm";
    /// The cluster version (and 3.5's downgrade).
    pub const CLUSTER: &[u8] = b"cluster";
    /// Members.
    pub const MEMBERS: &[u8] = b"members";
    /// Ids of removed members.
    pub const MEMBERS_REMOVED: &[u8] = b"members_removed";
    /// Auth switch and revision.
    pub const AUTH: &[u8] = b"auth";
    /// Users.
    pub const AUTH_USERS: &[u8] = b"authUsers";
    /// Roles.
    pub const AUTH_ROLES: &[u8] = b"authRoles";
    /// All ten, in the order etcd 3.5 lists them.
    pub const ALL: [&[u8]; 10] = [
        KEY,
        META,
        LEASE,
        ALARM,
        CLUSTER,
        MEMBERS,
        MEMBERS_REMOVED,
        AUTH,
        AUTH_USERS,
        AUTH_ROLES,
    ];
}

const CONSISTENT_INDEX: &[u8] = b"consistent_index";
const TERM: &[u8] = b"term";
const CONF_STATE: &[u8] = b"confState";
const SCHEDULED_COMPACT_REV: &[u8] = b"scheduledCompactRev";
const FINISHED_COMPACT_REV: &[u8] = b"finishedCompactRev";
const AUTH_ENABLED: &[u8] = b"authEnabled";
const AUTH_REVISION: &[u8] = b"authRevision";
const CLUSTER_VERSION: &[u8] = b"clusterVersion";
const DOWNGRADE: &[u8] = b"downgrade";
const REMOVED: &[u8] = b"removed";

/// One entry of the `key` bucket: a key's state at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The revision's main part (the store revision of the transaction).
    pub main: i64,
    /// The revision's sub part (the change's index within the transaction).
    pub sub: i64,
    /// A deletion: `kv` then holds only the key.
    pub tombstone: bool,
    /// The key's state.
    pub kv: KeyValue,
}

impl Record {
    /// The `key` bucket's key: main, `_`, sub (8 bytes big-endian each), `t` for a tombstone.
    pub fn bucket_key(&self) -> Vec<u8> {
        let mut k = revision_bytes(self.main, self.sub);
        if self.tombstone {
            k.push(b't');
        }
        k
    }
}

/// The contents of etcd's backend. `None` means the key is absent from the file (which etcd
/// reads as zero or unset), so that a file read and written again keeps its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backend {
    /// The `key` bucket, in revision order.
    pub kvs: Vec<Record>,
    /// `meta`/`consistent_index`: the last raft index applied to this backend.
    pub consistent_index: Option<u64>,
    /// `meta`/`term` (3.5): the term of that index.
    pub term: Option<u64>,
    /// `meta`/`confState` (3.5): the raft configuration at that index.
    pub conf_state: Option<ConfState>,
    /// `meta`/`scheduledCompactRev`: the revision of the last compaction asked for.
    pub scheduled_compact_rev: Option<i64>,
    /// `meta`/`finishedCompactRev`: the revision of the last compaction done.
    pub finished_compact_rev: Option<i64>,
    /// `lease`, by id.
    pub leases: BTreeMap<i64, Lease>,
    /// `alarm`.
    pub alarms: BTreeSet<AlarmMember>,
    /// `members`, by id.
    pub members: BTreeMap<u64, Member>,
    /// `members_removed`: ids.
    pub members_removed: BTreeSet<u64>,
    /// `auth`/`authEnabled`.
    pub auth_enabled: Option<bool>,
    /// `auth`/`authRevision`.
    pub auth_revision: Option<u64>,
    /// `authUsers`, by name.
    pub users: BTreeMap<Vec<u8>, User>,
    /// `authRoles`, by name.
    pub roles: BTreeMap<Vec<u8>, Role>,
    /// `cluster`/`clusterVersion`, e.g. `3.5.0`.
    pub cluster_version: Option<String>,
    /// `cluster`/`downgrade` (3.5), its JSON as stored.
    pub downgrade: Option<Vec<u8>>,
    /// Buckets and keys this module does not know, kept verbatim.
    pub other: Db,
}

/// Writes `backend` as `etcdctl snapshot save` would: a bbolt file followed by the SHA-256 of
/// it. Panics if `kvs` is not in strictly increasing revision order (a caller's mistake).
pub fn encode(backend: &Backend) -> Vec<u8> {
    let db = to_db(backend);
    let mut bytes = bbolt::write(&db);
    let sum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    debug_assert_eq!(bytes.len() % 512, TRAILER_LEN);
    bytes
}

/// Splits a snapshot into the bbolt bytes and its trailer, deciding as etcd's restore does:
/// a length of 32 more than a multiple of 512 means a trailer.
pub fn split_trailer(bytes: &[u8]) -> (&[u8], Option<&[u8; TRAILER_LEN]>) {
    if bytes.len() % 512 == TRAILER_LEN {
        let (db, sum) = bytes.split_at(bytes.len() - TRAILER_LEN);
        (db, Some(sum.try_into().expect("32 bytes")))
    } else {
        (bytes, None)
    }
}

/// Reads a snapshot (with its SHA-256 trailer) or a bare backend file (a member's
/// `member/snap/db`, no trailer). With `verify_hash`, a trailer that does not match is
/// [`Error::HashMismatch`], worded as etcd's restore words it; a file without a trailer is
/// accepted either way (etcd's restore would want `--skip-hash-check` for it).
pub fn decode(bytes: &[u8], verify_hash: bool) -> Result<Backend> {
    let (db_bytes, trailer) = split_trailer(bytes);
    if let (true, Some(expected)) = (verify_hash, trailer) {
        let got: [u8; 32] = Sha256::digest(db_bytes).into();
        if got != *expected {
            return Err(Error::HashMismatch {
                expected: *expected,
                got,
            });
        }
    }
    from_db(bbolt::read(db_bytes)?)
}

fn revision_bytes(main: i64, sub: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(&(main as u64).to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&(sub as u64).to_be_bytes());
    k
}

fn to_db(b: &Backend) -> Db {
    use prost::Message;
    let mut db = b.other.clone();
    for name in buckets::ALL {
        db.buckets.entry(name.to_vec()).or_default();
    }
    let mut put = |bucket: &[u8], key: &[u8], value: Vec<u8>| {
        let b = db.buckets.get_mut(bucket).expect("all ten buckets exist");
        b.entries.insert(key.to_vec(), value);
    };
    let mut last = None;
    for r in &b.kvs {
        let key = r.bucket_key();
        assert!(
            last.as_ref().is_none_or(|l| *l < (r.main, r.sub)),
            "kvs must be in strictly increasing revision order"
        );
        last = Some((r.main, r.sub));
        put(buckets::KEY, &key, r.kv.encode_to_vec());
    }
    let u64_be = |v: u64| v.to_be_bytes().to_vec();
    if let Some(v) = b.consistent_index {
        put(buckets::META, CONSISTENT_INDEX, u64_be(v));
    }
    if let Some(v) = b.term {
        put(buckets::META, TERM, u64_be(v));
    }
    if let Some(cs) = &b.conf_state {
        let json = serde_json::to_vec(cs).expect("ConfState serializes");
        put(buckets::META, CONF_STATE, json);
    }
    if let Some(rev) = b.scheduled_compact_rev {
        put(buckets::META, SCHEDULED_COMPACT_REV, revision_bytes(rev, 0));
    }
    if let Some(rev) = b.finished_compact_rev {
        put(buckets::META, FINISHED_COMPACT_REV, revision_bytes(rev, 0));
    }
    for (id, lease) in &b.leases {
        assert_eq!(*id, lease.id, "leases are keyed by their id");
        put(buckets::LEASE, &id.to_be_bytes(), lease.encode_to_vec());
    }
    for alarm in &b.alarms {
        put(buckets::ALARM, &alarm.encode_to_vec(), Vec::new());
    }
    for (id, m) in &b.members {
        assert_eq!(*id, m.id, "members are keyed by their id");
        let json = serde_json::to_vec(m).expect("Member serializes");
        put(buckets::MEMBERS, format!("{id:x}").as_bytes(), json);
    }
    for id in &b.members_removed {
        put(
            buckets::MEMBERS_REMOVED,
            format!("{id:x}").as_bytes(),
            REMOVED.to_vec(),
        );
    }
    if let Some(on) = b.auth_enabled {
        put(buckets::AUTH, AUTH_ENABLED, vec![u8::from(on)]);
    }
    if let Some(rev) = b.auth_revision {
        put(buckets::AUTH, AUTH_REVISION, u64_be(rev));
    }
    for (name, user) in &b.users {
        assert_eq!(*name, user.name, "users are keyed by their name");
        put(buckets::AUTH_USERS, name, user.encode_to_vec());
    }
    for (name, role) in &b.roles {
        assert_eq!(*name, role.name, "roles are keyed by their name");
        put(buckets::AUTH_ROLES, name, role.encode_to_vec());
    }
    if let Some(v) = &b.cluster_version {
        put(buckets::CLUSTER, CLUSTER_VERSION, v.as_bytes().to_vec());
    }
    if let Some(v) = &b.downgrade {
        put(buckets::CLUSTER, DOWNGRADE, v.clone());
    }
    db
}

fn bad(bucket: &[u8], key: &[u8], what: impl ToString) -> Error {
    Error::BadEntry {
        bucket: String::from_utf8_lossy(bucket).into_owned(),
        key: key.to_vec(),
        what: what.to_string(),
    }
}

fn be_u64(bucket: &[u8], key: &[u8], v: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = v.try_into().map_err(|_| bad(bucket, key, "not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Parses a `key` bucket key: (main, sub, tombstone).
fn parse_revision(key: &[u8]) -> Option<(i64, i64, bool)> {
    let tombstone = match key.len() {
        17 => false,
        18 if key[17] == b't' => true,
        _ => return None,
    };
    if key[8] != b'_' {
        return None;
    }
    let main = u64::from_be_bytes(key[0..8].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(key[9..17].try_into().ok()?) as i64;
    Some((main, sub, tombstone))
}

fn compact_rev(key: &[u8], v: &[u8]) -> Result<i64> {
    match parse_revision(v) {
        Some((main, 0, false)) => Ok(main),
        _ => Err(bad(buckets::META, key, "not a revision")),
    }
}

fn member_id(bucket: &[u8], key: &[u8]) -> Result<u64> {
    std::str::from_utf8(key)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 16)
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(|| bad(bucket, key, "not a member id in hex"))
}

fn proto<M: prost::Message + Default>(bucket: &[u8], key: &[u8], v: &[u8]) -> Result<M> {
    M::decode(v).map_err(|e| bad(bucket, key, e))
}

fn from_db(mut db: Db) -> Result<Backend> {
    let mut b = Backend::default();
    let mut take = |name: &[u8]| db.buckets.remove(name).unwrap_or_default();

    for (k, v) in take(buckets::KEY).entries {
        let (main, sub, tombstone) =
            parse_revision(&k).ok_or_else(|| bad(buckets::KEY, &k, "not a revision"))?;
        let kv = proto(buckets::KEY, &k, &v)?;
        b.kvs.push(Record {
            main,
            sub,
            tombstone,
            kv,
        });
    }
    // Byte order is revision order only for non-negative revisions; etcd writes no other.
    if !b
        .kvs
        .windows(2)
        .all(|w| (w[0].main, w[0].sub) < (w[1].main, w[1].sub))
    {
        return Err(bad(buckets::KEY, b"", "revisions out of order"));
    }

    let mut other_meta = Bucket::default();
    for (k, v) in take(buckets::META).entries {
        match k.as_slice() {
            CONSISTENT_INDEX => b.consistent_index = Some(be_u64(buckets::META, &k, &v)?),
            TERM => b.term = Some(be_u64(buckets::META, &k, &v)?),
            CONF_STATE => {
                let cs = serde_json::from_slice(&v).map_err(|e| bad(buckets::META, &k, e))?;
                b.conf_state = Some(cs);
            }
            SCHEDULED_COMPACT_REV => b.scheduled_compact_rev = Some(compact_rev(&k, &v)?),
            FINISHED_COMPACT_REV => b.finished_compact_rev = Some(compact_rev(&k, &v)?),
            _ => {
                other_meta.entries.insert(k, v);
            }
        }
    }

    for (k, v) in take(buckets::LEASE).entries {
        let lease: Lease = proto(buckets::LEASE, &k, &v)?;
        if k.as_slice() != lease.id.to_be_bytes() {
            return Err(bad(buckets::LEASE, &k, "key is not the lease's id"));
        }
        b.leases.insert(lease.id, lease);
    }

    for (k, v) in take(buckets::ALARM).entries {
        let alarm: AlarmMember = proto(buckets::ALARM, &k, &k)?;
        if !v.is_empty() {
            return Err(bad(buckets::ALARM, &k, "alarm with a value"));
        }
        b.alarms.insert(alarm);
    }

    for (k, v) in take(buckets::MEMBERS).entries {
        let id = member_id(buckets::MEMBERS, &k)?;
        let mut m: Member = serde_json::from_slice(&v).map_err(|e| bad(buckets::MEMBERS, &k, e))?;
        // etcd trusts the key: it is what every other bucket and the WAL name the member by.
        m.id = id;
        b.members.insert(id, m);
    }
    for (k, _) in take(buckets::MEMBERS_REMOVED).entries {
        b.members_removed
            .insert(member_id(buckets::MEMBERS_REMOVED, &k)?);
    }

    let mut other_auth = Bucket::default();
    for (k, v) in take(buckets::AUTH).entries {
        match k.as_slice() {
            AUTH_ENABLED => {
                b.auth_enabled = match v.as_slice() {
                    [1] => Some(true),
                    [0] => Some(false),
                    _ => return Err(bad(buckets::AUTH, &k, "not one byte 0 or 1")),
                }
            }
            AUTH_REVISION => b.auth_revision = Some(be_u64(buckets::AUTH, &k, &v)?),
            _ => {
                other_auth.entries.insert(k, v);
            }
        }
    }
    for (k, v) in take(buckets::AUTH_USERS).entries {
        let user: User = proto(buckets::AUTH_USERS, &k, &v)?;
        if user.name != k {
            return Err(bad(buckets::AUTH_USERS, &k, "key is not the user's name"));
        }
        b.users.insert(k, user);
    }
    for (k, v) in take(buckets::AUTH_ROLES).entries {
        let role: Role = proto(buckets::AUTH_ROLES, &k, &v)?;
        if role.name != k {
            return Err(bad(buckets::AUTH_ROLES, &k, "key is not the role's name"));
        }
        b.roles.insert(k, role);
    }

    let mut other_cluster = Bucket::default();
    for (k, v) in take(buckets::CLUSTER).entries {
        match k.as_slice() {
            CLUSTER_VERSION => {
                let s = String::from_utf8(v).map_err(|e| bad(buckets::CLUSTER, &k, e))?;
                b.cluster_version = Some(s);
            }
            DOWNGRADE => b.downgrade = Some(v),
            _ => {
                other_cluster.entries.insert(k, v);
            }
        }
    }

    for (name, rest) in [
        (buckets::META, other_meta),
        (buckets::AUTH, other_auth),
        (buckets::CLUSTER, other_cluster),
    ] {
        if !rest.entries.is_empty() {
            db.buckets.insert(name.to_vec(), rest);
        }
    }
    b.other = db;
    Ok(b)
}
