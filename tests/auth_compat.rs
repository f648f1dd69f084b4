#![cfg(not(madsim))]
//! `oxctl` speaks auth as `etcdctl` does: one script of `auth`, `user` and `role` commands
//! and commands with `--user` runs with etcdctl 3.4.23 against a fresh etcd 3.4.23 (the
//! reference) and with oxctl against a fresh server of the kind under test, and the two
//! transcripts (stdout, stderr and exit code of every step) must be equal.
//!
//! The server under test is a parameter ([`Kind`]): etcd itself (so the test pins the client
//! alone) and oxcd (client and server together).
//!
//! What is masked, and why it may differ: the member and cluster IDs and the Raft term in
//! `-w json` / `-w fields` headers (two clusters), and etcdctl's own log lines (its gRPC
//! client's JSON warnings on every failed call, which oxctl, a different client, does not
//! print; the `Error:` line after them is compared). Prompts are compared as they are:
//! both clients run `stty` on a stdin that is no terminal, which complains on stderr.

mod procs;

use procs::{Client, Cluster, Kind, Timing, client};
use regex::Regex;

/// One step: the arguments after `--endpoints`, and what goes to stdin.
struct Step {
    args: Vec<String>,
    stdin: Option<String>,
}

fn step(args: &[&str]) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
    }
}

impl Step {
    fn stdin(mut self, s: &str) -> Step {
        self.stdin = Some(s.to_string());
        self
    }
}

const ROOT: &str = "--user=root:rootpw";
const U1: &str = "--user=u1:p1";

