//! Leader forwarding: what a follower sends on to the leader on a client's behalf, over the
//! leader's client port (etcd's API): lease keep-alives, time-to-live and member promotion,
//! which only the leader can answer.
//!
//! What it does not do: forward writes (they travel through Raft as proposals) or decide
//! when to forward (the services do, on the facade's "not leader").

use crate::pb::etcdserverpb::{self as pb, lease_client::LeaseClient};
use crate::server::driver::NodeHandle;
use crate::server::error::ServerError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// A channel to the leader's client port, for forwarding leader-only requests.
pub async fn leader_channel(h: &NodeHandle) -> Result<tonic::transport::Channel, Status> {
    // Just after an election the leader may not have published its client URLs yet: wait for
    // them (bounded), as etcd serves no client before its member has published.
    let step = std::time::Duration::from_millis(h.config.heartbeat_ms);
    let mut urls = Err(ServerError::NoLeader.status());
    for _ in 0..(h.config.election_ms / h.config.heartbeat_ms).max(1) * 3 {
        urls = leader_client_urls(h).await;
        if urls.is_ok() {
            break;
        }
        tokio::time::sleep(step).await;
    }
    let urls = urls?;
    let tls = crate::server::client_dial_tls(&h.config).map_err(Status::internal)?;
    let mut last = ServerError::NoLeader.status();
    for url in urls {
        match crate::server::dial(&url, &tls, std::time::Duration::from_secs(1)).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Status::unavailable(format!("etcdserver: leader unreachable: {e}")),
        }
    }
    Err(last)
}

async fn leader_client_urls(h: &NodeHandle) -> Result<Vec<String>, Status> {
    h.run(false, |d| {
        let leader = d.leader();
        if leader == crate::raft::NONE {
            return Err(ServerError::NoLeader.into());
        }
        if leader == d.member_id {
            return Err(ServerError::LeaderChanged.into());
        }
        d.members()
            .into_iter()
            .find(|(m, _)| m.id == leader)
            .map(|(m, _)| m.client_urls)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ServerError::NoLeader.into())
    })
    .await
    .map_err(Status::from)
}

/// A client's keep-alive stream, as a follower carries it to the leader: one stream to the
/// leader for the life of the client's stream, opened at its first forwarded keep-alive
/// (dialing the leader for every keep-alive cost a connection each: 0.45 of etcd's rate on
/// three members). Every forwarded keep-alive waits at most the request timeout for its
/// answer, so a leader that stops answering without closing the connection (a partition)
/// cannot hold the client's stream forever; after any failure the stream is dropped and the
/// next forwarded keep-alive opens a new one.
#[derive(Default)]
pub struct LeaderStream {
    open: Option<(
        mpsc::Sender<pb::LeaseKeepAliveRequest>,
        Streaming<pb::LeaseKeepAliveResponse>,
    )>,
}

impl LeaderStream {
    /// Sends `id`'s keep-alive to the leader and waits for its answer.
    pub async fn keep_alive(
        &mut self,
        h: &NodeHandle,
        id: i64,
    ) -> Result<pb::LeaseKeepAliveResponse, Status> {
        let answer = tokio::time::timeout(h.timeout(), self.exchange(h, id)).await;
        let answer = answer.unwrap_or_else(|_| Err(ServerError::Timeout.status()));
        if answer.is_err() {
            self.open = None;
        }
        answer
    }

    async fn exchange(
        &mut self,
        h: &NodeHandle,
        id: i64,
    ) -> Result<pb::LeaseKeepAliveResponse, Status> {
        let req = pb::LeaseKeepAliveRequest { id };
        if let Some((requests, _)) = &self.open {
            requests
                .send(req)
                .await
                .map_err(|_| ServerError::LeaderChanged.status())?;
        } else {
            let mut client = LeaseClient::new(leader_channel(h).await?);
            let (requests, rx) = mpsc::channel(1);
            // The request is queued before the call: a grpc-go leader answers the call's
            // headers only once a first message arrives.
            requests.send(req).await.expect("the receiver is held here");
            let call = client.lease_keep_alive(ReceiverStream::new(rx));
            self.open = Some((requests, call.await?.into_inner()));
        }
        let (_, responses) = self.open.as_mut().expect("opened above");
        responses
            .message()
            .await?
            .ok_or_else(|| ServerError::LeaderChanged.status())
    }
}
