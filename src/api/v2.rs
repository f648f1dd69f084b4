//! etcd's v2 HTTP API on the client port, served with `--enable-v2`: `/v2/keys` (reads,
//! writes, long-polling and streaming watches), `/v2/members`, `/v2/machines` and
//! `/v2/stats/{self,leader,store}`, with etcd 3.4's bodies, headers, status codes and error
//! JSON.
//!
//! What it does not do: decide anything about the tree. It parses the request into a
//! [`V2Command`] (times read here, on this member's wall clock, as etcd's handler reads them),
//! proposes it, and renders the events the core returns; plain reads run in the driver on the
//! applied tree, `quorum=true` reads after a ReadIndex round. The v2 auth API and its checks
//! are in `auth`.

mod auth;

use crate::api::cluster::ClusterService;
use crate::api::gateway::{text_response, with_cors};
use crate::node::{Applied, ApplyError, Command};
use crate::pb::etcdserverpb::{self as pb, cluster_server::Cluster};
use crate::server::cluster::MemberInfo;
use crate::server::driver::NodeHandle;
use crate::server::error::Error;
use crate::server::tls::PeerCn;
use crate::v2::{self, Event, Expiry, NodeView, V2Command, V2Error, Watched, error as code};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Router};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// Events a watch's client has not read yet, at most (etcd's buffer); past it the watch ends.
pub const WATCH_EVENTS_BUFFERED_MAX: usize = 100;
/// The largest form a v2 request may carry.
const FORM_BYTES_MAX: usize = 4 * 1024 * 1024;

/// This member's v2 counters (`/v2/stats/store`, `/v2/stats/self`).
#[derive(Default)]
struct Stats {
    gets_ok: AtomicU64,
    gets_fail: AtomicU64,
    sets_ok: AtomicU64,
    sets_fail: AtomicU64,
    deletes_ok: AtomicU64,
    deletes_fail: AtomicU64,
    updates_ok: AtomicU64,
    updates_fail: AtomicU64,
    creates_ok: AtomicU64,
    creates_fail: AtomicU64,
    cas_ok: AtomicU64,
    cas_fail: AtomicU64,
    cad_ok: AtomicU64,
    cad_fail: AtomicU64,
    watchers: AtomicU64,
}

#[derive(Clone)]
struct V2State {
    h: NodeHandle,
    stats: Arc<Stats>,
    started: Instant,
    started_wall: SystemTime,
}

/// The v2 routes; with `enabled` false, every `/v2/` path answers 404 as etcd 3.4 does
/// without `--enable-v2`.
pub fn router(h: NodeHandle) -> Router {
    if !h.config.enable_v2 {
        return Router::new();
    }
    let state = V2State {
        h,
        stats: Arc::new(Stats::default()),
        started: Instant::now(),
        started_wall: SystemTime::now(),
    };
    Router::new()
        .route("/v2/keys", any(keys_root))
        .route("/v2/keys/", any(keys_root))
        .route("/v2/keys/{*path}", any(keys))
        .route("/v2/members", any(members))
        .route("/v2/members/", any(members))
        .route("/v2/members/{id}", any(member))
        .route("/v2/machines", any(machines))
        .route("/v2/auth/enable", any(auth::enable))
        .route("/v2/auth/users", any(auth::users))
        .route("/v2/auth/users/", any(auth::users))
        .route("/v2/auth/users/{*name}", any(auth::users))
        .route("/v2/auth/roles", any(auth::roles))
        .route("/v2/auth/roles/", any(auth::roles))
        .route("/v2/auth/roles/{*name}", any(auth::roles))
        .route(
            "/v2/stats/self",
            get(stats_self).fallback(|| async { not_allowed("GET") }),
        )
        .route(
            "/v2/stats/leader",
            get(stats_leader).fallback(|| async { not_allowed("GET") }),
        )
        .route(
            "/v2/stats/store",
            get(stats_store).fallback(|| async { not_allowed("GET") }),
        )
        .with_state(state)
        .layer(axum::middleware::from_fn(redirect_unclean))
        // OPTIONS answered, CORS headers on everything, as etcd's v2 handlers.
        .layer(axum::middleware::from_fn(crate::api::gateway::cors))
}

