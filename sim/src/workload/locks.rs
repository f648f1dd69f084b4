//! The lock workload and its safety check: clients take one lock, some with etcd's recipe on
//! leases run by the client (a key `lock/<lease>` created under a lease, the holder being the
//! key with the lowest create revision, renewed while held, deleted to release), others
//! through the member's Lock service (the same recipe run inside the member), and afterwards
//! the store's history says whether two ever held it at once.
//!
//! The check, in the store's terms: a client that saw its key first at revision `O` holds the
//! lock from `O` until its key is deleted. Every key created before its own must have been
//! deleted by `O`; one still there at `O` means two holders (the read that showed the client
//! first was stale, or a deleted key came back).

use super::client_url;
use bytes::Bytes;
use oxcd::pb::etcdserverpb::{
    self as pb, compare, kv_client::KvClient, lease_client::LeaseClient, request_op,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(2);
const TTL_S: i64 = 3;
/// How long a client waits in line before it gives up on the lock.
const WAIT_MAX: Duration = Duration::from_secs(10);

/// One acquisition: whose key, created at which revision, seen first at which revision.
#[derive(Clone, Debug)]
pub struct Acquired {
    pub client: usize,
    /// The members that created the key and that showed it first.
    pub via: (usize, usize),
    pub key: String,
    pub created: i64,
    pub observed: i64,
    /// When the client knew itself holder, until it began to release (the lock's clients):
    /// its critical section as the client saw it.
    pub held: Option<(Instant, Instant)>,
}

async fn kv(m: usize) -> Option<KvClient<tonic::transport::Channel>> {
    tokio::time::timeout(TIMEOUT, KvClient::connect(client_url(m)))
        .await
        .ok()?
        .ok()
}

/// Renews `lease` every second until `stop`, through member `m`; with `rotate` (the member
/// count) moving on to the next member after a failure, otherwise staying with `m` (as a
/// client session on one connection does).
pub(super) async fn keep_alive(
    mut m: usize,
    rotate: Option<usize>,
    lease: i64,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        if !super::leases::renew(m, lease).await
            && let Some(nodes) = rotate
        {
            m = (m + 1) % nodes;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Creates `key` under `lease` unless it exists: the revision that created it.
async fn enqueue(m: usize, key: &str, lease: i64) -> Option<i64> {
    let mut c = kv(m).await?;
    let k = Bytes::from(key.to_string());
    let txn = pb::TxnRequest {
        compare: vec![pb::Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: k.clone(),
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
            ..Default::default()
        }],
        success: vec![pb::RequestOp {
            request: Some(request_op::Request::RequestPut(pb::PutRequest {
                key: k,
                lease,
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    let r = tokio::time::timeout(TIMEOUT, c.txn(txn))
        .await
        .ok()?
        .ok()?
        .into_inner();
    r.succeeded.then(|| r.header.map_or(0, |h| h.revision))
}

/// The key with the lowest create revision under `lock/`, and the revision of the read.
async fn first_in_line(m: usize) -> Option<(Option<String>, i64)> {
    let mut c = kv(m).await?;
    let r = tokio::time::timeout(
        TIMEOUT,
        c.range(pb::RangeRequest {
            key: Bytes::from_static(b"lock/"),
            range_end: Bytes::from_static(b"lock0"),
            limit: 1,
            sort_order: 1,  // ascend
            sort_target: 2, // create revision
            ..Default::default()
        }),
    )
    .await
    .ok()?
    .ok()?
    .into_inner();
    let first = r
        .kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned());
    Some((first, r.header.map_or(0, |h| h.revision)))
}

/// Takes and releases the lock, again and again, until `until`.
pub async fn run(client: usize, seed: u64, nodes: usize, until: Instant) -> Vec<Acquired> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x6c6f_636b_0000 + client as u64));
    let mut acquired = Vec::new();
    while Instant::now() < until {
        let m = rng.gen_range(0..nodes);
        let Some(lease) = grant(m).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn(keep_alive(m, None, lease, stop.clone()));
        let key = format!("lock/{lease:016x}");
        let created_via = m;
        if let Some(created) = enqueue(m, &key, lease).await {
            let waited = Instant::now();
            while waited.elapsed() < WAIT_MAX && Instant::now() < until {
                let m = rng.gen_range(0..nodes);
                match first_in_line(m).await {
                    Some((Some(first), observed)) if first == key => {
                        let from = Instant::now();
                        tokio::time::sleep(hold(&mut rng)).await;
                        acquired.push(Acquired {
                            client,
                            via: (created_via, m),
                            key: key.clone(),
                            created,
                            observed,
                            held: Some((from, Instant::now())),
                        });
                        break;
                    }
                    // Lost the key (its lease lapsed): give up this round.
                    Some((None, _)) => break,
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        // Release: delete the key and revoke the lease (the lease's lapse does it otherwise).
        stop.store(true, Ordering::Relaxed);
        revoke(rng.gen_range(0..nodes), lease).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..200))).await;
    }
    acquired
}

/// Takes and releases the lock through the member's Lock service (`Lock("lock", lease)`, then
/// `Unlock`) again and again until `until`: the key it answers is the client's, held as of the
/// answer's revision.
pub async fn run_service(client: usize, seed: u64, nodes: usize, until: Instant) -> Vec<Acquired> {
    use oxcd::pb::v3lockpb::{self as lpb, lock_client::LockClient};
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x6c6f_636b_5356 + client as u64));
    let mut acquired = Vec::new();
    while Instant::now() < until {
        let m = rng.gen_range(0..nodes);
        let Some(lease) = grant(m).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn(keep_alive(m, None, lease, stop.clone()));
        let lock = async {
            let mut c = LockClient::connect(client_url(m)).await.ok()?;
            let req = lpb::LockRequest {
                name: Bytes::from_static(b"lock"),
                lease,
            };
            c.lock(req).await.ok().map(|r| r.into_inner())
        };
        // A lock not granted in time is given up (the member withdraws the key).
        if let Ok(Some(r)) = tokio::time::timeout(WAIT_MAX, lock).await {
            let from = Instant::now();
            let key = String::from_utf8_lossy(&r.key).into_owned();
            let observed = r.header.map_or(0, |h| h.revision);
            // The key's create revision, from any member (it may be gone already: its lease
            // lapsed while the answer travelled).
            let read = rng.gen_range(0..nodes);
            let created = create_revision(read, &key).await;
            tokio::time::sleep(hold(&mut rng)).await;
            if let Some(created) = created {
                acquired.push(Acquired {
                    client,
                    via: (m, m),
                    key: key.clone(),
                    created,
                    observed,
                    held: Some((from, Instant::now())),
                });
            }
            let m = rng.gen_range(0..nodes);
            let unlock = async {
                let mut c = LockClient::connect(client_url(m)).await.ok()?;
                let req = lpb::UnlockRequest {
                    key: Bytes::from(key),
                };
                c.unlock(req).await.ok()
            };
            let _ = tokio::time::timeout(TIMEOUT, unlock).await;
        }
        stop.store(true, Ordering::Relaxed);
        revoke(rng.gen_range(0..nodes), lease).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..200))).await;
    }
    acquired
}

