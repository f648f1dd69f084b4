//! etcd's JSON gateway on the client port: `POST /v3/<service>/<method>` (and the same under
//! `/v3beta/`) with a JSON request, answered with JSON; streaming calls answer one
//! `{"result":...}` line per message.
//!
//! What it owns: the route table (which path calls which gRPC method), the HTTP side of a
//! call (reading the body, the `Authorization` header and `Grpc-Metadata-*` headers as gRPC
//! metadata, etcd's HTTP statuses and error bodies, CORS headers, chunked streams) and, in
//! [`json`], etcd's JSON.
//!
//! What it does not do: anything a service does. Every route calls the gRPC service a gRPC
//! client reaches, in process, through the service's generated client over the same tonic
//! routes the listener serves ([`Channel`]): requests are encoded and decoded as on the wire,
//! so the services' limits, credentials and errors are the ones gRPC clients get (etcd's
//! gateway is a gRPC client of its own member too).
//!
//! Adding a service's routes: serve its tonic server among the client routes (`api.rs`),
//! then register each method here with [`Routes::unary`], [`Routes::server_stream`] or
//! [`Routes::bidi_stream`] and a closure that calls the method on its generated client over
//! the channel; nothing else changes.

pub mod json;

use crate::pb::etcdserverpb::{
    auth_client::AuthClient, cluster_client::ClusterClient, kv_client::KvClient,
    lease_client::LeaseClient, maintenance_client::MaintenanceClient, watch_client::WatchClient,
};
use crate::pb::v3electionpb::election_client::ElectionClient;
use crate::pb::v3lockpb::lock_client::LockClient;
use axum::Router;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Status, Streaming};

/// The in-process channel to the member's gRPC services: the routes the client listener
/// serves to gRPC clients.
pub type Channel = tonic::service::Routes;

/// The path prefixes etcd 3.4 and 3.5 both serve the gateway under (`/v3alpha/` is gone).
const PREFIXES: [&str; 2] = ["/v3/", "/v3beta/"];

/// Requests of one streaming call decoded ahead of the service taking them.
const STREAM_REQUESTS_BUFFERED_MAX: usize = 16;

/// A request body no gRPC request could come from: the largest request the services take,
/// base64 (4/3) and JSON's field names around it; above it the body is not read.
fn body_bytes_max(request_bytes_max: usize) -> usize {
    request_bytes_max
        .saturating_mul(2)
        .saturating_add(64 * 1024)
}

/// A route's call: `method` of the generated client `client(channel)`.
macro_rules! call {
    ($client:ident . $method:ident) => {
        |c, r| async move { $client(c).$method(r).await }
    };
}

