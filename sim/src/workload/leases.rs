//! The lease workload and its safety check: a client grants short leases, attaches a key to
//! each, renews some a few times, then revokes it or lets it lapse. After the faults stop, no
//! key may outlive its lease: a key whose lease was revoked (acknowledged) must be gone, and
//! so must one whose lease could not have been renewed past its TTL (plus a grace of an
//! election timeout for a leader change, and the time the cluster had to heal).
//!
//! Unknown outcomes count against the check's strictness, never for it: a renew that timed
//! out may have landed as late as its timeout, so the lapse is measured from there.
//!
//! The other direction: a lease renewed in time must not lapse early. After an acknowledged
//! grant or renew sent at `s`, the member holds the lease until `s + TTL` at the earliest, so
//! a linearizable read of its key that returns before `s + TTL - EARLY_TOLERANCE` must find
//! the key. The tolerance is one election timeout plus the members' clock drift: a leader cut
//! off from its quorum may still acknowledge renewals until it steps down, and the next
//! leader's deadlines run from its own promotion (etcd behaves the same).

use super::client_url;
use bytes::Bytes;
use oxcd::pb::etcdserverpb::{self as pb, kv_client::KvClient, lease_client::LeaseClient};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(2);
/// Leases' TTL, in seconds (etcd's minimum for a 1 s election timeout is 2 s... plus one).
const TTL_S: i64 = 3;

/// How early a renewed lease may lapse without a violation (see the module docs).
pub const EARLY_TOLERANCE: Duration = Duration::from_millis(1100);

/// A read of a leased key made while its lease should still have been held.
#[derive(Clone, Debug)]
pub struct RenewProbe {
    pub key: String,
    pub lease: i64,
    /// When the last acknowledged grant or renew before the read was sent.
    pub renewed: Instant,
    /// When the read's answer came back, and whether it found the key.
    pub answered: Instant,
    pub present: bool,
}

/// What the lease workload did.
#[derive(Clone, Debug, Default)]
pub struct LeaseLog {
    pub keys: Vec<LeasedKey>,
    pub probes: Vec<RenewProbe>,
}

/// One lease's key and what is known of its end.
#[derive(Clone, Debug)]
pub struct LeasedKey {
    pub key: String,
    pub lease: i64,
    /// When the key must be gone at the latest, if nothing renewed the lease after.
    pub lapse_by: Instant,
    /// The revoke was acknowledged.
    pub revoked: bool,
}

async fn lease_client(m: usize) -> Option<LeaseClient<tonic::transport::Channel>> {
    tokio::time::timeout(TIMEOUT, LeaseClient::connect(client_url(m)))
        .await
        .ok()?
        .ok()
}

/// A KV client of member `m`, if it connects in time.
async fn kv_client(m: usize) -> Option<KvClient<tonic::transport::Channel>> {
    tokio::time::timeout(TIMEOUT, KvClient::connect(client_url(m)))
        .await
        .ok()?
        .ok()
}

/// One keep-alive round trip; whether it was answered with a positive TTL.
pub(super) async fn renew(m: usize, id: i64) -> bool {
    let go = async {
        let mut c = lease_client(m).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(pb::LeaseKeepAliveRequest { id }).await.ok()?;
        let mut s = c
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .ok()?
            .into_inner();
        let r = s.message().await.ok()??;
        Some(r.ttl > 0)
    };
    matches!(tokio::time::timeout(TIMEOUT, go).await, Ok(Some(true)))
}

/// Grants, attaches, renews (probing that a renewed lease still holds its key), and revokes
/// or abandons leases until `until`.
pub async fn run(seed: u64, nodes: usize, until: Instant) -> LeaseLog {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6c65_6173_6573);
    let mut log = LeaseLog::default();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let m = rng.gen_range(0..nodes);
        let sent = Instant::now();
        let grant = async {
            let mut c = lease_client(m).await?;
            c.lease_grant(pb::LeaseGrantRequest { ttl: TTL_S, id: 0 })
                .await
                .ok()
                .map(|r| r.into_inner().id)
        };
        let Ok(Some(lease)) = tokio::time::timeout(TIMEOUT, grant).await else {
            // A lease of unknown ID carries no key of ours: nothing to check.
            continue;
        };
        let key = format!("lease/{n}");
        // Whatever lands lapses by then at the latest, unless renewed.
        let ttl = Duration::from_secs(TTL_S as u64);
        let mut lapse_by = sent + TIMEOUT + ttl;
        let mut renewed = sent;
        let put = async {
            let mut c = kv_client(m).await?;
            c.put(pb::PutRequest {
                key: Bytes::from(key.clone()),
                value: Bytes::from_static(b"held"),
                lease,
                ..Default::default()
            })
            .await
            .ok()
        };
        let attached = matches!(tokio::time::timeout(TIMEOUT, put).await, Ok(Some(_)));
        for _ in 0..rng.gen_range(0..3) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
            let sent = Instant::now();
            let m = rng.gen_range(0..nodes);
            // Answered or not, a renew may have landed until its timeout.
            if renew(m, lease).await {
                renewed = sent;
            }
            lapse_by = lapse_by.max(sent + TIMEOUT + ttl);
            if attached && rng.gen_bool(0.5) {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..1800))).await;
                let m = rng.gen_range(0..nodes);
                if let Some(present) = read_present(m, &key).await {
                    log.probes.push(RenewProbe {
                        key: key.clone(),
                        lease,
                        renewed,
                        answered: Instant::now(),
                        present,
                    });
                }
            }
        }
        let mut revoked = false;
        if rng.gen_bool(0.5) {
            let m = rng.gen_range(0..nodes);
            let revoke = async {
                let mut c = lease_client(m).await?;
                c.lease_revoke(pb::LeaseRevokeRequest { id: lease })
                    .await
                    .ok()
            };
            revoked = matches!(tokio::time::timeout(TIMEOUT, revoke).await, Ok(Some(_)));
        }
        log.keys.push(LeasedKey {
            key,
            lease,
            lapse_by,
            revoked,
        });
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..1000))).await;
    }
    log
}