/// How long a holder stays in its critical section: mostly briefly, one time in four
/// longer than the lease's TTL (a holder that must keep its lease alive meanwhile).
fn hold(rng: &mut ChaCha8Rng) -> Duration {
    if rng.gen_bool(0.25) {
        Duration::from_millis(rng.gen_range(1000..4000))
    } else {
        Duration::from_millis(rng.gen_range(50..500))
    }
}

/// Mutual exclusion as the clients saw it: two clients each inside their critical section at
/// the same moment (from the answer that made one holder until it began to release). Leases
/// cannot rule this out: a holder whose lease lapses (its keep-alives cut off, or paused)
/// goes on believing it holds the lock. The store's-terms check ([`check`]) is the one that
/// holds; a resource guarded by the lock must compare the holder's key (its create revision
/// is a fencing token) in the same transaction as its write.
pub fn overlaps(acquired: &[Acquired]) -> Vec<String> {
    let mut held: Vec<(&Acquired, Instant, Instant)> = acquired
        .iter()
        .filter_map(|a| a.held.map(|(from, to)| (a, from, to)))
        .collect();
    held.sort_by_key(|&(_, from, _)| from);
    let mut out = Vec::new();
    for (i, &(a, _, a_to)) in held.iter().enumerate() {
        for &(b, b_from, b_to) in &held[i + 1..] {
            if b_from >= a_to {
                break;
            }
            if a.client != b.client {
                out.push(format!(
                    "clients {} ({}) and {} ({}) both inside for {:?}",
                    a.client,
                    a.key,
                    b.client,
                    b.key,
                    a_to.min(b_to) - b_from
                ));
            }
        }
    }
    out
}

/// A lease of [`TTL_S`] granted through member `m`.
pub(super) async fn grant(m: usize) -> Option<i64> {
    let grant = async {
        let mut c = LeaseClient::connect(client_url(m)).await.ok()?;
        c.lease_grant(pb::LeaseGrantRequest { ttl: TTL_S, id: 0 })
            .await
            .ok()
            .map(|r| r.into_inner().id)
    };
    tokio::time::timeout(TIMEOUT, grant).await.ok().flatten()
}

/// Revokes `lease` through member `m`, if it answers in time.
pub(super) async fn revoke(m: usize, lease: i64) {
    let release = async {
        let mut c = LeaseClient::connect(client_url(m)).await.ok()?;
        c.lease_revoke(pb::LeaseRevokeRequest { id: lease })
            .await
            .ok()
    };
    let _ = tokio::time::timeout(TIMEOUT, release).await;
}

