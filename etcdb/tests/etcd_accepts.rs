//! The key acceptance: real etcd 3.4.23 and 3.5.1 take a file `encode` wrote. Their
//! `snapshot status` prints our `status`; `snapshot restore` makes a data dir from it; etcd
//! starts there and serves the keys, their history, the compaction, the lease and the user.
//! Skips (printing why) only when the binaries are absent.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use oxcd_etcdb::etcd::{self, Backend, KeyValue, Lease, Permission, Record, Role, User};
use support::{Etcd, Server, free_port, output, run};

const LEASE_ID: i64 = 0x1234_abcd;
const MANY: usize = 300;
/// etcd's default request limit is 1.5 MiB; a value of nearly that spans overflow pages.
const BIG_LEN: usize = 3 << 19;
/// bcrypt of "alicepw" as etcd 3.4.23 made it (tests/fixtures/etcd-3.4.23.db).
const ALICE_HASH: &[u8] = b"$2a$10$ZSoIwvm/tEnu1xMimowAN.E5uQPl7JFhWBeSIFBvnwUDSVOLp4Eye";

fn put(
    main: i64,
    sub: i64,
    key: &str,
    create: i64,
    version: i64,
    value: Vec<u8>,
    lease: i64,
) -> Record {
    Record {
        main,
        sub,
        tombstone: false,
        kv: KeyValue {
            key: key.into(),
            create_revision: create,
            mod_revision: main,
            version,
            value,
            lease,
        },
    }
}

/// Revisions: 2 a=1, 3 a=2, 4 b on the lease, 5 delete a, 6 a=3 and big (one txn),
/// 7 k/000..k/299 (one txn). Compacted at 2.
fn backend(cluster_version: &str) -> Backend {
    let mut kvs = vec![
        put(2, 0, "a", 2, 1, b"1".to_vec(), 0),
        put(3, 0, "a", 2, 2, b"2".to_vec(), 0),
        put(4, 0, "b", 4, 1, b"leased".to_vec(), LEASE_ID),
        Record {
            main: 5,
            sub: 0,
            tombstone: true,
            kv: KeyValue {
                key: b"a".to_vec(),
                ..Default::default()
            },
        },
        put(6, 0, "a", 6, 1, b"3".to_vec(), 0),
        put(6, 1, "big", 6, 1, vec![b'x'; BIG_LEN], 0),
    ];
    for i in 0..MANY {
        let value = format!("{i:0>100}").into_bytes();
        kvs.push(put(7, i as i64, &format!("k/{i:03}"), 7, 1, value, 0));
    }
    let user = User {
        name: b"alice".to_vec(),
        password: ALICE_HASH.to_vec(),
        roles: vec!["reader".into()],
        options: Some(Default::default()),
    };
    let role = Role {
        name: b"reader".to_vec(),
        key_permission: vec![Permission {
            perm_type: 0,
            key: b"k/".to_vec(),
            range_end: b"k0".to_vec(),
        }],
    };
    Backend {
        kvs,
        consistent_index: Some(20),
        scheduled_compact_rev: Some(2),
        finished_compact_rev: Some(2),
        leases: BTreeMap::from([(
            LEASE_ID,
            Lease {
                id: LEASE_ID,
                ttl: 3600,
                remaining_ttl: 0,
            },
        )]),
        auth_revision: Some(3),
        users: BTreeMap::from([(user.name.clone(), user)]),
        roles: BTreeMap::from([(role.name.clone(), role)]),
        cluster_version: Some(cluster_version.into()),
        ..Default::default()
    }
}

/// The offline tool: etcdutl in 3.5, etcdctl in 3.4.
fn offline(e: &Etcd) -> Command {
    Command::new(e.etcdutl.as_ref().unwrap_or(&e.etcdctl))
}

fn etcd_starts_from_our_file(e: &Etcd, cluster_version: &str) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let backend = backend(cluster_version);
    let bytes = etcd::encode(&backend);
    assert_eq!(etcd::decode(&bytes, true).unwrap(), backend);
    let snap = dir.path().join("snap.db");
    std::fs::write(&snap, &bytes).expect("write the snapshot");

    // snapshot status: etcd's reading of our pages (3.5's also runs bbolt's Tx.Check).
    let printed = run(offline(e)
        .args(["snapshot", "status", "-w", "json"])
        .arg(&snap));
    assert_eq!(printed.trim(), etcd::status(&bytes).unwrap().to_json());

    let peer_port = free_port();
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let data = dir.path().join("data");
    run(offline(e)
        .args(["snapshot", "restore"])
        .arg(&snap)
        .args(["--name", "m1", "--data-dir"])
        .arg(&data)
        .args(["--initial-cluster", &format!("m1={peer_url}")])
        .args(["--initial-advertise-peer-urls", &peer_url]));

    check_restored_file(e, &data, &backend);

    let mut server = Server::start(e, &data, "m1", peer_port, dir.path().join("etcd.log"));
    server.wait_ready(e);
    check_served(e, &server);
}

