//! The corruption checks' IO: asking the other members for their hashes over the peer
//! protocol (`HashKv`), logging what the core's verdict found as etcd logs it, and acting on
//! it (refusing to start; proposing the CORRUPT alarm through Raft).
//!
//! - [`check_before_serving`]: `--experimental-initial-corrupt-check`, run by [`super::start`] on a
//!   restarting member before it serves peers or clients.
//! - [`monitor`]: `--experimental-corrupt-check-time`, a task that checks every period while
//!   this member leads.
//!
//! What it does not do: decide. The rules are the core's ([`crate::node::initial_check`],
//! [`crate::node::periodic_check`]).

use super::driver::{Driver, NodeHandle};
use super::{DialTls, dial};
use crate::mvcc::{self, HashKv};
use crate::node::{
    ALARM_CORRUPT, AlarmAction, Command, Finding, PeerAnswer, PeerHash, initial_check,
    periodic_check,
};
use crate::pb::peer::{HashKvRequest, peer_client::PeerClient};
use std::time::Duration;
use tokio::sync::watch;

/// The other members and their peer URLs, by ID (the order etcd asks them in).
pub fn peers_of(d: &Driver, me: u64) -> Vec<(u64, Vec<String>)> {
    let mut peers: Vec<(u64, Vec<String>)> = d
        .members()
        .into_iter()
        .filter(|(m, _)| m.id != me)
        .map(|(m, _)| (m.id, m.peer_urls))
        .collect();
    peers.sort_by_key(|(id, _)| *id);
    peers
}

