#![cfg(not(madsim))]
//! etcd's snapshot format both ways, with the real binaries: a snapshot `etcdctl snapshot
//! save` took from etcd 3.4.23 or 3.5.1 restored with `oxctl snapshot restore` serves the same
//! keys, history, compaction, lease and auth from oxcd; and one taken from oxcd is accepted by
//! `etcdctl snapshot status`, restored by `etcdctl snapshot restore` (3.4) or `etcdutl
//! snapshot restore` (3.5), and etcd started on it serves the same.
//!
//! Each direction writes the same data through etcdctl (history, a delete, a compaction, a
//! lease with a key, a user and a role, auth enabled), observes it on the source, moves it,
//! and observes it again on the destination. One etcd snapshot also founds a new three-member
//! oxcd cluster (restored into each member's dir, as etcd's docs restore a cluster). Every server is a [`procs::Cluster`] member,
//! killed by PID when the cluster drops (also on failure), its data dirs removed with it.

mod procs;

use procs::{Client, Cluster, Kind, Output, Timing, client, etcd35_bin, etcdctl, oxctl_bin};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = "--user=root:rootpw";
const COMPACT_AT: i64 = 7;
/// Endpoints for the offline commands (`snapshot status`, `restore`), which dial nothing.
const OFFLINE: &str = "127.0.0.1:1";

fn ok(out: Output, what: &str) -> String {
    assert_eq!(out.code, Some(0), "{what}: {out:?}");
    out.stdout
}

/// Writes the data every test moves; returns the lease ID.
fn populate(ep: &str) -> i64 {
    let run = |args: &[&str]| ok(etcdctl(ep, args, None), &args.join(" "));
    run(&["put", "a", "1"]); // 2
    run(&["put", "a", "2"]); // 3
    let granted = run(&["lease", "grant", "600"]);
    let id = granted
        .split_whitespace()
        .nth(1)
        .expect("lease <id> granted");
    run(&["put", "b", "leased", &format!("--lease={id}")]); // 4
    run(&["del", "a"]); // 5
    run(&["put", "a", "3"]); // 6
    run(&["put", "c", "x"]); // 7
    run(&["put", "c", "y"]); // 8
    run(&["compaction", &COMPACT_AT.to_string()]);
    run(&["put", "k/1", "z"]); // 9
    run(&["role", "add", "r"]);
    run(&[
        "role",
        "grant-permission",
        "r",
        "readwrite",
        "k/",
        "--prefix=true",
    ]);
    run(&["user", "add", "alice:alicepw"]);
    run(&["user", "grant-role", "alice", "r"]);
    run(&["user", "add", "root:rootpw"]);
    run(&["user", "grant-role", "root", "root"]);
    run(&["auth", "enable"]);
    i64::from_str_radix(id, 16).expect("a hex lease id")
}

/// A JSON answer without the parts that name the cluster, member or term.
fn json(out: String) -> Value {
    let mut v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    if let Some(h) = v.get_mut("header").and_then(Value::as_object_mut) {
        h.retain(|k, _| k == "revision");
    }
    if let Some(o) = v.as_object_mut() {
        for k in ["cluster_id", "member_id", "raft_term", "ttl"] {
            o.remove(k);
        }
    }
    v
}

/// What the tests compare: every observation as text, in order.
fn observe(ep: &str, lease: i64) -> Vec<String> {
    let get = |args: &[&str]| {
        let mut all = vec![ROOT, "-w", "json"];
        all.extend_from_slice(args);
        let out = etcdctl(ep, &all, None);
        match out.code {
            Some(0) => json(out.stdout).to_string(),
            // The last line: etcdctl's own error, after the client's log lines.
            _ => format!("error: {}", out.stderr.lines().last().unwrap_or_default()),
        }
    };
    let mut seen = vec![get(&["get", "", "--from-key"])];
    for rev in 1..=9 {
        seen.push(format!(
            "rev {rev}: {}",
            get(&["get", "", "--from-key", &format!("--rev={rev}")])
        ));
    }
    seen.push(get(&[
        "lease",
        "timetolive",
        &format!("{lease:x}"),
        "--keys",
    ]));
    seen.push(get(&["lease", "list"]));
    for args in [
        vec!["user", "list"],
        vec!["role", "list"],
        vec!["user", "get", "alice"],
        vec!["role", "get", "r"],
        vec!["user", "get", "root"],
    ] {
        let mut all = vec![ROOT];
        all.extend_from_slice(&args);
        seen.push(ok(etcdctl(ep, &all, None), &args.join(" ")));
    }
    // Auth is on: no user, no keys; alice reads her prefix only.
    let anon = etcdctl(ep, &["get", "a"], None);
    let last = anon.stderr.lines().last().unwrap_or_default();
    seen.push(format!("anonymous: {:?} {last}", anon.code));
    let alice = etcdctl(
        ep,
        &["--user=alice:alicepw", "get", "k/1", "--print-value-only"],
        None,
    );
    seen.push(format!("alice: {:?} {}", alice.code, alice.stdout.trim()));
    seen
}

