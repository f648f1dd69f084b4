//! The discovery service client (`--discovery <url>`), etcd 3.4's protocol over an existing
//! cluster's v2 keys: read the cluster size at `<token>/_config/size`, register this member as
//! `<token>/<member id>` = `name=peer-url,...` (a create, so an ID registers once), then wait
//! (a recursive v2 watch) until `size` members have registered; the first `size` by creation
//! index are the initial cluster. The member's ID, as etcd derives it there, comes from its
//! peer URLs and the discovery URL as the cluster token.
//!
//! It also reads the founding members for a v2 proxy ([`get_cluster`]): a member that finds
//! the cluster full becomes one (etcd 3.4's `--discovery-fallback=proxy`, see
//! [`crate::proxy::http`]).
//!
//! With `--discovery-proxy`, every request goes to that HTTP proxy, naming the whole URL.
//!
//! What it does not do: serve the protocol (any etcd-compatible cluster's v2 API does,
//! oxcd's `--enable-v2` among them), or speak TLS (only `http://` URLs are dialed).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;

/// How long one request to the discovery service may take (a watch excepted).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A discovery URL split into where to connect and the token's path.
struct Service {
    /// `host:port`.
    authority: String,
    /// The path, e.g. `/v2/keys/_etcd/registry/<token>`.
    path: String,
    /// `--discovery-proxy`'s `host:port`: requests go there, naming the whole URL.
    proxy: Option<String>,
}