/// Go's `ServeMux`, in front of etcd's handlers, answers a path with `//`, `.` or `..` in it
/// with a 301 to the cleaned path; so does this, for the v2 paths.
async fn redirect_unclean(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let raw = req.uri().path();
    let path = percent_decode(raw).unwrap_or_else(|_| raw.to_string());
    let mut clean = v2::store::clean(&path);
    if path.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    if clean == path || req.method() == Method::CONNECT {
        return next.run(req).await;
    }
    let location = match req.uri().query() {
        Some(q) => format!("{clean}?{q}"),
        None => clean,
    };
    let get = req.method() == Method::GET;
    let head = req.method() == Method::HEAD;
    let body = if get {
        let escaped = location
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&#34;")
            .replace('\'', "&#39;");
        Body::from(format!("<a href=\"{escaped}\">Moved Permanently</a>.\n\n"))
    } else if head {
        // Go sends a HEAD answer without a length; an empty stream has none.
        Body::from_stream(tokio_stream::empty::<Result<Bytes, std::io::Error>>())
    } else {
        Body::empty()
    };
    let mut r = (StatusCode::MOVED_PERMANENTLY, body).into_response();
    let hs = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        hs.insert("location", v);
    }
    if get || head {
        hs.insert(
            "content-type",
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    } else {
        hs.remove("content-type");
    }
    r
}

// Rendering.

#[derive(Serialize)]
struct NodeJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dir: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration: Option<String>,
    #[serde(skip_serializing_if = "is_zero_i64")]
    ttl: i64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<NodeJson>,
    #[serde(rename = "modifiedIndex", skip_serializing_if = "is_zero")]
    modified_index: u64,
    #[serde(rename = "createdIndex", skip_serializing_if = "is_zero")]
    created_index: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct EventJson {
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<NodeJson>,
    #[serde(rename = "prevNode", skip_serializing_if = "Option::is_none")]
    prev_node: Option<NodeJson>,
}

/// `ms` since the Unix epoch as Go writes a UTC time in JSON (RFC 3339, fraction trimmed).
pub fn rfc3339(ms: u64) -> String {
    let (days, rem) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, frac) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    let mut out = format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
    if frac != 0 {
        let f = format!("{frac:03}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

fn node_json(n: NodeView, now_ms: u64) -> NodeJson {
    // etcd's TTL: the seconds left, rounded up.
    let ttl = n.expiration_ms.map_or(0, |t| {
        let left = t as i64 - now_ms as i64;
        left.div_euclid(1000) + i64::from(left.rem_euclid(1000) > 0)
    });
    NodeJson {
        key: n.key,
        value: n.value,
        dir: n.dir,
        expiration: n.expiration_ms.map(rfc3339),
        ttl,
        nodes: n
            .nodes
            .unwrap_or_default()
            .into_iter()
            .map(|c| node_json(c, now_ms))
            .collect(),
        modified_index: n.modified_index,
        created_index: n.created_index,
    }
}

fn sort_nodes(n: &mut NodeView) {
    if let Some(nodes) = &mut n.nodes {
        nodes.sort_by(|a, b| a.key.cmp(&b.key));
        nodes.iter_mut().for_each(sort_nodes);
    }
}

fn event_json(e: Event, no_value: bool) -> String {
    use v2::Action as A;
    let now = crate::clock::wall_ms();
    let drop = no_value && matches!(e.action, A::Set | A::Create | A::Update | A::CompareAndSwap);
    let j = EventJson {
        action: e.action.name(),
        node: (!drop).then(|| node_json(e.node, now)),
        prev_node: if drop {
            None
        } else {
            e.prev_node.map(|p| node_json(p, now))
        },
    };
    let mut s = go_json(serde_json::to_string(&j).expect("plain data"));
    s.push('\n');
    s
}

/// JSON text escaped as Go's encoder escapes it: `<`, `>`, `&`, U+2028 and U+2029 as `\u`
/// sequences (they only occur inside strings, so this changes no structure).
fn go_json(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(rename = "errorCode")]
    error_code: u16,
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    cause: &'a str,
    index: u64,
}

fn cluster_id(h: &NodeHandle) -> HeaderValue {
    HeaderValue::from_str(&format!("{:x}", h.cluster_id)).expect("hex")
}

fn error_response(h: &NodeHandle, e: &V2Error) -> Response {
    let mut body = go_json(
        serde_json::to_string(&ErrorJson {
            error_code: e.code,
            message: e.message(),
            cause: &e.cause,
            index: e.index,
        })
        .expect("plain data"),
    );
    body.push('\n');
    let mut r = (
        StatusCode::from_u16(e.http_status()).expect("a status"),
        body,
    )
        .into_response();
    let hs = r.headers_mut();
    hs.insert("content-type", HeaderValue::from_static("application/json"));
    hs.insert("x-etcd-cluster-id", cluster_id(h));
    hs.insert("x-etcd-index", HeaderValue::from(e.index));
    r
}

/// A failure of the cluster (no leader, a timeout) as etcd's v2 API reports it.
fn cluster_error(e: &Error) -> V2Error {
    match e {
        Error::Apply(ApplyError::V2(e)) => e.clone(),
        other => V2Error::new(code::RAFT_INTERNAL, format!("etcdserver: {other}"), 0),
    }
}

/// Where the member's Raft stands, for `X-Raft-Index` and `X-Raft-Term`.
#[derive(Clone, Copy)]
struct RaftAt {
    index: u64,
    term: u64,
}

impl RaftAt {
    /// The driver's member's commit index and term now.
    fn of(d: &crate::server::driver::Driver) -> RaftAt {
        let raft = &d.member().raw().raft;
        RaftAt {
            index: raft.raft_log.committed,
            term: raft.term,
        }
    }
}

async fn raft_at(h: &NodeHandle) -> RaftAt {
    h.run(false, |d| Ok(RaftAt::of(d)))
        .await
        .unwrap_or(RaftAt { index: 0, term: 0 })
}

fn event_headers(r: &mut Response, h: &NodeHandle, etcd_index: u64, at: RaftAt) {
    let hs = r.headers_mut();
    hs.insert("content-type", HeaderValue::from_static("application/json"));
    hs.insert("x-etcd-cluster-id", cluster_id(h));
    hs.insert("x-etcd-index", HeaderValue::from(etcd_index));
    hs.insert("x-raft-index", HeaderValue::from(at.index));
    hs.insert("x-raft-term", HeaderValue::from(at.term));
}

// Requests.

/// A form's values in order (the body's first, then the query's, as Go's `ParseForm`).
#[derive(Default)]
struct Form(Vec<(String, String)>);

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        format!("invalid URL escape {:?}", &s[i..(i + 3).min(s.len())])
                    })?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "invalid UTF-8".to_string())
}