/// The create revision of `key` as member `m` reads it (linearizably), if it is there.
pub(super) async fn create_revision(m: usize, key: &str) -> Option<i64> {
    let mut c = kv(m).await?;
    let read = c.range(pb::RangeRequest {
        key: Bytes::from(key.to_string()),
        ..Default::default()
    });
    let r = tokio::time::timeout(TIMEOUT, read).await.ok()?.ok()?;
    r.into_inner().kvs.first().map(|kv| kv.create_revision)
}

/// Each key under `[prefix, end)` the store ever held (the lock's or an election's): its
/// create revision and, if gone, its delete revision. Read with a watch from revision 1 up to
/// the event of a sentinel key written under the prefix once the workloads are over: events
/// arrive in revision order, so by the sentinel's every earlier one has come. (Not a progress
/// notification: etcd before 3.4.25 and 3.5.8 may send one ahead of the events, etcd#15220.)
pub async fn history(
    nodes: usize,
    prefix: &'static str,
    end: &'static str,
) -> Result<BTreeMap<String, (i64, Option<i64>)>, String> {
    super::from_any_member(nodes, &format!("the history of {prefix}"), |m| async move {
        let mut c = kv(m).await.ok_or("no connection")?;
        let sentinel = format!("{prefix}~history");
        let at = c
            .put(pb::PutRequest {
                key: Bytes::from(sentinel.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner()
            .header
            .map_or(0, |h| h.revision);
        let (mut stream, _tx) = super::watcher::open_prefix(m, prefix, end, 1, false).await?;
        let mut keys: BTreeMap<String, (i64, Option<i64>)> = BTreeMap::new();
        loop {
            let Some(r) = stream.message().await.map_err(|e| e.to_string())? else {
                return Err("the watch ended".to_string());
            };
            if r.canceled {
                return Err(format!("the watch was canceled: {}", r.cancel_reason));
            }
            for e in r.events {
                let kv = e.kv.unwrap_or_default();
                let key = String::from_utf8_lossy(&kv.key).into_owned();
                if key == sentinel {
                    if kv.mod_revision >= at {
                        return Ok(keys);
                    }
                    continue;
                }
                if e.r#type == 1 {
                    if let Some(k) = keys.get_mut(&key) {
                        k.1 = Some(kv.mod_revision);
                    }
                } else if kv.version == 1
                    && let Some(earlier) = keys.insert(key.clone(), (kv.create_revision, None))
                {
                    // A lease ID granted twice would make two keys of one name.
                    return Err(format!(
                        "{key} created twice: {earlier:?}, then at {}",
                        kv.create_revision
                    ));
                }
            }
        }
    })
    .await
}

/// Mutual exclusion in the store's terms (see the module docs); `what` names the property
/// in the violations (`lock`, `election`).
pub fn check(
    what: &str,
    acquired: &[Acquired],
    keys: &BTreeMap<String, (i64, Option<i64>)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for a in acquired {
        match keys.get(&a.key) {
            Some(&(created, _)) if created == a.created => {}
            other => {
                out.push(format!(
                    "{what}: client {} acquired with {} created at {} (as m{} said), the store says {other:?}",
                    a.client, a.key, a.created, a.via.0
                ));
                continue;
            }
        }
        for (key, &(created, deleted)) in keys {
            if created < a.created && deleted.is_none_or(|d| d > a.observed) {
                out.push(format!(
                    "{what}: two holders: client {} saw {} first at revision {} (as m{} said), \
                     while {key} (created at {created}, deleted at {deleted:?}) was still there",
                    a.client, a.key, a.observed, a.via.1
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_that_saw_itself_first_too_early_is_caught() {
        let keys: BTreeMap<String, (i64, Option<i64>)> = [
            ("lock/a".to_string(), (10, Some(20))),
            ("lock/b".to_string(), (12, Some(30))),
        ]
        .into();
        let ok = Acquired {
            client: 1,
            via: (0, 0),
            key: "lock/b".into(),
            created: 12,
            observed: 21,
            held: None,
        };
        assert!(check("lock", std::slice::from_ref(&ok), &keys).is_empty());
        let early = Acquired {
            observed: 15,
            ..ok.clone()
        };
        assert_eq!(check("lock", &[early], &keys).len(), 1);
        let unknown = Acquired { created: 13, ..ok };
        assert_eq!(check("lock", &[unknown], &keys).len(), 1);
    }

    #[test]
    fn two_clients_inside_at_once_are_seen() {
        let t = Instant::now();
        let ms = |m: u64| t + Duration::from_millis(m);
        let hold = |client: usize, from: u64, to: u64| Acquired {
            client,
            via: (0, 0),
            key: format!("lock/{client}"),
            created: client as i64,
            observed: client as i64,
            held: Some((ms(from), ms(to))),
        };
        assert!(overlaps(&[hold(0, 0, 100), hold(1, 100, 200), hold(0, 250, 300)]).is_empty());
        assert_eq!(overlaps(&[hold(0, 0, 100), hold(1, 50, 200)]).len(), 1);
        // One client's own holds never count against it.
        assert!(overlaps(&[hold(0, 0, 100), hold(0, 50, 200)]).is_empty());
    }
}