fn check_served(e: &Etcd, s: &Server) {
    let get = |args: &[&str]| run(s.ctl(e).arg("get").args(args));
    assert_eq!(get(&["a"]), "a\n3\n");
    assert_eq!(get(&["a", "--rev=3"]), "a\n2\n");
    assert_eq!(get(&["a", "--rev=2"]), "a\n1\n");
    assert_eq!(get(&["a", "--rev=5"]), "", "deleted at 5");
    let compacted = output(s.ctl(e).args(["get", "a", "--rev=1"]));
    assert!(!compacted.status.success());
    let stderr = String::from_utf8_lossy(&compacted.stderr);
    assert!(
        stderr.contains("required revision has been compacted"),
        "{stderr}"
    );
    // Every key, and the header's revision: the last one we wrote.
    let keys = get(&["", "--from-key", "--keys-only"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(keys.len(), 3 + MANY, "a, b, big and k/*");
    assert_eq!(&keys[..3], ["a", "b", "big"]);
    let json = get(&["a", "-w", "json"]);
    assert!(json.contains("\"revision\":7"), "{json}");
    assert!(
        json.contains("\"create_revision\":6,\"mod_revision\":6,\"version\":1"),
        "{json}"
    );
    let prefix = get(&["k/", "--prefix"]);
    assert_eq!(prefix.lines().count(), 2 * MANY);
    assert!(prefix.contains(&format!("k/299\n{:0>100}\n", 299)));
    let big = get(&["big", "--print-value-only"]);
    assert_eq!(big.trim_end().len(), BIG_LEN);
    // The key on the lease, and the lease.
    let b = get(&["b", "-w", "json"]);
    assert!(b.contains(&format!("\"lease\":{LEASE_ID}")), "{b}");
    let leases = run(s.ctl(e).args(["lease", "list"]));
    assert_eq!(leases, format!("found 1 leases\n{LEASE_ID:016x}\n"));
    let ttl = run(s
        .ctl(e)
        .args(["lease", "timetolive", &format!("{LEASE_ID:x}"), "--keys"]));
    assert!(
        ttl.contains("granted with TTL(3600s)") && ttl.contains("attached keys([b])"),
        "{ttl}"
    );
    // The user and the role.
    assert_eq!(run(s.ctl(e).args(["user", "list"])), "alice\n");
    let alice = run(s.ctl(e).args(["user", "get", "alice"]));
    assert!(alice.contains("Roles: reader"), "{alice}");
    let reader = run(s.ctl(e).args(["role", "get", "reader"]));
    assert!(reader.contains("[k/, k0)"), "{reader}");
    // etcd writes on top of it: the next revision is 8.
    run(s.ctl(e).args(["put", "after", "restore"]));
    assert!(get(&["after", "-w", "json"]).contains("\"mod_revision\":8"));
}

/// What restore left in the member's backend file (bbolt as Go wrote it on top of ours),
/// read back by us: our data unchanged, and what restore itself sets.
fn check_restored_file(e: &Etcd, data: &Path, ours: &Backend) {
    let bytes = std::fs::read(data.join("member/snap/db")).expect("the member's db");
    let b = etcd::decode(&bytes, false).expect("we read what etcd wrote on top of our file");
    eprintln!(
        "etcd {} restore left: consistent_index {:?}, term {:?}, conf_state {:?}, members {:?}, cluster_version {:?}",
        e.version, b.consistent_index, b.term, b.conf_state, b.members, b.cluster_version
    );
    assert_eq!(b.kvs, ours.kvs);
    assert_eq!(b.leases, ours.leases);
    assert_eq!((&b.users, &b.roles), (&ours.users, &ours.roles));
    assert_eq!(b.finished_compact_rev, ours.finished_compact_rev);
    // One member restored: the raft index restore leaves is the count of its conf changes.
    assert_eq!(b.consistent_index, Some(1));
}

#[test]
fn etcd_3_4_23_starts_from_our_file() {
    if let Some(e) = support::etcd34() {
        etcd_starts_from_our_file(&e, "3.4.0");
    }
}

#[test]
fn etcd_3_5_1_starts_from_our_file() {
    if let Some(e) = support::etcd35() {
        etcd_starts_from_our_file(&e, "3.5.0");
    }
}