impl Form {
    fn parse_into(&mut self, raw: &str) -> Result<(), String> {
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            self.0.push((percent_decode(k)?, percent_decode(v)?));
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn value(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    /// Go's `strconv.ParseBool` of the first value; absent is false.
    fn bool(&self, key: &str, cause: &str) -> Result<bool, V2Error> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| V2Error::request(code::INVALID_FIELD, cause)),
        }
    }

    fn uint(&self, key: &str) -> Result<u64, V2Error> {
        match self.get(key) {
            None => Ok(0),
            Some(v) => parse_uint(v).ok_or_else(|| {
                V2Error::request(code::INDEX_NAN, format!("invalid value for \"{key}\""))
            }),
        }
    }
}

/// A decimal number as Go's `ParseUint` reads it: digits only (Rust's parser takes a `+`).
fn parse_uint(v: &str) -> Option<u64> {
    if v.starts_with('+') {
        return None;
    }
    v.parse().ok()
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// What one `/v2/keys` request asks, after etcd's checks (in etcd's order).
struct KeyRequest {
    path: String,
    form: Form,
    recursive: bool,
    sorted: bool,
    wait: bool,
    dir: bool,
    quorum: bool,
    stream: bool,
    no_value: bool,
    prev_index: u64,
    wait_index: u64,
    prev_exist: Option<bool>,
    expiry: Expiry,
}

fn parse_key_request(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<KeyRequest, V2Error> {
    let mut form = Form::default();
    let form_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        && headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let invalid = |e: String| V2Error::request(code::INVALID_FORM, e);
    if form_body {
        form.parse_into(std::str::from_utf8(body).map_err(|_| invalid("invalid UTF-8".into()))?)
            .map_err(invalid)?;
    }
    if let Some(q) = query {
        form.parse_into(q).map_err(invalid)?;
    }
    let prev_index = form.uint("prevIndex")?;
    let wait_index = form.uint("waitIndex")?;
    let recursive = form.bool("recursive", "invalid value for \"recursive\"")?;
    let sorted = form.bool("sorted", "invalid value for \"sorted\"")?;
    let wait = form.bool("wait", "invalid value for \"wait\"")?;
    let dir = form.bool("dir", "invalid value for \"dir\"")?;
    let quorum = form.bool("quorum", "invalid value for \"quorum\"")?;
    let stream = form.bool("stream", "invalid value for \"stream\"")?;
    if wait && *method != Method::GET {
        return Err(V2Error::request(
            code::INVALID_FIELD,
            "\"wait\" can only be used with GET requests",
        ));
    }
    if form.get("prevValue") == Some("") {
        return Err(V2Error::request(
            code::PREV_VALUE_REQUIRED,
            "\"prevValue\" cannot be empty",
        ));
    }
    let no_value = form.bool("noValueOnSuccess", "invalid value for \"noValueOnSuccess\"")?;
    let ttl = match form.get("ttl") {
        None | Some("") => None,
        Some(t) => Some(
            parse_uint(t)
                .ok_or_else(|| V2Error::request(code::TTL_NAN, "invalid value for \"ttl\""))?,
        ),
    };
    let prev_exist =
        match form.get("prevExist") {
            None => None,
            Some(v) => Some(parse_bool(v).ok_or_else(|| {
                V2Error::request(code::INVALID_FIELD, "invalid value for prevExist")
            })?),
        };
    let refresh = match form.get("refresh") {
        None => false,
        Some(v) => {
            let r = parse_bool(v).ok_or_else(|| {
                V2Error::request(code::INVALID_FIELD, "invalid value for refresh")
            })?;
            if r && !form.value("value").is_empty() {
                return Err(V2Error::request(
                    code::REFRESH_VALUE,
                    "A value was provided on a refresh",
                ));
            }
            if r && ttl.is_none() {
                return Err(V2Error::request(
                    code::REFRESH_TTL_REQUIRED,
                    "No TTL value set",
                ));
            }
            r
        }
    };
    let expiry = Expiry {
        at_ms: ttl.map(|t| {
            crate::clock::wall_ms()
                .saturating_add(t.saturating_mul(1000))
                .max(1)
        }),
        refresh,
    };
    Ok(KeyRequest {
        path: v2::store::clean(path),
        form,
        recursive,
        sorted,
        wait,
        dir,
        quorum,
        stream,
        no_value,
        prev_index,
        wait_index,
        prev_exist,
        expiry,
    })
}

/// The write a PUT, POST or DELETE asks for (etcd's dispatch).
fn key_command(method: &Method, r: &KeyRequest) -> V2Command {
    let path = r.path.clone();
    let value = r.form.value("value").to_string();
    let prev_value = r.form.value("prevValue").to_string();
    let (expiry, dir) = (r.expiry, r.dir);
    if *method == Method::POST {
        return V2Command::Create {
            path,
            dir,
            value,
            unique: true,
            expiry,
        };
    }
    if *method == Method::DELETE {
        if r.prev_index > 0 || !prev_value.is_empty() {
            return V2Command::CompareAndDelete {
                path,
                prev_value,
                prev_index: r.prev_index,
            };
        }
        return V2Command::Delete {
            path,
            dir,
            recursive: r.recursive,
        };
    }
    match r.prev_exist {
        Some(true) if r.prev_index == 0 && prev_value.is_empty() => V2Command::Update {
            path,
            value,
            expiry,
        },
        Some(true) => V2Command::CompareAndSwap {
            path,
            prev_value,
            prev_index: r.prev_index,
            value,
            expiry,
        },
        Some(false) => V2Command::Create {
            path,
            dir,
            value,
            unique: false,
            expiry,
        },
        None if r.prev_index > 0 || !prev_value.is_empty() => V2Command::CompareAndSwap {
            path,
            prev_value,
            prev_index: r.prev_index,
            value,
            expiry,
        },
        None => V2Command::Set {
            path,
            dir,
            value,
            expiry,
        },
    }
}

async fn keys_root(
    State(s): State<V2State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    cn: Option<Extension<PeerCn>>,
    body: Bytes,
) -> Response {
    let raw = uri
        .path()
        .strip_prefix("/v2/keys")
        .unwrap_or("")
        .to_string();
    key_request(s, method, (String::from("/"), raw), uri, headers, cn, body).await
}

async fn keys(
    State(s): State<V2State>,
    Path(path): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    cn: Option<Extension<PeerCn>>,
    body: Bytes,
) -> Response {
    // The raw path, not the decoded one: etcd joins the URL's path as it came.
    let raw = uri
        .path()
        .strip_prefix("/v2/keys")
        .map(str::to_string)
        .unwrap_or(path);
    let raw = percent_decode(&raw.replace('+', "%2B")).unwrap_or(raw);
    key_request(s, method, (raw.clone(), raw), uri, headers, cn, body).await
}

/// A `/v2/keys` request; `path` is the key's path, and the path the permissions are checked
/// against (the URL's after `/v2/keys`, as it came: etcd checks that, not the cleaned key).
async fn key_request(
    s: V2State,
    method: Method,
    (path, checked): (String, String),
    uri: Uri,
    headers: HeaderMap,
    cn: Option<Extension<PeerCn>>,
    body: Bytes,
) -> Response {
    let h = &s.h;
    if !matches!(
        method,
        Method::GET | Method::HEAD | Method::PUT | Method::POST | Method::DELETE
    ) {
        return not_allowed("HEAD,GET,PUT,POST,DELETE");
    }
    if body.len() > FORM_BYTES_MAX.min(h.config.max_request_bytes) {
        let e = V2Error::request(code::INVALID_FORM, "http: request body too large");
        return with_cors(error_response(h, &e));
    }
    let r = match parse_key_request(&method, &path, uri.query(), &headers, &body) {
        Ok(r) => r,
        Err(e) => return with_cors(error_response(h, &e)),
    };
    let access = Access {
        headers: &headers,
        cn: cn.as_deref(),
        key: &checked,
    };
    let plain_read = matches!(method, Method::GET | Method::HEAD) && !r.wait;
    // A plain read checks in the same trip to the driver as it reads; the rest before.
    if !plain_read {
        let state = match h.run(false, |d| Ok(auth::enabled_state(d))).await {
            Ok(state) => state,
            Err(e) => return with_cors(error_response(h, &cluster_error(&e))),
        };
        let writes = !matches!(method, Method::GET | Method::HEAD);
        if !access.allowed(state, writes, r.recursive).await {
            return with_cors(auth::key_denied(&s));
        }
    }
    let response = if matches!(method, Method::GET | Method::HEAD) {
        if r.wait {
            watch(&s, r).await
        } else {
            read(&s, r, method == Method::HEAD, &access).await
        }
    } else {
        write(&s, &method, r).await
    };
    with_cors(response)
}

fn count(ok: &AtomicU64, fail: &AtomicU64, success: bool) {
    if success { ok } else { fail }.fetch_add(1, Ordering::Relaxed);
}

/// Who asks for which key, for the v2 auth check.
struct Access<'a> {
    headers: &'a HeaderMap,
    cn: Option<&'a PeerCn>,
    /// The path checked (see [`key_request`]).
    key: &'a str,
}

impl Access<'_> {
    async fn allowed(&self, state: Option<v2::V2Auth>, writes: bool, recursive: bool) -> bool {
        auth::key_allowed(state, self.headers, self.cn, self.key, writes, recursive).await
    }
}

