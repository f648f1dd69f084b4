//! The server: what turns the sans-IO core into a running etcd-compatible member.
//!
//! [`start`] opens (or founds) the member on its data dir, spawns the [`driver`] that owns it,
//! connects the peer transport to the peers, serves the peer protocol on the peer listeners,
//! starts the front ends it is given on the client listeners, and publishes the member's name
//! and client URLs to the cluster through Raft. With the corruption checks on, a restarting
//! member compares its hash with its peers' first, and the leader compares them periodically
//! ([`corruption`]).
//!
//! What it does not do: parse flags (the `oxcd` binary does), serve clients or decode their
//! requests (the front ends in `crate::api` do, started through [`FrontEnds`]: this module
//! never names them).

pub mod cluster;
pub mod config;
pub mod corruption;
pub mod driver;
pub mod error;
pub mod jwt;
#[cfg(not(madsim))]
pub mod tls;

use crate::lease::LessorConfig;
use crate::mvcc::WatchConfig;
use crate::node::{Command, Member, MemberConfig};
use crate::pb::peer::peer_server::PeerServer;
use crate::peer;
use crate::raft;
use cluster::{MemberInfo, cluster_id, member_id};
pub use config::{AutoCompaction, ClusterState, ServerBug, ServerConfig, TlsInfo};
use driver::{Driver, INBOX_CAPACITY, Input, NodeHandle, ServerEngine};
use rand::SeedableRng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a stopping server lets its listeners finish what they are doing, in all.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The etcd version oxcd reports: clients gate features on it.
pub const ETCD_VERSION: &str = "3.5.0";

/// A running server.
pub struct Server {
    pub handle: NodeHandle,
    shutdown: watch::Sender<bool>,
    driver: tokio::task::JoinHandle<Result<(), String>>,
    /// Stops the driver when sent or dropped.
    stop_driver: oneshot::Sender<()>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Stops serving and waits for the driver to finish.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // Graceful first: requests in flight get their answers, and the long-lived streams
        // (watches, keep-alives, peers' Raft streams) end at the signal with "server
        // stopped" (`NodeHandle::stopping`). A listener still busy when the one shared
        // deadline passes is cut off.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for mut s in self.servers {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, &mut s).await.is_err() {
                s.abort();
            }
        }
        drop(self.handle);
        let _ = self.stop_driver.send(());
        let _ = self.driver.await;
    }

    /// Waits until the member stops on its own (a storage failure): the reason.
    pub async fn stopped(&mut self) -> String {
        match (&mut self.driver).await {
            Ok(Ok(())) => "the driver ended".to_string(),
            Ok(Err(e)) => e,
            Err(e) => format!("the driver failed: {e}"),
        }
    }
}

/// The IDs of this member and its cluster, and the founding members' records.
struct Identity {
    member_id: u64,
    cluster_id: u64,
    founders: Vec<MemberInfo>,
    /// A joining member's peers, as the cluster told it: whom to answer until the leader's
    /// snapshot brings the membership.
    peers: Vec<(u64, Vec<String>)>,
}

fn founding_identity(config: &ServerConfig) -> Result<Identity, String> {
    let (me, founders) = founders(
        &config.initial_cluster,
        &config.cluster_token,
        &config.name,
        &config.advertise_peer_urls,
    )?;
    let ids: Vec<u64> = founders.iter().map(|m| m.id).collect();
    Ok(Identity {
        member_id: founders[me].id,
        cluster_id: cluster_id(&ids),
        founders,
        peers: Vec::new(),
    })
}