/// The gateway's routes for the member whose gRPC services `channel` reaches;
/// `request_bytes_max` is the largest request message those services take, and
/// `streams_max` the calls in flight at once (`--max-concurrent-streams`).
pub fn router(channel: Channel, request_bytes_max: usize, streams_max: u32) -> Router {
    Routes::new(channel, body_bytes_max(request_bytes_max), streams_max)
        .unary("kv/range", call!(kv.range))
        .unary("kv/put", call!(kv.put))
        .unary("kv/deleterange", call!(kv.delete_range))
        .unary("kv/txn", call!(kv.txn))
        .unary("kv/compaction", call!(kv.compact))
        .bidi_stream("watch", call!(watch.watch))
        .unary("lease/grant", call!(lease.lease_grant))
        .unary("lease/revoke", call!(lease.lease_revoke))
        .unary("kv/lease/revoke", call!(lease.lease_revoke))
        .bidi_stream("lease/keepalive", call!(lease.lease_keep_alive))
        .unary("lease/timetolive", call!(lease.lease_time_to_live))
        .unary("kv/lease/timetolive", call!(lease.lease_time_to_live))
        .unary("lease/leases", call!(lease.lease_leases))
        .unary("kv/lease/leases", call!(lease.lease_leases))
        .unary("cluster/member/add", call!(cluster.member_add))
        .unary("cluster/member/remove", call!(cluster.member_remove))
        .unary("cluster/member/update", call!(cluster.member_update))
        .unary("cluster/member/list", call!(cluster.member_list))
        .unary("cluster/member/promote", call!(cluster.member_promote))
        .unary("maintenance/alarm", call!(maintenance.alarm))
        .unary("maintenance/status", call!(maintenance.status))
        .unary("maintenance/defragment", call!(maintenance.defragment))
        .unary("maintenance/hash", call!(maintenance.hash))
        .unary("maintenance/hashkv", call!(maintenance.hash_kv))
        .server_stream("maintenance/snapshot", call!(maintenance.snapshot))
        .unary(
            "maintenance/transfer-leadership",
            call!(maintenance.move_leader),
        )
        .unary("maintenance/downgrade", call!(maintenance.downgrade))
        .unary("auth/enable", call!(auth.auth_enable))
        .unary("auth/disable", call!(auth.auth_disable))
        .unary("auth/status", call!(auth.auth_status))
        .unary("auth/authenticate", call!(auth.authenticate))
        .unary("auth/user/add", call!(auth.user_add))
        .unary("auth/user/get", call!(auth.user_get))
        .unary("auth/user/list", call!(auth.user_list))
        .unary("auth/user/delete", call!(auth.user_delete))
        .unary("auth/user/changepw", call!(auth.user_change_password))
        .unary("auth/user/grant", call!(auth.user_grant_role))
        .unary("auth/user/revoke", call!(auth.user_revoke_role))
        .unary("auth/role/add", call!(auth.role_add))
        .unary("auth/role/get", call!(auth.role_get))
        .unary("auth/role/list", call!(auth.role_list))
        .unary("auth/role/delete", call!(auth.role_delete))
        .unary("auth/role/grant", call!(auth.role_grant_permission))
        .unary("auth/role/revoke", call!(auth.role_revoke_permission))
        .unary("lock/lock", call!(lock.lock))
        .unary("lock/unlock", call!(lock.unlock))
        .unary("election/campaign", call!(election.campaign))
        .unary("election/proclaim", call!(election.proclaim))
        .unary("election/leader", call!(election.leader))
        .server_stream("election/observe", call!(election.observe))
        .unary("election/resign", call!(election.resign))
        .into_router()
}

// The generated clients over the channel. Responses are not limited here (the services
// bound what they send); requests are bounded by the services themselves.
fn kv(c: Channel) -> KvClient<Channel> {
    KvClient::new(c).max_decoding_message_size(usize::MAX)
}
fn watch(c: Channel) -> WatchClient<Channel> {
    WatchClient::new(c).max_decoding_message_size(usize::MAX)
}
fn lease(c: Channel) -> LeaseClient<Channel> {
    LeaseClient::new(c).max_decoding_message_size(usize::MAX)
}
fn cluster(c: Channel) -> ClusterClient<Channel> {
    ClusterClient::new(c).max_decoding_message_size(usize::MAX)
}
fn maintenance(c: Channel) -> MaintenanceClient<Channel> {
    MaintenanceClient::new(c).max_decoding_message_size(usize::MAX)
}
fn auth(c: Channel) -> AuthClient<Channel> {
    AuthClient::new(c).max_decoding_message_size(usize::MAX)
}
fn lock(c: Channel) -> LockClient<Channel> {
    LockClient::new(c).max_decoding_message_size(usize::MAX)
}
fn election(c: Channel) -> ElectionClient<Channel> {
    ElectionClient::new(c).max_decoding_message_size(usize::MAX)
}

/// The stream of requests a bidirectional call's service reads: the JSON values of the
/// HTTP request body, one after another, ending with the body or at the first that does
/// not decode (as etcd's gateway stops sending there).
pub type RequestStream<T> = ReceiverStream<T>;

/// The gateway's route table under construction: each method is registered once and served
/// under every prefix.
pub struct Routes {
    channel: Channel,
    body_bytes_max: usize,
    /// One permit per call in flight: etcd's gateway is a gRPC client of its member over one
    /// HTTP/2 connection, so `--max-concurrent-streams` bounds its calls together (one
    /// beyond waits until another ends, a stream holding its permit while it lasts).
    streams: Arc<Semaphore>,
    router: Router,
}