/// What `url` answers when asked for its member's hash at `revision`, within `timeout` for
/// the connection and again for the call. `Err` is a failure to log before the next URL.
async fn ask(
    url: &str,
    revision: i64,
    tls: &DialTls,
    timeout: Duration,
) -> Result<(u64, PeerAnswer), String> {
    let channel = dial(url, tls, timeout).await?;
    let mut client = PeerClient::new(channel);
    let call = client.hash_kv(HashKvRequest { revision });
    let r = match tokio::time::timeout(timeout, call).await {
        Err(_) => return Err(format!("no answer in {timeout:?}")),
        Ok(Err(status)) => {
            let compacted = mvcc::Error::Compacted {
                compact_revision: 0,
            };
            let future = mvcc::Error::FutureRevision {
                current_revision: 0,
            };
            let message = status.message();
            return match status.code() {
                tonic::Code::OutOfRange if message.contains(&compacted.to_string()) => {
                    Ok((0, PeerAnswer::Compacted))
                }
                tonic::Code::OutOfRange if message.contains(&future.to_string()) => {
                    Ok((0, PeerAnswer::FutureRevision))
                }
                _ => Err(message.to_string()),
            };
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    Ok((
        r.member_id,
        PeerAnswer::Hash {
            hash: r.hash,
            current_revision: r.revision,
            compact_revision: r.compact_revision,
        },
    ))
}

/// Each peer's answer at `revision`: the first of its URLs that answers, or
/// [`PeerAnswer::Failed`] (each failed URL logged as etcd logs it).
async fn ask_peers(
    me: u64,
    peers: &[(u64, Vec<String>)],
    revision: i64,
    tls: &DialTls,
    timeout: Duration,
) -> Vec<PeerHash> {
    let mut answers = Vec::with_capacity(peers.len());
    for (id, urls) in peers {
        // etcd skips a member that has no peer URL yet.
        if urls.is_empty() {
            continue;
        }
        let mut answer = PeerAnswer::Failed;
        for url in urls {
            match ask(url, revision, tls, timeout).await {
                Ok((from, a)) if from == *id || !matches!(a, PeerAnswer::Hash { .. }) => {
                    answer = a;
                    break;
                }
                Ok((from, _)) => tracing::warn!(
                    local_member_id = format!("{me:x}"),
                    requested_revision = revision,
                    remote_peer_endpoint = url,
                    error = format!("answered by member {from:x}, not {id:x}"),
                    "failed hash kv request"
                ),
                Err(e) => tracing::warn!(
                    local_member_id = format!("{me:x}"),
                    requested_revision = revision,
                    remote_peer_endpoint = url,
                    error = e,
                    "failed hash kv request"
                ),
            }
        }
        answers.push(PeerHash { id: *id, answer });
    }
    answers
}

/// Logs `finding` with etcd's message and fields; `local` is this member's hash.
fn log_finding(me: u64, local: &HashKv, peers: &[(u64, Vec<String>)], finding: &Finding) {
    let urls = |peer: &u64| {
        peers
            .iter()
            .find(|(id, _)| id == peer)
            .map(|(_, urls)| urls.clone())
            .unwrap_or_default()
    };
    let message = finding.message();
    let me = format!("{me:x}");
    match finding {
        Finding::HashDiffers {
            peer,
            hash,
            revision,
            compact_revision,
        }
        | Finding::CompactRevisionDiffers {
            peer,
            hash,
            revision,
            compact_revision,
        } => tracing::warn!(
            local_member_id = me,
            local_member_revision = local.revision,
            local_member_compact_revision = local.compact_revision,
            local_member_hash = local.hash,
            remote_peer_id = format!("{peer:x}"),
            remote_peer_endpoints = ?urls(peer),
            remote_peer_revision = revision,
            remote_peer_compact_revision = compact_revision,
            remote_peer_hash = hash,
            "{message}"
        ),
        Finding::PeerBehind { peer } | Finding::LocalBehind { peer } => tracing::warn!(
            local_member_id = me,
            local_member_revision = local.revision,
            local_member_compact_revision = local.compact_revision,
            local_member_hash = local.hash,
            remote_peer_id = format!("{peer:x}"),
            remote_peer_endpoints = ?urls(peer),
            "{message}"
        ),
        Finding::LeaderHashChanged { before, after } => tracing::warn!(
            revision_1 = before.revision,
            compact_revision_1 = before.compact_revision,
            hash_1 = before.hash,
            revision_2 = after.revision,
            compact_revision_2 = after.compact_revision,
            hash_2 = after.hash,
            "{message}"
        ),
        Finding::FollowerAhead {
            peer,
            leader_revision,
            follower_revision,
        } => tracing::warn!(
            leader_revision,
            follower_revision,
            follower_peer_id = format!("{peer:x}"),
            "{message}"
        ),
        Finding::FollowerCompactedAhead {
            peer,
            leader_compact_revision,
            follower_compact_revision,
        } => tracing::warn!(
            leader_compact_revision,
            follower_compact_revision,
            follower_peer_id = format!("{peer:x}"),
            "{message}"
        ),
        Finding::FollowerHashDiffers {
            peer,
            leader_hash,
            follower_hash,
            compact_revision,
        } => tracing::warn!(
            leader_compact_revision = compact_revision,
            leader_hash,
            follower_compact_revision = compact_revision,
            follower_hash,
            follower_peer_id = format!("{peer:x}"),
            "{message}"
        ),
    }
}

/// `--experimental-initial-corrupt-check` on a restarting member that is not serving yet,
/// whose hash at its current revision is `local` and whose peers are `peers`
/// ([`peers_of`]): `Err` (etcd's `"<id> found data inconsistency with peers"`) when a peer with
/// the same compact revision has another hash at that revision.
pub async fn check_before_serving(
    me: u64,
    local: HashKv,
    peers: &[(u64, Vec<String>)],
    tls: &DialTls,
    timeout: Duration,
) -> Result<(), String> {
    tracing::info!(
        local_member_id = format!("{me:x}"),
        timeout = ?timeout,
        "starting initial corruption check"
    );
    let answers = ask_peers(me, peers, local.revision, tls, timeout).await;
    let verdict = initial_check(&local, &answers);
    for f in &verdict.findings {
        log_finding(me, &local, peers, f);
    }
    if verdict.inconsistent() {
        return Err(format!("{me:x} found data inconsistency with peers"));
    }
    tracing::info!(
        local_member_id = format!("{me:x}"),
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

/// `--experimental-corrupt-check-time`: every `period`, while this member leads, compares
/// its hash with every other member's and raises CORRUPT for the one the verdict names.
/// Returns once `shutdown` turns true.
pub async fn monitor(
    h: NodeHandle,
    tls: DialTls,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    assert!(!period.is_zero(), "the corruption check is off at 0");
    tracing::info!(
        local_member_id = format!("{:x}", h.member_id),
        interval = ?period,
        "enabled corruption checking"
    );
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(period) => {}
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            r = check(&h, &tls) => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "failed to check hash KV");
                }
            }
        }
    }
}

/// One periodic check (nothing unless this member leads).
async fn check(h: &NodeHandle, tls: &DialTls) -> Result<(), super::error::Error> {
    let me = h.member_id;
    let leading = h
        .run(false, move |d| {
            if !d.is_leader() {
                return Ok(None);
            }
            let local = d.member().applier().kv().hash_kv(0)?;
            Ok(Some((local, peers_of(d, me))))
        })
        .await?;
    let Some((before, peers)) = leading else {
        return Ok(());
    };
    let answers = ask_peers(me, &peers, before.revision, tls, h.timeout()).await;
    // After a ReadIndex round: this member still led when it hashed again.
    let after = h
        .run(true, |d| Ok(d.member().applier().kv().hash_kv(0)?))
        .await?;
    let verdict = periodic_check(me, &before, &after, &answers);
    for f in &verdict.findings {
        log_finding(me, &before, &peers, f);
    }
    tracing::info!(
        number_of_peers_checked = verdict.checked,
        "finished peer corruption check"
    );
    if let Some(member) = verdict.alarm {
        let cmd = Command::Alarm {
            action: AlarmAction::Activate,
            member,
            kind: ALARM_CORRUPT,
        };
        h.propose(cmd).await?;
    }
    Ok(())
}