/// The next write's revision goes on from the restored store's.
fn next_revision(ep: &str) -> i64 {
    let out = ok(
        etcdctl(ep, &[ROOT, "put", "after", "restore", "-w", "json"], None),
        "put",
    );
    json(out)["header"]["revision"]
        .as_i64()
        .expect("a revision")
}

fn save(ep: &str, file: &Path) {
    let path = file.to_str().expect("UTF-8 path");
    ok(
        etcdctl(ep, &[ROOT, "snapshot", "save", path], None),
        "snapshot save",
    );
}

fn etcdutl() -> PathBuf {
    Path::new(etcd35_bin()).with_file_name("etcdutl")
}

/// Member 0 of `c` started again on a data dir that `restore` builds in its place.
fn restart_restored(c: &mut Cluster, restore: impl FnOnce(&[String])) {
    c.kill(0);
    let m = &c.members[0];
    std::fs::remove_dir_all(&m.data_dir).expect("remove the data dir");
    let flags = vec![
        format!("--name={}", m.name),
        format!("--data-dir={}", m.data_dir.display()),
        format!("--initial-cluster={}={}", m.name, m.peer_url()),
        format!("--initial-cluster-token={}", c.token),
        format!("--initial-advertise-peer-urls={}", m.peer_url()),
    ];
    restore(&flags);
    c.security.ctl_args = vec![ROOT.to_string()];
    c.spawn(0);
    c.wait_healthy(0);
}

