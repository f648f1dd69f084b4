#![cfg(not(madsim))]
//! The JSON gateway as an HTTP client sees it: the same list of requests runs against a fresh
//! one-member etcd 3.4.23 and a fresh one-member oxcd, and the two transcripts (status, the
//! headers a client reads, and the body of every response; every line of a stream) must be
//! equal once what legitimately differs between two clusters is masked.
//!
//! Masked, and why it may differ: cluster and member IDs and Raft terms and indexes (derived
//! from URLs, tokens and timing), server-chosen lease IDs, ports, database sizes, the server
//! version, hashes (each server hashes its own storage format), simple auth tokens (random),
//! a lease's remaining TTL (seconds tick).
//!
//! Covered: kv range/put/deleterange/txn/compaction, lease grant/revoke/timetolive/leases
//! (also under `/v3/kv/lease/`), member list, maintenance status/alarm/defragment/hash,
//! auth (users, roles, enable/disable, the `Authorization` header with good, bad and missing
//! tokens), `/v3beta/`; errors: bad JSON, cut-short JSON, bad base64, wrong types, unknown
//! enum names, unknown paths and prefixes, wrong methods; streams: watch (several requests in
//! one body, events from other requests, progress, cancel, a compacted start revision, a
//! request that does not decode) and lease keep-alive. etcd 3.4's HTTP/1 error trailer (`Grpc-Trailer-Content-Type`) and its
//! header-name capitalisation are not compared (hyper does not write trailers on HTTP/1).
//! Lock and Election: lock, a lock on a missing lease, unlock, campaign, leader (none, then
//! one), proclaim and resign with a stale leader key, proclaim without one (Observe is a
//! stream that does not end). Not covered here: `/v3/auth/status` and
//! `/v3/maintenance/downgrade` and `hashkv` (served by oxcd as etcd 3.5 does; 3.4 answers 404).
//!
//! Also: requests above `--max-request-bytes` and above the gRPC message limit (HTTP 429),
//! `/v3` without its slash, and the methods and CORS headers of `/version`, `/health` and
//! `/metrics`.
//!
//! The HTTP client is hyper's (HTTP/1.1), with a deadline on every read.

mod procs;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use procs::{Cluster, Kind, Timing};
use regex::Regex;
use std::time::Duration;

/// How long one response (or one stream line) may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// One step of the script.
enum Step {
    /// A request with a whole body; `auth` is sent as the `Authorization` header (`TOKEN`
    /// stands for the token the last `auth/authenticate` returned).
    Call {
        method: &'static str,
        path: &'static str,
        body: &'static str,
        auth: Option<&'static str>,
    },
    /// `POST /v3/kv/put` of a value of this many bytes: above `--max-request-bytes`, and
    /// above the gRPC message limit.
    LargePut { value_bytes: usize },
    /// A streaming request whose body holds one or more requests; its response lines are
    /// read while other steps run. (etcd's gateway reads a whole HTTP/1.1 body before it
    /// answers: Go's server drains a request body before the first response bytes, so
    /// requests cannot follow responses on one stream.)
    Stream {
        path: &'static str,
        body: &'static str,
        actions: &'static [Action],
    },
}

/// What happens while a stream is open.
enum Action {
    /// Read stream lines until this many arrived in all.
    Lines(usize),
    /// Read until the stream ends.
    End,
    /// Run a step on its own connection.
    Do(Step),
}

const fn post(path: &'static str, body: &'static str) -> Step {
    Step::Call {
        method: "POST",
        path,
        body,
        auth: None,
    }
}

const fn post_as(path: &'static str, body: &'static str, auth: &'static str) -> Step {
    Step::Call {
        method: "POST",
        path,
        body,
        auth: Some(auth),
    }
}

const fn call(method: &'static str, path: &'static str) -> Step {
    Step::Call {
        method,
        path,
        body: "",
        auth: None,
    }
}