async fn read(s: &V2State, r: KeyRequest, head: bool, access: &Access<'_>) -> Response {
    let h = &s.h;
    let (path, recursive, sorted) = (r.path.clone(), r.recursive, r.sorted);
    let got = h
        .run(r.quorum, move |d| {
            let at = RaftAt::of(d);
            let store = &d.member().applier().v2().store;
            Ok((store.get(&path, recursive), at, auth::enabled_state(d)))
        })
        .await;
    let (result, at, state) = match got {
        Ok(x) => x,
        Err(e) => return error_response(h, &cluster_error(&e)),
    };
    if state.is_some() && !access.allowed(state, false, recursive).await {
        return auth::key_denied(s);
    }
    count(&s.stats.gets_ok, &s.stats.gets_fail, result.is_ok());
    match result {
        Err(e) => error_response(h, &e),
        Ok(mut e) => {
            if sorted {
                sort_nodes(&mut e.node);
            }
            let index = e.etcd_index;
            let body = event_json(e, false);
            let len = body.len();
            let mut resp = if head {
                let mut r = Response::new(Body::empty());
                r.headers_mut()
                    .insert("content-length", HeaderValue::from(len));
                r
            } else {
                body.into_response()
            };
            event_headers(&mut resp, h, index, at);
            resp
        }
    }
}

