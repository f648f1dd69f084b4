//! `oxcd grpc-proxy start`: etcd's gRPC proxy, a stateless front end that serves etcd's v3
//! API (KV, Watch, Lease, Cluster, Maintenance, Auth, Lock, Election, health) to many clients
//! over a single connection to the cluster ([`upstream`]). On the way it
//! - coalesces watches: client watchers of one range share one watcher on the members
//!   ([`watch`]);
//! - coalesces lease keep-alives: each lease refreshed at most once per third of its TTL
//!   ([`lease`]);
//! - answers repeated serializable ranges from a cache that writes through it invalidate
//!   ([`cache`], [`kv`]);
//! - gives its clients a namespace (`--namespace`, [`namespace`]);
//! - registers itself under `--resolver-prefix`, so `MemberList` through any proxy lists the
//!   proxies ([`cluster`]).
//!
//! The same port serves `/metrics` and `/health` over HTTP, as etcd's proxy does.
//!
//! What it does not do: keep state that matters across a restart (clients resume their
//! watches from the last revision they saw, as against a member), or run under the
//! simulator (it is a client of real sockets; `tests/grpc_proxy.rs` runs it).

/// Sends `$message` with the metadata `$from` of the client's call (its credentials and
/// `hasleader` forwarded) through a `$client` on the upstream's connection, reporting a broken
/// connection so the next call dials again.
macro_rules! forward_call {
    ($upstream:expr, $client:ident, $from:expr, $method:ident, $message:expr) => {{
        let upstream = &$upstream;
        let (channel, generation) = upstream.channel().await?;
        let mut client = $client::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let r = client
            .$method($crate::proxy::upstream::forwarded($from, $message))
            .await;
        if let Err(e) = &r {
            upstream.observe(generation, e);
        }
        r
    }};
}

/// A service whose unary calls all go to the members as they are: `$method: Request =>
/// Response` for each, and `{ ... }` for the service's other items.
macro_rules! pass_through {
    ($service:path, $client:ident, { $($extra:tt)* }, $( $method:ident : $req:ty => $resp:ty ),* $(,)?) => {
        #[tonic::async_trait]
        impl $service for Forward {
            $(
                async fn $method(
                    &self,
                    request: tonic::Request<$req>,
                ) -> Result<tonic::Response<$resp>, tonic::Status> {
                    let (md, _, message) = request.into_parts();
                    forward_call!(self.upstream, $client, &md, $method, message)
                }
            )*
            $($extra)*
        }
    };
}

pub mod cache;
pub mod cluster;
pub mod http;
pub mod kv;
pub mod lease;
pub mod namespace;
pub mod upstream;
pub mod watch;

use crate::pb::etcdserverpb::{
    self as pb, auth_client::AuthClient, auth_server::AuthServer, cluster_server::ClusterServer,
    kv_server::KvServer, lease_server::LeaseServer, maintenance_client::MaintenanceClient,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::pb::health::{self as hp, health_client::HealthClient, health_server::HealthServer};
use crate::pb::v3electionpb::{
    self as el, election_client::ElectionClient, election_server::ElectionServer,
};
use crate::pb::v3lockpb::{self as lk, lock_client::LockClient, lock_server::LockServer};
use crate::server::TlsInfo;
use namespace::Namespace;
use std::sync::Arc;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};
use upstream::Upstream;

/// What `oxcd grpc-proxy start`'s flags ask for.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    /// `--listen-addr`: `host:port`.
    pub listen_addr: String,
    /// The members' client URLs.
    pub endpoints: Vec<String>,
    /// `--advertise-client-url` (empty: `MemberList` passes through).
    pub advertise_client_url: String,
    /// `--resolver-prefix` and `--resolver-ttl` (seconds).
    pub resolver_prefix: String,
    pub resolver_ttl: i64,
    /// `--namespace`.
    pub namespace: String,
    /// How to dial `https://` members (`--cert`, `--key`, `--cacert`,
    /// `--insecure-skip-tls-verify`).
    pub upstream_tls: Option<Arc<rustls::ClientConfig>>,
    /// TLS for the proxy's own listener (`--cert-file`, `--key-file`, `--trusted-ca-file`,
    /// `--client-crl-file`, `--auto-tls`), when set.
    pub serve_tls: Option<TlsInfo>,
    /// `--metrics-addr`: another listener for `/metrics` and `/health`.
    pub metrics_addr: Option<String>,
    /// `--max-concurrent-streams`.
    pub max_concurrent_streams: u32,
}

