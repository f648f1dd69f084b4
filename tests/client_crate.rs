#![cfg(not(madsim))]
//! A real Rust etcd client (the `etcd-client` crate, over tonic) against oxcd processes: one
//! member and three members. KV with transactions, watches (create, events, history, cancel),
//! leases (grant, keep-alive, time-to-live, revoke, expiry deleting a key), the member list,
//! maintenance status and hashes, auth (users, roles, a prefix permission, tokens through every
//! member, a revoke), and error cases with the gRPC code and message etcd uses.
//!
//! Every wait is bounded: a stream message is awaited with [`tokio::time::timeout`], and a
//! condition (a lease expiring, a follower catching up) is polled until a deadline.

mod procs;

use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, Error, EventType, GetOptions,
    LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
    WatchStream,
};
use procs::{Cluster, Kind, Timing};
use std::time::{Duration, Instant};

/// Longest wait for a single watch or keep-alive message.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(endpoints: &[String]) -> Client {
    let urls: Vec<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    Client::connect(urls, Some(opts))
        .await
        .expect("connect to oxcd")
}

async fn connect_all(c: &Cluster) -> Client {
    let eps: Vec<String> = c.running().map(|i| c.endpoint(i)).collect();
    connect(&eps).await
}

async fn next_message(w: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(MESSAGE_TIMEOUT, w.message())
        .await
        .expect("a watch message within the timeout")
        .expect("watch stream error")
        .expect("watch stream ended")
}

/// Puts `key` = `value` and returns the revision it was written at.
async fn put_rev(c: &mut Client, key: &str, value: &str) -> i64 {
    c.put(key, value, None)
        .await
        .unwrap()
        .header()
        .expect("a header")
        .revision()
}

/// The gRPC status of a failed call; panics on success or on a non-gRPC error.
fn status<T: std::fmt::Debug>(r: Result<T, Error>) -> tonic::Status {
    match r {
        Err(Error::GRpcStatus(s)) => s,
        other => panic!("expected a gRPC error status, got {other:?}"),
    }
}

fn assert_status(s: &tonic::Status, code: tonic::Code, message: &str) {
    assert_eq!(s.code(), code, "code of {s:?}");
    assert!(
        s.message().contains(message),
        "message of {s:?} should contain {message:?}"
    );
}

