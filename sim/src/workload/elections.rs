//! The election workload and its checks: candidates campaign for one election through the
//! members' Election service (each under a lease they keep alive), proclaim new values while
//! they lead, then resign; an observer follows the election with `Observe`, reconnecting to
//! another member whenever its stream breaks.
//!
//! The checks, in the store's terms (the history of the election's keys, `elect/...`):
//! - **One leader at a time**: a candidate whose `Campaign` returned reads the leader
//!   (linearizably) and, when it is its own key at revision `O`, every key created before its
//!   own must have been deleted by `O` (the lock's check, [`super::locks::check`]). A read
//!   that shows an older key still leading after `Campaign` returned is a violation too.
//! - **Observers see the leaders in order, none skipped**: within one connection, the keys an
//!   observer is told lead have increasing create revisions, and every key that became leader
//!   after the connection's first answer and by its last one was told.
//!
//! This module does not own the faults or the run's other checks ([`super`]).

use super::client_url;
use super::locks::{self, Acquired};
use bytes::Bytes;
use oxcd::pb::v3electionpb::{self as epb, election_client::ElectionClient};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a candidate campaigns before it gives up.
const CAMPAIGN_MAX: Duration = Duration::from_secs(10);
/// The election's name, and its keys' range.
const NAME: &[u8] = b"elect";
pub const PREFIX: &str = "elect/";
pub const PREFIX_END: &str = "elect0";

async fn client(m: usize) -> Option<ElectionClient<tonic::transport::Channel>> {
    tokio::time::timeout(TIMEOUT, ElectionClient::connect(client_url(m)))
        .await
        .ok()?
        .ok()
}

/// What one candidate recorded: its terms as leader, and what it saw that no correct
/// election allows.
#[derive(Default)]
pub struct Candidacy {
    pub elected: Vec<Acquired>,
    pub problems: Vec<String>,
}

/// A candidate: campaigns, leads a while (proclaiming), resigns, again and again until
/// `until`.
pub async fn candidate(id: usize, seed: u64, nodes: usize, until: Instant) -> Candidacy {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x656c_6563_7400 + id as u64));
    let mut out = Candidacy::default();
    let mut term = 0u64;
    while Instant::now() < until {
        term += 1;
        let m = rng.gen_range(0..nodes);
        let Some(lease) = locks::grant(m).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn(locks::keep_alive(0, Some(nodes), lease, stop.clone()));
        let value = Bytes::from(format!("c{id}.{term}"));
        let campaign = async {
            let mut c = client(m).await?;
            let req = epb::CampaignRequest {
                name: Bytes::from_static(NAME),
                lease,
                value,
            };
            c.campaign(req).await.ok().map(|r| r.into_inner())
        };
        if let Ok(Some(won)) = tokio::time::timeout(CAMPAIGN_MAX, campaign).await
            && let Some(leader) = won.leader
        {
            lead(id, &mut rng, nodes, &leader, m, &mut out).await;
        }
        stop.store(true, Ordering::Relaxed);
        locks::revoke(rng.gen_range(0..nodes), lease).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..300))).await;
    }
    out
}

/// A term as leader: confirm it with a read of the leader, proclaim a value or two, resign.
async fn lead(
    id: usize,
    rng: &mut ChaCha8Rng,
    nodes: usize,
    leader: &epb::LeaderKey,
    campaigned_via: usize,
    out: &mut Candidacy,
) {
    let key = String::from_utf8_lossy(&leader.key).into_owned();
    let m = rng.gen_range(0..nodes);
    let read = async {
        let mut c = client(m).await?;
        let req = epb::LeaderRequest {
            name: Bytes::from_static(NAME),
        };
        c.leader(req).await.ok().map(|r| r.into_inner())
    };
    if let Ok(Some(r)) = tokio::time::timeout(TIMEOUT, read).await
        && let Some(kv) = r.kv
    {
        let observed = r.header.map_or(0, |h| h.revision);
        if kv.key == leader.key {
            out.elected.push(Acquired {
                client: id,
                via: (campaigned_via, m),
                key: key.clone(),
                created: kv.create_revision,
                observed,
                held: None,
            });
        } else if kv.create_revision < leader.rev {
            out.problems.push(format!(
                "election: candidate {id}'s campaign returned with {key} (created at {}), \
                 yet at revision {observed} m{m} says {} (created at {}) leads",
                leader.rev,
                String::from_utf8_lossy(&kv.key),
                kv.create_revision
            ));
        }
    }
    for n in 0..rng.gen_range(0..3) {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..400))).await;
        let m = rng.gen_range(0..nodes);
        let proclaim = async {
            let mut c = client(m).await?;
            let req = epb::ProclaimRequest {
                leader: Some(leader.clone()),
                value: Bytes::from(format!("{key}:{n}")),
            };
            c.proclaim(req).await.ok()
        };
        let _ = tokio::time::timeout(TIMEOUT, proclaim).await;
    }
    let m = rng.gen_range(0..nodes);
    let resign = async {
        let mut c = client(m).await?;
        let req = epb::ResignRequest {
            leader: Some(leader.clone()),
        };
        c.resign(req).await.ok()
    };
    let _ = tokio::time::timeout(TIMEOUT, resign).await;
}

