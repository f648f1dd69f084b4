#![cfg(not(madsim))]
//! Authentication and RBAC as etcdctl 3.4 sees them: the same script of `etcdctl` runs against
//! a one-member etcd 3.4.23 and a one-member oxcd must print the same words and exit with the
//! same codes. The script enables auth the way etcd's docs do, manages users and roles
//! (duplicates, unknown names, the root rules), grants and revokes permissions on keys,
//! ranges, prefixes and from-key, and checks what a user may then read, write and watch,
//! including credentials that are wrong, unknown or missing, a password change, a deleted
//! user, a user without a password, and auth disabled again.
//!
//! Compared: stdout, the `Error: ...` lines of stderr (etcd's client also logs JSON warnings
//! with timestamps and random target names there, which differ run to run), and exit codes.

mod procs;

use procs::{Client, Cluster, Kind, Security, Timing, client, etcdctl, json_u64};

/// One step: etcdctl's arguments and its standard input.
struct Step {
    args: &'static [&'static str],
    stdin: Option<&'static str>,
}

const fn step(args: &'static [&'static str]) -> Step {
    Step { args, stdin: None }
}

const fn with_stdin(args: &'static [&'static str], stdin: &'static str) -> Step {
    Step {
        args,
        stdin: Some(stdin),
    }
}

const ROOT: &str = "--user=root:root";
const ALICE: &str = "--user=alice:pw";

const SCRIPT: &[Step] = &[
    step(&["auth", "enable"]),
    with_stdin(&["user", "add", "root", "--interactive=false"], "root\n"),
    step(&["user", "grant-role", "root", "root"]),
    step(&["auth", "enable"]),
    step(&["auth", "enable", ROOT]),
    // Credentials: none, a wrong password, an unknown user.
    step(&["put", "foo", "bar"]),
    step(&["put", "foo", "bar", ROOT]),
    step(&["get", "foo", "--user=root:wrong"]),
    step(&["get", "foo", "--user=nobody:x"]),
    // Users and roles.
    step(&["user", "add", "alice:pw", ROOT]),
    step(&["user", "add", "alice:pw", ROOT]),
    step(&["role", "add", "r", ROOT]),
    step(&["role", "add", "r", ROOT]),
    step(&["role", "grant-permission", "r", "readwrite", "foo", ROOT]),
    step(&[
        "role",
        "grant-permission",
        "r",
        "read",
        "/p/",
        "--prefix",
        ROOT,
    ]),
    step(&["role", "grant-permission", "r", "write", "a", "c", ROOT]),
    step(&[
        "role",
        "grant-permission",
        "r",
        "readwrite",
        "z",
        "--from-key",
        ROOT,
    ]),
    step(&["role", "grant-permission", "r", "READ", "foo", ROOT]),
    step(&["role", "grant-permission", "r", "readwrite", "foo", ROOT]),
    step(&["role", "grant-permission", "nosuch", "read", "foo", ROOT]),
    step(&["role", "get", "r", ROOT]),
    step(&["user", "grant-role", "alice", "r", ROOT]),
    step(&["user", "grant-role", "alice", "r", ROOT]),
    step(&["user", "grant-role", "alice", "nosuch", ROOT]),
    step(&["user", "grant-role", "nobody", "r", ROOT]),
    step(&["user", "get", "alice", ROOT]),
    step(&["user", "list", ROOT]),
    step(&["role", "list", ROOT]),
    // What alice may do.
    step(&["put", "foo", "1", ALICE]),
    step(&["get", "foo", ALICE]),
    step(&["put", "bar", "1", ALICE]),
    step(&["get", "bar", ALICE]),
    step(&["put", "/p/x", "1", ALICE]),
    step(&["get", "/p/", "--prefix", ALICE]),
    step(&["get", "/p0", ALICE]),
    // Serializable one-key reads (served off the driver when it is free) are checked alike.
    step(&["get", "/p0", "--consistency=s", ALICE]),
    step(&["get", "/p/x", "--consistency=s", ALICE]),
    step(&["get", "/p/", "--prefix", "--consistency=s", ALICE]),
    step(&["put", "b", "1", ALICE]),
    step(&["get", "b", ALICE]),
    step(&["del", "a", "c", ALICE]),
    step(&["del", "a", "d", ALICE]),
    step(&["put", "zz", "1", ALICE]),
    step(&["get", "z", "--from-key", ALICE]),
    step(&["get", "y", "--from-key", ALICE]),
    step(&["put", "foo", "2", "--prev-kv", ALICE]),
    step(&["del", "foo", "--prev-kv", ALICE]),
    step(&["user", "get", "alice", ALICE]),
    step(&["user", "get", "root", ALICE]),
    step(&["role", "get", "r", ALICE]),
    step(&["role", "get", "root", ALICE]),
    step(&["user", "list", ALICE]),
    step(&["role", "add", "x", ALICE]),
    step(&["auth", "disable", ALICE]),
    // Root-only operations, and what anyone may do.
    step(&[
        "member",
        "add",
        "x",
        "--peer-urls=http://127.0.0.1:1",
        ALICE,
    ]),
    step(&["member", "remove", "1234", ALICE]),
    step(&["defrag", ALICE]),
    step(&["defrag", ROOT]),
    step(&["compaction", "1"]),
    step(&["alarm", "list"]),
    // Revokes take effect at once.
    step(&["role", "revoke-permission", "r", "foo", ROOT]),
    step(&["role", "revoke-permission", "r", "foo", ROOT]),
    step(&["role", "revoke-permission", "r", "/p/", "--prefix", ROOT]),
    step(&["role", "revoke-permission", "r", "a", "c", ROOT]),
    step(&["role", "revoke-permission", "r", "z", "--from-key", ROOT]),
    step(&["role", "get", "r", ROOT]),
    step(&["get", "foo", ALICE]),
    step(&["user", "revoke-role", "alice", "r", ROOT]),
    step(&["user", "revoke-role", "alice", "r", ROOT]),
    step(&["user", "get", "alice", ROOT]),
    // The root rules.
    step(&["role", "delete", "root", ROOT]),
    step(&["user", "delete", "root", ROOT]),
    step(&["user", "revoke-role", "root", "root", ROOT]),
    // A password change, then a deleted user.
    with_stdin(
        &["user", "passwd", "alice", "--interactive=false", ROOT],
        "pw2\n",
    ),
    step(&["get", "foo", ALICE]),
    step(&["get", "foo", "--user=alice:pw2"]),
    step(&["user", "delete", "alice", ROOT]),
    step(&["user", "delete", "alice", ROOT]),
    step(&["get", "foo", "--user=alice:pw2"]),
    step(&["role", "delete", "r", ROOT]),
    step(&["role", "delete", "r", ROOT]),
    step(&["role", "list", ROOT]),
    // A user without a password.
    step(&["user", "add", "nopw", "--no-password", ROOT]),
    step(&["get", "foo", "--user=nopw:x"]),
    step(&["user", "get", "nopw", ROOT]),
    // Auth off again: anyone may, and credentials are not needed.
    step(&["auth", "disable", ROOT]),
    step(&["auth", "disable"]),
    step(&["put", "x", "y"]),
    step(&["get", "x", ROOT]),
    step(&["user", "delete", "root"]),
    step(&["user", "list"]),
];

