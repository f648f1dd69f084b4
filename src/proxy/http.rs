//! `--proxy on|readonly`: etcd 3.4's v2 proxy mode. Instead of joining the cluster, the
//! process finds the members' client URLs through the peers of `--initial-cluster` (the peer
//! service's member list), and passes every HTTP request on its `--listen-client-urls` to one
//! of them: the v2 API, `/version`, `/health` and the rest. A member that fails to answer is
//! set aside for `--proxy-failure-wait`; the member list is read again every
//! `--proxy-refresh-interval`. `readonly` refuses everything but GET with 501, as etcd's does.
//!
//! What it does not do: speak gRPC (etcd's v2 proxy does not either; `grpc-proxy` does), keep
//! a cluster file across restarts, or look inside the requests.

use crate::pb::peer::{MembersRequest, peer_client::PeerClient};
use crate::server::DialTls;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the flags ask for.
#[derive(Clone)]
pub struct HttpProxyConfig {
    /// `--listen-client-urls`.
    pub listen: Vec<String>,
    /// The peer URLs of `--initial-cluster`.
    pub peer_urls: Vec<String>,
    /// `--proxy readonly`.
    pub readonly: bool,
    /// How to dial the peers (`--peer-*` TLS).
    pub peer_tls: DialTls,
    /// How to dial the members' `https://` client URLs.
    pub client_tls: DialTls,
    /// TLS for the proxy's own `https://` listeners.
    pub serve_tls: Option<Arc<crate::server::tls::Acceptor>>,
    pub failure_wait: Duration,
    pub refresh: Duration,
    pub dial_timeout: Duration,
}

/// The members' client URLs, and until when each failed one is set aside.
struct Endpoints {
    urls: Vec<(String, Option<Instant>)>,
}

/// The client URLs of the cluster's members, asked of each peer in turn.
async fn fetch_client_urls(config: &HttpProxyConfig) -> Result<Vec<String>, String> {
    let mut last = String::from("no peer URLs");
    for url in &config.peer_urls {
        let channel = match crate::server::dial(url, &config.peer_tls, config.dial_timeout).await {
            Ok(c) => c,
            Err(e) => {
                last = format!("{url}: {e}");
                continue;
            }
        };
        match PeerClient::new(channel).members(MembersRequest {}).await {
            Ok(r) => {
                let mut urls: Vec<String> = r
                    .into_inner()
                    .members
                    .into_iter()
                    .flat_map(|m| m.client_urls)
                    .collect();
                urls.sort();
                urls.dedup();
                return Ok(urls);
            }
            Err(e) => last = format!("{url}: {}", e.message()),
        }
    }
    Err(last)
}

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

fn text(status: u16, body: &str) -> http::Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(body.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    http::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .expect("a valid response")
}

