//! The peer service: the receiving side of the member-to-member protocol. Raft messages go
//! to the driver in order; a member joining the cluster asks here who it is; the corruption
//! checks ask here for this member's hash.

use super::codec;
use crate::pb::peer::{self, peer_server::Peer};
use crate::server::driver::{NodeHandle, REMOVED_MESSAGE};
use std::collections::BTreeSet;
use tonic::{Request, Response, Status, Streaming};

pub struct PeerService {
    h: NodeHandle,
}

impl PeerService {
    pub fn new(h: NodeHandle) -> PeerService {
        PeerService { h }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(
        &self,
        request: Request<Streaming<peer::RaftBatch>>,
    ) -> Result<Response<peer::RaftAck>, Status> {
        let mut input = request.into_inner();
        loop {
            let Some(batch) = self.h.unless_stopping(input.message()).await?? else {
                break;
            };
            let messages = {
                let removed = self.h.removed.lock().unwrap_or_else(|e| e.into_inner());
                admit(batch, self.h.cluster_id, &removed)?
            };
            for m in messages {
                match codec::raft_message_from_pb(m) {
                    Ok(m) => self.h.step_wait(m).await?,
                    Err(e) => tracing::warn!(error = %e, "malformed peer message dropped"),
                }
            }
        }
        Ok(Response::new(peer::RaftAck {}))
    }

    async fn members(
        &self,
        _request: Request<peer::MembersRequest>,
    ) -> Result<Response<peer::MembersResponse>, Status> {
        let members = self
            .h
            .run(false, |d| {
                Ok(d.members()
                    .into_iter()
                    .map(|(m, learner)| peer::PeerMember {
                        id: m.id,
                        name: m.name,
                        peer_urls: m.peer_urls,
                        client_urls: m.client_urls,
                        is_learner: learner,
                    })
                    .collect())
            })
            .await?;
        Ok(Response::new(peer::MembersResponse {
            cluster_id: self.h.cluster_id,
            members,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<peer::HashKvRequest>,
    ) -> Result<Response<peer::HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let (h, current) = self
            .h
            .run(false, move |d| {
                let h = d.member().applier().kv().hash_kv(revision)?;
                Ok((h, d.header().revision))
            })
            .await?;
        Ok(Response::new(peer::HashKvResponse {
            member_id: self.h.member_id,
            hash: h.hash,
            revision: current,
            compact_revision: h.compact_revision,
        }))
    }
}

/// The messages of `batch` to step, or the answer that ends the sender's stream: another
/// cluster's, or a sender this member removed.
///
/// Only the sender hears that it was removed (as etcd tells it by its X-Server-From
/// header). A message from a removed member that another member passes on (a ReadIndex
/// request forwarded to the leader keeps its asker's ID) is dropped instead: refusing the
/// stream for it told the forwarder that it was removed itself, and it stopped (found by the
/// simulation: `sim/run cluster --seed 3 --count 1 --duration 60s --faults all` at commit
/// e0e4fbe).
fn admit(
    batch: peer::RaftBatch,
    cluster_id: u64,
    removed: &BTreeSet<u64>,
) -> Result<Vec<peer::RaftMessage>, Status> {
    if batch.cluster_id != cluster_id {
        return Err(Status::failed_precondition(format!(
            "cluster ID mismatch: this member is in {cluster_id:x}, the sender in {:x}",
            batch.cluster_id
        )));
    }
    // A sender older than the batch's `from` is named by its first message.
    let sender = match batch.from {
        0 => batch.messages.first().map_or(0, |m| m.from),
        from => from,
    };
    if removed.contains(&sender) {
        return Err(Status::failed_precondition(REMOVED_MESSAGE));
    }
    let mut messages = batch.messages;
    let sent = messages.len();
    messages.retain(|m| !removed.contains(&m.from));
    if messages.len() < sent {
        tracing::debug!(
            n = sent - messages.len(),
            "messages of removed members dropped"
        );
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: u64) -> peer::RaftMessage {
        peer::RaftMessage {
            from,
            to: 1,
            ..Default::default()
        }
    }

    fn batch(from: u64, senders: &[u64]) -> peer::RaftBatch {
        peer::RaftBatch {
            cluster_id: 7,
            messages: senders.iter().copied().map(message).collect(),
            from,
        }
    }

    fn froms(r: Result<Vec<peer::RaftMessage>, Status>) -> Vec<u64> {
        r.expect("admitted").iter().map(|m| m.from).collect()
    }

    #[test]
    fn a_forwarded_message_of_a_removed_member_is_dropped_not_refused() {
        let removed = BTreeSet::from([9]);
        // Member 2 passes on a ReadIndex request of removed member 9 with its own heartbeat.
        assert_eq!(froms(admit(batch(2, &[9, 2]), 7, &removed)), vec![2]);
        assert_eq!(froms(admit(batch(2, &[9]), 7, &removed)), Vec::<u64>::new());
    }

    #[test]
    fn a_removed_sender_and_another_cluster_are_refused() {
        let removed = BTreeSet::from([9]);
        let refused = admit(batch(9, &[9]), 7, &removed).unwrap_err();
        assert_eq!(refused.message(), REMOVED_MESSAGE);
        // A batch without `from` is its first message's.
        let refused = admit(batch(0, &[9, 2]), 7, &removed).unwrap_err();
        assert_eq!(refused.message(), REMOVED_MESSAGE);
        assert_eq!(froms(admit(batch(0, &[2, 9]), 7, &removed)), vec![2]);
        let mut other = batch(2, &[2]);
        other.cluster_id = 8;
        let refused = admit(other, 7, &removed).unwrap_err();
        assert!(
            refused.message().contains("cluster ID mismatch"),
            "{refused:?}"
        );
    }
}