/// The members `--initial-cluster` founds (IDs derived from their peer URLs and
/// `--initial-cluster-token`, no client URLs yet) and which of them is `name`, checked
/// against its `--initial-advertise-peer-urls`: what a founding member and a snapshot
/// restore both derive, with etcd's words for a mistake.
pub fn founders(
    initial_cluster: &[(String, Vec<String>)],
    token: &str,
    name: &str,
    advertise_peer_urls: &[String],
) -> Result<(usize, Vec<MemberInfo>), String> {
    let founders: Vec<MemberInfo> = initial_cluster
        .iter()
        .map(|(name, urls)| MemberInfo {
            id: member_id(urls, token, None),
            name: name.clone(),
            peer_urls: urls.clone(),
            client_urls: Vec::new(),
            version: String::new(),
        })
        .collect();
    let me = initial_cluster
        .iter()
        .position(|(n, _)| n == name)
        .ok_or_else(|| {
            format!("couldn't find local name {name:?} in the initial cluster configuration")
        })?;
    let mut mine = initial_cluster[me].1.clone();
    let mut advertised = advertise_peer_urls.to_vec();
    mine.sort();
    advertised.sort();
    if mine != advertised {
        return Err(format!(
            "--initial-cluster has {name}={mine:?} but missing from --initial-advertise-peer-urls={advertised:?}"
        ));
    }
    let mut unique: Vec<u64> = founders.iter().map(|m| m.id).collect();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != founders.len() {
        return Err("--initial-cluster has duplicate peer URLs".to_string());
    }
    Ok((me, founders))
}

/// Asks the running members named in `--initial-cluster` who this member is.
async fn joining_identity(config: &ServerConfig, tls: &DialTls) -> Result<Identity, String> {
    let mut advertised = config.advertise_peer_urls.clone();
    advertised.sort();
    let mut last_error = String::from("no peer to ask");
    for (name, urls) in &config.initial_cluster {
        if *name == config.name {
            continue;
        }
        for url in urls {
            let channel = match dial(url, tls, Duration::from_secs(2)).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = format!("{url}: {e}");
                    continue;
                }
            };
            let mut client = crate::pb::peer::peer_client::PeerClient::new(channel);
            match client.members(crate::pb::peer::MembersRequest {}).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let me = r.members.iter().find(|m| {
                        let mut urls = m.peer_urls.clone();
                        urls.sort();
                        urls == advertised
                    });
                    return match me {
                        Some(m) => Ok(Identity {
                            member_id: m.id,
                            cluster_id: r.cluster_id,
                            founders: Vec::new(),
                            peers: r
                                .members
                                .iter()
                                .filter(|p| p.id != m.id)
                                .map(|p| (p.id, p.peer_urls.clone()))
                                .collect(),
                        }),
                        None => Err(format!(
                            "the cluster has no member with peer URLs {advertised:?}: add it first \
                             (member add)"
                        )),
                    };
                }
                Err(e) => last_error = format!("{url}: {}", e.message()),
            }
        }
    }
    Err(format!("cannot fetch the cluster's members: {last_error}"))
}

/// What a member dials `https://` URLs with: a rustls configuration, or none where no TLS is
/// set up (the simulation build has no TLS at all).
#[cfg(not(madsim))]
pub type DialTls = Option<Arc<rustls::ClientConfig>>;
/// What a member dials `https://` URLs with (the simulation build has no TLS).
#[cfg(madsim)]
pub type DialTls = ();

/// A channel to `url`, through TLS for an `https://` one.
pub async fn dial(
    url: &str,
    tls: &DialTls,
    connect_timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    #[cfg(not(madsim))]
    return tls::dial(url, tls.as_ref(), connect_timeout).await;
    #[cfg(madsim)]
    {
        let _ = tls;
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
            .map_err(|e| e.to_string())?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true);
        endpoint.connect().await.map_err(|e| e.to_string())
    }
}

/// How this member dials the other members' client URLs (leader forwarding).
pub fn client_dial_tls(config: &ServerConfig) -> Result<DialTls, String> {
    #[cfg(not(madsim))]
    {
        let https = config
            .advertise_client_urls
            .iter()
            .any(|u| u.starts_with("https://"));
        if !https && !config.client_tls.is_set() {
            return Ok(None);
        }
        tls::ClientTls::for_member(&config.client_tls, true)
            .config()
            .map(Some)
    }
    #[cfg(madsim)]
    {
        let _ = config;
        Ok(())
    }
}

