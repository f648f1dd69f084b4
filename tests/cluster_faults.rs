#![cfg(not(madsim))]
//! Faults and membership changes on a real three-member oxcd cluster (heartbeat 100 ms,
//! election timeout 1000 ms) on loopback:
//!
//! - the leader is SIGKILLed under a concurrent write load: a new leader is elected within
//!   5 s, writes succeed again, the killed member restarts on its data dir and catches up,
//!   and every acknowledged write is on every member;
//! - a fourth member is added as a learner with `etcdctl member add --learner`, started with
//!   `--initial-cluster-state existing`, promoted once in sync, then removed.
//!
//! The two tests take turns (a lock): both start clusters whose election timing should not
//! compete for the CPU with the other's.

mod procs;

use etcd_client::{Client, ConnectOptions, GetOptions};
use procs::{Cluster, Kind, POLL_INTERVAL, Timing, etcdctl, free_port};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

const TIMING: Timing = Timing {
    heartbeat_ms: 100,
    election_ms: 1000,
};
/// How soon after the leader dies a new one must lead (five election timeouts).
const NEW_LEADER_MAX: Duration = Duration::from_secs(5);
/// Concurrent writer tasks, and a bound on the puts of each.
const WRITERS: usize = 4;
const PUTS_PER_WRITER_MAX: usize = 20_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

async fn client_for(endpoint: &str) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT);
    Client::connect([format!("http://{endpoint}")], Some(opts))
        .await
        .expect("a client (connections are made lazily)")
}

/// One acknowledged put.
#[derive(Clone, Debug)]
struct Ack {
    key: String,
    value: String,
    revision: i64,
    at: Instant,
}

#[derive(Default)]
struct Load {
    acks: Mutex<Vec<Ack>>,
    failures: AtomicUsize,
    stop: AtomicBool,
}

impl Load {
    fn acked(&self) -> usize {
        self.acks.lock().unwrap().len()
    }
    fn acked_after(&self, t: Instant) -> usize {
        self.acks
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.at > t)
            .count()
    }
}

/// Puts distinct keys until told to stop, through one member at a time; a failed or timed
/// out put (its outcome unknown) moves it to the next member.
async fn writer(task: usize, endpoints: Vec<String>, load: Arc<Load>) {
    let mut clients = Vec::new();
    for ep in &endpoints {
        clients.push(client_for(ep).await);
    }
    let mut which = task % clients.len();
    for seq in 0..PUTS_PER_WRITER_MAX {
        if load.stop.load(Ordering::SeqCst) {
            return;
        }
        let key = format!("load/{task}/{seq:05}");
        let value = format!("w{task}-{seq}");
        let put = clients[which].put(key.clone(), value.clone(), None);
        match tokio::time::timeout(REQUEST_TIMEOUT, put).await {
            Ok(Ok(r)) => load.acks.lock().unwrap().push(Ack {
                key,
                value,
                revision: r.header().expect("header").revision(),
                at: Instant::now(),
            }),
            _ => {
                load.failures.fetch_add(1, Ordering::SeqCst);
                which = (which + 1) % clients.len();
            }
        }
    }
}

/// The leader every running member names, once they all name the same one.
async fn agreed_leader(cluster: &Cluster) -> Option<u64> {
    let mut seen = Vec::new();
    for i in cluster.running() {
        let mut c = client_for(&cluster.endpoint(i)).await;
        match tokio::time::timeout(REQUEST_TIMEOUT, c.status()).await {
            Ok(Ok(s)) if s.leader() != 0 => seen.push(s.leader()),
            _ => return None,
        }
    }
    seen.dedup();
    (seen.len() == 1).then(|| seen[0])
}

async fn poll_async<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[test]
fn leader_killed_under_write_load() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // Writers run on worker threads while the test's own thread kills and restarts members.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(leader_kill());
}