/// One leader as an observer was told of it: its key's name and create revision, and the
/// answer's revision.
#[derive(Clone, Debug)]
pub struct Told {
    pub key: String,
    pub created: i64,
    pub revision: i64,
}

/// The observer: follows the election until `until`; each connection's answers, in order.
pub async fn observer(seed: u64, nodes: usize, until: Instant) -> Vec<Vec<Told>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6f62_7365_7276);
    let mut connections = Vec::new();
    while Instant::now() < until {
        let m = rng.gen_range(0..nodes);
        let mut told = Vec::new();
        let open = async {
            let mut c = client(m).await?;
            let req = epb::LeaderRequest {
                name: Bytes::from_static(NAME),
            };
            c.observe(req).await.ok().map(|r| r.into_inner())
        };
        if let Ok(Some(mut stream)) = tokio::time::timeout(TIMEOUT, open).await {
            // Until the stream breaks, goes quiet for long, or the run ends.
            while Instant::now() < until {
                let next = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
                let Ok(Ok(Some(r))) = next else { break };
                let Some(kv) = r.kv else { continue };
                told.push(Told {
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    created: kv.create_revision,
                    revision: r.header.map_or(0, |h| h.revision),
                });
            }
        }
        if !told.is_empty() {
            connections.push(told);
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..300))).await;
    }
    connections
}

/// When each key led, from the store's history: from the later of its creation and the
/// deletion of every key created before it, until its deletion (never: `None`).
fn tenures(keys: &BTreeMap<String, (i64, Option<i64>)>) -> Vec<(String, i64, Option<i64>)> {
    let mut by_creation: Vec<(&String, &(i64, Option<i64>))> = keys.iter().collect();
    by_creation.sort_by_key(|(_, (created, _))| *created);
    let mut out = Vec::new();
    // The latest deletion among the keys created so far; `None` once one is never deleted.
    let mut freed: Option<i64> = Some(0);
    for (key, &(created, deleted)) in by_creation {
        if let Some(f) = freed {
            let from = created.max(f);
            if deleted.is_none_or(|d| d > from) {
                out.push((key.clone(), from, deleted));
            }
        }
        freed = match (freed, deleted) {
            (Some(f), Some(d)) => Some(f.max(d)),
            _ => None,
        };
    }
    out
}

/// The observer's check (see the module docs).
pub fn check_observed(
    connections: &[Vec<Told>],
    keys: &BTreeMap<String, (i64, Option<i64>)>,
) -> Vec<String> {
    let mut out = Vec::new();
    let led = tenures(keys);
    for (c, told) in connections.iter().enumerate() {
        for w in told.windows(2) {
            if w[1].created < w[0].created {
                out.push(format!(
                    "election: observer connection {c} was told {} (created at {}) after {} \
                     (created at {}): leaders out of order",
                    w[1].key, w[1].created, w[0].key, w[0].created
                ));
            }
        }
        let (first, last) = (told[0].revision, told[told.len() - 1].revision);
        for (key, from, _) in &led {
            if *from > first && *from <= last && !told.iter().any(|t| &t.key == key) {
                out.push(format!(
                    "election: observer connection {c} (answers at revisions {first}..={last}) \
                     was never told of {key}, leader from revision {from}"
                ));
            }
        }
        if out.len() > 10 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[(&str, i64, Option<i64>)]) -> BTreeMap<String, (i64, Option<i64>)> {
        list.iter()
            .map(|&(k, c, d)| (k.to_string(), (c, d)))
            .collect()
    }

    fn told(key: &str, created: i64, revision: i64) -> Told {
        Told {
            key: key.into(),
            created,
            revision,
        }
    }

    #[test]
    fn tenures_follow_creation_and_deletion() {
        let k = keys(&[("a", 2, Some(10)), ("b", 3, Some(5)), ("c", 4, Some(12))]);
        // b was deleted before a: it never led.
        assert_eq!(
            tenures(&k),
            vec![("a".into(), 2, Some(10)), ("c".into(), 10, Some(12))]
        );
    }

    #[test]
    fn a_skipped_or_reordered_leader_is_caught() {
        let k = keys(&[("a", 2, Some(10)), ("b", 3, Some(11)), ("c", 4, None)]);
        let all = vec![told("a", 2, 5), told("b", 3, 10), told("c", 4, 11)];
        assert!(check_observed(std::slice::from_ref(&all), &k).is_empty());
        let skipped = vec![told("a", 2, 5), told("c", 4, 11)];
        assert_eq!(check_observed(&[skipped], &k).len(), 1);
        let reordered = vec![told("b", 3, 10), told("a", 2, 11)];
        assert!(!check_observed(&[reordered], &k).is_empty());
        // A connection that began after b's tenure started need not have seen it.
        let late = vec![told("c", 4, 11)];
        assert!(check_observed(&[late], &k).is_empty());
    }
}
