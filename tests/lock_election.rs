#![cfg(not(madsim))]
//! The Lock and Election services through a real client (the `etcd-client` crate), the same
//! steps against etcd 3.4.23 and oxcd (one member, then three with the calls spread over the
//! members): each run must hold the same assertions, and the runs' transcripts (keys with the
//! lease IDs named, errors with their gRPC code and message, revisions relative to the
//! run's first) must be equal.
//!
//! Waiting is shown with revisions, not time: a contender that had to wait answers with a
//! header at or after the revision that freed it, which an answer given at once cannot have.
//! Every wait is bounded with [`tokio::time::timeout`].

mod procs;

use etcd_client::{Client, Error, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};
use procs::{Cluster, Kind, Timing};
use std::collections::BTreeMap;
use std::time::Duration;

const STEP_TIMEOUT: Duration = Duration::from_secs(20);

async fn connect(endpoint: String) -> Client {
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(STEP_TIMEOUT);
    Client::connect([format!("http://{endpoint}")], Some(opts))
        .await
        .expect("connect")
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {STEP_TIMEOUT:?}"))
}

/// The run's transcript, with lease IDs and revisions named so two servers compare.
#[derive(Default)]
struct Transcript {
    lines: Vec<String>,
    leases: BTreeMap<i64, String>,
    base_revision: i64,
}

impl Transcript {
    fn lease(&mut self, id: i64) -> String {
        let n = self.leases.len() + 1;
        self.leases.entry(id).or_insert(format!("L{n}")).clone()
    }

    /// A key with its lease part (`name/<hex>`) named.
    fn key(&self, key: &[u8]) -> String {
        let k = String::from_utf8_lossy(key).into_owned();
        let Some((name, hex)) = k.rsplit_once('/') else {
            return k;
        };
        match i64::from_str_radix(hex, 16)
            .ok()
            .and_then(|id| self.leases.get(&id))
        {
            Some(l) => format!("{name}/<{l}>"),
            None => k,
        }
    }

    fn error<T: std::fmt::Debug>(&mut self, what: &str, r: Result<T, Error>) {
        let line = match r {
            Err(Error::GRpcStatus(s)) => format!("{what}: {:?} {}", s.code(), s.message()),
            other => panic!("{what}: expected an error status, got {other:?}"),
        };
        self.lines.push(line);
    }

    fn revision(&self, r: i64) -> i64 {
        r - self.base_revision
    }
}

async fn grant(c: &mut Client, t: &mut Transcript, ttl: i64) -> i64 {
    let id = within("grant", c.lease_grant(ttl, None))
        .await
        .unwrap()
        .id();
    t.lease(id);
    id
}

/// A watch of every key under `prefix` from the revision after the store's current one.
async fn watch_prefix(c: &mut Client, prefix: &str) -> etcd_client::WatchStream {
    let now = revision_of(c.get("base", None).await.unwrap().header());
    let opts = etcd_client::WatchOptions::new()
        .with_prefix()
        .with_start_revision(now + 1);
    within("watch", c.watch(prefix, Some(opts))).await.unwrap()
}

/// Waits for the next key written on `stream`.
async fn next_put(stream: &mut etcd_client::WatchStream) -> Vec<u8> {
    loop {
        let m = within("a watch event", stream.message())
            .await
            .unwrap()
            .expect("the watch goes on");
        let put = m
            .events()
            .iter()
            .find(|e| e.event_type() == etcd_client::EventType::Put);
        if let Some(e) = put {
            return e.kv().expect("a kv").key().to_vec();
        }
    }
}

fn revision_of(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.expect("a header").revision()
}