async fn leader_kill() {
    let started = Instant::now();
    let mut cluster = Cluster::start(Kind::Oxcd, 3, TIMING);
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();

    let mut admin = client_for(&endpoints[0]).await;
    let members = admin.member_list().await.unwrap();
    let id_of: BTreeMap<String, u64> = members
        .members()
        .iter()
        .map(|m| (m.name().to_string(), m.id()))
        .collect();
    assert_eq!(id_of.len(), 3);
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let index_of = |id: u64| {
        names
            .iter()
            .position(|n| id_of[n] == id)
            .expect("the leader is a member")
    };

    let load = Arc::new(Load::default());
    let tasks: Vec<_> = (0..WRITERS)
        .map(|t| tokio::spawn(writer(t, endpoints.clone(), load.clone())))
        .collect();
    poll_async(
        "100 acknowledged puts before the kill",
        Duration::from_secs(20),
        || {
            let load = load.clone();
            async move { (load.acked() >= 100).then_some(()) }
        },
    )
    .await;

    let old_leader = poll_async("an agreed leader", Duration::from_secs(10), || {
        agreed_leader(&cluster)
    })
    .await;
    let victim = index_of(old_leader);
    let acked_before = load.acked();
    cluster.kill(victim);
    let killed_at = Instant::now();

    let new_leader = poll_async("a new leader", Duration::from_secs(15), || async {
        agreed_leader(&cluster).await.filter(|&l| l != old_leader)
    })
    .await;
    let election = killed_at.elapsed();
    assert_ne!(index_of(new_leader), victim);
    assert!(
        election <= NEW_LEADER_MAX,
        "a new leader after {election:?}, more than {NEW_LEADER_MAX:?}"
    );
    let leader_at = Instant::now();
    poll_async(
        "50 puts acknowledged under the new leader",
        Duration::from_secs(15),
        || {
            let load = load.clone();
            async move { (load.acked_after(leader_at) >= 50).then_some(()) }
        },
    )
    .await;

    // The killed member comes back on its data dir while the load goes on.
    cluster.spawn(victim);
    cluster.wait_healthy(victim);
    let back_at = Instant::now();
    poll_async(
        "50 puts acknowledged after the restart",
        Duration::from_secs(15),
        || {
            let load = load.clone();
            async move { (load.acked_after(back_at) >= 50).then_some(()) }
        },
    )
    .await;
    load.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("writer task");
    }
    let acks = load.acks.lock().unwrap().clone();
    let last_revision = acks.iter().map(|a| a.revision).max().unwrap();

    // Every member, once it has applied the last acknowledged revision, holds every
    // acknowledged key with its value at that revision (serializable reads: that member's own
    // state, read one writer's keys at a time to keep responses small), and all members hold
    // the same keys there.
    let mut contents: Vec<BTreeMap<String, String>> = Vec::new();
    for (i, ep) in endpoints.iter().enumerate() {
        let c = client_for(ep).await;
        poll_async(
            &format!("member {i} to apply revision {last_revision}"),
            Duration::from_secs(20),
            || {
                let mut c = c.clone();
                async move {
                    let opts = GetOptions::new().with_serializable().with_count_only();
                    let r = c.get("load/", Some(opts)).await.ok()?;
                    (r.header()?.revision() >= last_revision).then_some(())
                }
            },
        )
        .await;
        let mut kvs: BTreeMap<String, String> = BTreeMap::new();
        for task in 0..WRITERS {
            let opts = GetOptions::new()
                .with_prefix()
                .with_serializable()
                .with_revision(last_revision);
            let got = c
                .clone()
                .get(format!("load/{task}/"), Some(opts))
                .await
                .unwrap_or_else(|e| panic!("member {i}: reading writer {task}'s keys: {e}"));
            kvs.extend(got.kvs().iter().map(|kv| {
                (
                    kv.key_str().unwrap().to_string(),
                    kv.value_str().unwrap().to_string(),
                )
            }));
        }
        let missing: Vec<&Ack> = acks
            .iter()
            .filter(|a| kvs.get(&a.key) != Some(&a.value))
            .collect();
        assert!(
            missing.is_empty(),
            "member {i} lacks {} of {} acknowledged puts, first {:?}",
            missing.len(),
            acks.len(),
            &missing[..missing.len().min(5)]
        );
        contents.push(kvs);
    }
    assert!(
        contents.windows(2).all(|w| w[0] == w[1]),
        "the members hold different keys: {:?}",
        contents.iter().map(BTreeMap::len).collect::<Vec<_>>()
    );
    eprintln!(
        "leader kill: {} puts acknowledged ({} before the kill), {} failed or timed out; \
         new leader after {election:?}; test took {:?}",
        acks.len(),
        acked_before,
        load.failures.load(Ordering::SeqCst),
        started.elapsed()
    );
}

/// `etcdctl member list` rows: (id, status, name, peer URLs, client URLs, is learner).
fn member_rows(endpoints: &str) -> Vec<Vec<String>> {
    let out = etcdctl(endpoints, &["member", "list"], None);
    assert_eq!(out.code, Some(0), "member list: {out:?}");
    let mut rows: Vec<Vec<String>> = out
        .stdout
        .lines()
        .map(|l| l.split(", ").map(str::to_string).collect())
        .collect();
    rows.sort();
    rows
}