/// The transcript of the script against a fresh one-member cluster of `kind`, started with
/// `flags`.
fn transcript(kind: Kind, flags: &[String]) -> String {
    let security = Security {
        server_args: flags.to_vec(),
        ..Security::default()
    };
    let cluster = Cluster::start_secure(kind, 1, Timing::default(), security);
    let endpoints = cluster.endpoints();
    let mut out = String::new();
    for s in SCRIPT {
        let run = etcdctl(&endpoints, s.args, s.stdin.map(str::as_bytes));
        out.push_str(&format!("$ etcdctl {}\n", s.args.join(" ")));
        out.push_str(&run.stdout.replace(&endpoints, "ENDPOINTS"));
        let stderr = run.stderr.replace(&endpoints, "ENDPOINTS");
        for line in stderr
            .lines()
            .filter(|l| l.starts_with("Error:") || l.starts_with("Failed"))
        {
            out.push_str(&format!("! {line}\n"));
        }
        out.push_str(&format!("exit {:?}\n", run.code));
    }
    out
}

#[test]
fn etcdctl_auth_transcript_matches_etcd() {
    compare(&[]);
}

/// The same with JWT tokens.
#[test]
fn etcdctl_auth_transcript_with_jwt_tokens_matches_etcd() {
    compare(&[jwt_flag()]);
}

/// JWT tokens signed with RS256 as etcd's own tests sign them (the key and the certificate
/// holding its public half are etcd's test fixtures).
fn jwt_flag() -> String {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    format!(
        "--auth-token=jwt,pub-key={fixtures}/server.crt,priv-key={fixtures}/server.key.insecure,\
         sign-method=RS256,ttl=5m"
    )
}

/// `oxctl bench` logs in on each of its connections and puts the token on every request:
/// with `--user` every put of the run goes through, without it every put is refused; on
/// both servers, with simple tokens and with JWTs.
#[test]
fn oxctl_bench_logs_in_on_every_connection() {
    let put: Vec<&str> = "-w json bench put --conns 3 --clients 6 --total 60"
        .split(' ')
        .collect();
    for flags in [vec![], vec![jwt_flag()]] {
        for kind in [Kind::Etcd, Kind::Oxcd] {
            let security = Security {
                server_args: flags.clone(),
                ..Security::default()
            };
            let cluster = Cluster::start_secure(kind, 1, Timing::default(), security);
            let endpoints = cluster.endpoints();
            for args in [
                &["user", "add", "root:pw"][..],
                &["user", "grant-role", "root", "root"],
                &["auth", "enable"],
            ] {
                let out = etcdctl(&endpoints, args, None);
                assert_eq!(out.code, Some(0), "{kind:?} {flags:?} {args:?}: {out:?}");
            }
            let bench =
                |user: &[&str]| client(Client::Oxctl, &endpoints, &[user, &put].concat(), None);
            let out = bench(&["--user", "root:pw"]);
            let counts = |out: &procs::Output| {
                let n = |name| json_u64(&out.stdout, name);
                (out.code, n("total"), n("errors"))
            };
            assert_eq!(
                counts(&out),
                (Some(0), Some(60), Some(0)),
                "{kind:?} {flags:?}: {out:?}"
            );
            let out = bench(&[]);
            assert_eq!(
                counts(&out),
                (Some(1), Some(0), Some(60)),
                "{kind:?} {flags:?}: {out:?}"
            );
            assert!(
                out.stdout.contains("etcdserver: user name is empty"),
                "{kind:?} {flags:?}: {out:?}"
            );
        }
    }
}

fn compare(flags: &[String]) {
    let etcd = transcript(Kind::Etcd, flags);
    let oxcd = transcript(Kind::Oxcd, flags);
    if etcd != oxcd {
        let diff: Vec<String> = etcd
            .lines()
            .zip(oxcd.lines())
            .filter(|(a, b)| a != b)
            .take(20)
            .map(|(a, b)| format!("etcd: {a}\noxcd: {b}"))
            .collect();
        panic!(
            "the transcripts differ (first lines that differ):\n{}\n\n--- etcd\n{etcd}\n--- oxcd\n{oxcd}",
            diff.join("\n")
        );
    }
}
