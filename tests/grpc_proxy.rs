#![cfg(not(madsim))]
//! `oxcd grpc-proxy start`, etcd's gRPC proxy:
//! - etcdctl through oxcd's proxy and through etcd 3.4.23's (`etcd grpc-proxy start`), each in
//!   front of its own member, on the same steps: KV, the read cache and its invalidation,
//!   transactions, namespaces (two tenants who cannot see each other's keys, watches
//!   included), leases, locks, auth, and registration under `--resolver-prefix` with
//!   `member list` listing the proxies. The transcripts must be equal, and the namespace steps
//!   are also checked on their own.
//! - 10,000 watchers on 100 keys through one oxcd proxy hold 100 watchers on the member (read
//!   off the member's own `/metrics`); every watcher sees every event of its key in order; the
//!   proxy is killed and started again in the middle, and the watchers, resuming from the last
//!   revision they saw (as etcd's clients do), miss nothing and see nothing twice; then the
//!   member under the proxy freezes while the others take writes, and dies: the proxy moves
//!   to another member and makes its watchers again where they had got to.
//! - Lease keep-alives from many clients reach the member once per third of the TTL, and a
//!   lease revoked through the proxy is no longer kept alive by it.

mod procs;

use oxcd::pb::etcdserverpb::{
    self as pb, kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient,
    watch_request::RequestUnion,
};
use procs::{Cluster, Kind, READY_TIMEOUT, Timing, etcdctl, etcdctl_lines, free_port, poll_until};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A proxy process, stopped by PID when dropped.
struct Proxy {
    kind: Kind,
    args: Vec<String>,
    listen: String,
    child: Option<Child>,
}

