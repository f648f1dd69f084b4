//! The etcd v3 API edge: the gRPC services (KV, Watch, Lease, Cluster, Maintenance, the
//! health service), etcd's JSON gateway over them, plain HTTP (`/health`, `/livez`,
//! `/readyz`, `/version`, `/metrics`),
//! conversions between the wire types ([`crate::pb`]) and the core's, and etcd's gRPC errors.
//!
//! What it does not do: touch the member. Every service talks to the driver through a
//! [`crate::server::driver::NodeHandle`].

pub mod auth;
#[cfg(not(madsim))]
pub(crate) mod authority;
pub mod cluster;
#[cfg(not(madsim))]
pub mod codec;
pub mod convert;
pub mod error;
#[cfg(not(madsim))]
pub mod gateway;
pub mod health;
#[cfg(not(madsim))]
pub mod http;
pub mod kv;
pub mod lease;
pub mod maintenance;
#[cfg(not(madsim))]
mod message_limit;
pub mod recipes;
#[cfg(not(madsim))]
pub mod v2;
pub mod watch;

use crate::pb::etcdserverpb::auth_server::AuthServer;
use crate::pb::etcdserverpb::cluster_server::ClusterServer;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::pb::etcdserverpb::watch_server::WatchServer;
use crate::pb::health::health_server::HealthServer;
use crate::pb::v3electionpb::election_server::ElectionServer;
use crate::pb::v3lockpb::lock_server::LockServer;
use crate::server::driver::NodeHandle;
use crate::server::resolve;
use std::net::SocketAddr;
use tokio::sync::watch::Receiver;

/// The credentials a request carries: etcd's `token` metadata, or `authorization` (what the
/// JSON gateway forwards). An empty token counts as one (an invalid one), as in etcd.
/// With JWT tokens (`--auth-token jwt`), a token whose signature and expiry check out names
/// its user and auth revision; any other is an unknown token. A request without a token on a
/// `--client-cert-auth` listener is its certificate's CN (a token wins over the CN, as in
/// etcd).
pub fn credential<T>(h: &NodeHandle, request: &tonic::Request<T>) -> crate::node::Credential {
    use crate::node::Credential;
    let md = request.metadata();
    let token = md.get("token").or_else(|| md.get("authorization"));
    let Some(token) = token.map(|v| v.to_str().unwrap_or_default().to_string()) else {
        // No token: with `--client-cert-auth`, the verified client certificate's CN.
        #[cfg(not(madsim))]
        if let Some(crate::server::tls::PeerCn(Some(cn))) = request.extensions().get() {
            return Credential::CommonName(cn.clone());
        }
        return Credential::None;
    };
    match h.config.jwt.as_ref().and_then(|jwt| jwt.verify(&token)) {
        Some((user, revision)) => Credential::Claims { user, revision },
        None => Credential::Token(token),
    }
}

/// Starts the client listeners (etcd's gRPC services and the HTTP endpoints) and the metrics
/// listeners of `handle`'s configuration: the member's [`crate::server::FrontEnds`].
pub fn serve(
    handle: &NodeHandle,
    shutdown: Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut servers = Vec::new();
    #[cfg(not(madsim))]
    let mut acceptor = None;
    // The client side's TLS for an `https://` URL (the metrics listeners' too, as etcd's),
    // made once.
    #[cfg(not(madsim))]
    let mut tls_for = |url: &str| -> Result<_, String> {
        if !url.starts_with("https://") {
            return Ok(None);
        }
        if !handle.config.client_tls.is_set() {
            return Err(format!("cannot serve {url} over https without TLS info"));
        }
        if acceptor.is_none() {
            let a = crate::server::tls::Acceptor::new(&handle.config.client_tls, "client")?;
            acceptor = Some(std::sync::Arc::new(a));
        }
        Ok(acceptor.clone())
    };
    // One listener per address: an address listed as both `http://` and `https://` serves
    // both on its one port, as etcd's does.
    let mut listed: Vec<(SocketAddr, &String, bool)> = Vec::new();
    for url in &handle.config.listen_client {
        let addr = resolve(url)?;
        match listed.iter_mut().find(|(a, _, _)| *a == addr) {
            Some(l) if l.1.starts_with("https://") != url.starts_with("https://") => {
                if url.starts_with("https://") {
                    l.1 = url;
                }
                l.2 = true;
            }
            Some(_) => {}
            None => listed.push((addr, url, false)),
        }
    }
    for (addr, url, both) in listed {
        #[cfg(madsim)]
        let _ = both;
        #[cfg(not(madsim))]
        let incoming = crate::server::tls::incoming(addr, tls_for(url)?, both, "client")
            .map_err(|e| format!("cannot listen for clients on {addr}: {e}"))?;
        #[cfg(madsim)]
        let incoming = addr;
        servers.push(serve_clients(incoming, handle.clone(), shutdown.clone()));
        tracing::info!(%addr, tls = url.starts_with("https://"), "ready to serve client requests");
    }
    #[cfg(not(madsim))]
    for url in &handle.config.listen_metrics {
        let addr = resolve(url)?;
        let incoming = crate::server::tls::incoming(addr, tls_for(url)?, false, "metrics")
            .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
        servers.push(http::serve_metrics(
            incoming,
            handle.clone(),
            shutdown.clone(),
        ));
        tracing::info!(%addr, tls = url.starts_with("https://"), "serving /metrics");
    }
    Ok(servers)
}