async fn write(s: &V2State, method: &Method, r: KeyRequest) -> Response {
    let h = &s.h;
    let cmd = key_command(method, &r);
    let counters = {
        let st = &s.stats;
        match &cmd {
            V2Command::Set { .. } => (&st.sets_ok, &st.sets_fail),
            V2Command::Create { .. } => (&st.creates_ok, &st.creates_fail),
            V2Command::Update { .. } => (&st.updates_ok, &st.updates_fail),
            V2Command::CompareAndSwap { .. } => (&st.cas_ok, &st.cas_fail),
            V2Command::Delete { .. } => (&st.deletes_ok, &st.deletes_fail),
            V2Command::CompareAndDelete { .. } | V2Command::Sync { .. } => {
                (&st.cad_ok, &st.cad_fail)
            }
        }
    };
    let result = h.propose(Command::V2(cmd)).await;
    count(counters.0, counters.1, result.is_ok());
    let event = match result {
        Ok((Applied::V2(mut events), _)) if events.len() == 1 => events.remove(0),
        Ok((other, _)) => {
            let e = V2Error::new(
                code::RAFT_INTERNAL,
                format!("unexpected answer {other:?}"),
                0,
            );
            return error_response(h, &e);
        }
        Err(e) => return error_response(h, &cluster_error(&e)),
    };
    let at = raft_at(h).await;
    let created = event.action == v2::Action::Create
        || (event.action == v2::Action::Set && event.prev_node.is_none());
    let index = event.etcd_index;
    let mut resp = event_json(event, r.no_value).into_response();
    if created {
        *resp.status_mut() = StatusCode::CREATED;
    }
    event_headers(&mut resp, h, index, at);
    resp
}

