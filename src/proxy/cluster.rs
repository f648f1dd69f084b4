//! The proxy's Cluster service and its registration under `--resolver-prefix`, as etcd's:
//!
//! - With `--resolver-prefix` and `--resolver-ttl`, the proxy keeps the key
//!   `<prefix>/<advertise-client-url>` on a lease of that TTL, its value etcd's endpoint record
//!   (`{"Op":0,"Addr":...,"Metadata":"{\"name\":\"<hostname>\"}"}`), and makes it again when the
//!   lease is lost.
//! - `MemberList` lists the proxies registered under the prefix (name and client URL only),
//!   or, with no prefix or none registered yet, this proxy at its advertised URL; with an
//!   empty `--advertise-client-url`, it is the members' list, passed through.
//! - Member changes go to the members.
//!
//! What it does not do: namespace the registration (it lives in the cluster's keyspace, where
//! other proxies look for it).

use super::namespace::prefix_end;
use super::upstream::Upstream;
use crate::pb::etcdserverpb::{
    self as pb, cluster_client::ClusterClient, cluster_server::Cluster, kv_client::KvClient,
    lease_client::LeaseClient,
};
use bytes::Bytes;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The pause between attempts to register again.
const REGISTER_RETRY: Duration = Duration::from_secs(1);

/// The Cluster service.
#[derive(Clone)]
pub struct ClusterProxy {
    upstream: Upstream,
    /// `--advertise-client-url`.
    advertise: String,
    /// `--resolver-prefix`.
    prefix: String,
}

/// The machine's host name, which etcd's proxy registers and lists as its name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The registration record of a proxy at `addr`: etcd's endpoint JSON, whose metadata is
/// itself a JSON string.
fn record(addr: &str) -> String {
    // Written out by hand: etcd's field order (Go's struct order), which a JSON map would
    // sort.
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let meta = format!("{{\"name\":{}}}", quoted(&hostname()));
    format!(
        "{{\"Op\":0,\"Addr\":{},\"Metadata\":{}}}",
        quoted(addr),
        quoted(&meta)
    )
}

impl ClusterProxy {
    pub fn new(upstream: Upstream, advertise: String, prefix: String) -> ClusterProxy {
        ClusterProxy {
            upstream,
            advertise,
            prefix,
        }
    }

    /// The proxies registered under the prefix, by address.
    async fn registered(&self) -> Result<Vec<pb::Member>, Status> {
        let from = format!("{}/", self.prefix).into_bytes();
        let request = pb::RangeRequest {
            range_end: prefix_end(&from),
            key: Bytes::from(from),
            serializable: true,
            ..Default::default()
        };
        let answer = forward_call!(
            self.upstream,
            KvClient,
            &tonic::metadata::MetadataMap::new(),
            range,
            request
        )?;
        let mut members = Vec::new();
        for kv in answer.into_inner().kvs {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&kv.value) else {
                continue;
            };
            let Some(addr) = v.get("Addr").and_then(|a| a.as_str()) else {
                continue;
            };
            let name = v
                .get("Metadata")
                .and_then(|m| m.as_str())
                .and_then(|m| serde_json::from_str::<serde_json::Value>(m).ok())
                .and_then(|m| m.get("name").and_then(|n| n.as_str()).map(str::to_string))
                .unwrap_or_default();
            members.push(pb::Member {
                name,
                client_ur_ls: vec![addr.to_string()],
                ..Default::default()
            });
        }
        Ok(members)
    }

    /// Keeps this proxy registered under the prefix with a lease of `ttl` seconds, for as
    /// long as the proxy runs.
    pub async fn register(self, ttl: i64) {
        loop {
            match self.register_once(ttl).await {
                Ok(()) => tracing::warn!(
                    "the registration's lease was lost (a partition or a restart); registering again"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot register the proxy"),
            }
            tokio::time::sleep(REGISTER_RETRY).await;
        }
    }

    /// Registers once; returns when the lease is lost.
    async fn register_once(&self, ttl: i64) -> Result<(), Status> {
        let grant = pb::LeaseGrantRequest { ttl, id: 0 };
        let lease = forward_call!(
            self.upstream,
            LeaseClient,
            &tonic::metadata::MetadataMap::new(),
            lease_grant,
            grant
        )?
        .into_inner();
        if !lease.error.is_empty() {
            return Err(Status::unavailable(lease.error));
        }
        let put = pb::PutRequest {
            key: Bytes::from(format!("{}/{}", self.prefix, self.advertise)),
            value: Bytes::from(record(&self.advertise)),
            lease: lease.id,
            ..Default::default()
        };
        forward_call!(
            self.upstream,
            KvClient,
            &tonic::metadata::MetadataMap::new(),
            put,
            put
        )?;
        tracing::info!(addr = %self.advertise, ttl, "registered the proxy");
        // Kept alive at a third of the TTL on a stream of its own, as clientv3's session is.
        let (channel, _) = self.upstream.channel().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut answers = LeaseClient::new(channel)
            .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let every = Duration::from_millis((ttl.max(1) as u64) * 1000 / 3);
        loop {
            if tx
                .send(pb::LeaseKeepAliveRequest { id: lease.id })
                .await
                .is_err()
            {
                return Ok(());
            }
            match answers.message().await? {
                Some(a) if a.ttl > 0 => {}
                _ => return Ok(()),
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterProxy {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        {
            let (md, _, message) = request.into_parts();
            forward_call!(self.upstream, ClusterClient, &md, member_add, message)
        }
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        {
            let (md, _, message) = request.into_parts();
            forward_call!(self.upstream, ClusterClient, &md, member_remove, message)
        }
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        {
            let (md, _, message) = request.into_parts();
            forward_call!(self.upstream, ClusterClient, &md, member_update, message)
        }
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        {
            let (md, _, message) = request.into_parts();
            forward_call!(self.upstream, ClusterClient, &md, member_promote, message)
        }
    }

    async fn member_list(
        &self,
        request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        if self.advertise.is_empty() {
            return {
                let (md, _, message) = request.into_parts();
                forward_call!(self.upstream, ClusterClient, &md, member_list, message)
            };
        }
        if !self.prefix.is_empty() {
            let members = self.registered().await?;
            if !members.is_empty() {
                return Ok(Response::new(pb::MemberListResponse {
                    members,
                    ..Default::default()
                }));
            }
        }
        Ok(Response::new(pb::MemberListResponse {
            members: vec![pb::Member {
                name: hostname(),
                client_ur_ls: vec![self.advertise.clone()],
                ..Default::default()
            }],
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_etcds_endpoint_json() {
        let text = record("127.0.0.1:23790");
        assert!(
            text.starts_with(
                "{\"Op\":0,\"Addr\":\"127.0.0.1:23790\",\"Metadata\":\"{\\\"name\\\":"
            )
        );
        let r: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(r["Op"], 0);
        assert_eq!(r["Addr"], "127.0.0.1:23790");
        let meta: serde_json::Value =
            serde_json::from_str(r["Metadata"].as_str().unwrap()).unwrap();
        assert_eq!(meta["name"], hostname());
    }
}