/// The script, from a fresh cluster. Users: root, u1 (role r1), u2, a user without password.
fn script() -> Vec<Step> {
    vec![
        // -- users, auth disabled
        step(&["user", "add", "root", "--interactive=false"]).stdin("rootpw\n"),
        step(&["user", "add", "root:other"]),
        step(&["user", "add", ":pw"]),
        step(&["user", "add"]),
        step(&["user", "add", "u1", "--new-user-password=p1", "-w", "json"]),
        step(&["user", "add", "u2:p2:with-colon", "-w", "fields"]),
        step(&["user", "add", "nopw", "--no-password"]),
        step(&["user", "add", "asked"]).stdin("secret\nsecret\n"),
        step(&["user", "add", "mistyped"]).stdin("secret\nsecreT\n"),
        step(&["user", "add", "blank"]).stdin("\n"),
        step(&["user", "add", "scanned", "--interactive=false"]).stdin("  two words\n"),
        step(&["user", "add", "tabled:x", "-w", "table"]),
        step(&["user", "list"]),
        step(&["user", "list", "-w", "json"]),
        step(&["user", "list", "-w", "fields"]),
        // -- roles and permissions
        step(&["role", "add", "r1"]),
        step(&["role", "add", "r1"]),
        step(&["role", "add", "r2", "-w", "json"]),
        step(&["role", "add"]),
        step(&["role", "grant-permission", "r1", "read", "/p/", "--prefix"]),
        step(&["role", "grant", "r1", "READWRITE", "a", "c"]),
        step(&["role", "grant-perm", "r1", "readWrite", "z", "--from-key"]),
        step(&["role", "grant", "r1", "write", "a"]),
        step(&["role", "grant", "r1", "write", "a", "-w", "json"]),
        step(&["role", "grant", "r1", "Read", "k"]),
        step(&["role", "grant", "r1", "write", "k"]),
        step(&["role", "grant", "r1", "123", "foo"]),
        step(&["role", "grant", "r1", "read", "a", "b", "--prefix"]),
        step(&["role", "grant", "r1", "read", "a", "b", "--from-key"]),
        step(&["role", "grant", "r1", "read", "a", "--prefix", "--from-key"]),
        step(&["role", "grant", "r1", "read"]),
        step(&["role", "grant", "nosuch", "read", "a"]),
        step(&[
            "role",
            "grant",
            "r2",
            "readwrite",
            "",
            "--from-key",
            "-w",
            "fields",
        ]),
        step(&["role", "get", "r1"]),
        step(&["role", "get", "r1", "-w", "json"]),
        step(&["role", "get", "r1", "-w", "fields"]),
        step(&["role", "get", "r1", "-w", "table"]),
        step(&["role", "get", "r2"]),
        step(&["role", "get", "nosuch"]),
        step(&["role", "list"]),
        step(&["role", "list", "-w", "json"]),
        step(&["role", "list", "-w", "fields"]),
        // -- grants of roles to users
        step(&["user", "grant-role", "u1", "r1"]),
        step(&["user", "grant-role", "u1", "r2", "-w", "json"]),
        step(&["user", "grant-role", "u1", "nosuch"]),
        step(&["user", "grant-role", "nosuch", "r1"]),
        step(&["user", "grant-role", "u1"]),
        step(&["user", "get", "u1"]),
        step(&["user", "get", "u2"]),
        step(&["user", "get", "u1", "-w", "json"]),
        step(&["user", "get", "u1", "-w", "fields"]),
        step(&["user", "get", "u1", "--detail"]),
        step(&["user", "get", "u1", "--detail", "-w", "json"]),
        step(&["user", "get", "u1", "--detail", "-w", "table"]),
        step(&["user", "get", "nosuch"]),
        step(&["user", "revoke-role", "u1", "r2"]),
        step(&["user", "revoke-role", "u1", "r2"]),
        // -- revoking permissions
        step(&["role", "revoke-permission", "r1", "z", "--from-key"]),
        step(&["role", "revoke", "r1", "a", "c", "-w", "json"]),
        step(&["role", "revoke", "r1", "nothing"]),
        step(&["role", "revoke", "r1", "/p/", "--prefix", "-w", "fields"]),
        step(&["role", "revoke", "r2", "", "--from-key"]),
        step(&["role", "revoke", "r1"]),
        step(&["role", "get", "r1"]),
        step(&["role", "delete", "r2"]),
        step(&["role", "delete", "r2"]),
        step(&["user", "passwd", "u2", "--interactive=false"]).stdin("newpw\n"),
        step(&["user", "passwd", "u2", "-w", "json"]).stdin("pw3\npw3\n"),
        step(&["user", "passwd", "nosuch", "--interactive=false"]).stdin("x\n"),
        // -- --user while auth is disabled: authentication is skipped
        step(&[ROOT, "put", "k", "v"]),
        step(&[U1, "get", "k"]),
        step(&["--user=root:wrong", "put", "k", "v"]),
        // -- enabling: etcdctl creates the root role and grants it to root
        step(&["auth", "enable", "now"]),
        step(&["auth", "enable"]),
        step(&["auth", "enable"]),
        step(&[ROOT, "auth", "enable"]),
        step(&["role", "list"]),
        step(&["put", "k", "v2"]),
        step(&["--user=root:wrong", "put", "k", "v"]),
        step(&["--user=nosuch:x", "get", "k"]),
        step(&["--user=nopw:x", "get", "k"]),
        step(&[ROOT, "put", "k", "v3"]),
        step(&[ROOT, "get", "k", "-w", "json"]),
        step(&["--user=root", "--password=rootpw", "role", "list"]),
        step(&["--user=root", "user", "list"]).stdin("rootpw\n"),
        step(&[ROOT, "role", "get", "root"]),
        step(&[ROOT, "user", "get", "root"]),
        step(&[U1, "put", "k", "v"]),
        step(&[U1, "put", "zz", "v"]),
        step(&[U1, "put", "a", "v"]),
        step(&[U1, "get", "k"]),
        step(&[U1, "get", "a"]),
        step(&[U1, "del", "k"]),
        step(&[U1, "role", "get", "r1"]),
        step(&[U1, "user", "get", "root"]),
        step(&[U1, "user", "add", "u3:x"]),
        step(&[ROOT, "role", "delete", "root"]),
        step(&[ROOT, "user", "revoke-role", "root", "root"]),
        step(&[ROOT, "user", "delete", "root"]),
        step(&[ROOT, "role", "grant", "r1", "readwrite", "/p/", "--prefix"]),
        step(&[U1, "put", "/p/x", "v"]),
        step(&[U1, "get", "/p/", "--prefix"]),
        step(&[ROOT, "user", "passwd", "u1", "--interactive=false"]).stdin("p1b\n"),
        step(&[U1, "get", "k"]),
        step(&["--user=u1:p1b", "get", "/p/x"]),
        step(&[ROOT, "auth", "disable", "-w", "json"]),
        // -- disabled again: anyone may do anything
        step(&["put", "k", "v4"]),
        step(&["--user=u1:p1b", "get", "k"]),
        step(&["auth", "disable"]),
        step(&["user", "delete", "u1"]),
        step(&["user", "delete", "u1", "-w", "fields"]),
        step(&["user", "delete"]),
        step(&["role", "delete", "nosuch"]),
        step(&["user", "list"]),
        step(&["role", "list"]),
    ]
}

