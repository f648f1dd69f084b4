//! Membership and leadership changes as a nemesis makes them, through the cluster's own API
//! (etcd's MemberList, MemberRemove, MemberAdd, MemberPromote and MoveLeader): shared by the
//! madsim nemesis and the live one. Each retries as a careful operator would and reports why
//! it could not.

pub use super::peer_url;
use super::{OP_TIMEOUT, client_url};
use oxcd::pb::etcdserverpb as pb;
use oxcd::pb::etcdserverpb::cluster_client::ClusterClient;
use oxcd::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use std::time::Duration;

/// Asks the leader to hand leadership to member `to`; the leader's index, or why not.
pub async fn move_leader(nodes: usize, to: usize) -> Result<usize, String> {
    let mut ids = Vec::new();
    let mut leader = None;
    for m in 0..nodes {
        let status = async {
            let mut c = MaintenanceClient::connect(client_url(m)).await.ok()?;
            c.status(pb::StatusRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        };
        let s = tokio::time::timeout(OP_TIMEOUT, status)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| format!("m{m} did not answer Status"))?;
        let id = s.header.map_or(0, |h| h.member_id);
        if s.leader == id {
            leader = Some(m);
        }
        ids.push(id);
    }
    let from = leader.ok_or("no member leads")?;
    if from == to {
        return Err(format!("m{to} leads already"));
    }
    let go = async {
        let mut c = MaintenanceClient::connect(client_url(from))
            .await
            .map_err(|e| e.to_string())?;
        c.move_leader(pb::MoveLeaderRequest { target_id: ids[to] })
            .await
            .map_err(|e| e.message().to_string())
    };
    match tokio::time::timeout(OP_TIMEOUT * 5, go).await {
        Ok(Ok(_)) => Ok(from),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("MoveLeader timed out".into()),
    }
}

/// The cluster's member list, from whichever member answers first.
pub async fn member_list(nodes: usize) -> Option<Vec<pb::Member>> {
    member_list_as(nodes, true).await
}

/// [`member_list`], linearizable or as the first member to answer applied it.
async fn member_list_as(nodes: usize, linearizable: bool) -> Option<Vec<pb::Member>> {
    for m in 0..nodes {
        let list = async {
            let mut c = ClusterClient::connect(client_url(m)).await.ok()?;
            c.member_list(pb::MemberListRequest { linearizable })
                .await
                .ok()
                .map(|r| r.into_inner().members)
        };
        if let Ok(Some(members)) = tokio::time::timeout(OP_TIMEOUT, list).await {
            return Some(members);
        }
    }
    None
}

/// Removes member `victim`: its ID once the member list no longer has it.
pub async fn remove_member(nodes: usize, victim: usize) -> Result<u64, String> {
    let members = member_list(nodes).await.ok_or("no member list")?;
    let id = members
        .iter()
        .find(|m| m.peer_ur_ls.contains(&peer_url(victim)))
        .map(|m| m.id)
        .ok_or_else(|| format!("m{victim} is not a member"))?;
    for m in (0..nodes).filter(|&m| m != victim) {
        let remove = async {
            let mut c = ClusterClient::connect(client_url(m)).await.ok()?;
            c.member_remove(pb::MemberRemoveRequest { id }).await.ok()
        };
        let _ = tokio::time::timeout(OP_TIMEOUT * 3, remove).await;
        // Answered or not, the member list says whether it happened.
        for _ in 0..10 {
            if let Some(members) = member_list(nodes).await {
                if members.iter().all(|m| m.id != id) {
                    return Ok(id);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Err(format!("m{victim} ({id:x}) is still a member"))
}

/// Adds member `victim`'s peer URL back (as a learner if `learner`), retrying until the add
/// is answered or a member's list has it: its new ID. The lists asked are not linearizable:
/// a voter added to a cluster of one makes a quorum of two, and nothing linearizable is
/// answered until the new member runs, which its caller starts only after this returns.
pub async fn add_member(nodes: usize, victim: usize, learner: bool) -> Result<u64, String> {
    for attempt in 0..30 {
        if let Some(members) = member_list_as(nodes, false).await
            && let Some(m) = members
                .iter()
                .find(|m| m.peer_ur_ls.contains(&peer_url(victim)))
        {
            return Ok(m.id);
        }
        let m = (victim + 1 + attempt) % nodes;
        let add = async {
            let mut c = ClusterClient::connect(client_url(m)).await.ok()?;
            c.member_add(pb::MemberAddRequest {
                peer_ur_ls: vec![peer_url(victim)],
                is_learner: learner,
            })
            .await
            .ok()
        };
        if let Ok(Some(added)) = tokio::time::timeout(OP_TIMEOUT * 3, add).await
            && let Some(member) = added.into_inner().member
        {
            return Ok(member.id);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(format!("m{victim} was not added back"))
}

/// Promotes learner `id` once it has caught up (the leader refuses until then).
pub async fn promote(nodes: usize, id: u64) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..40 {
        let m = attempt % nodes;
        let go = async {
            let mut c = ClusterClient::connect(client_url(m))
                .await
                .map_err(|e| e.to_string())?;
            c.member_promote(pb::MemberPromoteRequest { id })
                .await
                .map_err(|e| e.message().to_string())
        };
        match tokio::time::timeout(OP_TIMEOUT * 3, go).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e))
                if e.contains("can only promote a learner member") && !e.contains("in sync") =>
            {
                // Promoted already (an earlier try landed after its timeout).
                return Ok(());
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("{id:x} not promoted: {last}"))
}