impl Routes {
    pub fn new(channel: Channel, body_bytes_max: usize, streams_max: u32) -> Routes {
        let permits = (streams_max as usize).min(Semaphore::MAX_PERMITS);
        Routes {
            channel,
            body_bytes_max,
            streams: Arc::new(Semaphore::new(permits)),
            router: Router::new(),
        }
    }

    /// A unary method: the body is one JSON request; the answer is one JSON response.
    pub fn unary<Req, Resp, F, Fut>(self, path: &str, call: F) -> Routes
    where
        Req: DeserializeOwned + Default + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Channel, tonic::Request<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>> + Send + 'static,
    {
        self.one_request(path, call, |resp| {
            let (md, message, _) = resp.into_parts();
            let mut r = json_response(StatusCode::OK, json::encode(&message));
            forward_metadata(&md, r.headers_mut());
            r
        })
    }

    /// A server-streaming method: the body is one JSON request; the answer streams.
    pub fn server_stream<Req, Resp, F, Fut>(self, path: &str, call: F) -> Routes
    where
        Req: DeserializeOwned + Default + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Channel, tonic::Request<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<tonic::Response<Streaming<Resp>>, Status>> + Send + 'static,
    {
        self.one_request(path, call, stream_response)
    }

    /// A method whose body is one JSON request; `respond` writes a successful call's answer.
    fn one_request<Req, Out, F, Fut>(
        self,
        path: &str,
        call: F,
        respond: fn(tonic::Response<Out>) -> Response,
    ) -> Routes
    where
        Req: DeserializeOwned + Default + Send + 'static,
        Out: Send + 'static,
        F: Fn(Channel, tonic::Request<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<tonic::Response<Out>, Status>> + Send + 'static,
    {
        let (channel, limit) = (self.channel.clone(), self.body_bytes_max);
        self.route(path, move |req: http::Request<Body>| {
            let (channel, call) = (channel.clone(), call.clone());
            async move {
                let (parts, body) = req.into_parts();
                let message = match read_request(body, limit).await {
                    Ok(m) => m,
                    Err(status) => return error_response(&status),
                };
                match call(channel, grpc_request(&parts, message)).await {
                    Ok(resp) => respond(resp),
                    Err(status) => error_response(&status),
                }
            }
        })
    }

    /// A bidirectional method: the body is a sequence of JSON requests, read as they
    /// arrive; the answer streams while the call lasts.
    pub fn bidi_stream<Req, Resp, F, Fut>(self, path: &str, call: F) -> Routes
    where
        Req: DeserializeOwned + Default + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Channel, tonic::Request<RequestStream<Req>>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<tonic::Response<Streaming<Resp>>, Status>> + Send + 'static,
    {
        let (channel, limit) = (self.channel.clone(), self.body_bytes_max);
        self.route(path, move |req: http::Request<Body>| {
            let (channel, call) = (channel.clone(), call.clone());
            async move {
                let (parts, body) = req.into_parts();
                let (tx, rx) = mpsc::channel(STREAM_REQUESTS_BUFFERED_MAX);
                tokio::spawn(feed_requests(body, tx, limit));
                let request = grpc_request(&parts, ReceiverStream::new(rx));
                match call(channel, request).await {
                    Ok(resp) => stream_response(resp),
                    Err(status) => error_response(&status),
                }
            }
        })
    }

    fn route<H, Fut>(mut self, path: &str, handler: H) -> Routes
    where
        H: Fn(http::Request<Body>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        for prefix in PREFIXES {
            let (handler, streams) = (handler.clone(), self.streams.clone());
            // Any method, sorted here: axum's own 405 adds an `Allow` header etcd's lacks.
            let method_router = axum::routing::any(move |req: http::Request<Body>| {
                let (handler, streams) = (handler.clone(), streams.clone());
                async move {
                    if req.method() != Method::POST {
                        return wrong_method(req.method());
                    }
                    let Ok(permit) = streams.acquire_owned().await else {
                        return error_response(&Status::unavailable("the gateway is closing"));
                    };
                    // The permit goes with the answer's body, until it is sent or dropped.
                    let (parts, body) = handler(req).await.into_parts();
                    let body = body.into_data_stream().map(move |chunk| {
                        let _held = &permit;
                        chunk
                    });
                    Response::from_parts(parts, Body::from_stream(body))
                }
            });
            self.router = self.router.route(&format!("{prefix}{path}"), method_router);
        }
        self
    }

    pub fn into_router(self) -> Router {
        self.router
    }
}

/// The answer for a path no route takes, gRPC or HTTP: gRPC's `Unimplemented` for a gRPC
/// request (as tonic answers), etcd's gateway's `Not Found` under its prefixes, Go's
/// `404 page not found` elsewhere, and CORS's empty 200 for any `OPTIONS`.
pub async fn fallback(req: http::Request<Body>) -> Response {
    let grpc = req
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        let (parts, ()) = Status::unimplemented("").into_http::<()>().into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    if req.method() == Method::OPTIONS {
        return with_cors(Response::new(Body::empty()));
    }
    let path = req.uri().path();
    if path == "/v3" {
        return redirect_to_dir(req.method(), "/v3/");
    }
    let text = if PREFIXES.iter().any(|p| path.starts_with(p)) {
        "Not Found\n"
    } else {
        "404 page not found\n"
    };
    text_response(StatusCode::NOT_FOUND, text)
}

/// Go's `ServeMux` sends a path naming a registered subtree without its slash to the
/// subtree (etcd's gateway is `/v3/`), with a small HTML body for GET and HEAD.
fn redirect_to_dir(method: &Method, to: &'static str) -> Response {
    let body = if method == Method::GET || method == Method::HEAD {
        Body::from(format!("<a href=\"{to}\">Moved Permanently</a>.\n\n"))
    } else {
        Body::empty()
    };
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    let h = r.headers_mut();
    if method == Method::GET || method == Method::HEAD {
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    h.insert("location", HeaderValue::from_static(to));
    with_cors(r)
}

fn wrong_method(method: &Method) -> Response {
    if method == Method::OPTIONS {
        return with_cors(Response::new(Body::empty()));
    }
    text_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

/// Reads a body of at most `limit` bytes and decodes its first JSON value.
async fn read_request<T: DeserializeOwned + Default>(
    body: Body,
    limit: usize,
) -> Result<T, Status> {
    let bytes = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large(limit)
            } else {
                Status::invalid_argument(e.to_string())
            }
        })?
        .to_bytes();
    json::decode(&bytes).map_err(|e| Status::invalid_argument(e.0))
}