/// Header fields that differ between two clusters, and etcdctl's own log lines.
fn normalize(text: &str) -> String {
    let masks = [
        (
            r#""(cluster_id|member_id|raft_term)":\d+"#,
            "\"$1\":<MASKED>",
        ),
        (
            r#""(ClusterID|MemberID|RaftTerm)" : \d+"#,
            "\"$1\" : <MASKED>",
        ),
    ];
    let mut t: String = text
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("{\"level\":"))
        .collect();
    for (pattern, replacement) in masks {
        t = Regex::new(pattern)
            .unwrap()
            .replace_all(&t, replacement)
            .into_owned();
    }
    t
}

/// One client's run of the script against a fresh one-member cluster of `server`: a
/// transcript entry per step.
fn run_script(server: Kind, which: Client) -> Vec<String> {
    let cluster = Cluster::start(server, 1, Timing::default());
    let ep = cluster.endpoint(0);
    script()
        .iter()
        .map(|s| {
            let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
            let out = client(which, &ep, &args, s.stdin.as_deref().map(str::as_bytes));
            let mut e = format!("$ etcdctl {}\n", s.args.join(" "));
            for l in s.stdin.iter().flat_map(|i| i.lines()) {
                e += &format!("< {l}\n");
            }
            let end = out
                .code
                .map_or("killed (timed out)".into(), |c| format!("exit {c}"));
            e + &format!(
                "--- stdout\n{}--- stderr\n{}--- {end}\n",
                normalize(&out.stdout),
                normalize(&out.stderr)
            )
        })
        .collect()
}

/// etcdctl against etcd 3.4.23, and oxctl against `server`: the transcripts must be equal.
fn oxctl_matches_etcdctl(server: Kind) {
    let want = run_script(Kind::Etcd, Client::Etcdctl);
    // The reference itself went where the script means it to go.
    let all = want.concat();
    for expected in [
        "User root created",
        "Authentication Enabled",
        "\t[/p/, /p0) (prefix /p/)",
        "Error: etcdserver: permission denied",
        "Error: etcdserver: invalid auth management",
        "Error: etcdserver: authentication failed, invalid user ID or password",
        "Authentication Disabled",
    ] {
        assert!(all.contains(expected), "{expected:?} not in:\n{all}");
    }
    let got = run_script(server, Client::Oxctl);
    assert_eq!(want.len(), got.len());
    let diffs: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|(w, g)| {
            format!("=== etcdctl against etcd 3.4.23\n{w}=== oxctl against {server:?}\n{g}")
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "{} of {} steps differ:\n\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}

#[test]
fn oxctl_auth_matches_etcdctl_against_etcd() {
    oxctl_matches_etcdctl(Kind::Etcd);
}

#[test]
fn oxctl_auth_against_oxcd_matches_etcdctl_against_etcd() {
    oxctl_matches_etcdctl(Kind::Oxcd);
}
