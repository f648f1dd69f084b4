//! DNS SRV discovery as etcd does it: a domain's `_<service>-ssl._tcp` and `_<service>._tcp`
//! records (with `--discovery-srv-name`, `_<service>-ssl-<name>._tcp` and
//! `_<service>-<name>._tcp`), looked up through the system's resolver configuration with
//! hickory-resolver. The gateway uses `etcd-client` to find members' client ports; a member
//! started with `--discovery-srv` uses `etcd-server` to find the initial cluster
//! ([`server_cluster`]).
//!
//! [`validate_secure`] keeps, as etcd's gateway does without `--insecure-discovery`, only the
//! TLS endpoints whose certificates a handshake verifies. Nothing is cached: each call asks
//! again.

use crate::tcp_gateway::Endpoint;
use hickory_resolver::TokioAsyncResolver;

/// The SRV service name for `service`, `tls` or not, with an optional suffix (etcd's rule).
pub fn service_name(service: &str, suffix: &str, tls: bool) -> String {
    let base = if tls {
        format!("{service}-ssl")
    } else {
        service.to_string()
    };
    if suffix.is_empty() {
        base
    } else {
        format!("{base}-{suffix}")
    }
}

/// The targets of `_<name>._tcp.<domain>`, with their priorities and weights.
async fn lookup(
    resolver: &TokioAsyncResolver,
    name: &str,
    domain: &str,
    tls: bool,
) -> Result<Vec<Endpoint>, String> {
    let query = format!("_{name}._tcp.{}.", domain.trim_end_matches('.'));
    let found = resolver
        .srv_lookup(query.as_str())
        .await
        .map_err(|e| format!("lookup {query}: {e}"))?;
    Ok(found
        .iter()
        .map(|r| Endpoint {
            host: r.target().to_utf8(),
            port: r.port(),
            priority: r.priority(),
            weight: r.weight(),
            tls,
        })
        .collect())
}

/// The members' client endpoints `domain`'s `etcd-client` records name: the TLS ones first,
/// then the plain ones; an error only when neither lookup answered.
pub async fn client_endpoints(domain: &str, suffix: &str) -> Result<Vec<Endpoint>, String> {
    let resolver = TokioAsyncResolver::tokio_from_system_conf()
        .map_err(|e| format!("the system's DNS configuration: {e}"))?;
    let tls = lookup(
        &resolver,
        &service_name("etcd-client", suffix, true),
        domain,
        true,
    )
    .await;
    let plain = lookup(
        &resolver,
        &service_name("etcd-client", suffix, false),
        domain,
        false,
    )
    .await;
    match (tls, plain) {
        (Err(a), Err(b)) => Err(format!("dns lookup errors: {a} and {b}")),
        (a, b) => Ok(a.into_iter().chain(b).flatten().collect()),
    }
}

/// The addresses `host:port` resolves to (through the system's resolver, as a dial would).
async fn addrs(host_port: &str) -> Vec<std::net::SocketAddr> {
    tokio::net::lookup_host(host_port)
        .await
        .map(Iterator::collect)
        .unwrap_or_default()
}

/// `--initial-cluster` from `domain`'s `etcd-server-ssl` and `etcd-server` records, as etcd
/// 3.5 builds it (3.4 gave up when the `-ssl` lookup failed; 3.5 takes either): each target
/// as `name=scheme://target:port`, named `name` when it resolves to an address this member
/// advertises (`advertise_peer_urls`), else `0`, `1`, ... (names only label the other
/// members until they publish their own; IDs come from the URLs). The member must be among
/// them.
pub async fn server_cluster(
    domain: &str,
    suffix: &str,
    name: &str,
    advertise_peer_urls: &[String],
) -> Result<String, String> {
    let resolver = TokioAsyncResolver::tokio_from_system_conf()
        .map_err(|e| format!("the system's DNS configuration: {e}"))?;
    let mut mine: Vec<(std::net::SocketAddr, &str)> = Vec::new();
    for u in advertise_peer_urls {
        let scheme = if u.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        for a in addrs(crate::server::cluster::url_host_port(u)).await {
            mine.push((a, scheme));
        }
    }
    let (mut parts, mut errors, mut temp) = (Vec::new(), Vec::new(), 0);
    for tls in [true, false] {
        let service = service_name("etcd-server", suffix, tls);
        let scheme = if tls { "https" } else { "http" };
        let found = match lookup(&resolver, &service, domain, tls).await {
            Ok(found) => found,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for e in found {
            let host = e.host.trim_end_matches('.');
            let at = Endpoint {
                host: host.to_string(),
                ..e.clone()
            }
            .addr();
            let resolved = addrs(&at).await;
            let own = mine.iter().find(|(a, _)| resolved.contains(a));
            let label = match own {
                Some(&(_, own_scheme)) if own_scheme != scheme => {
                    errors.push(format!(
                        "bootstrap at {scheme}://{at} from DNS for {service} has scheme mismatch with expected peer {own_scheme}://{at}"
                    ));
                    continue;
                }
                Some(_) => name.to_string(),
                None => {
                    temp += 1;
                    (temp - 1).to_string()
                }
            };
            parts.push(format!("{label}={scheme}://{at}"));
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "error querying DNS SRV records for _etcd-server: {}",
            errors.join("; ")
        ));
    }
    for e in &errors {
        tracing::warn!(error = %e, "failed to resolve during SRV discovery");
    }
    if !parts.iter().any(|p| p.starts_with(&format!("{name}="))) {
        return Err(format!(
            "cannot find local etcd member {name:?} in SRV records"
        ));
    }
    Ok(parts.join(","))
}

/// `endpoint` as a URL (etcd's words in its messages).
pub fn url(e: &Endpoint) -> String {
    let scheme = if e.tls { "https" } else { "http" };
    format!("{scheme}://{}", e.addr())
}

/// The endpoints a TLS handshake verifies against `ca_file` (a plain one never), and why
/// each other one was dropped.
pub async fn validate_secure(
    endpoints: Vec<Endpoint>,
    ca_file: Option<std::path::PathBuf>,
) -> (Vec<Endpoint>, Vec<String>) {
    let config = crate::server::tls::ClientTls {
        ca_file,
        ..Default::default()
    }
    .config();
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for e in endpoints {
        if !e.tls {
            dropped.push(format!("{:?} is insecure", url(&e)));
            continue;
        }
        let checked = match &config {
            Ok(c) => handshake(c.clone(), &e).await,
            Err(why) => Err(why.clone()),
        };
        match checked {
            Ok(()) => kept.push(e),
            Err(why) => dropped.push(format!("{:?} {why}", url(&e))),
        }
    }
    (kept, dropped)
}

async fn handshake(
    config: std::sync::Arc<rustls::ClientConfig>,
    e: &Endpoint,
) -> Result<(), String> {
    let name = rustls_pki_types::ServerName::try_from(e.host.trim_end_matches('.').to_string())
        .map_err(|err| err.to_string())?;
    let tcp = tokio::net::TcpStream::connect(e.addr())
        .await
        .map_err(|err| err.to_string())?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map(drop)
        .map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_etcds() {
        assert_eq!(service_name("etcd-client", "", false), "etcd-client");
        assert_eq!(service_name("etcd-client", "", true), "etcd-client-ssl");
        assert_eq!(
            service_name("etcd-server", "prod", true),
            "etcd-server-ssl-prod"
        );
        assert_eq!(
            service_name("etcd-server", "prod", false),
            "etcd-server-prod"
        );
    }
}