fn too_large(limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "gateway: request body larger than max ({limit} bytes)"
    ))
}

/// Decodes the JSON values of a streaming call's body as they arrive and hands them to the
/// call; stops (the call's requests end) when the body ends, at the first value that does
/// not decode, at a value larger than `limit`, or when the call no longer reads.
async fn feed_requests<T: DeserializeOwned + Default>(
    mut body: Body,
    tx: mpsc::Sender<T>,
    limit: usize,
) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Every complete value in the buffer, in order.
        loop {
            match json::first_value(&buf) {
                Ok(Some((value, used))) => {
                    buf.drain(..used);
                    let Ok(message) = json::from_value(value) else {
                        return;
                    };
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                // A value cut short waits for the rest of the body.
                Err(e) if e.0 == "unexpected EOF" => break,
                Err(_) => return,
            }
        }
        if buf.len() > limit {
            return;
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(_)) | None => return,
        }
    }
}

/// A gRPC request carrying what the HTTP request says about its caller: the
/// `Authorization` header (which `api::credential` reads), `Grpc-Metadata-<key>` headers as
/// metadata `<key>` (as grpc-gateway forwards them: etcd's `token`, `hasleader`), and the
/// client certificate's CN on a TLS listener.
fn grpc_request<T>(parts: &http::request::Parts, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let md = request.metadata_mut();
    for (name, value) in &parts.headers {
        let key = if name == AUTHORIZATION {
            "authorization"
        } else if let Some(key) = name.as_str().strip_prefix("grpc-metadata-") {
            key
        } else {
            continue;
        };
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_bytes()),
        ) {
            md.append(key, value);
        }
    }
    if let Some(cn) = parts.extensions.get::<crate::server::tls::PeerCn>() {
        request.extensions_mut().insert(cn.clone());
    }
    request
}