fn row(id: &str, status: &str, name: &str, peer: &str, client: &str, learner: bool) -> Vec<String> {
    [id, status, name, peer, client, &learner.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn member_add_promote_remove() {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut cluster = Cluster::start(Kind::Oxcd, 3, TIMING);
    let eps = cluster.endpoints();
    // A member publishes its name and client URLs through Raft once it runs; poll until the
    // list shows all three (the member answering may not have applied every publish yet).
    let mut want_founders: Vec<Vec<String>> = cluster
        .members
        .iter()
        .map(|m| {
            row(
                "",
                "started",
                &m.name,
                &m.peer_url(),
                &m.client_url(),
                false,
            )[1..]
                .to_vec()
        })
        .collect();
    want_founders.sort();
    let founders = procs::poll_for(
        "the founders in member list",
        Duration::from_secs(10),
        || {
            let rows = member_rows(&eps);
            let mut without_ids: Vec<Vec<String>> = rows.iter().map(|r| r[1..].to_vec()).collect();
            without_ids.sort();
            if without_ids == want_founders {
                Ok(rows)
            } else {
                Err(format!("{rows:?}"))
            }
        },
    );

    let (client_port, peer_port) = (free_port(), free_port());
    let peer = format!("http://127.0.0.1:{peer_port}");
    let client = format!("http://127.0.0.1:{client_port}");
    // etcd refuses a member change until every voter has been connected for a while
    // ("unhealthy cluster"); poll through that.
    let out = procs::poll_until("member add to be accepted", Duration::from_secs(30), || {
        let out = etcdctl(
            &eps,
            &[
                "member",
                "add",
                "m4",
                "--learner",
                &format!("--peer-urls={peer}"),
            ],
            None,
        );
        if out.code == Some(0) {
            return Some(out);
        }
        assert!(
            out.stderr.contains("etcdserver: unhealthy cluster"),
            "member add failed otherwise: {out:?}"
        );
        None
    });
    let first = out.stdout.lines().next().unwrap_or_default();
    // etcdctl pads IDs to 16 columns with spaces (`%16x`): split on runs of them.
    let words: Vec<&str> = first.split_whitespace().collect();
    assert!(
        words.len() == 6 && words[0] == "Member" && words[2..5] == ["added", "to", "cluster"],
        "member add printed {:?}",
        out.stdout
    );
    let (id, cluster_id) = (words[1].to_string(), words[5].to_string());
    let env_line = |name: &str| -> String {
        let prefix = format!("{name}=\"");
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix('"'))
            .unwrap_or_else(|| panic!("no {name} in {:?}", out.stdout))
            .to_string()
    };
    assert_eq!(env_line("ETCD_NAME"), "m4");
    assert_eq!(env_line("ETCD_INITIAL_ADVERTISE_PEER_URLS"), peer);
    assert_eq!(env_line("ETCD_INITIAL_CLUSTER_STATE"), "existing");
    let initial_cluster = env_line("ETCD_INITIAL_CLUSTER");
    let mut want_ic: Vec<String> = cluster
        .members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .chain([format!("m4={peer}")])
        .collect();
    let mut got_ic: Vec<String> = initial_cluster.split(',').map(str::to_string).collect();
    want_ic.sort();
    got_ic.sort();
    assert_eq!(got_ic, want_ic);

    // Added, not started: no name, no client URLs yet.
    let mut want = founders.clone();
    want.push(row(&id, "unstarted", "", &peer, "", true));
    want.sort();
    assert_eq!(member_rows(&eps), want);

    let m4 = cluster.start_joining("m4", client_port, peer_port, &initial_cluster);
    let mut want = founders.clone();
    want.push(row(&id, "started", "m4", &peer, &client, true));
    want.sort();
    procs::poll_for(
        "m4 to publish itself as a started learner",
        Duration::from_secs(30),
        || {
            assert!(
                cluster.try_wait(m4).is_none(),
                "m4 exited:\n{}",
                cluster.log_tail(m4)
            );
            let rows = member_rows(&eps);
            if rows == want {
                return Ok(());
            }
            Err(format!(
                "member list {rows:?}; m4's log:\n{}",
                cluster.log_tail(m4)
            ))
        },
    );

    // Promotion is refused until the learner has caught up; poll until it is accepted.
    let promoted = procs::poll_for("m4 to be promoted", Duration::from_secs(30), || {
        let out = etcdctl(&eps, &["member", "promote", &id], None);
        if out.code == Some(0) {
            return Ok(out.stdout);
        }
        assert!(
            out.stderr
                .contains("can only promote a learner member which is in sync with leader"),
            "member promote failed otherwise: {out:?}"
        );
        Err(format!("{out:?}; m4's log:\n{}", cluster.log_tail(m4)))
    });
    assert_eq!(
        promoted,
        format!("Member {id:>16} promoted in cluster {cluster_id:>16}\n")
    );
    let mut want = founders.clone();
    want.push(row(&id, "started", "m4", &peer, &client, false));
    want.sort();
    assert_eq!(member_rows(&eps), want);

    // The new voter serves linearizable reads and writes.
    cluster.wait_healthy(m4);
    let m4_ep = cluster.endpoint(m4);
    let out = etcdctl(&m4_ep, &["put", "via-m4", "yes"], None);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "OK\n"),
        "{out:?}"
    );
    let out = etcdctl(&eps, &["get", "via-m4", "--print-value-only"], None);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), "yes\n"),
        "{out:?}"
    );

    let out = etcdctl(&eps, &["member", "remove", &id], None);
    assert_eq!(out.code, Some(0), "member remove: {out:?}");
    assert_eq!(
        out.stdout,
        format!("Member {id:>16} removed from cluster {cluster_id:>16}\n")
    );
    assert_eq!(member_rows(&eps), founders);
    let out = etcdctl(&eps, &["endpoint", "health"], None);
    assert_eq!(
        out.code,
        Some(0),
        "the three founders stay healthy: {out:?}"
    );
    // As in etcd, a removed member stops by itself.
    procs::poll_until("the removed m4 to exit", Duration::from_secs(15), || {
        cluster.try_wait(m4)
    });
    eprintln!("member add/promote/remove took {:?}", started.elapsed());
}