// base64: foo Zm9v, bar YmFy, a YQ==, b Yg==, c Yw==, k1 azE=, k2 azI=, "\0" AA==.
const SCRIPT: &[Step] = &[
    post("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    post("/v3beta/kv/range", r#"{"key":"Zm9v"}"#),
    post(
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YQ==","prev_kv":true}"#,
    ),
    post(
        "/v3/kv/put",
        r#"{"key":"azE=","value":"Yg==","prevKv":true}"#,
    ),
    post("/v3/kv/put", r#"{"key":"azI=","value":"Yw=="}"#),
    post(
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","sort_order":"DESCEND","sort_target":"MOD","limit":"2"}"#,
    ),
    post(
        "/v3/kv/range",
        r#"{"key":"aw==","range_end":"bA==","keysOnly":true,"count_only":false,"revision":3}"#,
    ),
    post(
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","count_only":true}"#,
    ),
    post("/v3/kv/range", r#"{"key":"bm9uZQ=="}"#),
    post(
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","target":"VALUE","result":"EQUAL","value":"YQ=="}],
            "success":[{"request_put":{"key":"Zm9v","value":"Yg=="}},
                       {"requestRange":{"key":"Zm9v"}},
                       {"request_txn":{"success":[{"request_range":{"key":"azE="}}]}}],
            "failure":[{"request_delete_range":{"key":"Zm9v"}}]}"#,
    ),
    post(
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","target":"VERSION","result":"GREATER","version":"10"}],
            "failure":[{"request_delete_range":{"key":"azE=","prev_kv":true}}]}"#,
    ),
    post("/v3/kv/deleterange", r#"{"key":"azI=","prev_kv":true}"#),
    post("/v3/kv/deleterange", r#"{"key":"bm9uZQ=="}"#),
    // Input forms: null and empty bodies, null fields, unknown fields, trailing bytes.
    post("/v3/kv/range", ""),
    post("/v3/kv/range", "null"),
    post("/v3/kv/range", r#"{"key":null,"unknown":[1,2]}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v"} {"key":"YmFy"}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v"}xx"#),
    // Refusals of the JSON itself.
    post("/v3/kv/range", r#"{"key":"Zm9v""#),
    post("/v3/kv/range", "garbage"),
    post("/v3/kv/range", "[1]"),
    post("/v3/kv/range", r#"{"key" "Zm9v"}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v",}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v!"}"#),
    post("/v3/kv/range", r#"{"key":"Zm9"}"#),
    post("/v3/kv/range", r#"{"key":"-_8="}"#),
    post("/v3/kv/range", r#"{"key":5}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v","limit":1.5}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v","limit":"x"}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v","limit":true}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v","serializable":"true"}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v","sort_order":"NOPE"}"#),
    post("/v3/kv/txn", r#"{"success":"x"}"#),
    post("/v3/kv/txn", r#"{"success":[{"request_put":"x"}]}"#),
    // Refusals by the services, with their HTTP statuses.
    post("/v3/kv/put", r#"{"value":"YQ=="}"#),
    post("/v3/kv/range", r#"{"key":"Zm9v","revision":100}"#),
    post("/v3/lease/revoke", r#"{"ID":12345}"#),
    post("/v3/auth/authenticate", r#"{"name":"root","password":"x"}"#),
    post("/v3/maintenance/transfer-leadership", r#"{"targetID":"1"}"#),
    post("/v3/cluster/member/remove", r#"{"ID":"1"}"#),
    // Paths and methods.
    post("/v3alpha/kv/range", r#"{"key":"Zm9v"}"#),
    post("/v3/kv/range/", r#"{"key":"Zm9v"}"#),
    post("/v3/kv/nope", "{}"),
    post("/nope", "{}"),
    call("GET", "/v3/kv/range"),
    call("PUT", "/v3/kv/put"),
    call("GET", "/v3/watch"),
    // Leases.
    post("/v3/lease/grant", r#"{"TTL":60,"ID":1000}"#),
    post("/v3/lease/grant", r#"{"TTL":"30","ID":"2000"}"#),
    post("/v3/lease/grant", r#"{"TTL":60,"ID":1000}"#),
    post("/v3/lease/grant", r#"{"TTL":9000000001,"ID":3000}"#),
    post(
        "/v3/kv/put",
        r#"{"key":"bGs=","value":"dg==","lease":1000}"#,
    ),
    post("/v3/lease/timetolive", r#"{"ID":1000,"keys":true}"#),
    post("/v3/kv/lease/timetolive", r#"{"ID":"2000"}"#),
    post("/v3/lease/timetolive", r#"{"ID":4242}"#),
    Step::Stream {
        path: "/v3/lease/keepalive",
        body: r#"{"ID":1000}{"ID":"2000"} {"ID":4242}"#,
        actions: &[Action::Lines(3), Action::End],
    },
    post("/v3/kv/lease/revoke", r#"{"ID":2000}"#),
    // (One lease at a time: etcd lists them in Go's random map order.)
    post("/v3/lease/leases", ""),
    post("/v3/kv/lease/leases", "{}"),
    post("/v3/lease/revoke", r#"{"ID":1000}"#),
    post("/v3/kv/range", r#"{"key":"bGs="}"#),
    // Watches.
    Step::Stream {
        path: "/v3/watch",
        body: r#"{"create_request":{"key":"Zm9v"}}"#,
        actions: &[
            Action::Lines(1),
            Action::Do(post("/v3/kv/put", r#"{"key":"Zm9v","value":"d2F0Y2g="}"#)),
            Action::Lines(2),
            Action::Do(post("/v3/kv/deleterange", r#"{"key":"Zm9v"}"#)),
            Action::Lines(3),
        ],
    },
    // (etcd sends a catching-up watcher's history on its next sync, so nothing else is on
    // these streams while one catches up: the order would be timing.)
    Step::Stream {
        path: "/v3/watch",
        body: r#"{"create_request":{"key":"AA==","range_end":"AA==","start_revision":2,"prev_kv":true,"filters":["NODELETE"]}}"#,
        actions: &[
            Action::Lines(2),
            Action::Do(post("/v3/kv/put", r#"{"key":"YmFy","value":"d2F0Y2g="}"#)),
            Action::Lines(3),
        ],
    },
    Step::Stream {
        path: "/v3/watch",
        body: r#"{"createRequest":{"key":"bm9uZQ==","watch_id":7}}
                 {"progress_request":{}}
                 {"cancel_request":{"watch_id":"7"}}
                 {"cancel_request":{"watch_id":"8"}}"#,
        actions: &[Action::Lines(3)],
    },
    post("/v3/kv/compaction", r#"{"revision":5}"#),
    Step::Stream {
        path: "/v3/watch",
        // A compacted start revision; then a request that does not decode, after which
        // nothing more is taken.
        body: r#"{"create_request":{"key":"Zm9v","start_revision":3}}{bad}{"create_request":{"key":"YmFy"}}"#,
        actions: &[
            Action::Lines(2),
            Action::Do(post("/v3/kv/put", r#"{"key":"YmFy","value":"YWZ0ZXI="}"#)),
            Action::Do(post("/v3/kv/range", r#"{"key":"YmFy"}"#)),
        ],
    },
    // Maintenance and membership.
    post("/v3/maintenance/status", "{}"),
    post("/v3/maintenance/hash", "{}"),
    post("/v3/maintenance/alarm", r#"{"action":"GET"}"#),
    post("/v3/maintenance/defragment", "{}"),
    post("/v3/cluster/member/list", "{}"),
    // Auth, with the token in the Authorization header.
    post(
        "/v3/auth/user/add",
        r#"{"name":"root","password":"rootpw"}"#,
    ),
    post(
        "/v3/auth/user/add",
        r#"{"name":"root","password":"rootpw"}"#,
    ),
    post("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
    post("/v3/auth/role/add", r#"{"name":"r"}"#),
    post(
        "/v3/auth/role/grant",
        r#"{"name":"r","perm":{"permType":"READWRITE","key":"Zm9v","range_end":"Zm9w"}}"#,
    ),
    post("/v3/auth/role/get", r#"{"role":"r"}"#),
    post("/v3/auth/user/add", r#"{"name":"u","password":"upw"}"#),
    post("/v3/auth/user/grant", r#"{"user":"u","role":"r"}"#),
    post("/v3/auth/user/get", r#"{"name":"u"}"#),
    post("/v3/auth/user/list", "{}"),
    post("/v3/auth/role/list", "{}"),
    post("/v3/auth/enable", "{}"),
    post("/v3/kv/put", r#"{"key":"Zm9v","value":"YQ=="}"#),
    post_as(
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YQ=="}"#,
        "not-a-token",
    ),
    post(
        "/v3/auth/authenticate",
        r#"{"name":"u","password":"wrong"}"#,
    ),
    post("/v3/auth/authenticate", r#"{"name":"u","password":"upw"}"#),
    post_as("/v3/kv/put", r#"{"key":"Zm9v","value":"YQ=="}"#, "TOKEN"),
    post_as("/v3/kv/range", r#"{"key":"YmFy"}"#, "TOKEN"),
    post_as("/v3/auth/user/list", "{}", "TOKEN"),
    post(
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"rootpw"}"#,
    ),
    post_as("/v3/auth/user/list", "{}", "TOKEN"),
    post_as(
        "/v3/auth/role/revoke",
        r#"{"role":"r","key":"Zm9v","range_end":"Zm9w"}"#,
        "TOKEN",
    ),
    post_as(
        "/v3/auth/user/revoke",
        r#"{"name":"u","role":"r"}"#,
        "TOKEN",
    ),
    post_as(
        "/v3/auth/user/changepw",
        r#"{"name":"u","password":"new"}"#,
        "TOKEN",
    ),
    post_as("/v3/auth/user/delete", r#"{"name":"u"}"#, "TOKEN"),
    post_as("/v3/auth/role/delete", r#"{"role":"r"}"#, "TOKEN"),
    post_as("/v3/auth/disable", "{}", "TOKEN"),
    post("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    // Lock and Election (lease 5000 is 1388 in hex: keys `mu/1388`, `el/1388`).
    post("/v3/lease/grant", r#"{"TTL":60,"ID":5000}"#),
    post("/v3/lock/lock", r#"{"name":"bXU=","lease":5000}"#),
    post("/v3/lock/lock", r#"{"name":"bXU=","lease":4242}"#),
    post("/v3/lock/unlock", r#"{"key":"bXUvMTM4OA=="}"#),
    post("/v3/lock/unlock", r#"{"key":"bm9ib2R5"}"#),
    post("/v3/election/leader", r#"{"name":"ZWw="}"#),
    post(
        "/v3/election/campaign",
        r#"{"name":"ZWw=","lease":5000,"value":"djE="}"#,
    ),
    post("/v3/election/leader", r#"{"name":"ZWw="}"#),
    post(
        "/v3/election/proclaim",
        r#"{"leader":{"name":"ZWw=","key":"ZWwvMTM4OA==","rev":1,"lease":5000},"value":"djI="}"#,
    ),
    post("/v3/election/proclaim", r#"{"value":"djI="}"#),
    post(
        "/v3/election/resign",
        r#"{"leader":{"name":"ZWw=","key":"ZWwvMTM4OA==","rev":1,"lease":5000}}"#,
    ),
    post("/v3/election/leader", r#"{"name":"ZWw="}"#),
    // Oversized requests (etcd's defaults: 1.5 MiB requests, 2 MiB gRPC messages), and
    // the plain HTTP routes' methods and CORS.
    Step::LargePut {
        value_bytes: 1600 * 1024,
    },
    Step::LargePut {
        value_bytes: 2200 * 1024,
    },
    post("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    call("GET", "/v3"),
    call("POST", "/v3"),
    call("HEAD", "/version"),
    call("POST", "/version"),
    call("OPTIONS", "/version"),
    call("OPTIONS", "/health"),
    call("HEAD", "/metrics"),
];

/// Response headers a client of the gateway reads.
const HEADERS: &[&str] = &[
    "content-type",
    "grpc-metadata-content-type",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "x-content-type-options",
    "allow",
    "location",
];

/// Runs the script against one member and returns one transcript entry per step.
fn transcript(member: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut token = String::new();
        let mut out = Vec::new();
        for step in SCRIPT {
            out.push(run_step(member, step, &mut token).await);
        }
        out
    })
}

/// Opens an HTTP/1.1 connection to `member`.
async fn connect<B>(member: &str) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(member)
        .await
        .expect("connect to the member");
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    sender
}

fn request<B>(
    method: &str,
    member: &str,
    path: &str,
    auth: Option<String>,
    body: B,
) -> http::Request<B> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", member);
    if let Some(token) = auth {
        b = b.header("authorization", token);
    }
    b.body(body).expect("a request")
}

/// The status line and the compared headers of a response.
fn head(resp: &http::response::Parts) -> String {
    let mut s = format!("{}\n", resp.status);
    for name in HEADERS {
        for v in resp.headers.get_all(*name) {
            s.push_str(&format!("{name}: {}\n", v.to_str().unwrap_or("<binary>")));
        }
    }
    s
}

fn run_step<'a>(
    member: &'a str,
    step: &'a Step,
    token: &'a mut String,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + 'a>> {
    Box::pin(async move {
        match step {
            Step::Call {
                method,
                path,
                body,
                auth,
            } => {
                let auth = auth.map(|a| {
                    if a == "TOKEN" {
                        token.clone()
                    } else {
                        a.to_string()
                    }
                });
                let mut sender = connect::<Full<Bytes>>(member).await;
                let req = request(method, member, path, auth, Full::new(Bytes::from(*body)));
                let resp = tokio::time::timeout(RESPONSE_TIMEOUT, async {
                    let resp = sender.send_request(req).await.expect("a response");
                    let (parts, body) = resp.into_parts();
                    let body = body.collect().await.expect("the body").to_bytes();
                    (parts, body)
                })
                .await
                .unwrap_or_else(|_| {
                    panic!("no response to {method} {path} within {RESPONSE_TIMEOUT:?}")
                });
                let text = String::from_utf8_lossy(&resp.1).to_string();
                if let Some(t) = Regex::new(r#""token":"([^"]+)""#).unwrap().captures(&text) {
                    *token = t[1].to_string();
                }
                format!("{method} {path} {body}\n{}{text}\n", head(&resp.0))
            }
            Step::LargePut { value_bytes } => {
                use base64::Engine;
                let value =
                    base64::engine::general_purpose::STANDARD.encode(vec![b'x'; *value_bytes]);
                let body = format!(r#"{{"key":"Zm9v","value":"{value}"}}"#);
                let mut sender = connect::<Full<Bytes>>(member).await;
                let req = request("POST", member, "/v3/kv/put", None, Full::new(body.into()));
                let resp = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(req))
                    .await
                    .expect("a response in time")
                    .expect("a response");
                let (parts, body) = resp.into_parts();
                let body = body.collect().await.expect("the body").to_bytes();
                let text = String::from_utf8_lossy(&body);
                format!(
                    "POST /v3/kv/put <a value of {value_bytes} bytes>\n{}{text}\n",
                    head(&parts)
                )
            }
            Step::Stream {
                path,
                body,
                actions,
            } => {
                let mut sender = connect::<Full<Bytes>>(member).await;
                let req = request("POST", member, path, None, Full::new(Bytes::from(*body)));
                let mut s = format!("POST {path} {body}\n");
                let resp = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(req))
                    .await
                    .unwrap_or_else(|_| panic!("stream {path}: no response head in time"))
                    .expect("a response");
                let (parts, mut body) = resp.into_parts();
                s.push_str(&head(&parts));
                let mut pending = Vec::new();
                let mut lines = 0;
                let mut ended = false;
                for action in *actions {
                    let want = match action {
                        Action::Do(inner) => {
                            let r = run_step(member, inner, token).await;
                            s.push_str(&format!("# {r}"));
                            continue;
                        }
                        Action::Lines(n) => *n,
                        Action::End => usize::MAX,
                    };
                    while lines < want && !ended {
                        if let Some(at) = pending.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = pending.drain(..=at).collect();
                            s.push_str(&format!("< {}", String::from_utf8_lossy(&line)));
                            lines += 1;
                            continue;
                        }
                        let frame = tokio::time::timeout(RESPONSE_TIMEOUT, body.frame())
                            .await
                            .unwrap_or_else(|_| {
                                panic!("stream {path}: {lines} lines, no more in time:\n{s}")
                            });
                        match frame {
                            Some(Ok(f)) => {
                                if let Ok(data) = f.into_data() {
                                    pending.extend_from_slice(&data);
                                }
                            }
                            _ => {
                                ended = true;
                                s.push_str(&format!("<end after {lines} lines>\n"));
                            }
                        }
                    }
                }
                s
            }
        }
    })
}

/// What may differ between two clusters, replaced by a name.
fn masked(entry: &str) -> String {
    let masks: &[(&str, &str)] = &[
        (
            r#""(cluster_id|member_id|raft_term|leader|raftIndex|raftTerm|raftAppliedIndex|dbSize|dbSizeInUse|memberID)":"\d+""#,
            r#""$1":"<$1>""#,
        ),
        (r#""(ID)":"\d{6,}""#, r#""$1":"<big-id>""#),
        (r#""hash":\d+"#, r#""hash":<hash>"#),
        (r#""version":"3\.[0-9.]+""#, r#""version":"<version>""#),
        (r#""token":"[^"]+""#, r#""token":"<token>""#),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r#""TTL":"(59|60|29|30)""#, r#""TTL":"<ttl>""#),
    ];
    let mut s = entry.to_string();
    for (pattern, replacement) in masks {
        s = Regex::new(pattern)
            .unwrap()
            .replace_all(&s, *replacement)
            .to_string();
    }
    s
}

#[test]
fn gateway_transcript_matches_etcd() {
    let etcd = Cluster::start(Kind::Etcd, 1, Timing::default());
    let want: Vec<String> = transcript(&etcd.endpoint(0))
        .iter()
        .map(|e| masked(e))
        .collect();
    drop(etcd);
    let oxcd = Cluster::start(Kind::Oxcd, 1, Timing::default());
    let got: Vec<String> = transcript(&oxcd.endpoint(0))
        .iter()
        .map(|e| masked(e))
        .collect();
    procs::assert_same_transcripts(&want, &got, "etcd 3.4.23", "oxcd");
}