/// Every member of `c` started again on a data dir that `restore` builds in its place from
/// one snapshot, with the whole cluster in `--initial-cluster` (etcd's way to a new cluster
/// of several members from one snapshot).
fn restart_all_restored(c: &mut Cluster, restore: impl Fn(&[String])) {
    let n = c.members.len();
    for i in 0..n {
        c.kill(i);
    }
    let initial_cluster = c
        .members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",");
    for m in &c.members {
        std::fs::remove_dir_all(&m.data_dir).expect("remove the data dir");
        restore(&[
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data_dir.display()),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-token={}", c.token),
            format!("--initial-advertise-peer-urls={}", m.peer_url()),
        ]);
    }
    c.security.ctl_args = vec![ROOT.to_string()];
    for i in 0..n {
        c.spawn(i);
    }
    for i in 0..n {
        c.wait_healthy(i);
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn etcd_to_oxcd(kind: Kind) {
    let source = Cluster::start(kind, 1, Timing::default());
    let ep = source.endpoint(0);
    let lease = populate(&ep);
    let want = observe(&ep, lease);
    let file = source.scratch_path("etcd.db");
    save(&ep, &file);
    let want_next = next_revision(&ep);

    let status = client(
        Client::Oxctl,
        OFFLINE,
        &["snapshot", "status", "-w", "json", file.to_str().unwrap()],
        None,
    );
    let etcd_status = etcdctl(
        OFFLINE,
        &["snapshot", "status", "-w", "json", file.to_str().unwrap()],
        None,
    );
    assert_eq!(
        status.stdout, etcd_status.stdout,
        "oxctl's status is etcdctl's"
    );

    let mut dest = Cluster::start(Kind::Oxcd, 1, Timing::default());
    restart_restored(&mut dest, |flags| {
        run(Command::new(oxctl_bin())
            .args(["snapshot", "restore", file.to_str().unwrap()])
            .args(flags));
    });
    let got = observe(&dest.endpoint(0), lease);
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(
            g, w,
            "oxcd restored from {kind:?}'s snapshot serves what etcd served"
        );
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(next_revision(&dest.endpoint(0)), want_next);
}

fn oxcd_to_etcd(kind: Kind) {
    let source = Cluster::start(Kind::Oxcd, 1, Timing::default());
    let ep = source.endpoint(0);
    let lease = populate(&ep);
    let want = observe(&ep, lease);
    let file = source.scratch_path("oxcd.db");
    save(&ep, &file);
    let want_next = next_revision(&ep);
    let path = file.to_str().unwrap();

    let offline = |args: &[&str]| match kind {
        Kind::Etcd35 => run(Command::new(etcdutl()).args(args)),
        _ => run(Command::new("etcdctl").env("ETCDCTL_API", "3").args(args)),
    };
    let status = offline(&["snapshot", "status", "-w", "json", path]);
    let ours = client(
        Client::Oxctl,
        OFFLINE,
        &["snapshot", "status", "-w", "json", path],
        None,
    );
    assert_eq!(ours.stdout, status, "oxctl's status is etcd's");

    let mut dest = Cluster::start(kind, 1, Timing::default());
    restart_restored(&mut dest, |flags| {
        let mut args = vec!["snapshot", "restore", path];
        args.extend(flags.iter().map(String::as_str));
        offline(&args);
    });
    let got = observe(&dest.endpoint(0), lease);
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(
            g, w,
            "{kind:?} restored from oxcd's snapshot serves what oxcd served"
        );
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(next_revision(&dest.endpoint(0)), want_next);
}

#[test]
fn oxcd_restores_a_snapshot_of_etcd_3_4() {
    etcd_to_oxcd(Kind::Etcd);
}

#[test]
fn oxcd_restores_a_snapshot_of_etcd_3_5() {
    etcd_to_oxcd(Kind::Etcd35);
}

#[test]
fn etcd_3_4_restores_a_snapshot_of_oxcd() {
    oxcd_to_etcd(Kind::Etcd);
}

#[test]
fn etcd_3_5_restores_a_snapshot_of_oxcd() {
    oxcd_to_etcd(Kind::Etcd35);
}

/// oxctl refuses bad files with etcdctl 3.4's words and exit codes.
/// One etcd 3.4 snapshot restored into each member of a new three-member oxcd cluster: every
/// member serves what etcd served, and the cluster has the three members.
#[test]
fn a_new_three_member_cluster_from_one_etcd_snapshot() {
    let source = Cluster::start(Kind::Etcd, 1, Timing::default());
    let ep = source.endpoint(0);
    let lease = populate(&ep);
    let want = observe(&ep, lease);
    let file = source.scratch_path("etcd.db");
    save(&ep, &file);

    let mut dest = Cluster::start(Kind::Oxcd, 3, Timing::default());
    restart_all_restored(&mut dest, |flags| {
        run(Command::new(oxctl_bin())
            .args(["snapshot", "restore", file.to_str().unwrap()])
            .args(flags));
    });
    for i in 0..3 {
        assert_eq!(
            observe(&dest.endpoint(i), lease),
            want,
            "member {i} of the restored cluster serves what etcd served"
        );
    }
    let members = ok(
        etcdctl(&dest.endpoint(0), &[ROOT, "member", "list"], None),
        "member list",
    );
    assert_eq!(members.lines().count(), 3, "{members}");
}

#[test]
fn bad_files_are_refused_as_etcdctl_refuses_them() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(p("short.db"), vec![7u8; 5000]).unwrap();
    std::fs::write(p("tiny.db"), vec![7u8; 100]).unwrap();
    std::fs::write(p("zeros.db"), vec![0u8; 20512]).unwrap();
    std::fs::create_dir(p("full")).unwrap();
    std::fs::write(p("full/x"), b"x").unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["status".into(), p("missing.db")],
        vec!["status".into(), p("short.db")],
        vec!["status".into(), p("tiny.db")],
        vec!["status".into(), p("zeros.db")],
        vec![
            "restore".into(),
            p("missing.db"),
            format!("--data-dir={}", p("r1")),
        ],
        vec![
            "restore".into(),
            p("short.db"),
            format!("--data-dir={}", p("r2")),
        ],
        vec![
            "restore".into(),
            p("zeros.db"),
            format!("--data-dir={}", p("r3")),
        ],
        vec![
            "restore".into(),
            p("zeros.db"),
            format!("--data-dir={}", p("full")),
        ],
        vec![
            "restore".into(),
            p("zeros.db"),
            "--name=n1".into(),
            format!("--data-dir={}", p("r4")),
        ],
    ];
    for case in cases {
        let mut args = vec!["snapshot"];
        args.extend(case.iter().map(String::as_str));
        let ours = client(Client::Oxctl, OFFLINE, &args, None);
        let theirs = etcdctl(OFFLINE, &args, None);
        let last = |s: &str| s.lines().last().unwrap_or_default().to_string();
        assert_eq!(
            (ours.code, last(&ours.stderr)),
            (theirs.code, last(&theirs.stderr)),
            "{case:?}"
        );
    }
}
