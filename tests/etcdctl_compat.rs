#![cfg(not(madsim))]
//! `etcdctl` sees no difference: the same script of etcdctl (API v3) commands runs against a
//! fresh one-member etcd 3.4 and a fresh one-member oxcd, and the two transcripts (stdout,
//! stderr and exit code of every command) must be equal once what legitimately differs
//! between two clusters is masked. The script runs a third time with `oxctl` as the client
//! against oxcd, whose transcript must equal etcdctl's against etcd but for etcdctl's own
//! log lines.
//!
//! What is masked, and why it may differ:
//! - member, cluster and lease IDs (derived from URLs, tokens and clocks): each replaced by a
//!   name (`<MEMBER>`, `<CLUSTER>`, `<LEASE1>`...) wherever it appears, in hex or decimal, so
//!   an ID printed in the wrong place still shows;
//! - the client and peer ports (`<CLIENT>`, `<PEER>`);
//! - Raft term and index, database sizes, the server version string, durations ("took"),
//!   a lease's remaining TTL (seconds tick), the timestamps and client UUIDs in etcdctl's own
//!   log lines, and the KV hash (each server hashes its own storage format; the hash is only
//!   comparable between members of one cluster);
//! - table column widths (they follow the masked values).
//!
//! Each step's extra masks are written on the step. `snapshot save` is only checked to
//! succeed: the snapshot file formats differ. Not covered: auth (`tests/auth_compat.rs`), lock
//! and elect (`tests/etcdctl_lock_elect.rs`), and `-w protobuf` (binary).
//!
//! etcd is Debian's `etcd-server` package (3.4.23); the test fails when it is missing.
//!
//! An endpoint written as a URL (`http://...`) is in the script both ways etcdctl uses it:
//! through its balancer (`get`, `endpoint health`) and dialed as it is, with the URL as the
//! HTTP/2 `:authority` (`endpoint status` / `hashkv`, `defrag`, `move-leader`, and the
//! members' URLs with `--cluster`).

mod procs;

use procs::{
    Client, Cluster, Kind, Output, Timing, client, client_lines, differences, etcdctl, json_u64,
    path_str, without_client_logs,
};
use regex::Regex;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a `watch` may take to print the history it was asked for.
const WATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How a step's etcdctl run ends.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// It exits by itself.
    Exit,
    /// A watch: killed once it printed this many stdout lines.
    Lines(usize),
}

/// What is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// The whole normalized transcript.
    Transcript,
    /// Stdout, and that it exits 0: stderr only when it fails (`snapshot save`, whose log
    /// lines describe a file whose format differs between the two servers).
    StdoutAndSuccess,
}

struct Step {
    /// Arguments after `--endpoints`; `{L1}` etc. stand for leases granted earlier.
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    /// How stdin shows in the transcript (a 2 MB value is summarised).
    stdin_shown: Option<String>,
    stop: Stop,
    check: Check,
    /// Extra masks for this step: (pattern, replacement).
    masks: Vec<(Regex, String)>,
    /// Table columns whose cells are masked.
    masked_columns: Vec<&'static str>,
    /// `lease grant`: remember the granted ID under this name.
    grants: Option<&'static str>,
    /// Name the endpoint as a URL (`http://127.0.0.1:port`, as most deployments write it)
    /// instead of `127.0.0.1:port`.
    url_endpoint: bool,
}

fn step(args: &[&str]) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        stdin_shown: None,
        stop: Stop::Exit,
        check: Check::Transcript,
        masks: Vec::new(),
        masked_columns: Vec::new(),
        grants: None,
        url_endpoint: false,
    }
}

