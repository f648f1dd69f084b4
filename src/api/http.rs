//! Plain HTTP beside gRPC: the health endpoints (`/health`, `/livez`, `/readyz`: see
//! `probes`), `/version` and `/metrics` (Prometheus text, with etcd's metric names where
//! etcd has them), on the client port and on `--listen-metrics-urls`.

mod probes;

use crate::server::ETCD_VERSION;
use crate::server::driver::NodeHandle;
use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use probes::GetOnly;
use std::fmt::Write;
use tokio::sync::watch;

/// Upper bounds of the fsync duration histogram's buckets, in seconds (etcd's).
const FSYNC_BUCKETS_S: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

pub fn router(h: NodeHandle) -> Router {
    let probes = probes::router(h.clone());
    let version = h.clone();
    let metrics = move || metrics_handler(h.clone());
    Router::new()
        .merge(probes)
        .route(
            "/version",
            get(move || version_handler(version.clone())).only(),
        )
        .route(
            "/metrics",
            // Prometheus' handler answers any method; OPTIONS is CORS's.
            get(metrics.clone()).options(|| async {}).fallback(metrics),
        )
}

/// A listener serving only the HTTP routes (`--listen-metrics-urls`), over TLS when its URL
/// is `https://`.
#[cfg(not(madsim))]
pub fn serve_metrics(
    incoming: super::Incoming,
    h: NodeHandle,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let signal = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        let r = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(tonic::service::Routes::from(router(h)))
            .serve_with_incoming_shutdown(incoming, signal)
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "metrics listener failed");
        }
    })
}

async fn version_handler(h: NodeHandle) -> impl IntoResponse {
    // A stopped member still says which version it speaks.
    let cluster = h
        .run(false, |d| Ok(d.cluster_version()))
        .await
        .unwrap_or_else(|_| ETCD_VERSION.to_string());
    (
        [("content-type", "application/json")],
        // etcd's field order (a `json!` map would sort the keys).
        format!(
            "{{\"etcdserver\":{},\"etcdcluster\":{}}}",
            serde_json::Value::from(ETCD_VERSION),
            serde_json::Value::from(cluster)
        ),
    )
}

async fn metrics_handler(h: NodeHandle) -> impl IntoResponse {
    let text = h
        .run(false, |d| {
            let space = d.space();
            let cluster_version = d.cluster_version();
            let raft = &d.member().raw().raft;
            let kv = d.member().applier().kv();
            let mut out = String::new();
            let mut gauge = |name: &str, help: &str, kind: &str, v: f64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
            };
            gauge(
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
                "gauge",
                f64::from(u8::from(raft.lead != crate::raft::NONE)),
            );
            gauge(
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                "gauge",
                f64::from(u8::from(d.is_leader())),
            );
            gauge(
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
                "counter",
                d.leader_changes as f64,
            );
            gauge(
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
                "gauge",
                raft.raft_log.committed as f64,
            );
            gauge(
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
                "gauge",
                raft.raft_log.applied as f64,
            );
            gauge(
                "etcd_server_term",
                "The current term of this member.",
                "gauge",
                raft.term as f64,
            );
            gauge(
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
                "gauge",
                space.size_bytes as f64,
            );
            gauge(
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
                "gauge",
                space.in_use_bytes as f64,
            );
            gauge(
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
                "gauge",
                kv.current_revision() as f64,
            );
            gauge(
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
                "gauge",
                d.member().applier().watchers().watchers_len() as f64,
            );
            gauge(
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
                "gauge",
                kv.compact_revision() as f64,
            );
            for (name, label, version, help) in [
                (
                    "etcd_server_version",
                    "server_version",
                    ETCD_VERSION,
                    "Which version is running. 1 for 'server_version' label with current version.",
                ),
                (
                    "etcd_cluster_version",
                    "cluster_version",
                    cluster_version.as_str(),
                    "Which version is running. 1 for 'cluster_version' label with current cluster version",
                ),
            ] {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{label}=\"{version}\"}} 1"
                );
            }
            let name = "etcd_disk_wal_fsync_duration_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} The latency distributions of fsync called by WAL.\n# TYPE {name} histogram"
            );
            let samples = &d.sync_durations_us;
            for bound in FSYNC_BUCKETS_S {
                let n = samples
                    .iter()
                    .filter(|us| (**us as f64) / 1e6 <= bound)
                    .count();
                let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
            }
            let sum: f64 = samples.iter().map(|us| *us as f64 / 1e6).sum();
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", samples.len());
            let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", samples.len());
            Ok(out)
        })
        .await
        .unwrap_or_default();
    (
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
}
