//! What one server needs to start: identity, addresses, the cluster it founds or joins, and
//! its limits. The `oxcd` binary fills it from etcd's flags; tests and the simulator fill it
//! directly.

use std::path::PathBuf;
use std::sync::Arc;

/// Whether the member founds a new cluster or joins a running one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClusterState {
    #[default]
    New,
    Existing,
}

/// etcd's `--auto-compaction-mode` and `--auto-compaction-retention` (the core's schedule).
pub use crate::node::CompactionPolicy as AutoCompaction;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// `host:port` addresses to serve clients on; `https://host:port` for a TLS listener
    /// (set up from [`ServerConfig::client_tls`]).
    pub listen_client: Vec<String>,
    /// Client URLs published to the cluster.
    pub advertise_client_urls: Vec<String>,
    /// `host:port` addresses to serve peers on; `https://host:port` for a TLS listener
    /// (set up from [`ServerConfig::peer_tls`]).
    pub listen_peer: Vec<String>,
    /// This member's peer URLs, as the others reach it.
    pub advertise_peer_urls: Vec<String>,
    /// The founding members, by name, with their peer URLs (`--initial-cluster`).
    pub initial_cluster: Vec<(String, Vec<String>)>,
    pub cluster_state: ClusterState,
    pub cluster_token: String,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    /// Applied entries between log compactions (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Entries kept behind a compaction for slow followers (etcd's SnapshotCatchUpEntries).
    pub snapshot_catchup_entries: u64,
    /// The database size that raises the NOSPACE alarm (`--quota-backend-bytes`; 0: 2 GiB).
    pub quota_backend_bytes: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// Serve etcd's v2 API on the client port (`--enable-v2`; off by default, as in 3.4).
    pub enable_v2: bool,
    /// Restart as a one-member cluster keeping the data (`--force-new-cluster`).
    pub force_new_cluster: bool,
    /// HTTP/2 streams one client connection may have open at once
    /// (`--max-concurrent-streams`; the gateway's calls count together, as etcd's).
    pub max_concurrent_streams: u32,
    /// The bcrypt cost passwords are hashed with (`--bcrypt-cost`).
    pub bcrypt_cost: u32,
    /// How long a simple token lives past its last use (`--auth-token-ttl`).
    pub auth_token_ttl_ms: u64,
    /// JWT tokens instead of simple ones (`--auth-token jwt,...`).
    pub jwt: Option<Arc<super::jwt::Jwt>>,
    pub auto_compaction: AutoCompaction,
    /// `host:port` addresses for a separate /metrics, /health and /version listener
    /// (`https://host:port` for one served over TLS with the client side's certificates).
    pub listen_metrics: Vec<String>,
    pub pre_vote: bool,
    /// Compare this member's hash with its peers' before serving, when it restarts on its
    /// data (`--experimental-initial-corrupt-check`): a mismatch refuses the start.
    pub initial_corrupt_check: bool,
    /// How often the leader compares its hash with the other members' and raises CORRUPT for
    /// one that differs (`--experimental-corrupt-check-time`); 0: never.
    pub corrupt_check_ms: u64,
    /// The client side's certificates (`--cert-file`, `--auto-tls`, ...): used by `https://`
    /// client listeners and when the member dials another member's client URLs.
    pub client_tls: TlsInfo,
    /// The peer side's (`--peer-cert-file`, `--peer-auto-tls`, ...): used by `https://` peer
    /// listeners and when the member dials `https://` peer URLs.
    pub peer_tls: TlsInfo,
    /// The member's clock (the system's; a skewed one in simulation).
    pub clock: crate::clock::Clock,
    /// A deliberate mistake in the server path, for proving that the simulator catches it.
    /// Never set in production (it exists only with the `planted-bugs` feature).
    #[cfg(feature = "planted-bugs")]
    pub planted_bug: Option<ServerBug>,
}

/// One side's TLS settings, as etcd's flags give them (etcd's `transport.TLSInfo`). Plain
/// data: the simulation build carries it and never uses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// PEM certificate chain this side presents (`--cert-file`, `--peer-cert-file`).
    pub cert_file: Option<PathBuf>,
    /// Its PEM private key (`--key-file`, `--peer-key-file`).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to. Set, it makes the
    /// listener require a client certificate, as etcd's does.
    pub trusted_ca_file: Option<PathBuf>,
    /// `--client-cert-auth`: the verified certificate's CN is the connection's identity.
    pub client_cert_auth: bool,
    /// A CRL (PEM or DER) of client certificates to refuse (`--client-crl-file`).
    pub crl_file: Option<PathBuf>,
    /// Generate a self-signed certificate when none is given (`--auto-tls`); whoever dials
    /// this side then skips verifying its certificate, as etcd does.
    pub auto_tls: bool,
    /// Validity of a generated certificate, in years (`--self-signed-cert-validity`).
    pub self_signed_cert_validity_years: u32,
    /// The only CN a peer's client certificate may have (`--peer-cert-allowed-cn`).
    pub allowed_cn: Option<String>,
    /// Go names of the TLS 1.2 cipher suites allowed (`--cipher-suites`); empty: rustls'
    /// defaults.
    pub cipher_suites: Vec<String>,
}

