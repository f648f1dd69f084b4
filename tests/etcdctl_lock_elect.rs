#![cfg(not(madsim))]
//! `lock` and `elect` as etcdctl 3.4 shows them: one script of lock holders, contenders that
//! wait for them, commands run under a lock, candidates and observers, run four times, each
//! on a fresh one-member cluster: etcdctl against etcd 3.4.23 (the reference), etcdctl
//! against oxcd, oxctl against oxcd and oxctl against etcd. The transcripts (what each
//! process printed by the time it was waited for, its stderr and exit code) must be equal
//! once lease IDs are named (`<L1>`, ... in the order they first show, in hex and in
//! decimal) and the cluster ID, member ID and term of `-w fields` headers are masked.
//!
//! Nothing waits on time. A process is waited for until it printed so many lines or exited;
//! a contender is known to be queued once its key is in the store (polled with etcdctl, not
//! part of the transcript); each wait has a deadline. Waiting shows in revisions: a
//! contender that waited prints (`-w fields`) or gets (`ETCD_LOCK_REV`) the revision of the
//! read after the holder let go, where one let in at once would show an earlier one.
//! Signals go to a process by its PID.
//!
//! etcd is Debian's `etcd-server` package (3.4.23); the test fails when it is missing.

mod procs;

use procs::{Client, Cluster, EtcdctlRun, Kind, Timing, differences, etcdctl, poll_until};
use regex::Regex;
use std::collections::BTreeMap;
use std::time::Duration;

/// Deadline of one wait: for a process's lines, its exit, or a contender's key.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// One run of the script: its processes by tag, and a transcript entry per step.
struct Run {
    which: Client,
    endpoint: String,
    running: BTreeMap<&'static str, (EtcdctlRun, usize)>,
    entries: Vec<String>,
}

fn title(args: &[&str]) -> String {
    let shown: Vec<String> = args
        .iter()
        .map(|a| {
            if a.is_empty() || a.contains([' ', '$', '>', '|']) {
                format!("'{a}'")
            } else {
                a.to_string()
            }
        })
        .collect();
    format!("etcdctl {}", shown.join(" "))
}

/// The lease a contender's key `name/<hex>` names.
fn lease_of(key: &str) -> &str {
    key.rsplit_once('/').expect("a contender's key").1
}

impl Run {
    fn new(cluster: &Cluster, which: Client) -> Run {
        Run {
            which,
            endpoint: cluster.endpoint(0),
            running: BTreeMap::new(),
            entries: Vec::new(),
        }
    }

    fn start(&mut self, tag: &'static str, args: &[&str]) {
        let run = EtcdctlRun::spawn_client(self.which, &self.endpoint, args, None);
        assert!(self.running.insert(tag, (run, 0)).is_none(), "{tag} runs");
        self.entries.push(format!("[{tag}] $ {}\n", title(args)));
    }

    /// Waits until `tag` printed `n` lines in all; the entry shows the new ones.
    fn lines(&mut self, tag: &'static str, n: usize) {
        let (run, shown) = self.running.get_mut(tag).expect("started");
        let arrived = run.await_lines(n, STEP_TIMEOUT);
        let lines = run.stdout_lines();
        let mut e = format!("[{tag}] stdout:\n{}", lines[*shown..].concat());
        if !arrived {
            e += &format!("<only {} of {n} lines>\n", lines.len());
        }
        *shown = lines.len();
        self.entries.push(e);
    }

    fn signal(&mut self, tag: &'static str, (signal, name): (libc::c_int, &str)) {
        self.running[tag].0.signal(signal);
        self.entries.push(format!("[{tag}] <- {name}\n"));
    }

    /// Waits until `tag` exits; the entry shows the rest of its stdout, its stderr and code.
    fn exit(&mut self, tag: &'static str) {
        let (mut run, shown) = self.running.remove(tag).expect("started");
        let out = run.wait_exit(STEP_TIMEOUT);
        let rest: String = out.stdout.split_inclusive('\n').skip(shown).collect();
        let end = match out.code {
            Some(c) => format!("exit {c}"),
            None => "killed (timed out)".to_string(),
        };
        self.entries.push(format!(
            "[{tag}] stdout:\n{rest}--- stderr\n{}--- {end}\n",
            out.stderr
        ));
    }

