//! The peer transport: Raft messages to the other members, one long-lived gRPC stream per
//! peer, reconnected with backoff.
//!
//! Sending never blocks the driver: each peer has a bounded queue; a full queue or a broken
//! stream drops messages and reports the peer unreachable (Raft resends what matters, and
//! slows a follower it cannot reach down to probing). Messages to one peer keep their order.
//!
//! What it does not do: it receives nothing (the peer [`super::service`] hands
//! incoming messages to the driver), and it never decides what to send.

use crate::node::REMOVED_MESSAGE;
use crate::pb::peer::RaftBatch;
use crate::pb::peer::peer_client::PeerClient;
use crate::raft::{Message, MessageKind, NodeId};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// What the transport learns about its peers, for the member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// A peer could not be reached: messages to it were dropped.
    Unreachable(NodeId),
    /// Whether a snapshot reached a peer.
    Snapshot(NodeId, bool),
    /// A peer refused this member's messages: it was removed from the cluster.
    RemovedByPeer,
}

/// Takes the transport's reports; it must not block.
pub type Reports = std::sync::Arc<dyn Fn(Report) + Send + Sync>;

/// Messages queued for one peer before new ones are dropped.
const PEER_QUEUE_MAX: usize = 4096;
/// Messages sent in one batch on the stream.
const BATCH_MESSAGES_MAX: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
/// How long a broken stream's call gets to report why it ended.
const CALL_END_WAIT: Duration = Duration::from_millis(500);
/// Largest message the peer protocol carries (a snapshot travels in one message).
pub const PEER_MESSAGE_BYTES_MAX: usize = 1 << 30;

struct PeerLink {
    urls: Vec<String>,
    tx: mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
}

/// The sending side of the peer protocol.
pub struct Transport {
    /// This member's ID, which every batch carries as its sender.
    member_id: NodeId,
    cluster_id: u64,
    peers: HashMap<NodeId, PeerLink>,
    /// Where what the transport learned goes (the member's inbox).
    reports: Reports,
    /// How peers' `https://` URLs are dialed.
    tls: crate::server::DialTls,
    /// The runtime the peer links run on: the one the transport was made on, not the
    /// driver's own thread, where they would wait behind every fsync.
    runtime: tokio::runtime::Handle,
}

impl Transport {
    /// Call on the runtime the peer links should run on.
    pub fn new(
        member_id: NodeId,
        cluster_id: u64,
        reports: Reports,
        tls: crate::server::DialTls,
    ) -> Transport {
        Transport {
            member_id,
            cluster_id,
            peers: HashMap::new(),
            reports,
            tls,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Makes the set of peers `peers` (ID and peer URLs): new ones are connected, gone ones
    /// dropped, ones whose URLs changed reconnected.
    pub fn set_peers(&mut self, peers: Vec<(NodeId, Vec<String>)>) {
        let wanted: HashMap<NodeId, Vec<String>> = peers.into_iter().collect();
        self.peers.retain(|id, link| {
            let keep = wanted.get(id) == Some(&link.urls);
            if !keep {
                link.task.abort();
            }
            keep
        });
        for (id, urls) in wanted {
            if self.peers.contains_key(&id) || urls.is_empty() {
                continue;
            }
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            let task = self.runtime.spawn(peer_loop(
                id,
                urls.clone(),
                self.member_id,
                self.cluster_id,
                rx,
                self.reports.clone(),
                self.tls.clone(),
            ));
            self.peers.insert(id, PeerLink { urls, tx, task });
        }
    }

    pub fn send_all(&mut self, messages: Vec<Message>) {
        for m in messages {
            let to = m.to;
            let snapshot = m.kind == MessageKind::Snapshot;
            let Some(link) = self.peers.get(&to) else {
                tracing::trace!(to = format!("{to:x}"), "no link to peer; message dropped");
                if snapshot {
                    (self.reports)(Report::Snapshot(to, false));
                }
                continue;
            };
            if link.tx.try_send(m).is_err() {
                (self.reports)(Report::Unreachable(to));
                if snapshot {
                    (self.reports)(Report::Snapshot(to, false));
                }
            }
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for link in self.peers.values() {
            link.task.abort();
        }
    }
}

async fn peer_loop(
    to: NodeId,
    urls: Vec<String>,
    from: NodeId,
    cluster_id: u64,
    mut rx: mpsc::Receiver<Message>,
    reports: Reports,
    tls: crate::server::DialTls,
) {
    let mut backoff = BACKOFF_MIN;
    let mut attempt = 0usize;
    loop {
        let url = urls[attempt % urls.len()].clone();
        attempt += 1;
        let client = match connect(&url, &tls).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer = format!("{to:x}"), url, error = %e, "peer unreachable");
                // What queued meanwhile is stale: drop it, and let Raft know. A dropped
                // snapshot must be reported as failed, or the leader waits for it forever and
                // never catches this peer up (found by `sim member` with membership changes).
                let mut dropped = false;
                while let Ok(m) = rx.try_recv() {
                    dropped = true;
                    if m.kind == MessageKind::Snapshot {
                        reports(Report::Snapshot(to, false));
                    }
                }
                if dropped {
                    reports(Report::Unreachable(to));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        let (btx, brx) = mpsc::channel::<RaftBatch>(16);
        let mut client = client;
        let mut call = tokio::spawn(async move {
            client
                .raft(tokio_stream::wrappers::ReceiverStream::new(brx))
                .await
        });
        loop {
            let Some(first) = rx.recv().await else {
                call.abort();
                return;
            };
            let mut batch = vec![first];
            while batch.len() < BATCH_MESSAGES_MAX {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let snapshots: Vec<NodeId> = batch
                .iter()
                .filter(|m| m.kind == MessageKind::Snapshot)
                .map(|m| m.to)
                .collect();
            let messages = batch.iter().map(super::codec::raft_message_to_pb).collect();
            let sent = btx
                .send(RaftBatch {
                    cluster_id,
                    messages,
                    from,
                })
                .await
                .is_ok();
            for id in snapshots {
                reports(Report::Snapshot(id, sent));
            }
            if !sent {
                reports(Report::Unreachable(to));
                break;
            }
        }
        // The stream ended: a peer that removed this member says so as it ends it.
        if let Ok(Ok(Err(status))) = tokio::time::timeout(CALL_END_WAIT, &mut call).await
            && status.message() == REMOVED_MESSAGE
        {
            reports(Report::RemovedByPeer);
        }
        call.abort();
    }
}

async fn connect(
    url: &str,
    tls: &crate::server::DialTls,
) -> Result<PeerClient<tonic::transport::Channel>, String> {
    let channel = crate::server::dial(url, tls, Duration::from_millis(1000)).await?;
    Ok(PeerClient::new(channel)
        .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX)
        .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX))
}