impl TlsInfo {
    /// Whether this side has a certificate to serve TLS with (given or to generate).
    pub fn is_set(&self) -> bool {
        (self.cert_file.is_some() && self.key_file.is_some()) || self.auto_tls
    }
}

/// Deliberate mistakes in the server path that the full-stack simulation must catch. They can
/// be switched on only with the `planted-bugs` feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerBug {
    /// Serve linearizable reads from the member's own applied state, without a ReadIndex
    /// round: a follower that lags, or a leader cut off from its cluster, answers stale data.
    LocalLinearizableReads,
    /// Never revoke a lease that expired: its keys outlive it.
    ExpiredLeasesKept,
    /// Check a client's permission when its command enters only, not again when it applies:
    /// a revoke that applies in between does not stop it.
    AuthCheckedOnEntryOnly,
    /// `Campaign` answers as soon as the candidate's key is written, without waiting for the
    /// keys created before it: two leaders at once.
    CampaignWithoutWaiting,
    /// `Observe` reads the next leader as of now once the last one's key is deleted (etcd's
    /// recipe): a leader that held the election briefly meanwhile is never told.
    ObserveSkipsLeaders,
}

impl ServerBug {
    pub const ALL: [ServerBug; 5] = [
        ServerBug::LocalLinearizableReads,
        ServerBug::ExpiredLeasesKept,
        ServerBug::AuthCheckedOnEntryOnly,
        ServerBug::CampaignWithoutWaiting,
        ServerBug::ObserveSkipsLeaders,
    ];

    /// The mistake's name on the harnesses' command lines (`--bug`, `OXCD_PLANTED_BUG`).
    pub fn name(self) -> &'static str {
        match self {
            ServerBug::LocalLinearizableReads => "local-linearizable-reads",
            ServerBug::ExpiredLeasesKept => "expired-leases-kept",
            ServerBug::AuthCheckedOnEntryOnly => "auth-checked-on-entry-only",
            ServerBug::CampaignWithoutWaiting => "campaign-without-waiting",
            ServerBug::ObserveSkipsLeaders => "observe-skips-leaders",
        }
    }

    pub fn parse(name: &str) -> Result<ServerBug, String> {
        ServerBug::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = ServerBug::ALL.into_iter().map(ServerBug::name).collect();
                format!("unknown bug {name:?} (known: {})", known.join(", "))
            })
    }
}

/// etcd's `--quota-backend-bytes` default.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// gRPC framing allowance above `--max-request-bytes` (etcd's grpcOverheadBytes).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

impl ServerConfig {
    /// etcd's defaults: a one-member cluster named `default` on 127.0.0.1:2379 / 2380.
    pub fn single(name: &str, data_dir: PathBuf) -> ServerConfig {
        let peer = "http://127.0.0.1:2380".to_string();
        ServerConfig {
            name: name.to_string(),
            data_dir,
            listen_client: vec!["127.0.0.1:2379".to_string()],
            advertise_client_urls: vec!["http://127.0.0.1:2379".to_string()],
            listen_peer: vec!["127.0.0.1:2380".to_string()],
            advertise_peer_urls: vec![peer.clone()],
            initial_cluster: vec![(name.to_string(), vec![peer])],
            cluster_state: ClusterState::New,
            cluster_token: "etcd-cluster".to_string(),
            heartbeat_ms: 100,
            election_ms: 1000,
            snapshot_count: 100_000,
            snapshot_catchup_entries: 5000,
            quota_backend_bytes: QUOTA_BACKEND_BYTES_DEFAULT,
            max_request_bytes: 1024 * 1024 * 3 / 2,
            bcrypt_cost: 10,
            auth_token_ttl_ms: 300_000,
            jwt: None,
            max_txn_ops: 128,
            enable_v2: false,
            force_new_cluster: false,
            max_concurrent_streams: u32::MAX,
            auto_compaction: AutoCompaction::Off,
            listen_metrics: Vec::new(),
            pre_vote: true,
            initial_corrupt_check: false,
            corrupt_check_ms: 0,
            client_tls: TlsInfo::default(),
            peer_tls: TlsInfo::default(),
            clock: crate::clock::Clock::default(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// How long a client request may wait for its answer (etcd: 5 s plus two election
    /// timeouts).
    /// Whether the planted mistake `bug` is switched on (always false without the
    /// `planted-bugs` feature, so the compiler removes the mistake).
    #[inline(always)]
    pub fn has_bug(&self, _bug: ServerBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        return self.planted_bug == Some(_bug);
        #[cfg(not(feature = "planted-bugs"))]
        false
    }

    pub fn request_timeout_ms(&self) -> u64 {
        5000 + 2 * self.election_ms
    }

    /// Checks the settings that would make the member misbehave.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 {
            return Err("--heartbeat-interval must be positive".into());
        }
        if self.election_ms < 5 * self.heartbeat_ms {
            return Err(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                self.election_ms, self.heartbeat_ms
            ));
        }
        if self.election_ms > 50_000 {
            return Err(format!(
                "--election-timeout[{}ms] is too long, and should be set less than 50000ms",
                self.election_ms
            ));
        }
        if self.advertise_peer_urls.is_empty() {
            return Err("--initial-advertise-peer-urls is empty".into());
        }
        if self.max_txn_ops == 0 {
            return Err("--max-txn-ops must be positive".into());
        }
        Ok(())
    }
}