/// A watch: the answer's headers go out at once (etcd flushes them), then one event (or, a
/// stream, each event) as it happens.
async fn watch(s: &V2State, r: KeyRequest) -> Response {
    let h = s.h.clone();
    let (path, recursive, stream, since) = (r.path.clone(), r.recursive, r.stream, r.wait_index);
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(WATCH_EVENTS_BUFFERED_MAX);
    let started = h
        .run(false, move |d| {
            let at = RaftAt::of(d);
            let (hub, store) = d.member_mut().applier_mut().v2_hub_mut();
            let index = store.index();
            let watched = hub.watch(&path, recursive, stream, since, index)?;
            let id = match &watched {
                Watched::Found(_, id) => *id,
                Watched::Waiting(id) => Some(*id),
            };
            if let Some(id) = id {
                d.v2_watchers.insert(id, tx);
            }
            Ok((watched, index, at))
        })
        .await;
    let (watched, index, at) = match started {
        Ok(x) => x,
        Err(Error::Apply(ApplyError::V2(e))) => return error_response(&h, &e),
        Err(e) => return error_response(&h, &cluster_error(&e)),
    };
    let first: Vec<Event> = match watched {
        Watched::Found(events, None) => {
            // Chunked, as every watch answer is.
            let body = event_json(events.into_iter().next().expect("found one"), false);
            let chunk = tokio_stream::once(Ok::<_, std::convert::Infallible>(body));
            let mut resp = Response::new(Body::from_stream(chunk));
            event_headers(&mut resp, &h, index, at);
            return resp;
        }
        Watched::Found(events, Some(_)) => events,
        Watched::Waiting(_) => Vec::new(),
    };
    s.stats.watchers.fetch_add(1, Ordering::Relaxed);
    /// Counts the watch while its client waits.
    struct Counted(Arc<Stats>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.watchers.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let counted = Counted(s.stats.clone());
    let live = ReceiverStream::new(rx).take(if stream { usize::MAX } else { 1 });
    let body = tokio_stream::iter(first).chain(live).map(move |mut e| {
        let _ = &counted;
        e.etcd_index = index;
        Ok::<_, std::convert::Infallible>(event_json(e, false))
    });
    let mut resp = Response::new(Body::from_stream(body));
    event_headers(&mut resp, &h, index, at);
    resp
}

impl From<V2Error> for Error {
    fn from(e: V2Error) -> Error {
        Error::Apply(ApplyError::V2(e))
    }
}

// Members, machines, stats.

#[derive(Serialize)]
struct MemberJson {
    id: String,
    name: String,
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    client_urls: Vec<String>,
}

impl From<&MemberInfo> for MemberJson {
    fn from(m: &MemberInfo) -> MemberJson {
        MemberJson {
            id: format!("{:x}", m.id),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
        }
    }
}

fn json_response(h: &NodeHandle, status: StatusCode, body: String) -> Response {
    let mut r = stats_response(status, body);
    r.headers_mut().insert("x-etcd-cluster-id", cluster_id(h));
    r
}

/// A JSON answer without the cluster ID (the stats handlers set none).
fn stats_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    with_cors(r)
}

fn message(h: &NodeHandle, status: StatusCode, m: &str) -> Response {
    // etcd's HTTPError: no newline after it.
    let body = go_json(serde_json::json!({ "message": m }).to_string());
    json_response(h, status, body)
}

fn members_not_allowed() -> Response {
    not_allowed("GET,POST,DELETE,PUT")
}

/// Go's 405 for a method a route does not take.
fn not_allowed(allow: &'static str) -> Response {
    let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    r.headers_mut()
        .insert("allow", HeaderValue::from_static(allow));
    r
}

async fn member_list(h: &NodeHandle) -> Result<Vec<MemberInfo>, Error> {
    h.run(false, |d| {
        Ok(d.members().into_iter().map(|(m, _)| m).collect())
    })
    .await
}

#[derive(serde::Deserialize)]
struct PeerUrls {
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
}

/// The peer URLs of a members request's JSON body, or the status and message etcd answers
/// when there are none to be had.
fn peer_urls(headers: &HeaderMap, body: &[u8]) -> Result<Vec<String>, (StatusCode, String)> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        let m = format!("Bad Content-Type {ct}, accept application/json");
        return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, m));
    }
    let urls: PeerUrls =
        serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    if urls.peer_urls.is_empty() {
        return Err((StatusCode::BAD_REQUEST, "no valid URLs given".into()));
    }
    for u in &urls.peer_urls {
        if crate::server::cluster::check_url(u).is_err() {
            let m = format!("URL scheme must be http or https: {u}");
            return Err((StatusCode::BAD_REQUEST, m));
        }
    }
    Ok(urls.peer_urls)
}

