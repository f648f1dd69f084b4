//! The Watch service: one bidirectional stream per client, many watchers per stream. The
//! stream's watchers live in the driver's [`crate::mvcc::Watchers`]; this side reads the
//! client's requests and the driver pushes responses into the stream's bounded outbox.

use super::convert;
use crate::mvcc::{self, StreamId};
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

/// What the driver did with one client request.
enum Done {
    Ok,
    /// The stream's control outbox is full: retry once the client drained it.
    Full,
    /// The stream is gone (the member restored a snapshot, or it closed).
    Gone,
}

async fn handle_request(
    h: &NodeHandle,
    stream: StreamId,
    req: RequestUnion,
) -> Result<Done, crate::server::error::Error> {
    h.run(false, move |d| {
        let (watchers, kv) = d.member_mut().applier_mut().watchers_mut();
        if !watchers.is_open(stream) {
            return Ok(Done::Gone);
        }
        let r = match req {
            RequestUnion::CreateRequest(c) => watchers
                .create(stream, convert::watch_create(c), kv)
                .map(|_| ()),
            RequestUnion::CancelRequest(c) => {
                watchers.cancel(stream, c.watch_id);
                Ok(())
            }
            RequestUnion::ProgressRequest(_) => watchers.progress_request(stream, kv),
        };
        Ok(match r {
            Err(mvcc::Error::WatchStreamFull { .. }) => Done::Full,
            // Other refusals were answered on the stream as failed creates.
            _ => Done::Ok,
        })
    })
    .await
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
        let stream = self
            .h
            .run(false, move |d| {
                let (watchers, _) = d.member_mut().applier_mut().watchers_mut();
                let id = watchers.open_stream();
                let outbox = Outbox {
                    tx,
                    cluster_id: d.cluster_id,
                    member_id: d.member_id,
                };
                d.watch_outs.insert(id, Box::new(outbox));
                Ok(id)
            })
            .await?;
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
                    Ok(None) | Err(_) => break,
                };
                loop {
                    match handle_request(&h, stream, req.clone()).await {
                        Ok(Done::Ok) => break,
                        Ok(Done::Full) => tokio::time::sleep(CONTROL_FULL_RETRY).await,
                        Ok(Done::Gone) | Err(_) => break 'read,
                    }
                }
            }
            let _ = h
                .run(false, move |d| {
                    let (watchers, _) = d.member_mut().applier_mut().watchers_mut();
                    watchers.close_stream(stream);
                    d.watch_outs.remove(&stream);
                    Ok(())
                })
                .await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