impl Step {
    fn stdin(mut self, s: &str) -> Step {
        self.stdin = Some(s.as_bytes().to_vec());
        self.stdin_shown = Some(s.to_string());
        self
    }
    fn mask(mut self, pattern: &str, replacement: &str) -> Step {
        self.masks
            .push((Regex::new(pattern).unwrap(), replacement.to_string()));
        self
    }
    fn columns(mut self, cols: &[&'static str]) -> Step {
        self.masked_columns.extend_from_slice(cols);
        self
    }
    fn lines(mut self, n: usize) -> Step {
        self.stop = Stop::Lines(n);
        self
    }
    fn grants(mut self, name: &'static str) -> Step {
        self.grants = Some(name);
        self
    }
    fn url(mut self) -> Step {
        self.url_endpoint = true;
        self
    }
    fn title(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                if a.is_empty() || a.contains(' ') || a.contains('"') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        let endpoint = if self.url_endpoint {
            "--endpoints=http://<CLIENT> "
        } else {
            ""
        };
        format!("etcdctl {endpoint}{}", args.join(" "))
    }
}

/// `endpoint status` fields that differ between any two clusters.
const STATUS_JSON_MASK: &str =
    r#""(version|dbSize|dbSizeInUse|raftIndex|raftTerm|raftAppliedIndex)":("[^"]*"|\d+)"#;
const STATUS_COLUMNS: &[&str] = &[
    "VERSION",
    "DB SIZE",
    "RAFT TERM",
    "RAFT INDEX",
    "RAFT APPLIED INDEX",
];

/// The script. Revisions are noted where a later step depends on them (a fresh cluster is at
/// revision 1).
fn script(snapshot: &str) -> Vec<Step> {
    let too_many_ops: String = {
        let puts: String = (0..129).map(|i| format!("put many{i} v\n")).collect();
        format!("\n{puts}\n\n")
    };
    let big_value = vec![b'a'; 2_000_000];
    let mut big = step(&["put", "big"]);
    big.stdin = Some(big_value);
    big.stdin_shown = Some("<2,000,000 bytes of 'a'>".into());

    vec![
        // -- put
        step(&["put", "foo", "bar"]),                   // rev 2
        step(&["put", "foo", "bar2", "--prev-kv"]),     // rev 3
        step(&["put", "foo", "bar3", "--prev-kv", "-w", "json"]), // rev 4
        step(&["put", "foo", "--ignore-value"]),        // rev 5
        step(&["put", "fresh", "v", "--prev-kv"]),      // rev 6
        step(&["put", "nokey", "--ignore-value"]),
        step(&["put", "foo", "x", "--ignore-value"]),
        step(&["put", "", "v"]),
        step(&["put", "k", "v", "--lease=1234"]),
        big,
        step(&["put", "p/a", "3"]), // rev 7
        step(&["put", "p/b", "1"]), // rev 8
        step(&["put", "p/c", "4"]), // rev 9
        step(&["put", "p/d", "2"]), // rev 10
        step(&["put", "p/b", "5", "-w", "fields"]), // rev 11
        // -- get
        step(&["get", "foo"]),
        step(&["get", "foo", "-w", "json"]),
        step(&["get", "foo", "-w", "fields"]),
        step(&["get", "foo", "-w", "table"]),
        step(&["get", "foo", "--hex"]),
        step(&["get", "foo", "--consistency=s", "-w", "json"]),
        step(&["get", "nothing"]),
        step(&["get", "nothing", "-w", "json"]),
        step(&["get", "p/", "--prefix"]),
        step(&["get", "p/", "--prefix", "--limit", "2", "-w", "json"]),
        step(&["get", "p/", "--prefix", "--limit", "2", "-w", "fields"]),
        step(&["get", "p/b", "--from-key", "--keys-only"]),
        step(&["get", "", "--from-key", "--keys-only"]),
        step(&["get", "p/b", "p/d"]),
        step(&["get", "p/", "--prefix", "--sort-by=VALUE", "--order=DESCEND", "--print-value-only"]),
        step(&["get", "p/", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"]),
        step(&["get", "p/", "--prefix", "--sort-by=CREATE", "--order=ASCEND", "--keys-only"]),
        step(&["get", "p/", "--prefix", "--sort-by=VERSION", "--order=DESCEND", "-w", "json"]),
        step(&["get", "p/", "--prefix", "--order=DESCEND", "--limit", "3"]),
        step(&["get", "p/", "--prefix", "--sort-by=KEY", "--limit", "1", "-w", "json"]),
        step(&["get", "foo", "--rev", "2"]),
        step(&["get", "foo", "--rev", "3", "-w", "json"]),
        step(&["get", "p/", "--prefix", "--rev", "8"]),
        step(&["get", "foo", "--rev", "100"]),
        // -- del
        step(&["del", "nothing"]),
        step(&["del", "p/a", "--prev-kv"]),               // rev 12
        step(&["del", "p/", "--prefix", "--prev-kv"]),    // rev 13
        step(&["del", "p/", "--prefix", "-w", "json"]),
        step(&["put", "r1", "x"]),                        // rev 14
        step(&["put", "r2", "y"]),                        // rev 15
        step(&["del", "r1", "r3", "-w", "json"]),         // rev 16
        // -- txn (stdin: compares, blank line, success ops, blank line, failure ops)
        step(&["txn"]).stdin("value(\"foo\") = \"bar3\"\n\nput t1 yes\nget foo\n\nput t1 no\n\n"), // rev 17
        step(&["txn"]).stdin("mod(\"foo\") > \"100\"\n\nput t2 yes\n\nput t2 no\nget t1\n\n"), // rev 18
        step(&["txn", "-w", "json"])
            .stdin("version(\"t1\") = \"1\"\ncreate(\"t2\") > \"0\"\n\ndel t1\nput t3 z\nget t --prefix\n\nput t9 never\n\n"), // rev 19
        step(&["txn", "-i"]).stdin("create(\"foo\") = \"2\"\n\nput t4 i\n\n\n"), // rev 20
        step(&["txn"]).stdin("\n\n\n"),
        step(&["txn"]).stdin("\nput d1 a\nput d1 b\n\n\n"),
        step(&["txn"]).stdin("\n\nput d2 a\ndel d2\n\n"),
        step(&["txn"]).stdin(&too_many_ops),
        // -- watch: history from a past revision, then killed
        step(&["watch", "foo", "--rev", "2"]).lines(12),
        step(&["watch", "p/", "--prefix", "--rev", "7", "--prev-kv"]).lines(37),
        step(&["watch", "r", "--prefix", "--rev", "14", "-w", "json"]).lines(1),
        step(&["watch", "r", "--prefix", "--rev", "14", "-w", "fields"]).lines(32),
        step(&[
            "watch", "foo", "--rev", "2", "--",
            "sh", "-c", "echo \"$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY=$ETCD_WATCH_VALUE at $ETCD_WATCH_REVISION\"",
        ])
        .lines(16),
        // -- leases
        step(&["lease", "grant", "100"]).grants("L1"),
        step(&["put", "k1", "v1", "--lease={L1}"]), // rev 21
        step(&["lease", "timetolive", "{L1}"]).mask(r"remaining\(\d+s\)", "remaining(<TTL>s)"),
        step(&["lease", "timetolive", "{L1}", "--keys"])
            .mask(r"remaining\(\d+s\)", "remaining(<TTL>s)"),
        step(&["lease", "timetolive", "{L1}", "--keys", "-w", "json"])
            .mask(r#""ttl":\d+"#, "\"ttl\":<TTL>"),
        step(&["put", "k2", "v2", "--lease={L1}", "--prev-kv"]), // rev 22
        step(&["put", "k1", "v1b", "--ignore-lease"]),           // rev 23: keeps L1
        step(&["get", "k", "--prefix", "-w", "json"]),
        step(&["lease", "list"]),
        step(&["lease", "list", "-w", "json"]),
        step(&["lease", "keep-alive", "--once", "{L1}"]),
        step(&["lease", "keep-alive", "--once", "{L1}", "-w", "json"]),
        step(&["lease", "revoke", "{L1}"]), // rev 24: k1 and k2 go
        step(&["get", "k", "--prefix"]),
        step(&["lease", "timetolive", "{L1}"]),
        step(&["lease", "timetolive", "{L1}", "-w", "json"]),
        step(&["lease", "keep-alive", "--once", "{L1}"]),
        step(&["lease", "revoke", "{L1}"]),
        step(&["lease", "revoke", "1234"]),
        step(&["lease", "timetolive", "1234"]),
        step(&["lease", "list"]),
        step(&["watch", "k", "--prefix", "--rev", "21"]).lines(15),
        // -- cluster and maintenance
        step(&["member", "list"]),
        step(&["member", "list", "-w", "table"]),
        step(&["member", "list", "-w", "json"]),
        step(&["endpoint", "health"]).mask(r"took = \S+", "took = <DURATION>"),
        step(&["endpoint", "health", "-w", "json"]).mask(r#""took":"[^"]*""#, "\"took\":<DURATION>"),
        step(&["endpoint", "health", "-w", "table"]).columns(&["TOOK"]),
        step(&["endpoint", "status"]).mask(
            r"(?m)^(<CLIENT>, <MEMBER>), [^,]*, [^,]*, (\w+, \w+), \d+, \d+, \d+, ",
            "$1, <VERSION>, <DB SIZE>, $2, <TERM>, <INDEX>, <INDEX>, ",
        ),
        step(&["endpoint", "status", "-w", "json"]).mask(STATUS_JSON_MASK, "\"$1\":<MASKED>"),
        step(&["endpoint", "status", "-w", "table"]).columns(STATUS_COLUMNS),
        // The endpoint as a URL goes through the balancer for `get` and `endpoint health`;
        // `endpoint status` / `hashkv`, `defrag` and `move-leader` dial it as it is (and
        // `--cluster` the members' URLs), with the whole URL as the HTTP/2 `:authority`.
        step(&["get", "foo"]).url(),
        step(&["endpoint", "health", "-w", "table"]).columns(&["TOOK"]).url(),
        step(&["endpoint", "health", "--cluster", "-w", "table"]).columns(&["TOOK"]),
        step(&["endpoint", "status", "-w", "table"]).columns(STATUS_COLUMNS).url(),
        step(&["endpoint", "status", "--cluster", "-w", "table"]).columns(STATUS_COLUMNS),
        step(&["endpoint", "hashkv", "-w", "table"]).columns(&["HASH"]).url(),
        step(&["endpoint", "hashkv", "--cluster", "-w", "table"]).columns(&["HASH"]),
        step(&["defrag"]).url(),
        step(&["defrag", "--cluster"]),
        step(&["move-leader", "1"]).url(),
        step(&["move-leader", "1"]),
        step(&["endpoint", "hashkv"]).mask(r"(?m)^(<CLIENT>), \d+$", "$1, <HASH>"),
        step(&["endpoint", "hashkv", "-w", "json"]).mask(r#""hash":\d+"#, "\"hash\":<HASH>"),
        step(&["endpoint", "hashkv", "--rev", "3", "-w", "table"]).columns(&["HASH"]),
        step(&["compaction", "5"]),
        step(&["compaction", "5"]),
        step(&["compaction", "4"]),
        step(&["compaction", "1000"]),
        step(&["get", "foo", "--rev", "4"]),
        step(&["get", "foo", "--rev", "5", "-w", "json"]),
        step(&["watch", "foo", "--rev", "1"]),
        step(&["watch", "foo", "--rev", "5"]).lines(3),
        step(&["endpoint", "hashkv", "--rev", "4"]),
        step(&["endpoint", "hashkv", "-w", "json"]).mask(r#""hash":\d+"#, "\"hash\":<HASH>"),
        step(&["compaction", "--physical", "6"]),
        step(&["defrag"]),
        step(&["alarm", "list"]),
        step(&["alarm", "list", "-w", "json"]),
        step(&["alarm", "disarm"]),
        // The files differ (etcd's bolt database, oxcd's stream); both in etcd's envelope.
        Step {
            check: Check::StdoutAndSuccess,
            ..step(&["snapshot", "save", snapshot])
        },
        step(&["del", "t4", "--from-key", "--prev-kv"]),
        step(&["get", "", "--from-key", "-w", "json"]),
        // Last: a lease that expires (2 s, etcd's minimum for these timings) must not be seen
        // by any later step.
        step(&["lease", "grant", "1"]).grants("L2"),
    ]
}

/// IDs and ports of one server, to be replaced by names.
struct Names {
    /// (literal, name), longest literal first.
    literals: Vec<(String, String)>,
}

impl Names {
    fn new(member_id: u64, cluster_id: u64, client_port: u16, peer_port: u16) -> Names {
        let mut n = Names {
            literals: Vec::new(),
        };
        n.add_id(member_id, "<MEMBER>");
        n.add_id(cluster_id, "<CLUSTER>");
        n.literals
            .push((format!("127.0.0.1:{client_port}"), "<CLIENT>".into()));
        n.literals
            .push((format!("127.0.0.1:{peer_port}"), "<PEER>".into()));
        n
    }

    fn add_id(&mut self, id: u64, name: &str) {
        for lit in [format!("{id:016x}"), format!("{id:x}"), id.to_string()] {
            self.literals.push((lit, name.to_string()));
        }
        self.literals
            .sort_by_key(|(lit, _)| std::cmp::Reverse(lit.len()));
        self.literals.dedup();
    }

    fn apply(&self, text: &str) -> String {
        let mut s = text.to_string();
        for (lit, name) in &self.literals {
            // Whole words only: an ID's digits inside a longer number are not that ID.
            let re = Regex::new(&format!(r"\b{}\b", regex::escape(lit))).unwrap();
            s = re.replace_all(&s, name.as_str()).into_owned();
        }
        s
    }
}

/// Masks applied to every step.
fn global_masks() -> Vec<(Regex, &'static str)> {
    [
        (r#""raft_term":\d+"#, "\"raft_term\":<TERM>"),
        (r#""RaftTerm" : \d+"#, "\"RaftTerm\" : <TERM>"),
        // etcdctl's own log lines.
        (r#""ts":("[^"]*"|[\d.e+]+)"#, "\"ts\":<TS>"),
        (r"client-[0-9a-f-]{36}", "client-<UUID>"),
    ]
    .into_iter()
    .map(|(p, r)| (Regex::new(p).unwrap(), r))
    .collect()
}

/// Tables: cells trimmed (widths follow masked values), named columns masked.
fn normalize_tables(text: &str, masked_columns: &[&str]) -> String {
    let mut out = String::new();
    let mut header: Option<Vec<String>> = None;
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if body.starts_with('+') && body.ends_with('+') {
            out.push_str("+---+");
        } else if body.starts_with('|') && body.ends_with('|') && body.len() > 1 {
            let cells: Vec<String> = body[1..body.len() - 1]
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            let cells = match &header {
                None => {
                    header = Some(cells.clone());
                    cells
                }
                Some(h) => cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| match h.get(i) {
                        Some(name) if masked_columns.contains(&name.as_str()) => {
                            format!("<{name}>")
                        }
                        _ => c.clone(),
                    })
                    .collect(),
            };
            out.push_str(&format!("| {} |", cells.join(" | ")));
        } else {
            header = None;
            out.push_str(body);
        }
        out.push_str(nl);
    }
    out
}

/// One server's run of the script: a transcript entry per step.
fn run_script(cluster: &Cluster, which: Client) -> Vec<String> {
    // The snapshot goes into the cluster's temp dir; its path shows as `<SNAPSHOT>`.
    let snapshot = cluster.scratch_path("snapshot.db");
    let snapshot = path_str(&snapshot);
    let steps = script(snapshot);
    let ep = cluster.endpoint(0);
    let status = etcdctl(&ep, &["endpoint", "status", "-w", "json"], None);
    assert_eq!(status.code, Some(0), "endpoint status: {status:?}");
    let member_id = json_u64(&status.stdout, "member_id").expect("member_id");
    let cluster_id = json_u64(&status.stdout, "cluster_id").expect("cluster_id");
    let m = &cluster.members[0];
    let mut names = Names::new(member_id, cluster_id, m.client_port, m.peer_port);
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    let global = global_masks();
    let grant = Regex::new(r"lease ([0-9a-f]{16}) granted").unwrap();
    let mut entries = Vec::new();
    for s in &steps {
        let args: Vec<String> = s
            .args
            .iter()
            .map(|a| {
                let mut a = a.clone();
                for (name, hex) in &vars {
                    a = a.replace(&format!("{{{name}}}"), hex);
                }
                a
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ep = if s.url_endpoint {
            format!("http://{ep}")
        } else {
            ep.clone()
        };
        let out: Output = match s.stop {
            Stop::Exit => client(which, &ep, &args, s.stdin.as_deref()),
            Stop::Lines(n) => client_lines(which, &ep, &args, n, WATCH_TIMEOUT),
        };
        if let Some(var) = s.grants {
            let hex = grant
                .captures(&out.stdout)
                .unwrap_or_else(|| panic!("{}: no lease ID in {out:?}", s.title()))[1]
                .to_string();
            let id = u64::from_str_radix(&hex, 16).unwrap();
            names.add_id(id, &format!("<{var}>"));
            vars.insert(var, hex);
        }
        let normalize = |text: &str| {
            let mut t = names.apply(text);
            for (re, rep) in &s.masks {
                t = re.replace_all(&t, rep.as_str()).into_owned();
            }
            for (re, rep) in &global {
                t = re.replace_all(&t, *rep).into_owned();
            }
            normalize_tables(&t, &s.masked_columns)
        };
        let mut e = format!("$ {}\n", s.title());
        if let Some(input) = &s.stdin_shown {
            for l in input.lines() {
                e.push_str(&format!("< {l}\n"));
            }
        }
        e.push_str(&format!("--- stdout\n{}", normalize(&out.stdout)));
        match s.check {
            Check::Transcript => {
                e.push_str(&format!("--- stderr\n{}", normalize(&out.stderr)));
                let end = match (s.stop, out.code) {
                    (Stop::Lines(_), None) => "killed after the expected lines".to_string(),
                    (_, None) => "killed (timed out)".to_string(),
                    (_, Some(c)) => format!("exit {c}"),
                };
                e.push_str(&format!("--- {end}\n"));
            }
            Check::StdoutAndSuccess => match out.code {
                Some(0) => e.push_str("--- exit 0\n"),
                // A failure shows in full (and then differs from etcd's success).
                _ => e.push_str(&format!(
                    "--- stderr\n{}--- exit {:?}\n",
                    normalize(&out.stderr),
                    out.code
                )),
            },
        }
        entries.push(e.replace(snapshot, "<SNAPSHOT>"));
    }
    entries
}

/// etcdctl against etcd and against oxcd, and oxctl against oxcd: one script, three runs.
#[test]
fn etcdctl_transcripts_match_etcd() {
    let started = Instant::now();
    let etcd = Cluster::start(Kind::Etcd, 1, Timing::default());
    let oxcd = Cluster::start(Kind::Oxcd, 1, Timing::default());
    let want = run_script(&etcd, Client::Etcdctl);
    let got = run_script(&oxcd, Client::Etcdctl);
    drop(oxcd);
    // oxctl gets a fresh oxcd of its own: the script assumes a fresh cluster.
    let oxcd = Cluster::start(Kind::Oxcd, 1, Timing::default());
    let got_oxctl = run_script(&oxcd, Client::Oxctl);

    let diffs = differences(
        &want,
        &got,
        "etcdctl against etcd 3.4.23",
        "etcdctl against oxcd",
    );
    let oxctl_diffs = differences(
        &without_client_logs(&want),
        &without_client_logs(&got_oxctl),
        "etcdctl against etcd 3.4.23",
        "oxctl against oxcd",
    );
    eprintln!(
        "{} steps against each server in {:?}",
        want.len(),
        started.elapsed()
    );
    assert!(
        diffs.is_empty() && oxctl_diffs.is_empty(),
        "{} of {} etcdctl steps differ from etcd:\n\n{}\n\n{} of {} oxctl steps differ from etcdctl:\n\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n"),
        oxctl_diffs.len(),
        want.len(),
        oxctl_diffs.join("\n")
    );
}