async fn kv(c: &mut Client) {
    let put = c.put("kv/a", "1", None).await.unwrap();
    let rev_a = put.header().unwrap().revision();
    let got = c.get("kv/a", None).await.unwrap();
    assert_eq!(got.count(), 1);
    let kv = &got.kvs()[0];
    assert_eq!((kv.key(), kv.value()), (&b"kv/a"[..], &b"1"[..]));
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (rev_a, rev_a, 1)
    );

    let put = c
        .put("kv/a", "2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    let prev = put.prev_key().expect("prev_kv");
    assert_eq!(prev.value(), b"1");
    assert_eq!(prev.mod_revision(), rev_a);
    let rev_a2 = put.header().unwrap().revision();
    assert_eq!(rev_a2, rev_a + 1);
    c.put("kv/b", "3", None).await.unwrap();
    c.put("kv/c", "4", None).await.unwrap();

    // A past revision still reads the old value.
    let old = c
        .get("kv/a", Some(GetOptions::new().with_revision(rev_a)))
        .await
        .unwrap();
    assert_eq!(old.kvs()[0].value(), b"1");

    let all = c
        .get("kv/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .unwrap();
    assert_eq!(all.count(), 3);
    assert!(all.more());
    let keys: Vec<&[u8]> = all.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![&b"kv/a"[..], b"kv/b"]);

    // A transaction whose compares hold takes the success branch.
    let txn = Txn::new()
        .when([
            Compare::value("kv/a", CompareOp::Equal, "2"),
            Compare::version("kv/a", CompareOp::Equal, 2),
            Compare::mod_revision("kv/a", CompareOp::Equal, rev_a2),
            Compare::create_revision("kv/zzz", CompareOp::Equal, 0),
        ])
        .and_then([TxnOp::put("kv/t", "yes", None), TxnOp::get("kv/a", None)])
        .or_else([TxnOp::put("kv/t", "no", None)]);
    let r = c.txn(txn).await.unwrap();
    assert!(r.succeeded());
    let ops = r.op_responses();
    assert_eq!(ops.len(), 2);
    assert!(matches!(ops[0], TxnOpResponse::Put(_)));
    match &ops[1] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"2"),
        other => panic!("expected a range response, got {other:?}"),
    }
    assert_eq!(c.get("kv/t", None).await.unwrap().kvs()[0].value(), b"yes");

    // One failing compare takes the failure branch, and only it.
    let txn = Txn::new()
        .when([
            Compare::value("kv/a", CompareOp::Equal, "2"),
            Compare::version("kv/b", CompareOp::Greater, 5),
        ])
        .and_then([TxnOp::put("kv/t", "again", None)])
        .or_else([
            TxnOp::delete("kv/c", Some(DeleteOptions::new().with_prev_key())),
            TxnOp::put("kv/f", "failure", None),
        ]);
    let r = c.txn(txn).await.unwrap();
    assert!(!r.succeeded());
    match &r.op_responses()[0] {
        TxnOpResponse::Delete(d) => {
            assert_eq!(d.deleted(), 1);
            assert_eq!(d.prev_kvs()[0].value(), b"4");
        }
        other => panic!("expected a delete response, got {other:?}"),
    }
    assert_eq!(c.get("kv/t", None).await.unwrap().kvs()[0].value(), b"yes");
    assert_eq!(c.get("kv/c", None).await.unwrap().count(), 0);
    assert_eq!(
        c.get("kv/f", None).await.unwrap().kvs()[0].value(),
        b"failure"
    );

    let del = c
        .delete(
            "kv/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(del.deleted(), 4); // kv/a, kv/b, kv/f, kv/t
    assert_eq!(del.prev_kvs().len(), 4);
    let left = c
        .get(
            "kv/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(left.count(), 0);
}

async fn watch(c: &mut Client) {
    let mut w = c
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    let created = next_message(&mut w).await;
    assert!(created.created());
    let id = created.watch_id();

    let r1 = put_rev(c, "w/1", "a").await;
    let r2 = put_rev(c, "w/1", "b").await;
    let r3 = c
        .delete("w/1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.put("other", "x", None).await.unwrap();

    let mut events = Vec::new();
    while events.len() < 3 {
        let m = next_message(&mut w).await;
        assert_eq!(m.watch_id(), id);
        assert!(!m.canceled());
        for e in m.events() {
            let kv = e.kv().unwrap();
            events.push((
                e.event_type(),
                kv.value().to_vec(),
                kv.mod_revision(),
                e.prev_kv().map(|p| p.value().to_vec()),
            ));
        }
    }
    assert_eq!(
        events,
        vec![
            (EventType::Put, b"a".to_vec(), r1, None),
            (EventType::Put, b"b".to_vec(), r2, Some(b"a".to_vec())),
            (EventType::Delete, Vec::new(), r3, Some(b"b".to_vec())),
        ]
    );

    w.cancel(id).await.unwrap();
    let m = next_message(&mut w).await;
    assert!(m.canceled(), "the cancel is acknowledged: {m:?}");
    assert_eq!(m.watch_id(), id);

    // A second watcher on the same stream replays history from a past revision.
    w.watch("w/1", Some(WatchOptions::new().with_start_revision(r2)))
        .await
        .unwrap();
    let created = next_message(&mut w).await;
    assert!(created.created());
    let mut history = Vec::new();
    while history.len() < 2 {
        let m = next_message(&mut w).await;
        assert_eq!(m.watch_id(), created.watch_id());
        history.extend(
            m.events()
                .iter()
                .map(|e| (e.event_type(), e.kv().unwrap().mod_revision())),
        );
    }
    assert_eq!(history, vec![(EventType::Put, r2), (EventType::Delete, r3)]);
}

async fn leases(c: &mut Client) {
    let grant = c.lease_grant(60, None).await.unwrap();
    let id = grant.id();
    assert_eq!(grant.ttl(), 60);
    c.put("l/1", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .unwrap();
    assert_eq!(c.get("l/1", None).await.unwrap().kvs()[0].lease(), id);

    let ttl = c
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.id(), id);
    assert_eq!(ttl.granted_ttl(), 60);
    assert!(0 < ttl.ttl() && ttl.ttl() <= 60, "remaining {}", ttl.ttl());
    assert_eq!(ttl.keys(), &[b"l/1".to_vec()]);

    let list = c.leases().await.unwrap();
    assert!(list.leases().iter().any(|l| l.id() == id));

    let (mut keeper, mut stream) = c.lease_keep_alive(id).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let ka = tokio::time::timeout(MESSAGE_TIMEOUT, stream.message())
        .await
        .expect("a keep-alive response within the timeout")
        .unwrap()
        .expect("keep-alive stream ended");
    assert_eq!((ka.id(), ka.ttl()), (id, 60));

    // Revoking deletes the lease's keys.
    c.lease_revoke(id).await.unwrap();
    assert_eq!(c.get("l/1", None).await.unwrap().count(), 0);
    let ttl = c.lease_time_to_live(id, None).await.unwrap();
    assert_eq!(ttl.ttl(), -1, "a revoked lease has TTL -1");
    assert!(
        !c.leases()
            .await
            .unwrap()
            .leases()
            .iter()
            .any(|l| l.id() == id)
    );

    // A lease left alone expires, and its key goes with it (a DELETE event).
    let short = c.lease_grant(2, None).await.unwrap();
    assert_eq!(short.ttl(), 2);
    let put = c
        .put("l/2", "v", Some(PutOptions::new().with_lease(short.id())))
        .await
        .unwrap();
    let mut w = c
        .watch(
            "l/2",
            Some(WatchOptions::new().with_start_revision(put.header().unwrap().revision() + 1)),
        )
        .await
        .unwrap();
    assert!(next_message(&mut w).await.created());
    let expired = Instant::now();
    let m = next_message(&mut w).await;
    assert_eq!(m.events().len(), 1);
    assert_eq!(m.events()[0].event_type(), EventType::Delete);
    assert_eq!(m.events()[0].kv().unwrap().key(), b"l/2");
    assert!(
        expired.elapsed() < MESSAGE_TIMEOUT,
        "expiry within the timeout"
    );
    assert_eq!(c.get("l/2", None).await.unwrap().count(), 0);
    assert_eq!(
        c.lease_time_to_live(short.id(), None).await.unwrap().ttl(),
        -1
    );
}

async fn cluster_and_maintenance(c: &mut Client, cluster: &Cluster) {
    let list = c.member_list().await.unwrap();
    let mut members: Vec<(String, Vec<String>, Vec<String>, bool)> = list
        .members()
        .iter()
        .map(|m| {
            (
                m.name().to_string(),
                m.peer_urls().to_vec(),
                m.client_urls().to_vec(),
                m.is_learner(),
            )
        })
        .collect();
    members.sort();
    let want: Vec<(String, Vec<String>, Vec<String>, bool)> = cluster
        .members
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                vec![m.peer_url()],
                vec![m.client_url()],
                false,
            )
        })
        .collect();
    assert_eq!(members, want);
    let ids: Vec<u64> = list.members().iter().map(|m| m.id()).collect();

    // Every member names the same leader, one of the members, and itself by its own ID.
    let mut leaders = Vec::new();
    for (i, m) in cluster.members.iter().enumerate() {
        let mut one = connect(&[cluster.endpoint(i)]).await;
        let st = one.status().await.unwrap();
        let me = list
            .members()
            .iter()
            .find(|x| x.name() == m.name)
            .unwrap()
            .id();
        assert_eq!(st.header().unwrap().member_id(), me);
        assert!(ids.contains(&st.leader()));
        assert!(st.raft_index() > 0);
        assert!(!st.version().is_empty());
        assert!(st.db_size() > 0);
        leaders.push(st.leader());

        let alarms = one
            .alarm(
                etcd_client::AlarmAction::Get,
                etcd_client::AlarmType::None,
                None,
            )
            .await
            .unwrap();
        assert!(alarms.alarms().is_empty());
    }
    leaders.dedup();
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");

    // Every member hashes the same history to the same value (polled: a follower may not
    // have applied the revision yet).
    let rev = put_rev(c, "hash", "x").await;
    let mut hashes = Vec::new();
    for i in 0..cluster.members.len() {
        let mut one = connect(&[cluster.endpoint(i)]).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let h = loop {
            match one.hash_kv(rev).await {
                Ok(h) => break h.hash(),
                Err(e) => {
                    assert!(Instant::now() < deadline, "hash_kv on member {i}: {e}");
                    tokio::time::sleep(procs::POLL_INTERVAL).await;
                }
            }
        };
        hashes.push(h);
    }
    hashes.dedup();
    assert_eq!(hashes.len(), 1, "equal hashes at {rev}: {hashes:?}");
}

