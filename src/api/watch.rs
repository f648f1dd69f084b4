//! The Watch service: one bidirectional stream per client, many watchers per stream. The
//! stream's watchers live in the member server; this side translates the client's requests
//! for it, and the driver pushes the member's responses into the stream's bounded outbox.

use super::convert;
use super::error::auth_status;
use crate::auth::AuthError;
use crate::mvcc;
use crate::node::{Header, WatchRequest, WatchTaken};
use crate::pb::etcdserverpb::{self as pb, watch_request::RequestUnion, watch_server::Watch};
use crate::server::driver::{NodeHandle, Room, WatchSink};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses buffered towards one client before the driver stops pushing (the watchers keep
/// the rest and catch up later).
const OUTBOX_RESPONSES_MAX: usize = 64;
/// How long a create waits before retrying when the stream's control responses are full.
const CONTROL_FULL_RETRY: Duration = Duration::from_millis(5);

pub struct WatchService {
    h: NodeHandle,
}

impl WatchService {
    pub fn new(h: NodeHandle) -> WatchService {
        WatchService { h }
    }
}

/// A stream's outbox: the driver hands it core responses, it sends them in etcd's wire form.
struct Outbox {
    tx: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    cluster_id: u64,
    member_id: u64,
}

impl WatchSink for Outbox {
    fn room(&self) -> Room {
        if self.tx.is_closed() {
            Room::Closed
        } else if self.tx.capacity() == 0 {
            Room::Full
        } else {
            Room::Free
        }
    }

    fn deliver(&mut self, response: mvcc::WatchResponse, raft_term: u64) {
        let base = pb::ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision: 0,
            raft_term,
        };
        // The driver asked `room` first and is the only sender but for the stream's last
        // error at shutdown, so this finds room.
        let _ = self
            .tx
            .try_send(Ok(convert::watch_response(response, &base)));
    }
}

/// etcd's answer to a create the auth state refused: a created and canceled watcher, whose
/// reason is the gRPC error as Go's client prints it.
fn refused_create(h: &NodeHandle, error: &AuthError, at: Header) -> pb::WatchResponse {
    let status = auth_status(error);
    pb::WatchResponse {
        header: Some(super::kv::header(h, at)),
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: format!(
            "rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        ),
        ..Default::default()
    }
}

/// A client's watch request in the member's terms.
fn member_request(req: RequestUnion) -> WatchRequest {
    match req {
        RequestUnion::CreateRequest(c) => WatchRequest::Create(convert::watch_create(c)),
        RequestUnion::CancelRequest(c) => WatchRequest::Cancel(c.watch_id),
        RequestUnion::ProgressRequest(_) => WatchRequest::Progress,
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(OUTBOX_RESPONSES_MAX);
        let stopped = tx.clone();
        let outbox = Outbox {
            tx,
            cluster_id: self.h.cluster_id,
            member_id: self.h.member_id,
        };
        let stream = self.h.open_watch(Box::new(outbox)).await?;
        let who = super::credential(&self.h, &request);
        let mut input = request.into_inner();
        let h = self.h.clone();
        tokio::spawn(async move {
            'read: loop {
                let next = match h.unless_stopping(input.message()).await {
                    Ok(next) => next,
                    Err(e) => {
                        let _ = stopped.send(Err(e.into())).await;
                        break;
                    }
                };
                let req = match next {
                    Ok(Some(pb::WatchRequest {
                        request_union: Some(u),
                    })) => u,
                    Ok(Some(_)) => continue,
                    // A client that stopped sending still gets its watchers' events, as
                    // etcd keeps the stream until the client goes away (the JSON gateway's
                    // request body ends right after the create).
                    Ok(None) => {
                        let _ = h.unless_stopping(stopped.closed()).await;
                        break;
                    }
                    Err(_) => break,
                };
                let req = member_request(req);
                loop {
                    match h.watch_request(stream, req.clone(), who.clone()).await {
                        Ok(WatchTaken::Done) => break,
                        Ok(WatchTaken::Refused { error, header }) => {
                            let refused = refused_create(&h, &error, header);
                            if stopped.send(Ok(refused)).await.is_err() {
                                break 'read;
                            }
                            break;
                        }
                        Ok(WatchTaken::Full) => tokio::time::sleep(CONTROL_FULL_RETRY).await,
                        Ok(WatchTaken::Gone) | Err(_) => break 'read,
                    }
                }
            }
            let _ = h.close_watch(stream).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