/// Sends `parts`/`body` to `url` (a member's client URL) over a fresh HTTP/1.1 connection.
async fn send(
    config: &HttpProxyConfig,
    url: &str,
    parts: &http::request::Parts,
    body: Bytes,
) -> Result<http::Response<Body>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri.host().ok_or("no host")?.to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if url.starts_with("https") { 443 } else { 80 });
    let tcp = tokio::time::timeout(
        config.dial_timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("dial {url}: timed out"))?
    .map_err(|e| format!("dial {url}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut request = http::Request::builder()
        .method(parts.method.clone())
        .uri(path);
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONNECTION {
            request = request.header(name, value);
        }
    }
    let request = request
        .header(
            http::header::HOST,
            uri.authority().map_or("", |a| a.as_str()),
        )
        .body(http_body_util::Full::new(body))
        .map_err(|e| e.to_string())?;
    macro_rules! exchange {
        ($io:expr) => {{
            let (mut sender, conn) = hyper::client::conn::http1::handshake($io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?
        }};
    }
    let response = if url.starts_with("https://") {
        let Some(tls) = &config.client_tls else {
            return Err(format!("{url}: no TLS configuration"));
        };
        let name = rustls_pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        exchange!(hyper_util::rt::TokioIo::new(stream))
    } else {
        exchange!(hyper_util::rt::TokioIo::new(tcp))
    };
    // Streamed on: a v2 watch answers as its events come.
    Ok(response.map(|b| b.map_err(std::io::Error::other).boxed_unsync()))
}

/// Passes one request to the first member that answers it.
async fn forward(
    config: Arc<HttpProxyConfig>,
    endpoints: Arc<Mutex<Endpoints>>,
    request: http::Request<axum::body::Body>,
) -> http::Response<Body> {
    if config.readonly && request.method() != http::Method::GET {
        return text(501, "");
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return text(400, "httpproxy: cannot read the request body\n");
    };
    let now = Instant::now();
    let candidates: Vec<String> = endpoints
        .lock()
        .expect("endpoints")
        .urls
        .iter()
        .filter(|(_, until)| until.is_none_or(|u| u <= now))
        .map(|(u, _)| u.clone())
        .collect();
    if candidates.is_empty() {
        return text(503, "httpproxy: zero endpoints currently available\n");
    }
    for url in &candidates {
        match send(&config, url, &parts, body.clone()).await {
            Ok(response) => return response,
            Err(e) => {
                tracing::warn!(endpoint = %url, error = %e, "httpproxy: failed to reach the endpoint");
                let mut eps = endpoints.lock().expect("endpoints");
                if let Some(ep) = eps.urls.iter_mut().find(|(u, _)| u == url) {
                    ep.1 = Some(Instant::now() + config.failure_wait);
                }
            }
        }
    }
    text(
        502,
        &format!(
            "httpproxy: unable to get response from {} endpoint(s)\n",
            candidates.len()
        ),
    )
}

/// Runs the v2 proxy: returns once its listeners are up; the endpoints are looked up (every
/// second until some are found, then every `refresh`) in the background.
pub async fn start(config: HttpProxyConfig) -> Result<(), String> {
    let config = Arc::new(config);
    let endpoints = Arc::new(Mutex::new(Endpoints { urls: Vec::new() }));
    {
        let (config, endpoints) = (config.clone(), endpoints.clone());
        tokio::spawn(async move {
            let mut announced = false;
            loop {
                let found = match fetch_client_urls(&config).await {
                    Ok(urls) => urls,
                    Err(e) => {
                        tracing::warn!(error = %e, "httpproxy: cannot read the member list");
                        Vec::new()
                    }
                };
                if !found.is_empty() {
                    let mut eps = endpoints.lock().expect("endpoints");
                    let kept: Vec<(String, Option<Instant>)> = found
                        .iter()
                        .map(|u| {
                            let until = eps.urls.iter().find(|(o, _)| o == u).and_then(|(_, t)| *t);
                            (u.clone(), until)
                        })
                        .collect();
                    eps.urls = kept;
                    if !announced {
                        tracing::info!("httpproxy: endpoints found {found:?}");
                        announced = true;
                    }
                }
                let pause = if found.is_empty() {
                    Duration::from_secs(1)
                } else {
                    config.refresh
                };
                tokio::time::sleep(pause).await;
            }
        });
    }
    for url in &config.listen {
        let addr = crate::server::resolve(url)?;
        let tls = if url.starts_with("https://") {
            Some(
                config
                    .serve_tls
                    .clone()
                    .ok_or_else(|| format!("cannot serve {url} over https without TLS info"))?,
            )
        } else {
            None
        };
        let incoming = crate::server::tls::incoming(addr, tls, false, "v2 proxy")
            .map_err(|e| format!("listen tcp {addr}: {e}"))?;
        let (config, endpoints) = (config.clone(), endpoints.clone());
        let router =
            axum::Router::new().fallback(move |request: http::Request<axum::body::Body>| {
                forward(config.clone(), endpoints.clone(), request)
            });
        super::serve_http(incoming, router, "v2 proxy");
        tracing::info!(host = %url, "v2 proxy started listening on client requests");
    }
    Ok(())
}