async fn errors(c: &mut Client) {
    let r1 = put_rev(c, "e/1", "a").await;
    let r2 = put_rev(c, "e/1", "b").await;
    c.compact(r2, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();

    let s = status(
        c.get("e/1", Some(GetOptions::new().with_revision(r1)))
            .await,
    );
    assert_status(
        &s,
        tonic::Code::OutOfRange,
        "required revision has been compacted",
    );
    let s = status(c.compact(r1, None).await);
    assert_status(
        &s,
        tonic::Code::OutOfRange,
        "required revision has been compacted",
    );
    let s = status(
        c.get("e/1", Some(GetOptions::new().with_revision(r2 + 1000)))
            .await,
    );
    assert_status(
        &s,
        tonic::Code::OutOfRange,
        "required revision is a future revision",
    );
    let s = status(c.compact(r2 + 1000, None).await);
    assert_status(
        &s,
        tonic::Code::OutOfRange,
        "required revision is a future revision",
    );

    // A watch from a compacted revision is cancelled with the compact revision.
    let mut w = c
        .watch("e/1", Some(WatchOptions::new().with_start_revision(r1)))
        .await
        .unwrap();
    let mut m = next_message(&mut w).await;
    if m.created() && !m.canceled() {
        m = next_message(&mut w).await;
    }
    assert!(m.canceled(), "{m:?}");
    assert_eq!(m.compact_revision(), r2);

    let s = status(
        c.put("e/2", "v", Some(PutOptions::new().with_lease(0x1234)))
            .await,
    );
    assert_status(&s, tonic::Code::NotFound, "requested lease not found");
    let s = status(c.lease_revoke(0x1234).await);
    assert_status(&s, tonic::Code::NotFound, "requested lease not found");
    let s = status(c.put("", "v", None).await);
    assert_status(&s, tonic::Code::InvalidArgument, "key is not provided");

    let dup = Txn::new().and_then([TxnOp::put("e/d", "1", None), TxnOp::put("e/d", "2", None)]);
    let s = status(c.txn(dup).await);
    assert_status(
        &s,
        tonic::Code::InvalidArgument,
        "duplicate key given in txn request",
    );
    let many: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("e/m{i}"), "v", None))
        .collect();
    let s = status(c.txn(Txn::new().and_then(many)).await);
    assert_status(
        &s,
        tonic::Code::InvalidArgument,
        "too many operations in txn request",
    );
    let s = status(c.put("e/big", vec![b'a'; 2_000_000], None).await);
    assert_status(&s, tonic::Code::InvalidArgument, "request is too large");
    // Above the gRPC message limit (--max-request-bytes + 512 KiB): grpc-go's refusal.
    let s = status(c.put("e/big", vec![b'a'; 2_300_000], None).await);
    assert_status(
        &s,
        tonic::Code::ResourceExhausted,
        "grpc: received message larger than max (2300012 vs. 2097152)",
    );

    // None of the refused requests wrote anything.
    let left = c
        .get("e/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let keys: Vec<&[u8]> = left.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![&b"e/1"[..]]);
}