fn status_response(h: &NodeHandle, st: &tonic::Status, id: &str) -> Response {
    let m = st.message();
    if m.contains("member not found") {
        return message(h, StatusCode::NOT_FOUND, &format!("No such member: {id}"));
    }
    if m.contains("Peer URLs already exists") {
        return message(h, StatusCode::CONFLICT, "membership: peerURL exists");
    }
    if m.contains("given member URLs are invalid") {
        return message(h, StatusCode::BAD_REQUEST, "no valid URLs given");
    }
    let mut r = (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n").into_response();
    r.headers_mut().insert("x-etcd-cluster-id", cluster_id(h));
    with_cors(r)
}

async fn members(
    State(s): State<V2State>,
    method: Method,
    headers: HeaderMap,
    cn: Option<Extension<PeerCn>>,
    body: Bytes,
) -> Response {
    let h = &s.h;
    if matches!(method, Method::POST | Method::PUT | Method::DELETE)
        && let Some(denied) = auth::require_root(&s, &headers, cn.as_deref()).await
    {
        return denied;
    }
    match method {
        Method::GET => match member_list(h).await {
            Ok(ms) => {
                #[derive(Serialize)]
                struct Members {
                    members: Vec<MemberJson>,
                }
                let members = ms.iter().map(MemberJson::from).collect();
                let body = serde_json::to_string(&Members { members }).expect("plain") + "\n";
                json_response(h, StatusCode::OK, body)
            }
            Err(e) => message(h, StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Method::POST => {
            let urls = match peer_urls(&headers, &body) {
                Ok(u) => u,
                Err((status, m)) => return message(h, status, &m),
            };
            let svc = ClusterService::new(h.clone());
            let req = pb::MemberAddRequest {
                peer_ur_ls: urls,
                is_learner: false,
            };
            match svc.member_add(tonic::Request::new(req)).await {
                Ok(resp) => {
                    let m = resp.into_inner().member.unwrap_or_default();
                    let j = MemberJson {
                        id: format!("{:x}", m.id),
                        name: m.name,
                        peer_urls: m.peer_ur_ls,
                        client_urls: m.client_ur_ls,
                    };
                    let body = serde_json::to_string(&j).expect("plain data") + "\n";
                    json_response(h, StatusCode::CREATED, body)
                }
                Err(st) => status_response(h, &st, ""),
            }
        }
        _ => members_not_allowed(),
    }
}

async fn member(
    State(s): State<V2State>,
    Path(id_text): Path<String>,
    method: Method,
    headers: HeaderMap,
    cn: Option<Extension<PeerCn>>,
    body: Bytes,
) -> Response {
    let h = &s.h;
    if matches!(method, Method::POST | Method::PUT | Method::DELETE)
        && let Some(denied) = auth::require_root(&s, &headers, cn.as_deref()).await
    {
        return denied;
    }
    if id_text == "leader" && method == Method::GET {
        let leader = h
            .run(false, |d| {
                let leader = d.leader();
                Ok(d.members()
                    .into_iter()
                    .map(|(m, _)| m)
                    .find(|m| m.id == leader))
            })
            .await;
        return match leader {
            Ok(Some(m)) => {
                let body = serde_json::to_string(&MemberJson::from(&m)).expect("plain") + "\n";
                json_response(h, StatusCode::OK, body)
            }
            _ => message(h, StatusCode::SERVICE_UNAVAILABLE, "During election"),
        };
    }
    if method == Method::GET {
        return message(h, StatusCode::NOT_FOUND, "Not found");
    }
    let Ok(id) = u64::from_str_radix(&id_text, 16) else {
        return match method {
            Method::GET | Method::DELETE | Method::PUT => message(
                h,
                StatusCode::NOT_FOUND,
                &format!("No such member: {id_text}"),
            ),
            _ => members_not_allowed(),
        };
    };
    let svc = ClusterService::new(h.clone());
    match method {
        Method::DELETE => {
            let removed = h.removed.lock().expect("not poisoned").contains(&id);
            if removed {
                let m = format!("Member permanently removed: {id:x}");
                return message(h, StatusCode::GONE, &m);
            }
            let req = pb::MemberRemoveRequest { id };
            match svc.member_remove(tonic::Request::new(req)).await {
                Ok(_) => with_cors(no_content(h)),
                Err(st) => status_response(h, &st, &id_text),
            }
        }
        Method::PUT => {
            let urls = match peer_urls(&headers, &body) {
                Ok(u) => u,
                Err((status, m)) => return message(h, status, &m),
            };
            let req = pb::MemberUpdateRequest {
                id,
                peer_ur_ls: urls,
            };
            match svc.member_update(tonic::Request::new(req)).await {
                Ok(_) => with_cors(no_content(h)),
                Err(st) => status_response(h, &st, &id_text),
            }
        }
        _ => members_not_allowed(),
    }
}

fn no_content(h: &NodeHandle) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert("x-etcd-cluster-id", cluster_id(h));
    r
}

async fn machines(State(s): State<V2State>, method: Method) -> Response {
    if !matches!(method, Method::GET | Method::HEAD) {
        return not_allowed("GET,HEAD");
    }
    let urls = member_list(&s.h)
        .await
        .map(|ms| {
            ms.into_iter()
                .flat_map(|m| m.client_urls)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut r = urls.into_response();
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    with_cors(r)
}

async fn stats_self(State(s): State<V2State>) -> Response {
    let h = &s.h;
    let info = h
        .run(false, |d| {
            let leader = d.leader();
            let me = d
                .members()
                .into_iter()
                .find(|(m, _)| m.id == d.member_id)
                .map(|(m, _)| m.name)
                .unwrap_or_default();
            Ok((me, leader, d.is_leader()))
        })
        .await;
    let Ok((name, leader, is_leader)) = info else {
        return message(h, StatusCode::INTERNAL_SERVER_ERROR, "server stopped");
    };
    let start = rfc3339(
        s.started_wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    );
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct LeaderInfo {
        leader: String,
        uptime: String,
        start_time: String,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SelfStats {
        name: String,
        id: String,
        state: &'static str,
        start_time: String,
        leader_info: LeaderInfo,
        recv_append_request_cnt: u64,
        send_append_request_cnt: u64,
    }
    let body = serde_json::to_string(&SelfStats {
        name,
        id: format!("{:x}", h.member_id),
        state: if is_leader {
            "StateLeader"
        } else {
            "StateFollower"
        },
        start_time: start.clone(),
        leader_info: LeaderInfo {
            leader: format!("{leader:x}"),
            uptime: format!("{:?}", s.started.elapsed()),
            start_time: start,
        },
        recv_append_request_cnt: 0,
        send_append_request_cnt: 0,
    })
    .expect("plain");
    stats_response(StatusCode::OK, body)
}

async fn stats_leader(State(s): State<V2State>) -> Response {
    let h = &s.h;
    let info = h
        .run(false, |d| {
            let others: Vec<u64> = d
                .members()
                .into_iter()
                .map(|(m, _)| m.id)
                .filter(|id| *id != d.member_id)
                .collect();
            Ok((d.is_leader(), others))
        })
        .await;
    match info {
        Ok((true, others)) => {
            let followers: serde_json::Map<String, serde_json::Value> = others
                .into_iter()
                .map(|id| {
                    (
                        format!("{id:x}"),
                        serde_json::json!({
                            "latency": {"current": 0, "average": 0, "standardDeviation": 0,
                                        "minimum": 0, "maximum": 0},
                            "counts": {"fail": 0, "success": 0},
                        }),
                    )
                })
                .collect();
            // etcd's field order (a `json!` map would sort the keys).
            let body = format!(
                "{{\"leader\":\"{:x}\",\"followers\":{}}}",
                h.member_id,
                serde_json::Value::Object(followers)
            );
            stats_response(StatusCode::OK, body)
        }
        _ => stats_response(
            StatusCode::FORBIDDEN,
            r#"{"message":"not current leader"}"#.to_string(),
        ),
    }
}

async fn stats_store(State(s): State<V2State>) -> Response {
    let st = &s.stats;
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let expired =
        s.h.run(false, |d| {
            Ok(d.member().applier().v2().store.expired_count())
        })
        .await
        .unwrap_or(0);
    // etcd's field order.
    let mut body = String::from("{");
    for (name, v) in [
        ("getsSuccess", n(&st.gets_ok)),
        ("getsFail", n(&st.gets_fail)),
        ("setsSuccess", n(&st.sets_ok)),
        ("setsFail", n(&st.sets_fail)),
        ("deleteSuccess", n(&st.deletes_ok)),
        ("deleteFail", n(&st.deletes_fail)),
        ("updateSuccess", n(&st.updates_ok)),
        ("updateFail", n(&st.updates_fail)),
        ("createSuccess", n(&st.creates_ok)),
        ("createFail", n(&st.creates_fail)),
        ("compareAndSwapSuccess", n(&st.cas_ok)),
        ("compareAndSwapFail", n(&st.cas_fail)),
        ("compareAndDeleteSuccess", n(&st.cad_ok)),
        ("compareAndDeleteFail", n(&st.cad_fail)),
        ("expireCount", expired),
        ("watchers", n(&st.watchers)),
    ] {
        if body.len() > 1 {
            body.push(',');
        }
        body.push_str(&format!("\"{name}\":{v}"));
    }
    body.push('}');
    stats_response(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_go_prints_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_599_045_120), "2026-12-06T23:17:25.12Z");
        assert_eq!(rfc3339(951_782_400_001), "2000-02-29T00:00:00.001Z");
    }

    #[test]
    fn forms_decode_and_booleans_parse_as_go_does() {
        let mut f = Form::default();
        f.parse_into("value=a+b%2Fc&dir=T&x").unwrap();
        assert_eq!(f.value("value"), "a b/c");
        assert!(f.bool("dir", "").unwrap());
        assert_eq!(f.get("x"), Some(""));
        assert!(f.parse_into("bad=%zz").is_err());
        assert_eq!(f.bool("value", "c").unwrap_err().code, code::INVALID_FIELD);
    }
}