/// A running proxy's services, for their counters.
#[derive(Clone)]
pub struct Proxy {
    watch: watch::WatchProxy,
    lease: lease::LeaseProxy,
    kv: kv::KvProxy,
}

/// The services that only forward.
#[derive(Clone)]
struct Forward {
    upstream: Upstream,
    namespace: Namespace,
}

pass_through!(pb::maintenance_server::Maintenance, MaintenanceClient, {
    type SnapshotStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let stream = forward_call!(self.upstream, MaintenanceClient, request.metadata(), snapshot, pb::SnapshotRequest {})?;
        Ok(Response::new(Box::pin(stream.into_inner())))
    }
},
    alarm: pb::AlarmRequest => pb::AlarmResponse,
    status: pb::StatusRequest => pb::StatusResponse,
    defragment: pb::DefragmentRequest => pb::DefragmentResponse,
    hash: pb::HashRequest => pb::HashResponse,
    hash_kv: pb::HashKvRequest => pb::HashKvResponse,
    move_leader: pb::MoveLeaderRequest => pb::MoveLeaderResponse,
    downgrade: pb::DowngradeRequest => pb::DowngradeResponse,
);

pass_through!(pb::auth_server::Auth, AuthClient, {},
    auth_enable: pb::AuthEnableRequest => pb::AuthEnableResponse,
    auth_disable: pb::AuthDisableRequest => pb::AuthDisableResponse,
    auth_status: pb::AuthStatusRequest => pb::AuthStatusResponse,
    authenticate: pb::AuthenticateRequest => pb::AuthenticateResponse,
    user_add: pb::AuthUserAddRequest => pb::AuthUserAddResponse,
    user_get: pb::AuthUserGetRequest => pb::AuthUserGetResponse,
    user_list: pb::AuthUserListRequest => pb::AuthUserListResponse,
    user_delete: pb::AuthUserDeleteRequest => pb::AuthUserDeleteResponse,
    user_change_password: pb::AuthUserChangePasswordRequest => pb::AuthUserChangePasswordResponse,
    user_grant_role: pb::AuthUserGrantRoleRequest => pb::AuthUserGrantRoleResponse,
    user_revoke_role: pb::AuthUserRevokeRoleRequest => pb::AuthUserRevokeRoleResponse,
    role_add: pb::AuthRoleAddRequest => pb::AuthRoleAddResponse,
    role_get: pb::AuthRoleGetRequest => pb::AuthRoleGetResponse,
    role_list: pb::AuthRoleListRequest => pb::AuthRoleListResponse,
    role_delete: pb::AuthRoleDeleteRequest => pb::AuthRoleDeleteResponse,
    role_grant_permission: pb::AuthRoleGrantPermissionRequest => pb::AuthRoleGrantPermissionResponse,
    role_revoke_permission: pb::AuthRoleRevokePermissionRequest => pb::AuthRoleRevokePermissionResponse,
);

pass_through!(hp::health_server::Health, HealthClient, {
    type WatchStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<hp::HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        request: Request<hp::HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let stream = {
            let (md, _, message) = request.into_parts();
            forward_call!(self.upstream, HealthClient, &md, watch, message)
        }?;
        Ok(Response::new(Box::pin(stream.into_inner())))
    }
},
    check: hp::HealthCheckRequest => hp::HealthCheckResponse,
);

#[tonic::async_trait]
impl lk::lock_server::Lock for Forward {
    async fn lock(
        &self,
        request: Request<lk::LockRequest>,
    ) -> Result<Response<lk::LockResponse>, Status> {
        let mut r = request.get_ref().clone();
        self.namespace.lock(&mut r);
        let mut answer = forward_call!(self.upstream, LockClient, request.metadata(), lock, r)?;
        self.namespace.lock_response(answer.get_mut());
        Ok(answer)
    }

    async fn unlock(
        &self,
        request: Request<lk::UnlockRequest>,
    ) -> Result<Response<lk::UnlockResponse>, Status> {
        let mut r = request.get_ref().clone();
        self.namespace.unlock(&mut r);
        forward_call!(self.upstream, LockClient, request.metadata(), unlock, r)
    }
}

#[tonic::async_trait]
impl el::election_server::Election for Forward {
    async fn campaign(
        &self,
        request: Request<el::CampaignRequest>,
    ) -> Result<Response<el::CampaignResponse>, Status> {
        let mut r = request.get_ref().clone();
        r.name = self.namespace.key(&r.name);
        let mut answer = forward_call!(
            self.upstream,
            ElectionClient,
            request.metadata(),
            campaign,
            r
        )?;
        if let Some(l) = answer.get_mut().leader.as_mut() {
            self.namespace.leader_key_response(l);
        }
        Ok(answer)
    }