async fn suite(cluster: &Cluster) {
    let mut c = connect_all(cluster).await;
    kv(&mut c).await;
    watch(&mut c).await;
    leases(&mut c).await;
    cluster_and_maintenance(&mut c, cluster).await;
    // Last: it compacts the history.
    errors(&mut c).await;
}

#[tokio::test]
async fn one_member() {
    let started = Instant::now();
    let cluster = Cluster::start(Kind::Oxcd, 1, Timing::default());
    suite(&cluster).await;
    eprintln!("one member: {:?}", started.elapsed());
}

#[tokio::test]
async fn three_members() {
    let started = Instant::now();
    let cluster = Cluster::start(Kind::Oxcd, 3, Timing::default());
    // Once every member answers `endpoint health`, the leader-only lease calls work through
    // any member, at once: etcd serves clients only after its own member record is committed,
    // and a follower forwards these calls to the leader's peer URL, known from the start.
    let mut c = connect(&[cluster.endpoint(0)]).await;
    let id = c.lease_grant(60, None).await.unwrap().id();
    for i in 0..3 {
        let mut one = connect(&[cluster.endpoint(i)]).await;
        let ttl = one.lease_time_to_live(id, None).await;
        assert!(ttl.is_ok(), "time-to-live through member {i}: {ttl:?}");
        let (mut keeper, mut stream) = one.lease_keep_alive(id).await.unwrap();
        keeper.keep_alive().await.unwrap();
        let ka = tokio::time::timeout(MESSAGE_TIMEOUT, stream.message()).await;
        assert!(
            matches!(&ka, Ok(Ok(Some(r))) if r.ttl() == 60),
            "keep-alive through member {i}: {ka:?}"
        );
    }
    c.lease_revoke(id).await.unwrap();
    suite(&cluster).await;

    // A write through one member is read, linearizably, through each of the others.
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(connect(&[cluster.endpoint(i)]).await);
    }
    for (i, writer) in [0usize, 1, 2].into_iter().enumerate() {
        let key = format!("across/{i}");
        let rev = clients[writer]
            .put(key.clone(), "v", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        for (j, reader) in clients.iter_mut().enumerate() {
            let got = reader.get(key.clone(), None).await.unwrap();
            assert_eq!(got.count(), 1, "{key} written via {writer}, read via {j}");
            assert!(got.header().unwrap().revision() >= rev);
        }
    }
    eprintln!("three members: {:?}", started.elapsed());
}