/// How this member dials its peers' URLs.
fn peer_dial_tls(config: &ServerConfig) -> Result<DialTls, String> {
    #[cfg(not(madsim))]
    {
        let https = config
            .initial_cluster
            .iter()
            .flat_map(|(_, urls)| urls)
            .chain(&config.advertise_peer_urls)
            .any(|u| u.starts_with("https://"));
        if !https && !config.peer_tls.is_set() {
            return Ok(None);
        }
        tls::ClientTls::for_member(&config.peer_tls, false)
            .config()
            .map(Some)
    }
    #[cfg(madsim)]
    {
        let _ = config;
        Ok(())
    }
}

/// The hosts of `urls` (for an auto TLS certificate's names).
#[cfg(not(madsim))]
fn url_hosts<'a>(urls: impl Iterator<Item = &'a String>) -> Vec<String> {
    urls.filter_map(|u| {
        let hp = cluster::url_host_port(u);
        let host = hp.rsplit_once(':').map_or(hp, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        (!host.is_empty()).then(|| host.to_string())
    })
    .collect()
}

/// Checks the TLS settings against the URLs, with etcd's messages, and makes the auto TLS
/// certificates (in the data dir).
#[cfg(not(madsim))]
fn prepare_tls(config: &mut ServerConfig) -> Result<(), String> {
    let client_urls: Vec<String> = config
        .listen_client
        .iter()
        .chain(&config.advertise_client_urls)
        .cloned()
        .collect();
    let peer_urls: Vec<String> = config
        .listen_peer
        .iter()
        .chain(&config.advertise_peer_urls)
        .cloned()
        .collect();
    config.client_tls = tls::with_auto_cert(
        &config.client_tls,
        "client",
        &config.data_dir,
        &url_hosts(client_urls.iter()),
    )?;
    config.peer_tls = tls::with_auto_cert(
        &config.peer_tls,
        "peer",
        &config.data_dir,
        &url_hosts(peer_urls.iter()),
    )?;
    if let Some(u) = config
        .listen_client
        .iter()
        .find(|u| u.starts_with("https://"))
        && !config.client_tls.is_set()
    {
        return Err(format!(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url {u} with \
             HTTPS scheme"
        ));
    }
    if let Some(u) = config
        .listen_peer
        .iter()
        .find(|u| u.starts_with("https://"))
        && !config.peer_tls.is_set()
    {
        return Err(format!(
            "cannot listen on TLS for {}: KeyFile and CertFile are not presented",
            cluster::url_host_port(u)
        ));
    }
    Ok(())
}

/// Resolves `host:port` (or a URL) to a socket address; `localhost` is 127.0.0.1.
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let hp = cluster::url_host_port(addr);
    let (host, port) = hp
        .rsplit_once(':')
        .ok_or_else(|| format!("address {addr:?} has no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("address {addr:?} has a bad port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match host {
        "localhost" | "" => std::net::IpAddr::from([127, 0, 0, 1]),
        h => h
            .parse()
            .map_err(|_| format!("address {addr:?}: host must be an IP address or localhost"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// What serves clients in front of a member: given the member's handle and the shutdown
/// signal, starts its listeners (on `handle.config`'s client and metrics URLs) and returns
/// their tasks. The composition root ([`crate::start`]) passes the API edge's.
pub type FrontEnds =
    fn(&NodeHandle, watch::Receiver<bool>) -> Result<Vec<tokio::task::JoinHandle<()>>, String>;

/// Starts a member on `engine` with `config`, with `front_ends` serving its clients once its
/// peer listeners are up.
pub async fn start(
    config: ServerConfig,
    engine: ServerEngine,
    front_ends: FrontEnds,
) -> Result<Server, String> {
    config.validate()?;
    #[cfg(not(madsim))]
    let config = {
        let mut config = config;
        prepare_tls(&mut config)?;
        config
    };
    let peer_tls = peer_dial_tls(&config)?;
    let config = Arc::new(config);
    let stored = Member::stored_identity(&engine).map_err(|e| e.to_string())?;
    let restarting = stored.is_some();
    let identity = match stored {
        Some((member_id, cluster_id)) => Identity {
            member_id,
            cluster_id,
            founders: Vec::new(),
            peers: Vec::new(),
        },
        None => match config.cluster_state {
            ClusterState::New => founding_identity(&config)?,
            ClusterState::Existing => joining_identity(&config, &peer_tls).await?,
        },
    };
    let election_ticks = (config.election_ms / config.heartbeat_ms) as usize;
    let mut raft_config = raft::Config::new(identity.member_id);
    raft_config.election_ticks = election_ticks;
    raft_config.heartbeat_ticks = 1;
    raft_config.pre_vote = config.pre_vote;
    let member_config = MemberConfig {
        raft: raft_config,
        initial_voters: identity.founders.iter().map(|m| m.id).collect(),
        cluster_id: identity.cluster_id,
        initial_members: identity
            .founders
            .iter()
            .map(|m| (m.id, m.encode()))
            .collect(),
        lessor: LessorConfig::new(config.election_ms, config.heartbeat_ms),
        watch: WatchConfig::default(),
        txn_ops_max: config.max_txn_ops,
        force_new_cluster: config.force_new_cluster,
    };
    let seed = identity.member_id
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    let member = Member::open(
        engine,
        member_config,
        rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        0,
    )
    .map_err(|e| format!("cannot open the member: {e}"))?;
    if let Some(forced) = member.forced_restart() {
        tracing::warn!(
            discarded = forced.discarded,
            "force new cluster: discarding uncommitted log entries"
        );
        tracing::warn!(
            member = format!("{:x}", identity.member_id),
            cluster = format!("{:x}", identity.cluster_id),
            commit = forced.commit,
            removing = ?forced.removed.iter().map(|m| format!("{m:x}")).collect::<Vec<_>>(),
            "forcing restart of the member as the only one of its cluster"
        );
    }
    tracing::info!(
        name = config.name,
        member = format!("{:x}", identity.member_id),
        cluster = format!("{:x}", identity.cluster_id),
        "member opened"
    );

    let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
    let inbox = tx.clone();
    let reports: peer::transport::Reports = std::sync::Arc::new(move |report| {
        let _ = inbox.try_send(Input::from(report));
    });
    let transport = peer::transport::Transport::new(
        identity.member_id,
        identity.cluster_id,
        reports,
        peer_tls.clone(),
    );
    // A member that joined but restarted before the leader's snapshot brought it the
    // membership knows no peers from its disk: ask the cluster again, or it could answer no one.
    let mut peers = identity.peers;
    if peers.is_empty()
        && config.cluster_state == ClusterState::Existing
        && member.raw().raft.tracker.conf_state() == raft::ConfState::default()
    {
        match joining_identity(&config, &peer_tls).await {
            Ok(joined) if joined.member_id == identity.member_id => peers = joined.peers,
            Ok(joined) => tracing::warn!(
                stored = format!("{:x}", identity.member_id),
                cluster = format!("{:x}", joined.member_id),
                "the cluster knows this member's peer URLs under another ID"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot learn the cluster's members"),
        }
    }
    let mut driver = Driver::new(member, config.clone(), identity.cluster_id, transport);
    // Before this member serves peers or clients, as etcd checks (a new member has nothing
    // to compare).
    if config.initial_corrupt_check && restarting {
        let me = identity.member_id;
        let local = driver
            .member()
            .applier()
            .kv()
            .hash_kv(0)
            .map_err(|e| format!("{me:x} failed to fetch hash ({e})"))?;
        let peers = corruption::peers_of(&driver, me);
        let timeout = Duration::from_millis(config.request_timeout_ms());
        corruption::check_before_serving(me, local, &peers, &peer_tls, timeout).await?;
    }
    driver.connect_peers(peers);
    // etcd's downgrade safety: a member older than the version its cluster settled on
    // does not serve it.
    let published: Vec<String> = driver
        .members()
        .into_iter()
        .map(|(m, _)| m.version)
        .collect();
    crate::node::version::check_not_downgraded(ETCD_VERSION, published.iter().map(String::as_str))?;
    // The only voter has no one to wait for: it campaigns now instead of after an election
    // timeout, as etcd fast-forwards its election ticks (a restart serves a second sooner).
    let conf = driver.member().raw().raft.tracker.conf_state();
    if conf.voters == [identity.member_id]
        && conf.voters_outgoing.is_empty()
        && let Err(e) = driver.member_mut().raw_mut().campaign()
    {
        tracing::debug!(error = %e, "the sole voter could not campaign at start");
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let removed = driver.removed.clone();
    let (stop_driver, stop) = oneshot::channel();
    let (shared, driver) = driver.start(rx, stop);
    let handle = NodeHandle::new(
        tx,
        shared,
        identity.member_id,
        identity.cluster_id,
        config.clone(),
        removed,
        shutdown_rx.clone(),
    );

    let mut servers = Vec::new();
    #[cfg(not(madsim))]
    let mut peer_acceptor = None;
    for url in &config.listen_peer {
        let addr = resolve(url)?;
        let svc = PeerServer::new(peer::service::PeerService::new(handle.clone()))
            .max_decoding_message_size(peer::transport::PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(peer::transport::PEER_MESSAGE_BYTES_MAX);
        let mut stop = shutdown_rx.clone();
        let signal = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        #[cfg(not(madsim))]
        let serving = {
            let acceptor = if url.starts_with("https://") {
                if peer_acceptor.is_none() {
                    peer_acceptor = Some(Arc::new(tls::Acceptor::new(&config.peer_tls, "peer")?));
                }
                peer_acceptor.clone()
            } else {
                None
            };
            let incoming = tls::incoming(addr, acceptor, false, "peer")
                .map_err(|e| format!("cannot listen for peers on {addr}: {e}"))?;
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, signal)
        };
        #[cfg(madsim)]
        let serving = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_shutdown(addr, signal);
        servers.push(tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::error!(%addr, error = %e, "peer listener failed");
            }
        }));
        tracing::info!(%addr, "serving peer traffic");
    }
    servers.extend(front_ends(&handle, shutdown_rx.clone())?);
    let cluster_version = handle
        .run(false, |d| Ok(d.cluster_version()))
        .await
        .unwrap_or_else(|_| ETCD_VERSION.to_string());
    tracing::info!(
        cluster_version,
        "enabled capabilities for version {}",
        cluster_version.rsplit_once('.').map_or("", |(mm, _)| mm)
    );
    if config.corrupt_check_ms > 0 {
        servers.push(tokio::spawn(corruption::monitor(
            handle.clone(),
            peer_tls.clone(),
            Duration::from_millis(config.corrupt_check_ms),
            shutdown_rx.clone(),
        )));
    }
    tokio::spawn(publish(handle.clone(), config.clone(), shutdown_rx));
    Ok(Server {
        handle,
        shutdown,
        driver,
        stop_driver,
        servers,
    })
}

/// Publishes this member's name and client URLs through Raft, retrying until it applies.
async fn publish(handle: NodeHandle, config: Arc<ServerConfig>, shutdown: watch::Receiver<bool>) {
    let info = MemberInfo {
        id: handle.member_id,
        name: config.name.clone(),
        peer_urls: config.advertise_peer_urls.clone(),
        client_urls: config.advertise_client_urls.clone(),
        version: ETCD_VERSION.to_string(),
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Skip the proposal when the stored record already says the same.
        let current = info.clone();
        let same = handle
            .run(false, move |d| {
                Ok(d.members().iter().any(|(m, _)| *m == current))
            })
            .await
            .unwrap_or(false);
        if same {
            break;
        }
        let cmd = Command::SetMember {
            id: info.id,
            record: info.encode(),
        };
        match handle.propose(cmd).await {
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(error = %e, "publish failed; retrying");
                tokio::time::sleep(Duration::from_millis(config.heartbeat_ms * 5)).await;
            }
        }
    }
    tracing::info!(
        name = config.name,
        member = format!("{:x}", handle.member_id),
        client_urls = ?config.advertise_client_urls,
        "published local member to cluster through raft"
    );
}
