//! The oxcd server: etcd's flags and defaults (each also read from `ETCD_<NAME>`), so an etcd
//! deployment works by swapping the binary name. With no flags: a one-member cluster on
//! 127.0.0.1:2379 (clients) and 127.0.0.1:2380 (peers), its data in `./default.oxcd`.

// mimalloc, set up by `oxcd::alloc`.
#[cfg(not(madsim))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(not(madsim))]
oxcd::set_options_at_load!();

// The server needs fjall and real sockets: under madsim (`--cfg madsim`) the binary is empty,
// and simulations start members through `oxcd::server::start` instead.
#[cfg(madsim)]
fn main() {}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    real::main()
}

#[cfg(not(madsim))]
mod real {
    use clap::{ArgAction, Parser};
    use oxcd::server::cluster::{check_url, parse_initial_cluster, url_host_port};
    use oxcd::server::{AutoCompaction, ClusterState, ServerConfig, TlsInfo};
    use std::path::PathBuf;
    use std::process::ExitCode;

    fn split_urls(s: &str) -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// A distributed, reliable key-value store that speaks etcd's v3 API.
    ///
    /// A flag given twice takes its last value, as Go's flag package (and so etcd) has it.
    #[derive(Parser, Debug)]
    #[command(name = "oxcd", version, about, long_about = None, args_override_self = true)]
    struct Flags {
        /// Human-readable name for this member.
        #[arg(long, env = "ETCD_NAME", default_value = "default")]
        name: String,
        /// Path to the data directory (default: ${name}.oxcd).
        #[arg(long, env = "ETCD_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// URLs to listen on for client traffic.
        #[arg(
            long,
            env = "ETCD_LISTEN_CLIENT_URLS",
            default_value = "http://localhost:2379"
        )]
        listen_client_urls: String,
        /// Client URLs to advertise to the rest of the cluster.
        #[arg(
            long,
            env = "ETCD_ADVERTISE_CLIENT_URLS",
            default_value = "http://localhost:2379"
        )]
        advertise_client_urls: String,
        /// URLs to listen on for peer traffic.
        #[arg(
            long,
            env = "ETCD_LISTEN_PEER_URLS",
            default_value = "http://localhost:2380"
        )]
        listen_peer_urls: String,
        /// This member's peer URLs, as the rest of the cluster reaches it.
        #[arg(
            long,
            env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            default_value = "http://localhost:2380"
        )]
        initial_advertise_peer_urls: String,
        /// The founding members: name=peerURL,... (default: this member alone).
        #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
        initial_cluster: Option<String>,
        /// DNS domain whose `_etcd-server-ssl._tcp` and `_etcd-server._tcp` SRV records name
        /// the founding members (instead of `--initial-cluster`).
        #[arg(long, env = "ETCD_DISCOVERY_SRV", default_value = "")]
        discovery_srv: String,
        /// Suffix to the SRV service names (`_etcd-server-<name>._tcp`).
        #[arg(long, env = "ETCD_DISCOVERY_SRV_NAME", default_value = "")]
        discovery_srv_name: String,
        /// A discovery service URL (an etcd v2 keys directory whose `_config/size` says how
        /// many members to wait for) that founds the cluster instead of `--initial-cluster`.
        #[arg(long, env = "ETCD_DISCOVERY", default_value = "")]
        discovery: String,
        /// What to do when the discovery service's cluster is already full: `exit`, or
        /// `proxy` (etcd's default: serve as a v2 proxy to the founded cluster, `--proxy on`).
        #[arg(long, env = "ETCD_DISCOVERY_FALLBACK", default_value = "proxy")]
        discovery_fallback: String,
        /// An HTTP proxy (`http://host:port`) to reach the discovery service through.
        #[arg(long, env = "ETCD_DISCOVERY_PROXY", default_value = "")]
        discovery_proxy: String,
        /// `off`, or `on` / `readonly`: run etcd's v2 proxy (HTTP requests passed to the
        /// members that `--initial-cluster`'s peers list) instead of a member.
        #[arg(long, env = "ETCD_PROXY", default_value = "off")]
        proxy: String,
        /// v2 proxy: how long (ms) a member that failed to answer is set aside.
        #[arg(long, env = "ETCD_PROXY_FAILURE_WAIT", default_value_t = 5000)]
        proxy_failure_wait: u64,
        /// v2 proxy: how often (ms) the member list is read again.
        #[arg(long, env = "ETCD_PROXY_REFRESH_INTERVAL", default_value_t = 30000)]
        proxy_refresh_interval: u64,
        /// v2 proxy: dial timeout (ms) to the members.
        #[arg(long, env = "ETCD_PROXY_DIAL_TIMEOUT", default_value_t = 1000)]
        proxy_dial_timeout: u64,
        /// v2 proxy: accepted for etcd's flag set (ms).
        #[arg(long, env = "ETCD_PROXY_WRITE_TIMEOUT", default_value_t = 5000)]
        proxy_write_timeout: u64,
        /// v2 proxy: accepted for etcd's flag set (ms).
        #[arg(long, env = "ETCD_PROXY_READ_TIMEOUT", default_value_t = 0)]
        proxy_read_timeout: u64,
        /// `new` to found a cluster, `existing` to join one (after `member add`).
        #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new")]
        initial_cluster_state: String,
        /// Initial cluster token: founding members derive their IDs from it.
        #[arg(
            long,
            env = "ETCD_INITIAL_CLUSTER_TOKEN",
            default_value = "etcd-cluster"
        )]
        initial_cluster_token: String,
        /// Time (in milliseconds) of a heartbeat interval.
        #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
        heartbeat_interval: u64,
        /// Time (in milliseconds) for an election to timeout.
        #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
        election_timeout: u64,
        /// Number of committed transactions to trigger a snapshot (log compaction).
        #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
        snapshot_count: u64,
        /// Raise an alarm when the backend size exceeds this quota (0: default 2 GiB).
        #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES", default_value_t = 0)]
        quota_backend_bytes: u64,
        /// Maximum client request size in bytes the server will accept.
        #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
        max_request_bytes: usize,
        /// Maximum number of operations permitted in a transaction.
        #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
        max_txn_ops: usize,
        /// Force to create a new one member cluster.
        #[arg(long, env = "ETCD_FORCE_NEW_CLUSTER", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        force_new_cluster: bool,
        /// Maximum concurrent streams that each client can open at a time.
        #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
        max_concurrent_streams: u32,
        /// The bcrypt cost for hashing passwords (4 to 31; others: 10).
        #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = 10)]
        bcrypt_cost: u32,
        /// Auth token type: 'simple', or 'jwt,pub-key=..,priv-key=..,sign-method=..[,ttl=..]'.
        #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
        auth_token: String,
        /// How long a simple token lives past its last use, in seconds.
        #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
        auth_token_ttl: u64,
        /// Interpret auto-compaction-retention as 'periodic' (duration) or 'revision'.
        #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
        auto_compaction_mode: String,
        /// Auto compaction retention (0 disables it): hours, or a duration like 30m, or revisions.
        #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
        auto_compaction_retention: String,
        /// Extra URLs to serve /metrics, /health and /version on.
        #[arg(long, env = "ETCD_LISTEN_METRICS_URLS", default_value = "")]
        listen_metrics_urls: String,
        /// debug, info, warn, error.
        #[arg(long, env = "ETCD_LOG_LEVEL", default_value = "info")]
        log_level: String,
        /// Run a pre-vote round before elections.
        #[arg(long, env = "ETCD_PRE_VOTE", default_value = "true", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        pre_vote: bool,

        /// Path to the client server TLS cert file.
        #[arg(long, env = "ETCD_CERT_FILE")]
        cert_file: Option<PathBuf>,
        /// Path to the client server TLS key file.
        #[arg(long, env = "ETCD_KEY_FILE")]
        key_file: Option<PathBuf>,
        /// Path to the client server TLS trusted CA cert file (client certificates are then
        /// required).
        #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
        trusted_ca_file: Option<PathBuf>,
        /// Enable client cert authentication (the certificate's CN identifies the user).
        #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        client_cert_auth: bool,
        /// Path to the client certificate revocation list file.
        #[arg(long, env = "ETCD_CLIENT_CRL_FILE")]
        client_crl_file: Option<PathBuf>,
        /// Client TLS using generated certificates.
        #[arg(long, env = "ETCD_AUTO_TLS", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        auto_tls: bool,
        /// Path to the peer server TLS cert file.
        #[arg(long, env = "ETCD_PEER_CERT_FILE")]
        peer_cert_file: Option<PathBuf>,
        /// Path to the peer server TLS key file.
        #[arg(long, env = "ETCD_PEER_KEY_FILE")]
        peer_key_file: Option<PathBuf>,
        /// Path to the peer server TLS trusted CA file.
        #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
        peer_trusted_ca_file: Option<PathBuf>,
        /// Enable peer client cert authentication.
        #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        peer_client_cert_auth: bool,
        /// Path to the peer certificate revocation list file.
        #[arg(long, env = "ETCD_PEER_CRL_FILE")]
        peer_crl_file: Option<PathBuf>,
        /// Peer TLS using generated certificates.
        #[arg(long, env = "ETCD_PEER_AUTO_TLS", default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        peer_auto_tls: bool,
        /// Allowed CN for inter-peer authentication.
        #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN")]
        peer_cert_allowed_cn: Option<String>,
        /// The validity period of the client and peer certificates generated by auto TLS, in
        /// years.
        #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY", default_value_t = 1)]
        self_signed_cert_validity: u32,
        /// Comma-separated list of supported TLS cipher suites between client/server and
        /// peers (empty will be auto-populated by rustls).
        #[arg(long, env = "ETCD_CIPHER_SUITES", default_value = "")]
        cipher_suites: String,

        /// Check data corruption before serving any client or peer traffic (a restarting
        /// member compares its hash with its peers' and refuses to start on a mismatch).
        #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", default_value = "false",
          num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
        experimental_initial_corrupt_check: bool,
        /// Duration of time between cluster corruption check passes (0s: off).
        #[arg(
            long,
            env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME",
            default_value = "0s"
        )]
        experimental_corrupt_check_time: String,

        // etcd flags accepted for compatibility, without effect here.
        #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set, hide = true)]
        strict_reconfig_check: Option<bool>,
        #[arg(long, env = "ETCD_ENABLE_PPROF", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set, hide = true)]
        enable_pprof: Option<bool>,
        /// Serve etcd's v2 API (`/v2/keys`, `/v2/members`, `/v2/stats`, `/v2/machines`).
        #[arg(long, env = "ETCD_ENABLE_V2", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        enable_v2: Option<bool>,
        #[arg(long, env = "ETCD_LOGGER", hide = true)]
        logger: Option<String>,
        #[arg(long, env = "ETCD_LOG_OUTPUTS", hide = true)]
        log_outputs: Option<String>,
        #[arg(long, env = "ETCD_MAX_SNAPSHOTS", hide = true)]
        max_snapshots: Option<u64>,
        #[arg(long, env = "ETCD_MAX_WALS", hide = true)]
        max_wals: Option<u64>,
    }

    /// etcd's retention syntax: a bare number is hours in periodic mode, revisions in revision
    /// mode; periodic also takes Go durations such as `30m`, `1h30m`, `90s`.
    fn parse_retention(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
        let bad = || format!("invalid --auto-compaction-retention {retention:?}");
        match mode {
            "revision" => {
                let n: i64 = retention.parse().map_err(|_| bad())?;
                Ok(if n == 0 {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Revision { retention: n }
                })
            }
            "periodic" => {
                let ms = if let Ok(hours) = retention.parse::<u64>() {
                    hours * 3_600_000
                } else {
                    parse_duration_ms(retention).ok_or_else(bad)?
                };
                Ok(if ms == 0 {
                    AutoCompaction::Off
                } else {
                    AutoCompaction::Periodic { retention_ms: ms }
                })
            }
            other => Err(format!(
                "invalid --auto-compaction-mode {other:?} (periodic or revision)"
            )),
        }
    }

    fn parse_duration_ms(s: &str) -> Option<u64> {
        // Go's time.ParseDuration takes a bare 0 (and no other bare number).
        if s == "0" {
            return Some(0);
        }
        let mut total = 0u64;
        let mut num = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            let n: u64 = num.parse().ok()?;
            num.clear();
            let unit_ms = match c {
                'h' => 3_600_000,
                'm' if chars.peek() == Some(&'s') => {
                    chars.next();
                    1
                }
                'm' => 60_000,
                's' => 1000,
                _ => return None,
            };
            total += n * unit_ms;
        }
        num.is_empty().then_some(total)
    }

    /// With `--discovery-srv` (and no `--initial-cluster`), the initial cluster from the
    /// domain's SRV records; this member's entry replaces its advertised peer URLs, as etcd's
    /// member takes its peer URLs from the cluster it found.
    fn discover_cluster(f: &mut Flags) -> Result<(), String> {
        if !f.discovery.is_empty() {
            return join_by_discovery(f);
        }
        if f.discovery_srv.is_empty()
            || f.initial_cluster
                .as_ref()
                .is_some_and(|c| !c.trim().is_empty())
        {
            return Ok(());
        }
        let advertised = split_urls(&f.initial_advertise_peer_urls);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let cluster = runtime.block_on(oxcd::srv::server_cluster(
            &f.discovery_srv,
            &f.discovery_srv_name,
            &f.name,
            &advertised,
        ))?;
        for node in cluster.split(',') {
            tracing::info!(node, "got bootstrap from DNS for etcd-server");
        }
        let own: Vec<&str> = cluster
            .split(',')
            .filter_map(|p| p.strip_prefix(&format!("{}=", f.name)))
            .collect();
        f.initial_advertise_peer_urls = own.join(",");
        f.initial_cluster = Some(cluster);
        Ok(())
    }

    /// With `--discovery`, on a member not yet founded: the initial cluster from the discovery
    /// service, the discovery URL as the cluster token (etcd's rules).
    fn join_by_discovery(f: &mut Flags) -> Result<(), String> {
        if !matches!(f.discovery_fallback.as_str(), "exit" | "proxy") {
            return Err(format!(
                "invalid --discovery-fallback {:?} (exit or proxy)",
                f.discovery_fallback
            ));
        }
        let data_dir = f
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.oxcd", f.name)));
        let founded = std::fs::read_dir(&data_dir).is_ok_and(|mut d| d.next().is_some());
        f.initial_cluster_token = f.discovery.clone();
        if founded {
            return Ok(());
        }
        let advertised = split_urls(&f.initial_advertise_peer_urls);
        let id = oxcd::server::cluster::member_id(&advertised, &f.discovery, None);
        let me: Vec<String> = advertised
            .iter()
            .map(|u| format!("{}={u}", f.name))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let cluster = match runtime.block_on(oxcd::discovery::join_cluster(
            &f.discovery,
            &f.discovery_proxy,
            id,
            &me.join(","),
        )) {
            Err(e) if e.ends_with("cluster is full") && f.discovery_fallback == "proxy" => {
                // etcd's default: serve as a v2 proxy to the founded cluster.
                tracing::warn!("discovery cluster is full, falling back to proxy");
                f.proxy = "on".to_string();
                runtime.block_on(oxcd::discovery::get_cluster(
                    &f.discovery,
                    &f.discovery_proxy,
                ))?
            }
            other => other?,
        };
        f.initial_cluster = Some(cluster);
        Ok(())
    }

    fn config(f: Flags) -> Result<ServerConfig, String> {
        let c = unchecked_config(f)?;
        c.validate()?;
        Ok(c)
    }

    /// The configuration the flags give, before the checks a member's needs (a v2 proxy takes
    /// its listeners, TLS and `--initial-cluster` from it).
    fn unchecked_config(f: Flags) -> Result<ServerConfig, String> {
        let advertise_peer = split_urls(&f.initial_advertise_peer_urls);
        let initial_cluster = match &f.initial_cluster {
            Some(s) if !s.trim().is_empty() => parse_initial_cluster(s)?,
            _ => vec![(f.name.clone(), advertise_peer.clone())],
        };
        let cluster_state = match f.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => {
                return Err(format!(
                    "invalid --initial-cluster-state {other:?} (new or existing)"
                ));
            }
        };
        let listen_client = split_urls(&f.listen_client_urls);
        let listen_peer = split_urls(&f.listen_peer_urls);
        let listen_metrics = split_urls(&f.listen_metrics_urls);
        for u in listen_client
            .iter()
            .chain(&listen_peer)
            .chain(&listen_metrics)
            .chain(&advertise_peer)
        {
            check_url(u)?;
        }
        let data_dir = f
            .data_dir
            .unwrap_or_else(|| PathBuf::from(format!("{}.oxcd", f.name)));
        let mut c = ServerConfig::single(&f.name, data_dir);
        // A listener keeps its scheme when it is TLS (see `ServerConfig::listen_client`).
        let listener = |u: &String| {
            if u.starts_with("https://") {
                format!("https://{}", url_host_port(u))
            } else {
                url_host_port(u).to_string()
            }
        };
        c.listen_client = listen_client.iter().map(listener).collect();
        c.advertise_client_urls = split_urls(&f.advertise_client_urls);
        c.listen_peer = listen_peer.iter().map(listener).collect();
        let cipher_suites = split_urls(&f.cipher_suites);
        c.client_tls = TlsInfo {
            cert_file: f.cert_file,
            key_file: f.key_file,
            trusted_ca_file: f.trusted_ca_file,
            client_cert_auth: f.client_cert_auth,
            crl_file: f.client_crl_file,
            auto_tls: f.auto_tls,
            self_signed_cert_validity_years: f.self_signed_cert_validity,
            allowed_cn: None,
            cipher_suites: cipher_suites.clone(),
        };
        c.peer_tls = TlsInfo {
            cert_file: f.peer_cert_file,
            key_file: f.peer_key_file,
            trusted_ca_file: f.peer_trusted_ca_file,
            client_cert_auth: f.peer_client_cert_auth,
            crl_file: f.peer_crl_file,
            auto_tls: f.peer_auto_tls,
            self_signed_cert_validity_years: f.self_signed_cert_validity,
            allowed_cn: f.peer_cert_allowed_cn,
            cipher_suites,
        };
        c.advertise_peer_urls = advertise_peer;
        c.initial_cluster = initial_cluster;
        c.cluster_state = cluster_state;
        c.cluster_token = f.initial_cluster_token;
        c.heartbeat_ms = f.heartbeat_interval;
        c.election_ms = f.election_timeout;
        c.snapshot_count = f.snapshot_count;
        if f.quota_backend_bytes > 0 {
            c.quota_backend_bytes = f.quota_backend_bytes;
        }
        c.max_request_bytes = f.max_request_bytes;
        c.max_txn_ops = f.max_txn_ops;
        c.enable_v2 = f.enable_v2.unwrap_or(false);
        c.force_new_cluster = f.force_new_cluster;
        c.max_concurrent_streams = f.max_concurrent_streams.max(1);
        c.bcrypt_cost = if (4..=31).contains(&f.bcrypt_cost) {
            f.bcrypt_cost
        } else {
            tracing::warn!(
                cost = f.bcrypt_cost,
                "invalid --bcrypt-cost: outside 4..=31; using 10"
            );
            10
        };
        match f.auth_token.split_once(',').unwrap_or((&f.auth_token, "")) {
            ("simple", _) => {}
            ("jwt", options) => {
                let jwt = oxcd::server::jwt::Jwt::from_options(options)
                    .map_err(|e| format!("failed to create token provider: {e}"))?;
                c.jwt = Some(std::sync::Arc::new(jwt));
            }
            _ => {
                return Err(format!(
                    "failed to create token provider: auth: invalid auth options ({})",
                    f.auth_token
                ));
            }
        }
        c.auth_token_ttl_ms = f.auth_token_ttl.max(1).saturating_mul(1000);
        c.auto_compaction = parse_retention(&f.auto_compaction_mode, &f.auto_compaction_retention)?;
        c.listen_metrics = listen_metrics.iter().map(listener).collect();
        c.pre_vote = f.pre_vote;
        c.initial_corrupt_check = f.experimental_initial_corrupt_check;
        c.corrupt_check_ms =
            parse_duration_ms(&f.experimental_corrupt_check_time).ok_or_else(|| {
                format!(
                    "invalid --experimental-corrupt-check-time {:?}",
                    f.experimental_corrupt_check_time
                )
            })?;
        Ok(c)
    }

    /// What the gateway and the gRPC proxy share: where they listen and how they find the
    /// members.
    #[derive(clap::Args, Debug)]
    struct FrontEndFlags {
        /// Address to listen on.
        #[arg(long, global = true, default_value = "127.0.0.1:23790")]
        listen_addr: String,
        /// Comma-separated member client endpoints (`host:port`, or URLs; the gateway ignores
        /// the scheme).
        #[arg(long, global = true, default_value = "127.0.0.1:2379")]
        endpoints: String,
        /// DNS domain whose `_etcd-client._tcp` (and `-ssl`) SRV records name the members;
        /// they take the place of `--endpoints`.
        #[arg(long, global = true, default_value = "")]
        discovery_srv: String,
        /// Suffix to the SRV service names (`_etcd-client-<name>._tcp`).
        #[arg(long, global = true, default_value = "")]
        discovery_srv_name: String,
        /// Accept endpoints found by SRV as they are: plain ones too, TLS ones unverified
        /// (without it, only TLS endpoints that the CA file verifies are used).
        #[arg(long, global = true, default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        insecure_discovery: bool,
    }

    impl FrontEndFlags {
        /// The members that `--discovery-srv`'s records name (none without it), kept only when
        /// a handshake verifies them against `ca` unless `--insecure-discovery`.
        async fn srv_endpoints(&self, ca: Option<PathBuf>) -> Vec<oxcd::tcp_gateway::Endpoint> {
            if self.discovery_srv.is_empty() {
                return Vec::new();
            }
            let mut found =
                match oxcd::srv::client_endpoints(&self.discovery_srv, &self.discovery_srv_name)
                    .await
                {
                    Ok(found) => found,
                    Err(e) => {
                        tracing::warn!(error = %e, "DNS SRV discovery found no endpoints");
                        return Vec::new();
                    }
                };
            let urls: Vec<String> = found.iter().map(oxcd::srv::url).collect();
            tracing::info!(srv = self.discovery_srv, endpoints = ?urls, "discovered cluster from SRV");
            if !self.insecure_discovery && !found.is_empty() {
                let (kept, dropped) = oxcd::srv::validate_secure(found, ca).await;
                if !dropped.is_empty() {
                    tracing::warn!(
                        errors = dropped.join(","),
                        "failed to validate discovered endpoints"
                    );
                }
                found = kept;
            }
            found
        }
    }

    /// etcd's L4 gateway (`oxcd gateway start`): a TCP proxy in front of the members' client
    /// ports. Its flags go before or after `start`.
    #[derive(Parser, Debug)]
    #[command(name = "oxcd gateway", args_override_self = true)]
    struct GatewayCli {
        #[command(subcommand)]
        cmd: GatewayCmd,
        #[command(flatten)]
        front: FrontEndFlags,
        /// CA certificate for the endpoints found by SRV (with `--insecure-discovery=false`).
        #[arg(long, global = true, default_value = "")]
        trusted_ca_file: String,
        /// How long an endpoint that refused a connection stays aside (a Go duration).
        #[arg(long, global = true, default_value = "1m0s")]
        retry_delay: String,
    }

    #[derive(clap::Subcommand, Debug)]
    enum GatewayCmd {
        /// Start the gateway.
        Start,
    }

    fn gateway_main(args: Vec<std::ffi::OsString>) -> ExitCode {
        let cli = GatewayCli::parse_from(args);
        let GatewayCmd::Start = cli.cmd;
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("OXCD_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("oxcd=info,warn")),
            )
            .with_writer(std::io::stderr)
            .init();
        let Some(delay_ms) = parse_duration_ms(&cli.retry_delay) else {
            eprintln!("oxcd gateway: invalid --retry-delay {:?}", cli.retry_delay);
            return ExitCode::FAILURE;
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let ca = (!cli.trusted_ca_file.is_empty()).then(|| PathBuf::from(&cli.trusted_ca_file));
            let mut endpoints = cli.front.srv_endpoints(ca).await;
            if endpoints.is_empty() {
                endpoints = match oxcd::tcp_gateway::parse_endpoints(&cli.front.endpoints) {
                    Ok(e) => e,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                };
            }
            if endpoints.is_empty() {
                println!("no endpoints found");
                return ExitCode::FAILURE;
            }
            let listener = match tokio::net::TcpListener::bind(&cli.front.listen_addr).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("listen tcp {}: {e}", cli.front.listen_addr);
                    return ExitCode::FAILURE;
                }
            };
            let gateway = oxcd::tcp_gateway::Gateway::new(
                endpoints,
                std::time::Duration::from_millis(delay_ms),
            );
            tokio::select! {
                r = gateway.run(listener) => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "the gateway stopped");
                    }
                    ExitCode::FAILURE
                }
                _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
            }
        })
    }

    /// etcd's gRPC proxy (`oxcd grpc-proxy start`): etcd's v3 API served to many clients over
    /// one connection to the cluster, with watch and keep-alive coalescing, a read cache and
    /// namespaces. Its flags go before or after `start`.
    #[derive(Parser, Debug)]
    #[command(name = "oxcd grpc-proxy", args_override_self = true)]
    struct GrpcProxyCli {
        #[command(subcommand)]
        cmd: GatewayCmd,
        #[command(flatten)]
        front: FrontEndFlags,
        /// Another address serving /metrics and /health (a URL).
        #[arg(long, global = true, default_value = "")]
        metrics_addr: String,
        /// The address to register and to list in `member list` (empty: pass `member list`
        /// through to the members).
        #[arg(long, global = true, default_value = "127.0.0.1:23790")]
        advertise_client_url: String,
        /// Prefix to register the proxy under, shared by the proxies of one cluster.
        #[arg(long, global = true, default_value = "")]
        resolver_prefix: String,
        /// TTL in seconds of the registration's lease.
        #[arg(long, global = true, default_value_t = 0)]
        resolver_ttl: i64,
        /// Prefix added to every key of the proxy's clients.
        #[arg(long, global = true, default_value = "")]
        namespace: String,
        /// Accepted for etcd's flag set; oxcd serves no pprof.
        #[arg(long, global = true, default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        enable_pprof: bool,
        /// Where `--auto-tls` keeps its certificate.
        #[arg(long, global = true, default_value = "default.proxy")]
        data_dir: PathBuf,
        /// Client certificate for the connection to the members.
        #[arg(long, global = true, default_value = "")]
        cert: String,
        /// Its key.
        #[arg(long, global = true, default_value = "")]
        key: String,
        /// CA bundle to verify the members' certificates.
        #[arg(long, global = true, default_value = "")]
        cacert: String,
        /// Skip verifying the members' certificates (testing only).
        #[arg(long, global = true, default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        insecure_skip_tls_verify: bool,
        /// The proxy's own TLS certificate.
        #[arg(long, global = true, default_value = "")]
        cert_file: String,
        /// Its key.
        #[arg(long, global = true, default_value = "")]
        key_file: String,
        /// CA bundle the proxy's clients' certificates must chain to.
        #[arg(long, global = true, default_value = "")]
        trusted_ca_file: String,
        /// Serve TLS with a generated certificate.
        #[arg(long, global = true, default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        auto_tls: bool,
        /// Client certificates to refuse.
        #[arg(long, global = true, default_value = "")]
        client_crl_file: String,
        /// TLS 1.2 cipher suites the listener allows (Go names).
        #[arg(long, global = true, default_value = "", value_delimiter = ',')]
        listen_cipher_suites: Vec<String>,
        /// Accepted for etcd's flag set (message sizes are not limited by the proxy).
        #[arg(long, global = true, default_value_t = 1_572_864)]
        max_send_bytes: usize,
        #[arg(long, global = true, default_value_t = i32::MAX as usize)]
        max_recv_bytes: usize,
        /// Streams each client connection may open at a time.
        #[arg(long, global = true, default_value_t = u32::MAX)]
        max_concurrent_streams: u32,
        /// Debug-level logging.
        #[arg(long, global = true, default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        debug: bool,
        /// Not supported by oxcd's proxy.
        #[arg(long, global = true, default_value = "false", num_args = 0..=1,
          default_missing_value = "true", action = ArgAction::Set)]
        experimental_serializable_ordering: bool,
        /// Not supported by oxcd's proxy.
        #[arg(long, global = true, default_value = "")]
        experimental_leasing_prefix: String,
    }

    fn grpc_proxy_main(args: Vec<std::ffi::OsString>) -> ExitCode {
        let cli = GrpcProxyCli::parse_from(args);
        let GatewayCmd::Start = cli.cmd;
        let level = if cli.debug { "debug" } else { "info" };
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("OXCD_LOG").unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(format!("oxcd={level},warn"))
                }),
            )
            .with_writer(std::io::stderr)
            .init();
        // etcd's checks, messages and exit code.
        if !cli.resolver_prefix.is_empty() && cli.resolver_ttl < 1 {
            eprintln!("invalid resolver-ttl {}", cli.resolver_ttl);
            return ExitCode::FAILURE;
        }
        if cli.resolver_prefix.is_empty() && cli.resolver_ttl > 0 {
            eprintln!("invalid resolver-prefix {:?}", cli.resolver_prefix);
            return ExitCode::FAILURE;
        }
        if !cli.resolver_prefix.is_empty() && cli.advertise_client_url.is_empty() {
            eprintln!(
                "invalid advertise-client-url {:?}",
                cli.advertise_client_url
            );
            return ExitCode::FAILURE;
        }
        if cli.experimental_serializable_ordering || !cli.experimental_leasing_prefix.is_empty() {
            eprintln!(
                "oxcd grpc-proxy: --experimental-serializable-ordering and \
                 --experimental-leasing-prefix are not supported"
            );
            return ExitCode::FAILURE;
        }
        if cli.enable_pprof {
            tracing::warn!("--enable-pprof: oxcd serves no pprof endpoints");
        }
        let path = |s: &String| (!s.is_empty()).then(|| PathBuf::from(s));
        let upstream_tls = if cli.cert.is_empty()
            && cli.key.is_empty()
            && cli.cacert.is_empty()
            && !cli.insecure_skip_tls_verify
        {
            None
        } else {
            let tls = oxcd::server::tls::ClientTls {
                ca_file: path(&cli.cacert),
                cert_file: path(&cli.cert),
                key_file: path(&cli.key),
                skip_verify: cli.insecure_skip_tls_verify,
            };
            match tls.config() {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        };
        let mut serve = TlsInfo {
            cert_file: path(&cli.cert_file),
            key_file: path(&cli.key_file),
            trusted_ca_file: path(&cli.trusted_ca_file),
            client_cert_auth: !cli.trusted_ca_file.is_empty(),
            crl_file: path(&cli.client_crl_file),
            auto_tls: cli.auto_tls,
            self_signed_cert_validity_years: 1,
            allowed_cn: None,
            cipher_suites: cli
                .listen_cipher_suites
                .iter()
                .filter(|c| !c.is_empty())
                .cloned()
                .collect(),
        };
        let serve_tls = if serve.cert_file.is_some()
            || serve.key_file.is_some()
            || serve.trusted_ca_file.is_some()
        {
            Some(serve)
        } else if cli.auto_tls {
            let host = url_host_port(&cli.front.listen_addr);
            let hosts = vec![host.rsplit_once(':').map_or(host, |(h, _)| h).to_string()];
            match oxcd::server::tls::with_auto_cert(&serve, "proxy", &cli.data_dir, &hosts) {
                Ok(info) => {
                    serve = info;
                    Some(serve)
                }
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            None
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let found = cli.front.srv_endpoints(path(&cli.cacert)).await;
            let endpoints = if found.is_empty() {
                cli.front.endpoints.clone()
            } else {
                let urls: Vec<String> = found.iter().map(oxcd::srv::url).collect();
                urls.join(",")
            };
            let endpoints =
                match oxcd::proxy::upstream::endpoint_urls(&endpoints, upstream_tls.is_some()) {
                    Ok(e) => e,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                };
            let config = oxcd::proxy::ProxyConfig {
                listen_addr: cli.front.listen_addr.clone(),
                endpoints,
                advertise_client_url: cli.advertise_client_url.clone(),
                resolver_prefix: cli.resolver_prefix.clone(),
                resolver_ttl: cli.resolver_ttl,
                namespace: cli.namespace.clone(),
                upstream_tls,
                serve_tls,
                metrics_addr: (!cli.metrics_addr.is_empty()).then(|| cli.metrics_addr.clone()),
                max_concurrent_streams: cli.max_concurrent_streams,
            };
            if let Err(e) = oxcd::proxy::start(config).await {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            let _ = tokio::signal::ctrl_c().await;
            ExitCode::SUCCESS
        })
    }

    pub fn main() -> ExitCode {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if args.get(1).is_some_and(|a| a == "grpc-proxy") {
            let mut rest = vec![std::ffi::OsString::from("oxcd grpc-proxy")];
            rest.extend_from_slice(&args[2..]);
            return grpc_proxy_main(rest);
        }
        if args.get(1).is_some_and(|a| a == "gateway") {
            // Usage lines name the whole command.
            let mut rest = vec![std::ffi::OsString::from("oxcd gateway")];
            rest.extend_from_slice(&args[2..]);
            return gateway_main(rest);
        }
        let mut flags = Flags::parse();
        let level = match flags.log_level.as_str() {
            "debug" | "info" | "warn" | "error" => flags.log_level.clone(),
            other => {
                eprintln!("oxcd: invalid --log-level {other:?} (debug, info, warn, error)");
                return ExitCode::FAILURE;
            }
        };
        let filter = tracing_subscriber::EnvFilter::try_from_env("OXCD_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("oxcd={level},warn")));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        let found = if flags.proxy == "off" {
            discover_cluster(&mut flags)
        } else if !flags.discovery.is_empty() {
            // A v2 proxy from the start: the members are the discovery service's.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(oxcd::discovery::get_cluster(
                    &flags.discovery,
                    &flags.discovery_proxy,
                ))
                .map(|c| flags.initial_cluster = Some(c))
        } else {
            Ok(())
        };
        if let Err(e) = found {
            eprintln!("oxcd: {e}");
            return ExitCode::FAILURE;
        }
        if flags.proxy != "off" {
            return http_proxy_main(flags);
        }
        #[allow(unused_mut)]
        let mut config = match config(flags) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("oxcd: {e}");
                return ExitCode::FAILURE;
            }
        };
        // A build with the `planted-bugs` feature (the test build; never a release) takes a
        // planted mistake from the environment, for the live harness to prove itself on.
        #[cfg(feature = "planted-bugs")]
        if let Some(name) = std::env::var_os("OXCD_PLANTED_BUG") {
            match oxcd::server::ServerBug::parse(&name.to_string_lossy()) {
                Ok(bug) => {
                    tracing::warn!(bug = bug.name(), "running with a planted mistake");
                    config.planted_bug = Some(bug);
                }
                Err(e) => {
                    eprintln!("oxcd: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(run(config))
    }

    /// `--proxy on|readonly`: etcd's v2 proxy instead of a member.
    fn http_proxy_main(flags: Flags) -> ExitCode {
        let readonly = match flags.proxy.as_str() {
            "on" => false,
            "readonly" => true,
            other => {
                eprintln!("oxcd: invalid --proxy {other:?} (off, readonly, on)");
                return ExitCode::FAILURE;
            }
        };
        let ms = std::time::Duration::from_millis;
        let (failure_wait, refresh, dial) = (
            ms(flags.proxy_failure_wait),
            ms(flags.proxy_refresh_interval),
            ms(flags.proxy_dial_timeout),
        );
        let proxy = || -> Result<oxcd::proxy::http::HttpProxyConfig, String> {
            let mut c = unchecked_config(flags)?;
            // etcd keeps a proxy's state under <data-dir>/proxy.
            let dir = c.data_dir.join("proxy");
            let hosts: Vec<String> = c
                .listen_client
                .iter()
                .map(|u| {
                    let hp = url_host_port(u);
                    hp.rsplit_once(':').map_or(hp, |(h, _)| h).to_string()
                })
                .collect();
            c.client_tls =
                oxcd::server::tls::with_auto_cert(&c.client_tls, "client", &dir, &hosts)?;
            let serve_tls = if c.listen_client.iter().any(|u| u.starts_with("https://")) {
                Some(std::sync::Arc::new(oxcd::server::tls::Acceptor::new(
                    &c.client_tls,
                    "client",
                )?))
            } else {
                None
            };
            let dial_with =
                |info: &TlsInfo| oxcd::server::tls::ClientTls::for_member(info, true).config();
            // As etcd's: the client certificate where one is given, else the peer's.
            let client_side = if c.client_tls.cert_file.is_some() {
                &c.client_tls
            } else {
                &c.peer_tls
            };
            Ok(oxcd::proxy::http::HttpProxyConfig {
                listen: c.listen_client.clone(),
                peer_urls: c
                    .initial_cluster
                    .iter()
                    .flat_map(|(_, urls)| urls.clone())
                    .collect(),
                readonly,
                peer_tls: Some(dial_with(&c.peer_tls)?),
                client_tls: Some(dial_with(client_side)?),
                serve_tls,
                failure_wait,
                refresh,
                dial_timeout: dial,
            })
        };
        let config = match proxy() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("oxcd: {e}");
                return ExitCode::FAILURE;
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            if let Err(e) = oxcd::proxy::http::start(config).await {
                eprintln!("oxcd: {e}");
                return ExitCode::FAILURE;
            }
            let _ = tokio::signal::ctrl_c().await;
            ExitCode::SUCCESS
        })
    }

    async fn run(config: ServerConfig) -> ExitCode {
        let engine = match oxcd::storage::FjallEngine::open(&config.data_dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the data dir");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(data_dir = %config.data_dir.display(), name = config.name, "starting oxcd");
        let mut server = match oxcd::start(config, engine).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                return ExitCode::FAILURE;
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("received SIGINT; shutting down"),
            _ = term.recv() => tracing::info!("received SIGTERM; shutting down"),
            why = server.stopped() => {
                // Removed from the cluster: done, as etcd's member is (it exits 0 then).
                if why == oxcd::server::driver::REMOVED_MESSAGE {
                    tracing::info!(why, "the member stopped");
                    return ExitCode::SUCCESS;
                }
                tracing::error!(why, "the member stopped");
                return ExitCode::FAILURE;
            }
        }
        server.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn retention_parses_like_etcd() {
            assert_eq!(parse_retention("periodic", "0"), Ok(AutoCompaction::Off));
            assert_eq!(
                parse_retention("periodic", "1"),
                Ok(AutoCompaction::Periodic {
                    retention_ms: 3_600_000
                })
            );
            assert_eq!(
                parse_retention("periodic", "1h30m"),
                Ok(AutoCompaction::Periodic {
                    retention_ms: 5_400_000
                })
            );
            assert_eq!(
                parse_retention("revision", "1000"),
                Ok(AutoCompaction::Revision { retention: 1000 })
            );
            assert!(parse_retention("periodic", "5x").is_err());
            assert_eq!(parse_duration_ms("0"), Some(0));
            assert_eq!(parse_duration_ms("1s"), Some(1000));
            assert_eq!(parse_duration_ms("1m30s"), Some(90_000));
            assert_eq!(parse_duration_ms("5"), None);
            assert!(parse_retention("weekly", "1").is_err());
        }

        #[test]
        fn a_repeated_flag_takes_its_last_value() {
            let f = Flags::parse_from(["oxcd", "--client-cert-auth", "--client-cert-auth"]);
            assert!(f.client_cert_auth);
            let f = Flags::parse_from(["oxcd", "--name", "a", "--name", "b"]);
            assert_eq!(f.name, "b");
        }

        #[test]
        fn no_flags_is_a_single_member_on_the_default_ports() {
            let c = config(Flags::parse_from(["oxcd"])).unwrap();
            assert_eq!(c.listen_client, vec!["localhost:2379"]);
            assert_eq!(c.listen_peer, vec!["localhost:2380"]);
            assert_eq!(c.data_dir, PathBuf::from("default.oxcd"));
            assert_eq!(
                c.initial_cluster,
                vec![(
                    "default".to_string(),
                    vec!["http://localhost:2380".to_string()]
                )]
            );
        }
    }
}