/// gRPC response headers as grpc-gateway forwards them: `Grpc-Metadata-<key>` headers (not
/// gRPC's own `grpc-status` and `grpc-message`, which tonic's client folds in from the
/// trailers).
fn forward_metadata(md: &MetadataMap, headers: &mut HeaderMap) {
    for (key, value) in md.clone().into_headers() {
        let Some(key) = key else { continue };
        if key.as_str().starts_with("grpc-") {
            continue;
        }
        if let Ok(name) = HeaderName::try_from(format!("grpc-metadata-{key}")) {
            headers.append(name, value);
        }
    }
}

/// The response to a streaming call: 200, then one line per message (or the error that
/// ended the stream), written as each arrives.
fn stream_response<Resp: Serialize + Send + 'static>(
    resp: tonic::Response<Streaming<Resp>>,
) -> Response {
    let (md, messages, _) = resp.into_parts();
    let mut failed = false;
    let lines = messages.map_while(move |item| {
        if failed {
            return None;
        }
        let line = match item {
            Ok(message) => stream_line(&StreamResult { result: &message }),
            Err(status) => {
                failed = true;
                stream_line(&StreamFailure {
                    error: StreamError::new(&status),
                })
            }
        };
        Some(Ok::<_, Infallible>(Bytes::from(line)))
    });
    let mut r = Response::new(Body::from_stream(lines));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    forward_metadata(&md, r.headers_mut());
    with_cors(r)
}

#[derive(Serialize)]
struct StreamResult<'a, T> {
    result: &'a T,
}

#[derive(Serialize)]
struct StreamFailure<'a> {
    error: StreamError<'a>,
}

/// grpc-gateway's error in a stream (its `StreamError` message, zero fields omitted).
#[derive(Serialize)]
struct StreamError<'a> {
    grpc_code: i32,
    http_code: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    http_status: &'static str,
}

impl StreamError<'_> {
    fn new(status: &Status) -> StreamError<'_> {
        let http = http_status(status.code());
        StreamError {
            grpc_code: status.code() as i32,
            http_code: http.as_u16(),
            message: status.message(),
            http_status: http.canonical_reason().unwrap_or_default(),
        }
    }
}

fn stream_line<T: Serialize>(line: &T) -> Vec<u8> {
    let mut out = json::encode(line);
    out.push(b'\n');
    out
}

/// etcd's gateway's error body: the gRPC message twice and the gRPC code.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

fn error_response(status: &Status) -> Response {
    let body = json::encode(&ErrorBody {
        error: status.message(),
        message: status.message(),
        code: status.code() as i32,
    });
    json_response(http_status(status.code()), body)
}

/// The HTTP status grpc-gateway (v1, as in etcd 3.4) gives a gRPC code.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_cors(r)
}

/// A plain-text answer as Go's `http.Error` writes it.
pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response {
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    with_cors(r)
}

/// etcd's CORS handler around the client port's plain HTTP routes (`/version`, `/health`,
/// `/metrics`, ...): its headers on every answer, and an empty 200 to any OPTIONS.
pub async fn cors(req: http::Request<Body>, next: axum::middleware::Next) -> Response {
    if req.method() == Method::OPTIONS {
        return with_cors(Response::new(Body::empty()));
    }
    with_cors(next.run(req).await)
}

/// etcd answers every HTTP request on the client port with permissive CORS headers.
pub fn with_cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    r
}
