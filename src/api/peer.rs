//! The peer service: the receiving side of the member-to-member protocol. Raft messages go
//! to the driver in order; a member joining the cluster asks here who it is.

use super::convert;
use crate::api::error::ServerError;
use crate::pb::peer::{self, peer_server::Peer};
use crate::server::driver::{NodeHandle, REMOVED_MESSAGE};
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
            let batch = tokio::select! {
                next = input.message() => match next? {
                    Some(batch) => batch,
                    None => break,
                },
                _ = self.h.stopping() => return Err(ServerError::Stopped.status()),
            };
            if batch.cluster_id != self.h.cluster_id {
                return Err(Status::failed_precondition(format!(
                    "cluster ID mismatch: this member is in {:x}, the sender in {:x}",
                    self.h.cluster_id, batch.cluster_id
                )));
            }
            let removed = {
                let removed = self.h.removed.lock().unwrap_or_else(|e| e.into_inner());
                batch.messages.iter().any(|m| removed.contains(&m.from))
            };
            if removed {
                return Err(Status::failed_precondition(REMOVED_MESSAGE));
            }
            for m in batch.messages {
                match convert::raft_message_from_pb(m) {
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
}