/// The steps, with `clients[i % n]` for the i-th call site so that calls spread over members.
async fn run(clients: &mut [Client]) -> Vec<String> {
    let n = clients.len();
    let mut t = Transcript::default();
    let at = |i: usize| i % n;
    let c0 = &mut clients[0].clone();
    t.base_revision = revision_of(c0.put("base", "", None).await.unwrap().header());

    // A lock under a lease: the key is `name/<lease in hex>`.
    let l1 = grant(c0, &mut t, 30).await;
    let mut c = clients[at(1)].clone();
    let held = within(
        "lock",
        c.lock("mu", Some(LockOptions::new().with_lease(l1))),
    )
    .await
    .unwrap();
    let first_key = held.key().to_vec();
    t.lines.push(format!("lock mu -> {}", t.key(&first_key)));

    // A second contender waits until the first key is deleted.
    let l2 = grant(c0, &mut t, 30).await;
    let mut writes = watch_prefix(c0, "mu/").await;
    let mut c = clients[at(2)].clone();
    let waiter =
        tokio::spawn(async move { c.lock("mu", Some(LockOptions::new().with_lease(l2))).await });
    // The waiter's key is written, then the first is unlocked.
    let written = next_put(&mut writes).await;
    t.lines.push(format!("waiting: {}", t.key(&written)));
    let mut c = clients[at(3)].clone();
    let unlocked = within("unlock", c.unlock(first_key.clone())).await.unwrap();
    let unlocked_at = revision_of(unlocked.header());
    let second = within("the waiter", waiter).await.unwrap().unwrap();
    assert!(
        revision_of(second.header()) >= unlocked_at,
        "the second lock's answer ({:?}) predates the unlock at {unlocked_at}",
        second.header()
    );
    t.lines.push(format!(
        "lock mu (waited) -> {} at unlock+{}",
        t.key(second.key()),
        revision_of(second.header()) - unlocked_at
    ));
    within("unlock", c0.unlock(second.key().to_vec()))
        .await
        .unwrap();

    // A lease that lapses loses the lock.
    let short = grant(c0, &mut t, 2).await;
    let mut c = clients[at(4)].clone();
    let short_key = within(
        "lock",
        c.lock("lapse", Some(LockOptions::new().with_lease(short))),
    )
    .await
    .unwrap()
    .key()
    .to_vec();
    let l3 = grant(c0, &mut t, 30).await;
    let mut c = clients[at(5)].clone();
    let freed = within(
        "a lock freed by a lapsed lease",
        c.lock("lapse", Some(LockOptions::new().with_lease(l3))),
    )
    .await
    .unwrap();
    let gone = c0.get(short_key.clone(), None).await.unwrap();
    assert_eq!(gone.count(), 0, "the lapsed lease's key is gone");
    t.lines.push(format!(
        "lock lapse -> {} after {} lapsed",
        t.key(freed.key()),
        t.key(&short_key)
    ));

    // Unlocking a key nobody holds is fine; a lock on a lease that does not exist is not.
    within("unlock", c0.unlock("nobody/1")).await.unwrap();
    t.lines.push("unlock nobody/1 -> ok".into());
    let r = within(
        "lock",
        c0.lock("mu", Some(LockOptions::new().with_lease(0x1234))),
    )
    .await;
    t.error("lock on a missing lease", r);

    // Without a lease, the server grants a session lease of 60 s for the lock.
    let r = within("lock", c0.lock("free", None)).await.unwrap();
    let k = String::from_utf8_lossy(r.key()).into_owned();
    let hex = k.strip_prefix("free/").expect("free/<lease>");
    let session = i64::from_str_radix(hex, 16).expect("a lease in hex");
    let ttl = c0.lease_time_to_live(session, None).await.unwrap();
    t.lines.push(format!(
        "lock free (no lease) -> session lease of {} s",
        ttl.granted_ttl()
    ));
    c0.lease_revoke(session).await.unwrap();

    // Elections.
    let r = within("leader", c0.leader("e")).await;
    t.error("leader of an election nobody ran", r);
    let e1 = grant(c0, &mut t, 30).await;
    let mut c = clients[at(6)].clone();
    let won = within("campaign", c.campaign("e", "v1", e1)).await.unwrap();
    let leader1: LeaderKey = won.leader().expect("a leader key").clone();
    let lease = t.lease(leader1.lease());
    t.lines.push(format!(
        "campaign e v1 -> {} rev +{} lease {lease}",
        t.key(leader1.key()),
        t.revision(leader1.rev()),
    ));
    let mut c = clients[at(7)].clone();
    let mut observe = within("observe", c.observe("e")).await.unwrap();
    let mut next = async |t: &Transcript, what: &str| {
        let m = within(what, observe.message())
            .await
            .unwrap()
            .expect("the stream goes on");
        let kv = m.kv().expect("a kv");
        format!(
            "observe: {} = {}",
            t.key(kv.key()),
            String::from_utf8_lossy(kv.value())
        )
    };
    let line = next(&t, "the leader now").await;
    t.lines.push(line);
    let mut c = clients[at(8)].clone();
    within(
        "proclaim",
        c.proclaim(
            "v2",
            Some(ProclaimOptions::new().with_leader(leader1.clone())),
        ),
    )
    .await
    .unwrap();
    let line = next(&t, "the proclaimed value").await;
    t.lines.push(line);
    let r = within("leader", c0.leader("e")).await.unwrap();
    let kv = r.kv().expect("a kv");
    t.lines.push(format!(
        "leader e -> {} = {}",
        t.key(kv.key()),
        String::from_utf8_lossy(kv.value())
    ));

    // A second candidate waits for the first to resign.
    let e2 = grant(c0, &mut t, 30).await;
    let mut writes = watch_prefix(c0, "e/").await;
    let mut c = clients[at(9)].clone();
    let candidate = tokio::spawn(async move { c.campaign("e", "v3", e2).await });
    let written = next_put(&mut writes).await;
    t.lines.push(format!("candidate: {}", t.key(&written)));
    let resigned = within(
        "resign",
        c0.resign(Some(ResignOptions::new().with_leader(leader1.clone()))),
    )
    .await
    .unwrap();
    let resigned_at = revision_of(resigned.header());
    let won2 = within("the second candidate", candidate)
        .await
        .unwrap()
        .unwrap();
    let leader2 = won2.leader().expect("a leader key").clone();
    let lease = t.lease(leader2.lease());
    t.lines.push(format!(
        "campaign e v3 (waited) -> {} lease {lease}",
        t.key(leader2.key()),
    ));
    assert!(
        leader2.rev() < resigned_at,
        "the candidate's key was written before the resign"
    );
    let line = next(&t, "the next leader").await;
    t.lines.push(line);

    // The resigned leader can no longer proclaim; a proclaim without a leader is refused.
    let r = within(
        "proclaim",
        c0.proclaim("stale", Some(ProclaimOptions::new().with_leader(leader1))),
    )
    .await;
    t.error("proclaim by a resigned leader", r);
    let r = within("proclaim", c0.proclaim("nobody", None)).await;
    t.error("proclaim without a leader key", r);
    t.lines
}

async fn transcript(kind: Kind, members: usize) -> Vec<String> {
    let cluster = Cluster::start(kind, members, Timing::default());
    let mut clients = Vec::new();
    for i in cluster.running().collect::<Vec<_>>() {
        clients.push(connect(cluster.endpoint(i)).await);
    }
    run(&mut clients).await
}

fn compare(etcd: &[String], oxcd: &[String]) {
    let differ = procs::differences(etcd, oxcd, "etcd", "oxcd");
    assert!(
        differ.is_empty(),
        "oxcd differs from etcd:\n{}\n\netcd's transcript:\n{}",
        differ.join("\n"),
        etcd.join("\n")
    );
}

#[tokio::test]
async fn lock_and_election_behave_as_etcds_on_one_member() {
    let etcd = transcript(Kind::Etcd, 1).await;
    let oxcd = transcript(Kind::Oxcd, 1).await;

    compare(&etcd, &oxcd);
}

#[tokio::test]
async fn lock_and_election_behave_as_etcds_across_three_members() {
    let etcd = transcript(Kind::Etcd, 3).await;
    let oxcd = transcript(Kind::Oxcd, 3).await;
    compare(&etcd, &oxcd);
}