    async fn proclaim(
        &self,
        request: Request<el::ProclaimRequest>,
    ) -> Result<Response<el::ProclaimResponse>, Status> {
        let mut r = request.get_ref().clone();
        if let Some(l) = r.leader.as_mut() {
            self.namespace.leader_key(l);
        }
        forward_call!(
            self.upstream,
            ElectionClient,
            request.metadata(),
            proclaim,
            r
        )
    }

    async fn leader(
        &self,
        request: Request<el::LeaderRequest>,
    ) -> Result<Response<el::LeaderResponse>, Status> {
        let mut r = request.get_ref().clone();
        r.name = self.namespace.key(&r.name);
        let mut answer =
            forward_call!(self.upstream, ElectionClient, request.metadata(), leader, r)?;
        self.namespace.leader_response(answer.get_mut());
        Ok(answer)
    }

    type ObserveStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<el::LeaderResponse, Status>> + Send>,
    >;

    async fn observe(
        &self,
        request: Request<el::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let mut r = request.get_ref().clone();
        r.name = self.namespace.key(&r.name);
        let stream = forward_call!(
            self.upstream,
            ElectionClient,
            request.metadata(),
            observe,
            r
        )?;
        let namespace = self.namespace.clone();
        let stream = stream.into_inner().map(move |answer| {
            answer.map(|mut a| {
                namespace.leader_response(&mut a);
                a
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resign(
        &self,
        request: Request<el::ResignRequest>,
    ) -> Result<Response<el::ResignResponse>, Status> {
        let mut r = request.get_ref().clone();
        if let Some(l) = r.leader.as_mut() {
            self.namespace.leader_key(l);
        }
        forward_call!(self.upstream, ElectionClient, request.metadata(), resign, r)
    }
}

impl Proxy {
    /// The proxy's figures in Prometheus' text format: etcd's proxy metrics, and the watchers
    /// and keep-alives on each side.
    pub fn metrics(&self) -> String {
        let w = self.watch.counts();
        let l = self.lease.counts();
        let c = self.kv.counts();
        metrics_text(w, l, c)
    }
}

fn metrics_text(w: watch::WatchCounts, l: lease::KeepAliveCounts, c: kv::CacheCounts) -> String {
    let mut out = String::new();
    let mut line = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    line(
        "etcd_grpc_proxy_watchers_coalescing_total",
        "gauge",
        "Total number of current watchers coalesced",
        w.clients.saturating_sub(w.upstream).to_string(),
    );
    line(
        "etcd_grpc_proxy_cache_keys_total",
        "gauge",
        "Total number of keys/ranges cached",
        c.keys.to_string(),
    );
    line(
        "etcd_grpc_proxy_cache_hits_total",
        "gauge",
        "Total number of cache hits",
        c.hits.to_string(),
    );
    line(
        "etcd_grpc_proxy_cache_misses_total",
        "gauge",
        "Total number of cache misses",
        c.misses.to_string(),
    );
    line(
        "oxcd_grpc_proxy_client_watchers",
        "gauge",
        "Watchers of the proxy's clients",
        w.clients.to_string(),
    );
    line(
        "oxcd_grpc_proxy_upstream_watchers",
        "gauge",
        "Watchers the proxy holds on the members",
        w.upstream.to_string(),
    );
    line(
        "oxcd_grpc_proxy_client_keepalives_total",
        "counter",
        "Lease keep-alives the proxy's clients sent",
        l.clients.to_string(),
    );
    line(
        "oxcd_grpc_proxy_upstream_keepalives_total",
        "counter",
        "Lease keep-alives the proxy sent the members",
        l.upstream.to_string(),
    );
    out
}

/// `/health`: etcd's proxy reads a key through the cluster; an answer (a permission refusal
/// included) means healthy.
async fn health(upstream: Upstream) -> (axum::http::StatusCode, &'static str) {
    let read = async {
        let request = pb::RangeRequest {
            key: bytes::Bytes::from_static(b"a"),
            ..Default::default()
        };
        forward_call!(
            upstream,
            KvClient,
            &tonic::metadata::MetadataMap::new(),
            range,
            request
        )
    };
    use crate::pb::etcdserverpb::kv_client::KvClient;
    match tokio::time::timeout(std::time::Duration::from_secs(5), read).await {
        Ok(Ok(_)) => (axum::http::StatusCode::OK, "{\"health\":\"true\"}"),
        Ok(Err(e)) if e.code() == tonic::Code::PermissionDenied => {
            (axum::http::StatusCode::OK, "{\"health\":\"true\"}")
        }
        _ => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "{\"health\":\"false\"}",
        ),
    }
}

fn http_router(proxy: Proxy, upstream: Upstream) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let text = proxy.metrics();
                async move { text }
            }),
        )
        .route(
            "/health",
            axum::routing::get(move || health(upstream.clone())),
        )
}