/// Where a client listener's connections come from: the accepted (and, on an `https://`
/// listener, TLS-decrypted) connections, each carrying its client certificate's CN
/// ([`crate::server::tls::PeerCn`], in every request's extensions); in simulation, an address.
#[cfg(not(madsim))]
type Incoming = tokio_stream::wrappers::ReceiverStream<std::io::Result<crate::server::tls::Conn>>;
#[cfg(madsim)]
type Incoming = SocketAddr;

fn serve_clients(
    incoming: Incoming,
    handle: NodeHandle,
    shutdown: Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let limit = handle.config.max_request_bytes + crate::server::config::GRPC_OVERHEAD_BYTES;
    let kv = KvServer::new(kv::KvService::new(handle.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let watch = WatchServer::new(watch::WatchService::new(handle.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let lease =
        LeaseServer::new(lease::LeaseService::new(handle.clone())).max_decoding_message_size(limit);
    let cluster = ClusterServer::new(cluster::ClusterService::new(handle.clone()))
        .max_decoding_message_size(limit);
    let maintenance = MaintenanceServer::new(maintenance::MaintenanceService::new(handle.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    let health = HealthServer::new(health::HealthService::new(handle.clone()));
    let auth = AuthServer::new(auth::AuthService::new(handle.clone()));
    let lock = LockServer::new(recipes::LockService::new(handle.clone()));
    let election = ElectionServer::new(recipes::ElectionService::new(handle.clone()));
    let mut stop = shutdown;
    tokio::spawn(async move {
        let signal = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        #[cfg(not(madsim))]
        let r = {
            use message_limit::MessageLimit as M;
            let routes = tonic::service::Routes::new(M(kv))
                .add_service(M(watch))
                .add_service(M(lease))
                .add_service(M(cluster))
                .add_service(M(maintenance))
                .add_service(M(auth))
                .add_service(M(lock))
                .add_service(M(election))
                .add_service(health);
            // The JSON gateway calls the same routes in process.
            let gateway =
                gateway::router(routes.clone(), limit, handle.config.max_concurrent_streams);
            let router = routes
                .into_axum_router()
                .merge(http::router(handle.clone()).layer(axum::middleware::from_fn(gateway::cors)))
                .merge(v2::router(handle.clone()))
                .merge(gateway)
                .fallback(gateway::fallback);
            // Each connection (after its TLS handshake, on a TLS listener) read through the
            // fix for etcdctl's URL-shaped `:authority` (see `authority`).
            let incoming = tokio_stream::StreamExt::map(incoming, |conn| {
                conn.map(authority::FixAuthority::new)
            });
            tonic::transport::Server::builder()
                .accept_http1(true)
                .max_concurrent_streams(handle.config.max_concurrent_streams)
                .max_frame_size(authority::FRAME_PAYLOAD_MAX as u32)
                .add_routes(tonic::service::Routes::from(router))
                .serve_with_incoming_shutdown(incoming, signal)
                .await
        };
        #[cfg(madsim)]
        let r = tonic::transport::Server::builder()
            .add_service(kv)
            .add_service(watch)
            .add_service(lease)
            .add_service(cluster)
            .add_service(maintenance)
            .add_service(auth)
            .add_service(lock)
            .add_service(election)
            .add_service(health)
            .serve_with_shutdown(incoming, signal)
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "client listener failed");
        }
    })
}
