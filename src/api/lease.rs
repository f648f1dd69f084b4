//! The Lease service. Grants and revokes go through Raft from any member; keep-alives and
//! time-to-live need the leader's (primary) lessor, so a follower forwards them to the
//! leader's client URL, as etcd forwards them over its peer port.

use super::error::{Error, ServerError, lease_status};
use super::kv::header;
use crate::lease;
use crate::node::{Applied, Command};
use crate::pb::etcdserverpb::{self as pb, lease_client::LeaseClient, lease_server::Lease};
use crate::server::driver::NodeHandle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

pub struct LeaseService {
    h: NodeHandle,
}

impl LeaseService {
    pub fn new(h: NodeHandle) -> LeaseService {
        LeaseService { h }
    }
}

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
    let mut last = ServerError::NoLeader.status();
    for url in urls {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url) else {
            continue;
        };
        match endpoint
            .connect_timeout(std::time::Duration::from_secs(1))
            .connect()
            .await
        {
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

fn is_not_leader(s: &Status) -> bool {
    s.code() == Code::FailedPrecondition && s.message() == ServerError::NotLeader.status().message()
}

/// A client's keep-alive stream, as a follower carries it to the leader: one stream to the
/// leader for the life of the client's stream, opened at its first forwarded keep-alive
/// (dialing the leader for every keep-alive cost a connection each: 0.45 of etcd's rate on
/// three members). Every forwarded keep-alive waits at most the request timeout for its
/// answer, so a leader that stops answering without closing the connection (a partition)
/// cannot hold the client's stream forever; after any failure the stream is dropped and the
/// next forwarded keep-alive opens a new one.
#[derive(Default)]
struct LeaderStream {
    open: Option<(
        mpsc::Sender<pb::LeaseKeepAliveRequest>,
        Streaming<pb::LeaseKeepAliveResponse>,
    )>,
}

impl LeaderStream {
    /// Sends `id`'s keep-alive to the leader and waits for its answer.
    async fn keep_alive(
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

/// One keep-alive: answered here when this member leads, by the leader otherwise.
async fn keep_alive_once(
    h: &NodeHandle,
    to_leader: &mut LeaderStream,
    id: i64,
) -> Result<pb::LeaseKeepAliveResponse, Status> {
    match h.keep_alive(id).await {
        Ok((ttl, at)) => Ok(pb::LeaseKeepAliveResponse {
            header: Some(header(h, at)),
            id,
            ttl,
        }),
        Err(Error::Server(ServerError::NotLeader)) => to_leader.keep_alive(h, id).await,
        Err(e) => Err(e.into()),
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let req = request.into_inner();
        if req.ttl > lease::TTL_MAX_S {
            return Err(lease_status(&lease::Error::TtlTooLarge {
                ttl_s: req.ttl,
                ttl_max_s: lease::TTL_MAX_S,
            }));
        }
        let cmd = Command::LeaseGrant {
            id: req.id,
            ttl_s: req.ttl,
        };
        match self.h.propose(cmd).await? {
            (Applied::LeaseGrant(g), at) => Ok(Response::new(pb::LeaseGrantResponse {
                header: Some(header(&self.h, at)),
                id: g.id,
                ttl: g.ttl_s,
                error: String::new(),
            })),
            (other, _) => Err(super::kv::unexpected(&other)),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let id = request.into_inner().id;
        let (_, at) = self.h.propose(Command::LeaseRevoke { id }).await?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: Some(header(&self.h, at)),
        }))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<pb::LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut input = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let h = self.h.clone();
        tokio::spawn(async move {
            let mut to_leader = LeaderStream::default();
            loop {
                let req = match h.unless_stopping(input.message()).await {
                    Ok(Ok(Some(req))) => req,
                    Ok(_) => break,
                    Err(stopped) => {
                        let _ = tx.send(Err(Status::from(stopped))).await;
                        break;
                    }
                };
                let r = keep_alive_once(&h, &mut to_leader, req.id).await;
                let failed = r.is_err();
                if tx.send(r).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let (id, keys) = (req.id, req.keys);
        let local = self
            .h
            .run(true, move |d| {
                let now = d.now_ms();
                let at = d.header();
                let lessor = d.member().applier().lessor();
                match lessor.time_to_live(id, now, keys) {
                    Ok(t) => Ok(Some((t, at))),
                    Err(lease::Error::NotFound { .. }) => Ok(None),
                    Err(lease::Error::NotPrimary) => Err(ServerError::NotLeader.into()),
                    Err(e) => Err(e.into()),
                }
            })
            .await
            .map_err(Status::from);
        let h = &self.h;
        match local {
            Ok(Some((t, at))) => Ok(Response::new(pb::LeaseTimeToLiveResponse {
                header: Some(header(h, at)),
                id: t.id,
                ttl: t.ttl_s,
                granted_ttl: t.granted_ttl_s,
                keys: t.keys,
            })),
            Ok(None) => {
                let at = h.run(false, |d| Ok(d.header())).await?;
                Ok(Response::new(pb::LeaseTimeToLiveResponse {
                    header: Some(header(h, at)),
                    id,
                    ttl: -1,
                    granted_ttl: 0,
                    keys: Vec::new(),
                }))
            }
            Err(s) if is_not_leader(&s) => {
                let mut client = LeaseClient::new(leader_channel(h).await?);
                client
                    .lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys })
                    .await
            }
            Err(s) => Err(s),
        }
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let (ids, at) = self
            .h
            .run(true, |d| {
                Ok((d.member().applier().lessor().leases(), d.header()))
            })
            .await?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(header(&self.h, at)),
            leases: ids.into_iter().map(|id| pb::LeaseStatus { id }).collect(),
        }))
    }
}