/// Awaits a stream's next message, which must be etcd's "server stopped" error.
async fn assert_server_stopped<T: std::fmt::Debug>(
    stream: &str,
    next: impl std::future::Future<Output = Result<T, Error>>,
) {
    let ended = tokio::time::timeout(MESSAGE_TIMEOUT, next)
        .await
        .unwrap_or_else(|_| panic!("the {stream} stream ends within the timeout"));
    assert_status(
        &status(ended),
        tonic::Code::Unavailable,
        "etcdserver: server stopped",
    );
}

/// SIGTERM ends a member's long-lived streams at once with etcd's "server stopped"
/// (Unavailable, which etcd's clients retry on another member), instead of leaving them open
/// until the listener's grace runs out and the connection is cut, and the member exits.
#[tokio::test]
async fn sigterm_ends_streams_with_server_stopped() {
    let mut cluster = Cluster::start(Kind::Oxcd, 3, Timing::default());
    let mut c = connect(&[cluster.endpoint(1)]).await;
    let mut watch = c.watch("k", None).await.unwrap();
    let created = next_message(&mut watch).await;
    assert!(created.created(), "{created:?}");
    let id = c.lease_grant(60, None).await.unwrap().id();
    let (mut keeper, mut alive) = c.lease_keep_alive(id).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let first = tokio::time::timeout(MESSAGE_TIMEOUT, alive.message()).await;
    assert!(matches!(first, Ok(Ok(Some(_)))), "{first:?}");

    cluster.terminate(1);
    assert_server_stopped("watch", watch.message()).await;
    assert_server_stopped("keep-alive", alive.message()).await;
    let exited = procs::poll_until("member 1 exits", MESSAGE_TIMEOUT, || cluster.try_wait(1));
    assert!(exited.success(), "exit status {exited:?}");
}

