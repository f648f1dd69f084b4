//! DNS SRV discovery as etcd does it: a domain's `_<service>-ssl._tcp` and `_<service>._tcp`
//! records (with `--discovery-srv-name`, `_<service>-ssl-<name>._tcp` and
//! `_<service>-<name>._tcp`), looked up through the system's resolver configuration with
//! hickory-resolver. The gateway uses `etcd-client` to find members' client ports.
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