/// Serves `router` (plain HTTP) on `incoming`'s connections until the runtime ends; `what`
/// names the listener in the log if it fails.
fn serve_http(
    incoming: tokio_stream::wrappers::ReceiverStream<std::io::Result<crate::server::tls::Conn>>,
    router: axum::Router,
    what: &'static str,
) {
    tokio::spawn(async move {
        let r = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "the {what} listener failed");
        }
    });
}

/// Starts the proxy: its listener (and `--metrics-addr`'s), its services, and its
/// registration. Returns once it listens; the tasks run until the runtime ends.
pub async fn start(config: ProxyConfig) -> Result<Proxy, String> {
    let addr = crate::server::resolve(&config.listen_addr)?;
    let upstream = Upstream::new(config.endpoints.clone(), config.upstream_tls.clone());
    let ns = Namespace::new(&config.namespace);
    let kv = kv::KvProxy::new(upstream.clone(), ns.clone());
    let watch = watch::WatchProxy::new(upstream.clone(), ns.clone());
    let lease = lease::LeaseProxy::new(upstream.clone(), ns.clone());
    let cluster = cluster::ClusterProxy::new(
        upstream.clone(),
        config.advertise_client_url.clone(),
        config.resolver_prefix.clone(),
    );
    let forward = Forward {
        upstream: upstream.clone(),
        namespace: ns,
    };
    let acceptor = match &config.serve_tls {
        Some(info) => Some(Arc::new(crate::server::tls::Acceptor::new(info, "client")?)),
        None => None,
    };
    let proxy = Proxy {
        watch: watch.clone(),
        lease: lease.clone(),
        kv: kv.clone(),
    };
    let routes = tonic::service::Routes::new(
        KvServer::new(kv.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(WatchServer::new(watch.clone()).max_encoding_message_size(usize::MAX))
    .add_service(LeaseServer::new(lease.clone()))
    .add_service(ClusterServer::new(cluster.clone()))
    .add_service(MaintenanceServer::new(forward.clone()).max_encoding_message_size(usize::MAX))
    .add_service(AuthServer::new(forward.clone()))
    .add_service(LockServer::new(forward.clone()))
    .add_service(ElectionServer::new(forward.clone()))
    .add_service(HealthServer::new(forward));
    let router = routes
        .into_axum_router()
        .merge(http_router(proxy.clone(), upstream.clone()));
    let incoming = crate::server::tls::incoming(addr, acceptor.clone(), false, "grpc-proxy")
        .map_err(|e| format!("listen tcp {addr}: {e}"))?;
    let incoming = incoming.map(|conn| conn.map(crate::api::authority::FixAuthority::new));
    let streams = config.max_concurrent_streams;
    tokio::spawn(async move {
        let r = tonic::transport::Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(streams)
            .max_frame_size(crate::api::authority::FRAME_PAYLOAD_MAX as u32)
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "the proxy's listener failed");
        }
    });
    if let Some(m) = &config.metrics_addr {
        let maddr = crate::server::resolve(m)?;
        let tls = if m.starts_with("https://") {
            acceptor
        } else {
            None
        };
        let incoming = crate::server::tls::incoming(maddr, tls, false, "metrics")
            .map_err(|e| format!("listen tcp {maddr}: {e}"))?;
        serve_http(
            incoming,
            http_router(proxy.clone(), upstream.clone()),
            "metrics",
        );
    }
    if !config.resolver_prefix.is_empty() && config.resolver_ttl > 0 {
        tokio::spawn(cluster.register(config.resolver_ttl));
    }
    tracing::info!(address = %config.listen_addr, "started gRPC proxy");
    Ok(proxy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_etcds_figures_and_both_sides() {
        let text = metrics_text(
            watch::WatchCounts {
                clients: 10_000,
                upstream: 100,
            },
            lease::KeepAliveCounts {
                clients: 50,
                upstream: 5,
            },
            kv::CacheCounts::default(),
        );
        assert!(text.contains("etcd_grpc_proxy_watchers_coalescing_total 9900\n"));
        assert!(text.contains("oxcd_grpc_proxy_upstream_watchers 100\n"));
        assert!(text.contains("oxcd_grpc_proxy_upstream_keepalives_total 5\n"));
    }
}
