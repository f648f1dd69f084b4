//! `oxctl bench --gateway`: the put and range workloads over etcd's JSON gateway
//! (grpc-gateway's `POST /v3/kv/put` and `POST /v3/kv/range`) on HTTP/1.1, instead of gRPC;
//! `oxctl bench --v2`: the same over the v2 API (`PUT /v2/keys/<key>` with a form body, `GET
//! /v2/keys/<key>`, with `quorum=true` for a linearizable read), keys written in hex.
//!
//! It does not do TLS or auth: the run refuses `https://` endpoints, the TLS flags and
//! `--user` before it connects. This module owns the keep-alive connections ([`Conn`]) and
//! the requests' JSON; the spread of clients over connections, the work counter and the
//! tally are the gRPC mode's ([`super`]).
//!
//! HTTP/1.1 carries one request at a time on a connection (hyper does not pipeline), so the
//! clients that share a connection take turns on it, first come first served. A request is
//! timed from before its client waits for its turn, as a gRPC request is timed from before
//! it waits for an HTTP/2 stream: the latency is the one the client sees. An answer counts
//! as done when its whole body is in and its status is 200; any other status, or a broken
//! connection, is a failed request.

use super::{BenchArgs, Tally, Work};
use crate::{CtlError, EXIT_BAD_CONNECTION};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much of a refused answer's body the error shows.
const ERROR_BODY_BYTES_MAX: usize = 200;

/// One HTTP/1.1 keep-alive connection to a member's client port, shared by the clients
/// assigned to it.
pub(super) struct Conn {
    /// `host:port`, for the `Host` header.
    authority: String,
    /// The lock is the clients' turn: hyper's HTTP/1.1 sender takes one request at a time.
    send: tokio::sync::Mutex<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// Connects to `endpoint` (`host:port` or `http://host:port`) within `timeout`.
    pub(super) async fn open(endpoint: &str, timeout: Duration) -> Result<Conn, CtlError> {
        let authority = endpoint
            .strip_prefix("http://")
            .unwrap_or(endpoint)
            .trim_end_matches('/');
        assert!(
            !authority.contains("://"),
            "the run refuses other schemes: {endpoint}"
        );
        let fail = |why: String| CtlError::new(EXIT_BAD_CONNECTION, format!("{endpoint}: {why}"));
        let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(authority))
            .await
            .map_err(|_| fail("context deadline exceeded".into()))?
            .map_err(|e| fail(e.to_string()))?;
        // Small requests and answers: don't let Nagle hold them back (Go's default too).
        tcp.set_nodelay(true).map_err(|e| fail(e.to_string()))?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| fail(e.to_string()))?;
        // Drives the connection until the sender is dropped or the server closes it; a
        // broken connection shows in the requests that follow, as failures.
        tokio::spawn(conn);
        Ok(Conn {
            authority: authority.to_string(),
            send: tokio::sync::Mutex::new(send),
        })
    }

    /// POSTs `body` (JSON) to `path` when it is this client's turn, and reads the whole answer:
    /// Ok for a 200, else why not.
    async fn post(&self, path: &'static str, body: Bytes) -> Result<(), String> {
        self.send("POST", path, "application/json", body, false)
            .await
    }

    /// Sends a request when it is this client's turn, and reads the whole answer: Ok for a
    /// 200 (or a 201, a v2 key created; or, `not_found_ok`, a 404: a v2 read of a key that is
    /// not there, which a v3 range answers with no keys), else why not.
    async fn send(
        &self,
        method: &'static str,
        path: &str,
        content_type: &'static str,
        body: Bytes,
        not_found_ok: bool,
    ) -> Result<(), String> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(body))
            .expect("a valid request");
        let (status, answer) = {
            let mut send = self.send.lock().await;
            send.ready().await.map_err(|e| e.to_string())?;
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            // The body is read before the turn passes on: the next request waits for it anyway.
            let answer = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            (status, answer)
        };
        if status == hyper::StatusCode::OK
            || status == hyper::StatusCode::CREATED
            || (not_found_ok && status == hyper::StatusCode::NOT_FOUND)
        {
            return Ok(());
        }
        let shown = &answer[..answer.len().min(ERROR_BODY_BYTES_MAX)];
        Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(shown).trim()
        ))
    }
}

/// `{"key":"..","value":".."}` with `value` already in base64.
fn put_body(key: &[u8], value_b64: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"key":"{}","value":"{value_b64}"}}"#,
        B64.encode(key)
    ))
}