/// Auth through a third-party client: enable it, log in with a user holding a prefix, and get
/// etcd's codes and messages for what that user may not do; through every member of the
/// cluster (a token made through one member works on every member, and a revoke applied
/// through one refuses the user everywhere).
async fn auth(cluster: &Cluster) {
    use etcd_client::{ConnectOptions, Permission};
    let login = |user: &str, password: &str, endpoint: String| {
        let opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(10))
            .with_user(user, password);
        async move { Client::connect([format!("http://{endpoint}")], Some(opts)).await }
    };
    let mut admin = connect_all(cluster).await;
    admin.user_add("root", "rootpw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.user_add("app", "apppw", None).await.unwrap();
    admin.role_add("app").await.unwrap();
    let perm = Permission::read_write("/app/").with_prefix();
    admin.role_grant_permission("app", perm).await.unwrap();
    admin.user_grant_role("app", "app").await.unwrap();
    admin.auth_enable().await.unwrap();
    let s = status(admin.put("/app/x", "1", None).await);
    assert_status(
        &s,
        tonic::Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    match login("app", "wrong", cluster.endpoint(0)).await {
        Err(Error::GRpcStatus(s)) => assert_status(
            &s,
            tonic::Code::InvalidArgument,
            "etcdserver: authentication failed, invalid user ID or password",
        ),
        other => panic!("a wrong password logged in: {:?}", other.map(|_| ())),
    }
    let mut root = login("root", "rootpw", cluster.endpoint(0)).await.unwrap();
    for i in cluster.running().collect::<Vec<_>>() {
        let mut app = login("app", "apppw", cluster.endpoint(i)).await.unwrap();
        let key = format!("/app/{i}");
        app.put(key.as_str(), "v", None).await.unwrap();
        let got = app.get(key.as_str(), None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), b"v");
        let s = status(app.put("/other", "v", None).await);
        assert_status(
            &s,
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied",
        );
        let s = status(app.user_list().await);
        assert_status(
            &s,
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied",
        );
        // Anyone may list members.
        app.member_list().await.unwrap();
        let s = status(app.delete("/other", None).await);
        assert_status(
            &s,
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied",
        );
    }
    // A revoke through one member refuses the user through every other.
    root.role_revoke_permission(
        "app",
        "/app/",
        Some(etcd_client::RoleRevokePermissionOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    for i in cluster.running().collect::<Vec<_>>() {
        let mut app = login("app", "apppw", cluster.endpoint(i)).await.unwrap();
        let s = status(app.put("/app/x", "v", None).await);
        assert_status(
            &s,
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied",
        );
    }
    root.auth_disable().await.unwrap();
    admin.put("/app/x", "1", None).await.unwrap();
}

#[tokio::test]
async fn auth_on_one_and_three_members() {
    for n in [1, 3] {
        let cluster = Cluster::start(Kind::Oxcd, n, Timing::default());
        auth(&cluster).await;
    }
}