/// A linearizable read of `key` through member `m`: whether it is there, if answered in time.
async fn read_present(m: usize, key: &str) -> Option<bool> {
    let read = async {
        let mut c = kv_client(m).await?;
        c.range(pb::RangeRequest {
            key: Bytes::from(key.to_string()),
            ..Default::default()
        })
        .await
        .ok()
        .map(|r| !r.into_inner().kvs.is_empty())
    };
    tokio::time::timeout(TIMEOUT, read).await.ok().flatten()
}

/// No renewed lease lapsed early: every probe that came back before its lease's earliest
/// lapse (less [`EARLY_TOLERANCE`]) found the key. A probe whose window holds a forward jump
/// of a member's lease clock (`jumps`, madsim's skew fault) is excused.
pub fn check_renewals(probes: &[RenewProbe], jumps: &[Instant]) -> Vec<String> {
    let ttl = Duration::from_secs(TTL_S as u64);
    probes
        .iter()
        .filter(|p| !p.present && p.answered + EARLY_TOLERANCE < p.renewed + ttl)
        .filter(|p| !jumps.iter().any(|&j| j >= p.renewed && j <= p.answered))
        .map(|p| {
            format!(
                "{} (lease {:x}) was gone {:?} after an acknowledged renew, before its TTL of {TTL_S} s (less {EARLY_TOLERANCE:?}) ran out",
                p.key,
                p.lease,
                p.answered - p.renewed
            )
        })
        .collect()
}

/// After the faults stopped at `healed`: every revoked lease's key is gone, and so is every
/// key whose lease lapsed (its deadline, pushed past the healing by the grace `grace`).
pub async fn check(
    keys: &[LeasedKey],
    nodes: usize,
    healed: Instant,
    grace: Duration,
) -> Vec<String> {
    let mut out = Vec::new();
    // Leases lapse on the leader's clock once there is one: give it the grace from whichever
    // is later, the lapse or the healing.
    let latest = keys
        .iter()
        .map(|k| k.lapse_by.max(healed) + grace)
        .max()
        .unwrap_or(healed);
    let now = Instant::now();
    if latest > now {
        tokio::time::sleep(latest - now).await;
    }
    for k in keys {
        let mut found = None;
        for m in (0..nodes).cycle().take(nodes * 3) {
            let read = async {
                let mut c = kv_client(m).await?;
                c.range(pb::RangeRequest {
                    key: Bytes::from(k.key.clone()),
                    ..Default::default()
                })
                .await
                .ok()
                .map(|r| r.into_inner())
            };
            if let Ok(Some(r)) = tokio::time::timeout(TIMEOUT, read).await {
                found = Some(r);
                break;
            }
        }
        match found {
            None => out.push(format!(
                "lease safety: no member answered a read of {}",
                k.key
            )),
            Some(r) if !r.kvs.is_empty() => out.push(format!(
                "lease safety: {} (lease {:x}, {}) outlived its lease: still there at revision {}",
                k.key,
                k.lease,
                if k.revoked { "revoked" } else { "lapsed" },
                r.header.map_or(0, |h| h.revision)
            )),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(renewed: Instant, after_ms: u64, present: bool) -> RenewProbe {
        RenewProbe {
            key: "lease/1".into(),
            lease: 1,
            renewed,
            answered: renewed + Duration::from_millis(after_ms),
            present,
        }
    }

    #[test]
    fn a_renewed_lease_gone_before_its_ttl_is_caught() {
        let t = Instant::now();
        // Gone 1 s after a renew of a 3 s lease: early, beyond the tolerance.
        assert_eq!(check_renewals(&[probe(t, 1_000, false)], &[]).len(), 1);
        // There, or gone only within the tolerance of its lapse: fine.
        assert!(check_renewals(&[probe(t, 1_000, true)], &[]).is_empty());
        assert!(check_renewals(&[probe(t, 2_500, false)], &[]).is_empty());
        // A clock jump inside the window excuses it.
        let jump = t + Duration::from_millis(500);
        assert!(check_renewals(&[probe(t, 1_000, false)], &[jump]).is_empty());
    }
}