impl Proxy {
    /// Starts `kind`'s grpc-proxy in front of `endpoints`, listening on a free port, with
    /// `extra` flags; returns once it accepts connections.
    fn start(kind: Kind, endpoints: &str, extra: &[&str]) -> Proxy {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "grpc-proxy".to_string(),
            "start".to_string(),
            format!("--endpoints={endpoints}"),
            format!("--listen-addr={listen}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut p = Proxy {
            kind,
            args,
            listen,
            child: None,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let mut c = Command::new(self.kind.bin());
        c.args(&self.args)
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        procs::die_with_parent(&mut c);
        self.child = Some(c.spawn().expect("the proxy starts"));
        let listen = self.listen.clone();
        poll_until("the proxy to listen", READY_TIMEOUT, || {
            std::net::TcpStream::connect(&listen).ok()
        });
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Lease IDs and the revision-dependent parts are the same in both runs but for IDs, which
/// each server draws its own way: every run of 12 or more hex digits becomes `<id>`.
fn mask(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 12 {
            out.push_str("<id>");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// etcdctl's stderr without grpc-go's JSON log lines.
fn errors_only(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with('{'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs etcdctl with `args` at `ep` and notes what it printed in `t` (`who` names the
/// endpoint).
fn step(t: &mut Vec<String>, who: &str, ep: &str, args: &[&str]) -> procs::Output {
    step_with(t, who, ep, args, None)
}

fn step_with(
    t: &mut Vec<String>,
    who: &str,
    ep: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> procs::Output {
    let out = etcdctl(ep, args, stdin);
    t.push(format!(
        "{who} {} -> {:?}\n{}{}",
        mask(&format!("{args:?}")),
        out.code,
        mask(&out.stdout),
        mask(&errors_only(&out.stderr))
    ));
    out
}

/// The steps, through `kind`'s proxies in front of `kind`'s member.
fn transcript(kind: Kind) -> Vec<String> {
    let cluster = Cluster::start(kind, 1, Timing::default());
    let member = cluster.endpoint(0);
    let plain = Proxy::start(kind, &member, &[]);
    let a = Proxy::start(kind, &member, &["--namespace=a/"]);
    let b = Proxy::start(kind, &member, &["--namespace=b/"]);
    let (p, a_ep, b_ep) = (plain.listen.clone(), a.listen.clone(), b.listen.clone());
    let mut t: Vec<String> = Vec::new();
    // KV and the read cache: a serializable read after a write through the proxy sees it.
    step(&mut t, "P", &p, &["put", "foo", "bar"]);
    step(&mut t, "P", &p, &["get", "foo"]);
    step(&mut t, "P", &p, &["get", "foo", "--consistency=s"]);
    step(&mut t, "P", &p, &["put", "foo", "baz"]);
    step(&mut t, "P", &p, &["get", "foo", "--consistency=s"]);
    step(&mut t, "M", &member, &["put", "foo", "direct"]);
    step(&mut t, "P", &p, &["get", "foo"]);
    step(
        &mut t,
        "P",
        &p,
        &["get", "foo", "-w", "json", "--consistency=s", "--rev=3"],
    );
    step(&mut t, "P", &p, &["put", "foo", "again", "--prev-kv"]);
    step(&mut t, "P", &p, &["del", "foo", "--prev-kv"]);
    step(&mut t, "P", &p, &["get", "", "--from-key", "--keys-only"]);
    // Two tenants.
    step(&mut t, "A", &a_ep, &["put", "k1", "a1"]);
    step(&mut t, "B", &b_ep, &["put", "k1", "b1"]);
    step(&mut t, "A", &a_ep, &["put", "k2", "a2"]);
    let a_all = step(&mut t, "A", &a_ep, &["get", "", "--from-key"]);
    assert_eq!(
        a_all.stdout, "k1\na1\nk2\na2\n",
        "tenant A sees its own keys only"
    );
    let b_all = step(&mut t, "B", &b_ep, &["get", "", "--from-key"]);
    assert_eq!(b_all.stdout, "k1\nb1\n", "tenant B sees its own keys only");
    step(
        &mut t,
        "A",
        &a_ep,
        &["get", "k", "--prefix", "--count-only", "-w", "fields"],
    );
    step(&mut t, "M", &member, &["get", "", "--from-key"]);
    let txn = b"value(\"k1\") = \"a1\"\n\nput k3 a3\nget k1\n\nput k3 no\n\n";
    step_with(&mut t, "A", &a_ep, &["txn"], Some(txn));
    step_with(&mut t, "B", &b_ep, &["txn"], Some(txn));
    // Each tenant's watch from the first revision sees its own events, unprefixed: all of
    // them (A: k1, k2 and its txn's k3; B: k1 and its txn's k3), three lines each, and no
    // more can come.
    let w = etcdctl_lines(
        &a_ep,
        &["watch", "", "--prefix", "--rev=1", "--prev-kv"],
        9,
        READY_TIMEOUT,
    );
    assert!(
        !w.stdout.contains("b1") && !w.stdout.contains("b/"),
        "A's watch: {w:?}"
    );
    t.push(format!("A watch\n{}", w.stdout));
    let w = etcdctl_lines(
        &b_ep,
        &["watch", "", "--prefix", "--rev=1"],
        6,
        READY_TIMEOUT,
    );
    assert!(
        !w.stdout.contains("a1") && !w.stdout.contains("a/"),
        "B's watch: {w:?}"
    );
    t.push(format!("B watch\n{}", w.stdout));
    step(&mut t, "A", &a_ep, &["del", "", "--from-key"]);
    step(
        &mut t,
        "M",
        &member,
        &["get", "", "--from-key", "--keys-only"],
    );
    // Leases: granted and kept alive through the proxy; a lease's keys are shown in the
    // namespace of the proxy asked.
    let granted = step(&mut t, "P", &p, &["lease", "grant", "100"]);
    let lease = granted
        .stdout
        .split_whitespace()
        .nth(1)
        .expect("a lease ID")
        .to_string();
    step(
        &mut t,
        "A",
        &a_ep,
        &["put", "lk", "v", &format!("--lease={lease}")],
    );
    step(&mut t, "P", &p, &["lease", "timetolive", &lease, "--keys"]);
    step(
        &mut t,
        "A",
        &a_ep,
        &["lease", "timetolive", &lease, "--keys"],
    );
    step(&mut t, "P", &p, &["lease", "keep-alive", "--once", &lease]);
    step(&mut t, "P", &p, &["lease", "revoke", &lease]);
    step(&mut t, "A", &a_ep, &["get", "lk"]);
    step(&mut t, "P", &p, &["lease", "keep-alive", "--once", &lease]);
    // A lock through a tenant's proxy.
    step(&mut t, "A", &a_ep, &["lock", "mylock", "echo", "held"]);
    step(&mut t, "P", &p, &["member", "list"]);
    // Auth through the proxy: the token goes through with each request.
    step(&mut t, "P", &p, &["user", "add", "root:rootpw"]);
    step(&mut t, "P", &p, &["role", "add", "r"]);
    step(
        &mut t,
        "P",
        &p,
        &["role", "grant-permission", "r", "read", "k1"],
    );
    step(&mut t, "P", &p, &["user", "add", "u:upw"]);
    step(&mut t, "P", &p, &["user", "grant-role", "u", "r"]);
    step(&mut t, "P", &p, &["auth", "enable"]);
    step(&mut t, "P", &p, &["get", "t"]);
    step(
        &mut t,
        "P",
        &p,
        &["get", "", "--from-key", "--user=root:rootpw"],
    );
    step(&mut t, "B", &b_ep, &["get", "k1", "--user=u:upw"]);
    step(
        &mut t,
        "B",
        &b_ep,
        &["get", "k1", "--consistency=s", "--user=u:upw"],
    );
    step(&mut t, "P", &p, &["get", "k1", "--user=u:upw"]);
    step(
        &mut t,
        "P",
        &p,
        &["get", "k1", "--consistency=s", "--user=u:upw"],
    );
    step(&mut t, "P", &p, &["put", "k1", "x", "--user=u:upw"]);
    // A watch the user may not make is refused, though another user's may share its range.
    step(&mut t, "P", &p, &["watch", "k", "--prefix", "--user=u:upw"]);
    step(&mut t, "P", &p, &["auth", "disable", "--user=root:rootpw"]);
    // Registration: two proxies under one prefix; `member list` through either lists both.
    let r1_port = free_port();
    let r2_port = free_port();
    let r1_addr = format!("127.0.0.1:{r1_port}");
    let r2_addr = format!("127.0.0.1:{r2_port}");
    let _r1 = Proxy::start(
        kind,
        &member,
        &[
            "--resolver-prefix=reg",
            "--resolver-ttl=5",
            &format!("--advertise-client-url={r1_addr}"),
        ],
    );
    let _r2 = Proxy::start(
        kind,
        &member,
        &[
            "--resolver-prefix=reg",
            "--resolver-ttl=5",
            &format!("--advertise-client-url={r2_addr}"),
        ],
    );
    let listed = poll_until("both proxies to register", READY_TIMEOUT, || {
        let out = etcdctl(&_r1.listen, &["member", "list"], None);
        (out.stdout.lines().count() == 2).then_some(out)
    });
    let mut lines: Vec<String> = listed
        .stdout
        .lines()
        .map(|l| l.replace(&r1_addr, "<r1>").replace(&r2_addr, "<r2>"))
        .collect();
    lines.sort();
    t.push(format!("R1 member list (sorted)\n{}", lines.join("\n")));
    let keys = etcdctl(&member, &["get", "reg/", "--prefix", "--keys-only"], None);
    let mut keys: Vec<String> = keys
        .stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.replace(&r1_addr, "<r1>").replace(&r2_addr, "<r2>"))
        .collect();
    keys.sort();
    t.push(format!("M registered keys\n{}", keys.join("\n")));
    let value = etcdctl(
        &member,
        &["get", &format!("reg/{r1_addr}"), "--print-value-only"],
        None,
    );
    t.push(format!(
        "M registration record\n{}",
        value.stdout.replace(&r1_addr, "<r1>")
    ));
    t
}

#[test]
fn etcdctl_through_oxcds_grpc_proxy_matches_etcds() {
    let want = transcript(Kind::Etcd);
    let got = transcript(Kind::Oxcd);
    procs::assert_same_transcripts(&want, &got, "etcd 3.4.23 grpc-proxy", "oxcd grpc-proxy");
}

/// A value of `name` in a Prometheus text page.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET /metrics` at `addr`.
fn metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect for /metrics");
    conn.set_read_timeout(Some(READY_TIMEOUT))
        .expect("a timeout");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
}

async fn channel(addr: &str) -> Option<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()
}

const KEYS: usize = 100;
const STREAMS: usize = 100;
/// Puts on every key in each phase: before the proxy's restart, while it is down, after it,
/// and while the proxy's member is frozen.
const ROUNDS: usize = 3;

fn key(j: usize) -> bytes::Bytes {
    bytes::Bytes::from(format!("key-{j:03}"))
}

/// What the watchers saw: `[stream][key]` → revisions, in the order they came; and how many
/// watchers were created (counted once per watcher, not per re-creation).
struct Seen {
    revisions: Vec<Vec<Vec<i64>>>,
    created: usize,
}

/// One client stream of [`KEYS`] watchers (watch id `j + 1` on key `j`), through the proxy at
/// `addr`: when the stream breaks it dials again and re-creates each watcher from the
/// revision after the last it saw, as etcd's clients do.
async fn watch_stream(addr: String, s: usize, seen: Arc<Mutex<Seen>>) {
    // The revision each watcher resumes from; 0 until its creation tells it.
    let mut from = [0i64; KEYS];
    let mut first = true;
    loop {
        let Some(ch) = channel(&addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for (j, start) in from.iter().enumerate() {
            let create = pb::WatchCreateRequest {
                key: key(j),
                start_revision: *start,
                watch_id: j as i64 + 1,
                ..Default::default()
            };
            let _ = tx.send(pb::WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            });
        }
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
        let Ok(answer) = WatchClient::new(ch).watch(stream).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut responses = answer.into_inner();
        while let Ok(Some(r)) = responses.message().await {
            assert!(
                !r.canceled,
                "watcher {} of stream {s} canceled: {r:?}",
                r.watch_id
            );
            let j = (r.watch_id - 1) as usize;
            assert!(j < KEYS, "an unknown watch id: {r:?}");
            if r.created {
                if from[j] == 0 {
                    from[j] = r.header.expect("a header").revision + 1;
                }
                if first {
                    seen.lock().unwrap().created += 1;
                }
                continue;
            }
            let mut seen = seen.lock().unwrap();
            for e in r.events {
                let kv = e.kv.expect("an event's kv");
                assert_eq!(
                    kv.key,
                    key(j),
                    "stream {s} watcher {j} got another key's event"
                );
                seen.revisions[s][j].push(kv.mod_revision);
                from[j] = kv.mod_revision + 1;
            }
        }
        first = false;
        drop(tx);
    }
}

/// Puts every key once, straight to the member; returns the revisions, by key.
async fn put_round(kv: &mut KvClient<tonic::transport::Channel>, round: usize) -> Vec<i64> {
    let mut revs = Vec::with_capacity(KEYS);
    for j in 0..KEYS {
        let put = pb::PutRequest {
            key: key(j),
            value: bytes::Bytes::from(format!("v{round}")),
            ..Default::default()
        };
        revs.push(
            kv.put(put)
                .await
                .expect("a put")
                .into_inner()
                .header
                .expect("a header")
                .revision,
        );
    }
    revs
}

fn wait_events(seen: &Arc<Mutex<Seen>>, per_watcher: usize, what: &str) {
    poll_until(what, Duration::from_secs(120), || {
        let s = seen.lock().unwrap();
        s.revisions
            .iter()
            .all(|keys| keys.iter().all(|r| r.len() >= per_watcher))
            .then_some(())
    });
}

#[test]
fn ten_thousand_watchers_on_a_hundred_keys_coalesce_and_survive_a_proxy_restart() {
    let mut cluster = Cluster::start(Kind::Oxcd, 3, Timing::default());
    let member = cluster.endpoint(0);
    // The member first in the list is the one the proxy uses.
    let mut proxy = Proxy::start(Kind::Oxcd, &cluster.endpoints(), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let seen = Arc::new(Mutex::new(Seen {
        revisions: vec![vec![Vec::new(); KEYS]; STREAMS],
        created: 0,
    }));
    for s in 0..STREAMS {
        runtime.spawn(watch_stream(proxy.listen.clone(), s, seen.clone()));
    }
    poll_until(
        "10,000 watchers to be created",
        Duration::from_secs(120),
        || (seen.lock().unwrap().created == KEYS * STREAMS).then_some(()),
    );
    let page = metrics(&member);
    let before =
        metric(&page, "etcd_debugging_mvcc_watcher_total").expect("the member's watcher gauge");
    let proxy_page = metrics(&proxy.listen);
    assert_eq!(
        metric(&proxy_page, "oxcd_grpc_proxy_client_watchers"),
        Some((KEYS * STREAMS) as f64)
    );
    assert_eq!(
        before, KEYS as f64,
        "10,000 watchers on {KEYS} keys must cost the member one watcher per key"
    );
    let mut expected: Vec<Vec<i64>> = vec![Vec::new(); KEYS];
    let mut record = |revs: Vec<i64>| {
        for (j, r) in revs.into_iter().enumerate() {
            expected[j].push(r);
        }
    };
    runtime.block_on(async {
        let mut kv = KvClient::new(channel(&member).await.expect("the member"));
        for round in 0..ROUNDS {
            record(put_round(&mut kv, round).await);
        }
    });
    wait_events(&seen, ROUNDS, "every watcher to see the first rounds");
    // The proxy dies; writes go on without it; it comes back on the same port.
    proxy.kill();
    runtime.block_on(async {
        let mut kv = KvClient::new(channel(&member).await.expect("the member"));
        for round in ROUNDS..2 * ROUNDS {
            record(put_round(&mut kv, round).await);
        }
    });
    proxy.spawn();
    wait_events(
        &seen,
        2 * ROUNDS,
        "every watcher to resume and see the writes made while the proxy was down",
    );
    runtime.block_on(async {
        let mut kv = KvClient::new(channel(&member).await.expect("the member"));
        for round in 2 * ROUNDS..3 * ROUNDS {
            record(put_round(&mut kv, round).await);
        }
    });
    wait_events(
        &seen,
        3 * ROUNDS,
        "every watcher to see the writes after the restart",
    );
    // The member under the proxy freezes (SIGSTOP: its connection stays open, so the proxy
    // cannot know), the others write on, then it dies: the proxy moves to another member and
    // creates its watchers again from where each had got to, so its clients miss none of the
    // writes made while the member was frozen.
    let frozen = cluster.members[0].pid().expect("running");
    // SAFETY: kill(2) only sends a signal; the PID is our own unreaped child's.
    assert_eq!(
        unsafe { libc::kill(frozen as libc::pid_t, libc::SIGSTOP) },
        0
    );
    cluster.wait_healthy(1);
    let other = cluster.endpoint(1);
    runtime.block_on(async {
        let mut kv = KvClient::new(channel(&other).await.expect("another member"));
        for round in 3 * ROUNDS..4 * ROUNDS {
            record(put_round(&mut kv, round).await);
        }
    });
    cluster.kill(0);
    wait_events(
        &seen,
        4 * ROUNDS,
        "every watcher to see the writes made while its member was frozen",
    );
    // Watchers that resumed from one revision share again once level (after the first event
    // they all deliver).
    let after = poll_until(
        "the resumed watchers to share again",
        Duration::from_secs(30),
        || {
            let n =
                metric(&metrics(&other), "etcd_debugging_mvcc_watcher_total").expect("the gauge");
            (n == KEYS as f64).then_some(n)
        },
    );
    let seen = seen.lock().unwrap();
    let mut delivered = 0;
    for (s, keys) in seen.revisions.iter().enumerate() {
        for (j, revs) in keys.iter().enumerate() {
            assert_eq!(
                revs, &expected[j],
                "stream {s}, key {j}: every event once, in order"
            );
            delivered += revs.len();
        }
    }
    println!(
        "grpc-proxy watch coalescing: {} client watchers on {KEYS} keys held {before} watchers on \
         the member ({after} on another member after the proxy's restart and its member's death); {delivered} events delivered, each \
         watcher's {} in order across the proxy's restart and its member's death",
        KEYS * STREAMS,
        4 * ROUNDS
    );
    runtime.shutdown_background();
}

#[test]
fn keep_alives_are_coalesced_and_a_revoked_lease_is_not_kept() {
    let cluster = Cluster::start(Kind::Oxcd, 1, Timing::default());
    let proxy = Proxy::start(Kind::Oxcd, &cluster.endpoint(0), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    const CLIENTS: usize = 50;
    const EACH: usize = 10;
    const TTL: i64 = 30;
    runtime.block_on(async {
        let ch = channel(&proxy.listen).await.expect("the proxy");
        let mut lease = LeaseClient::new(ch.clone());
        let id = lease
            .lease_grant(pb::LeaseGrantRequest { ttl: TTL, id: 0 })
            .await
            .expect("a grant")
            .into_inner()
            .id;
        let started = Instant::now();
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let ch = ch.clone();
            clients.push(tokio::spawn(async move {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let mut answers = LeaseClient::new(ch)
                    .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                    .expect("a keep-alive stream")
                    .into_inner();
                let mut ttls = Vec::new();
                for _ in 0..EACH {
                    tx.send(pb::LeaseKeepAliveRequest { id })
                        .await
                        .expect("send");
                    let a = answers
                        .message()
                        .await
                        .expect("an answer")
                        .expect("not ended");
                    ttls.push(a.ttl);
                }
                ttls
            }));
        }
        let mut answered = 0;
        for c in clients {
            for ttl in c.await.expect("a client") {
                // A cached answer is less than the refresh's TTL by the time since it was sent.
                assert!(ttl > 0 && ttl <= TTL, "ttl {ttl}");
                answered += 1;
            }
        }
        let elapsed = started.elapsed();
        let page = metrics(&proxy.listen);
        let upstream = metric(&page, "oxcd_grpc_proxy_upstream_keepalives_total").expect("a count");
        let clients = metric(&page, "oxcd_grpc_proxy_client_keepalives_total").expect("a count");
        assert_eq!(clients, (CLIENTS * EACH) as f64);
        // One refresh per third of the TTL at most.
        let bound = 1 + (elapsed.as_secs_f64() / (TTL as f64 / 3.0)).ceil() as u64;
        assert!(
            upstream as u64 <= bound,
            "{upstream} keep-alives reached the member in {elapsed:?}"
        );
        println!(
            "grpc-proxy keep-alive coalescing: {answered} client keep-alives of one lease, \
             {upstream} sent to the member in {elapsed:?}"
        );
        // Revoked through the proxy: the next keep-alive is the member's answer (not found).
        lease
            .lease_revoke(pb::LeaseRevokeRequest { id })
            .await
            .expect("a revoke");
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut answers = lease
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("a stream")
            .into_inner();
        tx.send(pb::LeaseKeepAliveRequest { id })
            .await
            .expect("send");
        let a = answers
            .message()
            .await
            .expect("an answer")
            .expect("not ended");
        assert_eq!(a.ttl, 0, "a revoked lease is not kept alive from the cache");
    });
}