    /// Runs a command that exits by itself.
    fn run(&mut self, args: &[&str]) {
        self.start("-", args);
        self.exit("-");
    }

    /// Waits until `n` contenders' keys are under `name/`; the keys, oldest first.
    fn queued(&self, name: &str, n: usize) -> Vec<String> {
        let prefix = format!("{name}/");
        let args = [
            "get",
            &prefix,
            "--prefix",
            "--keys-only",
            "--sort-by=CREATE",
            "--order=ASCEND",
        ];
        poll_until(&format!("{n} keys under {prefix}"), STEP_TIMEOUT, || {
            let out = etcdctl(&self.endpoint, &args, None);
            let keys: Vec<String> = out
                .stdout
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            (out.code == Some(0) && keys.len() == n).then_some(keys)
        })
    }
}

const SIGINT: (libc::c_int, &str) = (libc::SIGINT, "SIGINT");
const SIGTERM: (libc::c_int, &str) = (libc::SIGTERM, "SIGTERM");

/// The script, one step a call; its comments say what each part shows.
fn script(r: &mut Run) {
    // Arguments refused before anything is written.
    r.run(&["lock"]);
    r.run(&["elect"]);
    r.run(&["elect", "el", "p", "extra"]);
    r.run(&["elect", "el"]);
    r.run(&["elect", "-l", "el", "p"]);

    // A holder, and a contender that waits until the holder exits.
    r.start("A", &["lock", "lk"]);
    r.lines("A", 2);
    r.start("B", &["lock", "-w", "fields", "lk"]);
    r.queued("lk", 2);
    r.signal("A", SIGINT);
    r.exit("A");
    r.lines("B", 12);
    // A command that waits for the lock, then runs holding it: its environment, and a
    // failure's exit status.
    let env = "env | grep ^ETCD_LOCK_ | sort; exit 3";
    r.start("C", &["lock", "lk", "--", "sh", "-c", env]);
    r.queued("lk", 2);
    r.signal("B", SIGTERM);
    r.exit("B");
    r.exit("C");
    r.run(&[
        "lock",
        "--ttl",
        "30",
        "lk",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    ]);
    r.run(&["lock", "lk", "--", "sh", "-c", "kill -TERM $$"]);
    r.run(&["lock", "lk", "no-such-command-for-oxctl"]);

    // A contender interrupted while it waits withdraws its key.
    r.start("D", &["lock", "lk"]);
    r.lines("D", 2);
    r.start("E", &["lock", "lk"]);
    r.queued("lk", 2);
    r.signal("E", SIGINT);
    r.exit("E");
    r.run(&["get", "lk/", "--prefix", "--keys-only"]);
    // A contender whose lease lapsed while it waited finds no key once its turn comes.
    r.start("F", &["lock", "lk"]);
    let keys = r.queued("lk", 2);
    r.run(&["lease", "revoke", lease_of(&keys[1])]);
    r.signal("D", SIGINT);
    r.exit("D");
    r.exit("F");
    // A holder whose lease lapsed.
    r.start("G", &["lock", "--ttl", "6", "lk"]);
    r.lines("G", 2);
    let keys = r.queued("lk", 1);
    r.run(&["lease", "revoke", lease_of(&keys[0])]);
    r.exit("G");

    // A leader, an observer, a candidate that waits, and an observer that starts while two
    // campaign (its later answers carry that read's count).
    r.start("P1", &["elect", "el", "p1"]);
    r.lines("P1", 2);
    r.start("O", &["elect", "-l", "el"]);
    r.lines("O", 2);
    r.start("P2", &["elect", "el", "p2"]);
    let keys = r.queued("el", 2);
    r.start("OF", &["elect", "-w", "fields", "-l", "el"]);
    r.lines("OF", 12);
    // The leader's key gets a new value, as a Proclaim writes it.
    let lease = format!("--lease={}", lease_of(&keys[0]));
    r.run(&["put", &keys[0], "p1b", &lease]);
    r.lines("O", 4);
    r.lines("OF", 24);
    // The leader resigns: the candidate leads, and the observers see it.
    r.signal("P1", SIGINT);
    r.exit("P1");
    r.lines("P2", 2);
    r.lines("O", 6);
    r.lines("OF", 36);
    // A candidate interrupted while it waits withdraws.
    r.start("P3", &["elect", "el", "p3"]);
    r.queued("el", 2);
    r.signal("P3", SIGINT);
    r.exit("P3");
    r.run(&["get", "el/", "--prefix", "--keys-only"]);
    r.signal("P2", SIGTERM);
    r.exit("P2");
    r.signal("O", SIGINT);
    r.exit("O");
    r.signal("OF", SIGTERM);
    r.exit("OF");
    r.run(&["get", "el/", "--prefix", "--keys-only"]);

    // A format `get` cannot print is refused once the lock is held, and the key is left to
    // its lease (last: its lapse comes at no set point).
    r.run(&["lock", "-w", "table", "lt"]);
    r.run(&["get", "lt/", "--prefix", "--keys-only"]);
}

