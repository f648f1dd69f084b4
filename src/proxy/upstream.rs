//! The proxy's connection to the cluster: one HTTP/2 connection at a time, to the first of
//! the endpoints that answers, moved to the next endpoint when it fails. Every service of the
//! proxy sends its calls down the same connection, so a thousand clients cost the members one
//! connection per proxy.
//!
//! What it does not do: retry a call that may have reached a member (the client decides, as
//! it would against a member), or balance calls across members.

use crate::server::tls;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// How long a connection (TCP and TLS handshake) to one endpoint may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The metadata a client's call carries that the member must see: its auth token (gRPC's
/// `token`, or the JSON gateway's `authorization`) and `hasleader` (clientv3's
/// `WithRequireLeader`).
const FORWARDED_METADATA: [&str; 3] = ["token", "authorization", "hasleader"];

/// The connection to the cluster.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    /// The members' client URLs (`http://` or `https://`).
    urls: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    state: Mutex<State>,
    /// One dial at a time: callers that find no connection wait for the one being made.
    dialing: tokio::sync::Mutex<()>,
}

struct State {
    /// The endpoint to dial next.
    next: usize,
    /// The connection in use, and its number (a failure reported on an older connection
    /// leaves a newer one alone).
    channel: Option<(Channel, u64)>,
    generation: u64,
}

/// `--endpoints`' entries as URLs: an entry without a scheme is `https://` when the proxy
/// dials with TLS (a certificate flag or `--insecure-skip-tls-verify`), as clientv3 does.
pub fn endpoint_urls(list: &str, tls: bool) -> Result<Vec<String>, String> {
    let urls: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.starts_with("http://") || e.starts_with("https://") {
                e.to_string()
            } else if tls {
                format!("https://{e}")
            } else {
                format!("http://{e}")
            }
        })
        .collect();
    if urls.is_empty() {
        return Err("no endpoints given".to_string());
    }
    for u in &urls {
        crate::server::resolve(u).map(|_| ()).or_else(|e| {
            // A host name is fine: the dial resolves it.
            if u.rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                Ok(())
            } else {
                Err(e)
            }
        })?;
    }
    Ok(urls)
}

impl Upstream {
    /// The cluster at `urls`; `tls` dials the `https://` ones. Nothing is dialed yet.
    pub fn new(urls: Vec<String>, tls: Option<Arc<rustls::ClientConfig>>) -> Upstream {
        assert!(!urls.is_empty(), "an upstream needs an endpoint");
        Upstream {
            inner: Arc::new(Inner {
                urls,
                tls,
                state: Mutex::new(State {
                    next: 0,
                    channel: None,
                    generation: 0,
                }),
                dialing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The endpoints, as given.
    pub fn urls(&self) -> &[String] {
        &self.inner.urls
    }

    /// The connection in use, dialing the endpoints in turn (once round) when there is none.
    /// The number identifies it to [`Upstream::failed`].
    pub async fn channel(&self) -> Result<(Channel, u64), Status> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _one = self.inner.dialing.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let n = self.inner.urls.len();
        let mut last = String::new();
        for _ in 0..n {
            let i = {
                let mut s = self.inner.state.lock().expect("upstream state");
                let i = s.next;
                s.next = (i + 1) % n;
                i
            };
            let url = &self.inner.urls[i];
            match tls::dial(url, self.inner.tls.as_ref(), DIAL_TIMEOUT).await {
                Ok(channel) => {
                    let mut s = self.inner.state.lock().expect("upstream state");
                    s.generation += 1;
                    // The next failure moves on from this endpoint.
                    s.next = i;
                    s.channel = Some((channel.clone(), s.generation));
                    tracing::info!(endpoint = %url, "connected to the cluster");
                    return Ok((channel, s.generation));
                }
                Err(e) => {
                    tracing::warn!(endpoint = %url, error = %e, "cannot reach the endpoint");
                    last = e;
                }
            }
        }
        Err(Status::unavailable(format!(
            "grpc-proxy: no endpoint of the cluster is reachable: {last}"
        )))
    }

    fn current(&self) -> Option<(Channel, u64)> {
        self.inner
            .state
            .lock()
            .expect("upstream state")
            .channel
            .clone()
    }

    /// Reports that connection `generation` failed: the next call dials the next endpoint.
    pub fn failed(&self, generation: u64) {
        let mut s = self.inner.state.lock().expect("upstream state");
        if s.channel.as_ref().is_some_and(|(_, g)| *g == generation) {
            s.channel = None;
            s.next = (s.next + 1) % self.inner.urls.len();
        }
    }

    /// Notes `status` of a call made on connection `generation`: a transport failure (a
    /// status the client made, with a cause, or `Unavailable`) retires the connection.
    pub fn observe(&self, generation: u64, status: &Status) {
        if is_transport_failure(status) {
            self.failed(generation);
        }
    }
}

/// Whether `status` came from the connection rather than from a member's answer.
pub fn is_transport_failure(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
        || (status.code() == tonic::Code::Unavailable && status.metadata().is_empty())
}

/// `message` as a call to the member, carrying what of the client call's metadata `from` the
/// member must see (see `FORWARDED_METADATA`).
pub fn forwarded<U>(from: &tonic::metadata::MetadataMap, message: U) -> Request<U> {
    let mut out = Request::new(message);
    for name in FORWARDED_METADATA {
        if let Some(v) = from.get(name) {
            out.metadata_mut().insert(name, v.clone());
        }
    }
    out
}

/// `message` as a call carrying `token` (a client's, remembered by a stream).
pub fn with_token<U>(
    token: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    message: U,
) -> Request<U> {
    let mut out = Request::new(message);
    if let Some(t) = token {
        out.metadata_mut().insert("token", t.clone());
    }
    out
}

/// The auth token a client's call carries, if any.
pub fn token_of<T>(
    request: &Request<T>,
) -> Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    let md = request.metadata();
    md.get("token").or_else(|| md.get("authorization")).cloned()
}