/// `{"key":".."}`, with `range_end` when it is not empty and `"serializable":true` when asked.
fn range_body(key: &[u8], range_end: &[u8], serializable: bool) -> Bytes {
    let mut s = format!(r#"{{"key":"{}""#, B64.encode(key));
    if !range_end.is_empty() {
        s += &format!(r#","range_end":"{}""#, B64.encode(range_end));
    }
    if serializable {
        s += r#","serializable":true"#;
    }
    s += "}";
    Bytes::from(s)
}

/// The v2 path of a key: `/v2/keys/` and the key in hex (any bytes make a plain name).
fn v2_path(key: &[u8]) -> String {
    let mut p = String::from("/v2/keys/");
    for b in key {
        p.push_str(&format!("{b:02x}"));
    }
    p
}

/// A form body `value=<value>`, percent-encoded.
fn v2_form(value: &[u8]) -> Bytes {
    let mut s = String::from("value=");
    for &b in value {
        if b.is_ascii_alphanumeric() {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    Bytes::from(s)
}

/// One client of the put or range workload over the v2 API, over `conn`.
async fn v2_client(
    args: &BenchArgs,
    conn: Arc<Conn>,
    work: &Work,
    mut rng: ChaCha8Rng,
) -> Result<Tally, CtlError> {
    let mut tally = Tally::new();
    let mut settle = |t: Instant, answer: Result<(), String>| match answer {
        Ok(()) => tally.record(t),
        Err(why) => tally.fail(why),
    };
    const FORM: &str = "application/x-www-form-urlencoded";
    match &args.workload {
        super::Workload::Put => {
            let form = v2_form(&args.value());
            while let Some(i) = work.take() {
                let path = v2_path(&args.key(args.key_index(i, &mut rng)));
                let t = Instant::now();
                settle(t, conn.send("PUT", &path, FORM, form.clone(), false).await);
                work.finish_one();
            }
        }
        super::Workload::Range {
            key, consistency, ..
        } => {
            let serializable = super::serializable(consistency)?;
            let key = key
                .as_ref()
                .map_or_else(|| args.key(0), |k| Bytes::from(k.clone()));
            let mut path = v2_path(&key);
            if !serializable {
                path.push_str("?quorum=true");
            }
            while work.take().is_some() {
                let t = Instant::now();
                settle(t, conn.send("GET", &path, FORM, Bytes::new(), true).await);
                work.finish_one();
            }
        }
        other => unreachable!("check() refuses {} with --v2", other.name()),
    }
    Ok(tally)
}

/// One client of the put or range workload, over `conn`.
pub(super) async fn client(
    args: &BenchArgs,
    conn: Arc<Conn>,
    work: &Work,
    mut rng: ChaCha8Rng,
) -> Result<Tally, CtlError> {
    if args.v2 {
        return v2_client(args, conn, work, rng).await;
    }
    let mut tally = Tally::new();
    let mut settle = |t: Instant, answer: Result<(), String>| match answer {
        Ok(()) => tally.record(t),
        Err(why) => tally.fail(why),
    };
    match &args.workload {
        super::Workload::Put => {
            let value_b64 = B64.encode(args.value());
            while let Some(i) = work.take() {
                let body = put_body(&args.key(args.key_index(i, &mut rng)), &value_b64);
                let t = Instant::now();
                settle(t, conn.post("/v3/kv/put", body).await);
                work.finish_one();
            }
        }
        super::Workload::Range {
            key,
            range_end,
            consistency,
        } => {
            let serializable = super::serializable(consistency)?;
            let key = key
                .as_ref()
                .map_or_else(|| args.key(0), |k| Bytes::from(k.clone()));
            let range_end = range_end.as_deref().unwrap_or_default().as_bytes();
            let body = range_body(&key, range_end, serializable);
            while work.take().is_some() {
                let t = Instant::now();
                settle(t, conn.post("/v3/kv/range", body.clone()).await);
                work.finish_one();
            }
        }
        other => unreachable!("check() refuses {} with --gateway", other.name()),
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_requests_name_keys_in_hex_and_encode_the_form() {
        assert_eq!(v2_path(b"\x00k/"), "/v2/keys/006b2f");
        assert_eq!(v2_form(b"a b=c"), "value=a%20b%3Dc");
    }

    #[test]
    fn bodies_are_grpc_gateway_json_with_base64_bytes() {
        assert_eq!(put_body(b"k0", "dg=="), r#"{"key":"azA=","value":"dg=="}"#);
        assert_eq!(range_body(b"k0", b"", false), r#"{"key":"azA="}"#);
        assert_eq!(
            range_body(b"a", b"b", true),
            r#"{"key":"YQ==","range_end":"Yg==","serializable":true}"#
        );
        for body in [put_body(b"\x00\xff", "dg=="), range_body(b"a", b"b", true)] {
            serde_json::from_slice::<serde_json::Value>(&body).expect("valid JSON");
        }
    }
}