/// Names lease IDs in the order they first show (in contenders' keys and in `lease revoke`)
/// and masks what differs between any two clusters.
struct Masks {
    /// Lease IDs as named: the first is `<L1>`.
    leases: Vec<i64>,
    named: Vec<(Regex, String)>,
    lease: Regex,
    fixed: Vec<(Regex, &'static str)>,
}

impl Masks {
    fn new() -> Masks {
        let fixed = [
            (r#""ClusterID" : \d+"#, "\"ClusterID\" : <CLUSTER>"),
            (r#""MemberID" : \d+"#, "\"MemberID\" : <MEMBER>"),
            (r#""RaftTerm" : \d+"#, "\"RaftTerm\" : <TERM>"),
        ];
        Masks {
            leases: Vec::new(),
            named: Vec::new(),
            lease: Regex::new(r"\b(?:(?:lk|el|lt)/|lease revoke |lease )([0-9a-f]+)\b").unwrap(),
            fixed: fixed
                .into_iter()
                .map(|(p, r)| (Regex::new(p).unwrap(), r))
                .collect(),
        }
    }

    fn apply(&mut self, text: &str) -> String {
        for c in self.lease.captures_iter(text) {
            let id = i64::from_str_radix(&c[1], 16).expect("a lease ID");
            if self.leases.contains(&id) {
                continue;
            }
            self.leases.push(id);
            let name = format!("<L{}>", self.leases.len());
            // In a key as Go's `%x` prints it, in `lease revoke`'s answer as `%016x`.
            for pattern in [format!(r"\b0*{id:x}\b"), format!(r"\b{id}\b")] {
                self.named
                    .push((Regex::new(&pattern).unwrap(), name.clone()));
            }
        }
        let mut t = text.to_string();
        for (re, name) in &self.named {
            t = re.replace_all(&t, name.as_str()).into_owned();
        }
        for (re, rep) in &self.fixed {
            t = re.replace_all(&t, *rep).into_owned();
        }
        // etcdctl's own log lines (grpc-go's warnings), which oxctl does not have.
        t.split_inclusive('\n')
            .filter(|l| !l.starts_with("{\"level\":"))
            .collect()
    }
}

fn transcript(cluster: &Cluster, which: Client) -> Vec<String> {
    let mut run = Run::new(cluster, which);
    script(&mut run);
    assert!(run.running.is_empty(), "every process was waited for");
    let mut masks = Masks::new();
    run.entries.iter().map(|e| masks.apply(e)).collect()
}

#[test]
fn lock_and_elect_show_what_etcdctl_shows() {
    // Each run on a fresh cluster: the script's revisions count from a fresh store's.
    let run = |kind, which| {
        let cluster = Cluster::start(kind, 1, Timing::default());
        transcript(&cluster, which)
    };
    let want = run(Kind::Etcd, Client::Etcdctl);
    let reference = "etcdctl against etcd 3.4.23";
    let mut report = String::new();
    for (kind, which, name) in [
        (Kind::Oxcd, Client::Etcdctl, "etcdctl against oxcd"),
        (Kind::Oxcd, Client::Oxctl, "oxctl against oxcd"),
        (Kind::Etcd, Client::Oxctl, "oxctl against etcd 3.4.23"),
    ] {
        let diffs = differences(&want, &run(kind, which), reference, name);
        if !diffs.is_empty() {
            report += &format!(
                "{} of {} steps of {name} differ:\n\n{}\n\n",
                diffs.len(),
                want.len(),
                diffs.join("\n")
            );
        }
    }
    assert!(
        report.is_empty(),
        "{report}the whole of {reference}:\n{}",
        want.concat()
    );
}