/// The discovery URL `durl`, reached through the HTTP proxy `proxy` when it is not empty.
fn parse(durl: &str, proxy: &str) -> Result<Service, String> {
    let proxy = if proxy.is_empty() {
        None
    } else {
        let rest = proxy
            .strip_prefix("http://")
            .ok_or_else(|| format!("discovery proxy {proxy:?}: only http:// is supported"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("discovery proxy {proxy:?}: not host:port"));
        }
        Some(authority.to_string())
    };
    let rest = durl
        .strip_prefix("http://")
        .ok_or_else(|| format!("discovery URL {durl:?}: only http:// is supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = path.trim_end_matches('/');
    if path.is_empty() || authority.is_empty() {
        return Err(format!("discovery URL {durl:?} names no token"));
    }
    Ok(Service {
        authority: authority.to_string(),
        path: path.to_string(),
        proxy,
    })
}

/// One HTTP/1.1 request: the status and the body (read whole: a watch's answer ends after
/// its one event).
async fn request(
    s: &Service,
    method: &str,
    path_and_query: &str,
    form: &str,
    timeout: Option<Duration>,
) -> Result<(u16, serde_json::Value), String> {
    let go = async {
        let dialed = s.proxy.as_ref().unwrap_or(&s.authority);
        let tcp = tokio::net::TcpStream::connect(dialed)
            .await
            .map_err(|e| format!("dial {dialed}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        // Through a proxy, the request names the whole URL (RFC 9112's absolute form).
        let uri = match &s.proxy {
            Some(_) => format!("http://{}{path_and_query}", s.authority),
            None => path_and_query.to_string(),
        };
        let mut b = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", &s.authority);
        if !form.is_empty() {
            b = b.header("content-type", "application/x-www-form-urlencoded");
        }
        let req = b
            .body(Full::new(Bytes::from(form.to_string())))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json = serde_json::from_slice(&body)
            .map_err(|_| "discovery: bad discovery endpoint (not etcd's v2 JSON)".to_string())?;
        Ok((status, json))
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, go)
            .await
            .map_err(|_| format!("{method} {path_and_query}: timed out"))?,
        None => go.await,
    }
}

/// A node's key, value and creation index in a v2 answer.
fn node_fields(n: &serde_json::Value) -> (String, String, u64) {
    (
        n["key"].as_str().unwrap_or_default().to_string(),
        n["value"].as_str().unwrap_or_default().to_string(),
        n["createdIndex"].as_u64().unwrap_or(0),
    )
}

fn base(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// A registration: its key, its value (`name=url,...`) and its creation index.
type Registration = (String, String, u64);

/// The registered members in creation order, the cluster size, and the index the listing was
/// read at.
async fn list_cluster(s: &Service) -> Result<(Vec<Registration>, usize, u64), String> {
    let (status, j) = request(
        s,
        "GET",
        &format!("{}/_config/size", s.path),
        "",
        Some(REQUEST_TIMEOUT),
    )
    .await?;
    if status == 404 {
        return Err("discovery: size key not found".into());
    }
    let size: usize = j["node"]["value"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .ok_or("discovery: size key is bad")?;
    let (status, j) = request(s, "GET", &s.path, "", Some(REQUEST_TIMEOUT)).await?;
    if status != 200 {
        return Err(format!(
            "discovery: listing {} answered {status}: {j}",
            s.path
        ));
    }
    let mut nodes: Vec<(String, String, u64)> = j["node"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(node_fields)
        .filter(|(k, _, _)| base(k) != "_config")
        .collect();
    nodes.sort_by_key(|n| n.2);
    let index = j["node"]["modifiedIndex"]
        .as_u64()
        .unwrap_or(0)
        .max(nodes.iter().map(|n| n.2).max().unwrap_or(0));
    Ok((nodes, size, index))
}

/// [`list_cluster`], refused with "cluster is full" when `self_name` is not among the first
/// `size` registrations.
async fn check_cluster(
    s: &Service,
    self_name: &str,
) -> Result<(Vec<Registration>, usize, u64), String> {
    let (nodes, size, index) = list_cluster(s).await?;
    for (i, n) in nodes.iter().enumerate() {
        if base(&n.0) == self_name {
            break;
        }
        if i + 1 >= size {
            return Err("discovery: cluster is full".into());
        }
    }
    Ok((nodes, size, index))
}

/// The founding members registered at `durl`, as `--initial-cluster` spells them: what a
/// v2 proxy needs (a member falling back from a full cluster, or `--proxy on --discovery`).
pub async fn get_cluster(durl: &str, proxy: &str) -> Result<String, String> {
    let s = parse(durl, proxy)?;
    let (mut nodes, size, _) = list_cluster(&s).await?;
    nodes.truncate(size);
    if nodes.is_empty() {
        return Err("discovery: no member registered yet".into());
    }
    let configs: Vec<&str> = nodes.iter().map(|n| n.1.as_str()).collect();
    Ok(configs.join(","))
}

/// Registers this member (`id`, `config` = `name=url,...`) at the discovery service `durl`
/// (through the HTTP proxy `proxy`, if not empty) and waits for the rest: the initial
/// cluster, as `--initial-cluster` spells it.
pub async fn join_cluster(
    durl: &str,
    proxy: &str,
    id: u64,
    config: &str,
) -> Result<String, String> {
    let s = parse(durl, proxy)?;
    let me = format!("{id:x}");
    // A full cluster is refused before registering.
    check_cluster(&s, &me).await?;
    let (status, j) = request(
        &s,
        "PUT",
        &format!("{}/{me}?prevExist=false", s.path),
        &format!("value={}", urlencode(config)),
        Some(REQUEST_TIMEOUT),
    )
    .await?;
    match status {
        201 => {}
        412 => return Err("discovery: found duplicate id".into()),
        other => return Err(format!("discovery: registering answered {other}: {j}")),
    }
    let (mut nodes, size, mut index) = check_cluster(&s, &me).await?;
    nodes.truncate(size);
    for n in &nodes {
        tracing::info!(peer = n.1, "found peer from discovery server");
    }
    while nodes.len() < size {
        tracing::info!(
            found = nodes.len(),
            size,
            "found peers from discovery server; waiting for more"
        );
        let (status, j) = request(
            &s,
            "GET",
            &format!(
                "{}?wait=true&recursive=true&waitIndex={}",
                s.path,
                index + 1
            ),
            "",
            None,
        )
        .await?;
        if status != 200 {
            // The history moved past us (401): read the listing again.
            let (again, _, at) = check_cluster(&s, &me).await?;
            nodes = again.into_iter().take(size).collect();
            index = at;
            continue;
        }
        let (key, value, created) = node_fields(&j["node"]);
        index = j["node"]["modifiedIndex"].as_u64().unwrap_or(index + 1);
        if j["action"] == "create" && base(&key) != "_config" && !nodes.iter().any(|n| n.0 == key) {
            tracing::info!(peer = value, "found peer from discovery server");
            nodes.push((key, value, created));
        }
    }
    tracing::info!("found all peers from discovery server");
    let cluster: Vec<String> = nodes.into_iter().map(|n| n.1).collect();
    Ok(cluster.join(","))
}

/// `s` as a form value.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_urls_split_into_host_and_token() {
        let s = parse("http://127.0.0.1:2379/v2/keys/_etcd/registry/abc/", "").unwrap();
        assert_eq!(s.authority, "127.0.0.1:2379");
        assert_eq!(s.path, "/v2/keys/_etcd/registry/abc");
        assert_eq!(s.proxy, None);
        assert!(parse("http://127.0.0.1:2379", "").is_err());
        assert!(parse("ftp://x/y", "").is_err());
        let s = parse("http://d/v2/keys/t", "http://127.0.0.1:8888/").unwrap();
        assert_eq!(s.proxy.as_deref(), Some("127.0.0.1:8888"));
        assert!(parse("http://d/v2/keys/t", "https://p:1").is_err());
        assert!(parse("http://d/v2/keys/t", "http://p:1/path").is_err());
        assert_eq!(urlencode("m1=http://a:1"), "m1%3Dhttp%3A%2F%2Fa%3A1");
    }
}
