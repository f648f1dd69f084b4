//! The health endpoints of the client port: `/health` as etcd 3.5 answers it, and `/livez`,
//! `/readyz` (with their per-check sub-paths) as etcd 3.5.11+ answers them.
//!
//! What it owns: which checks each endpoint runs, their query parameters (`exclude`,
//! `serializable`, `verbose`) and etcd's bodies and statuses. What it does not do: decide
//! health itself: a check reads the member's alarms, leader and role, or waits for a read
//! (a ReadIndex round when linearizable) through the driver like any client read.
//!
//! `/health` (measured against etcd 3.4.23 and 3.5.1; oxcd reports 3.5, so it answers as
//! 3.5 does, with a `reason`): any raised alarm not named by an `exclude=` parameter is
//! unhealthy (`exclude=NOSPACE` lets a member that ran out of space still report healthy);
//! then, unless `serializable=true`, a member without a leader is unhealthy; then a read
//! (serializable or linearizable, as asked) must succeed. 200 `{"health":"true","reason":""}`,
//! or 503 with the reason.
//!
//! `/livez` and `/readyz` follow etcd 3.5.11's source (not measured: no 3.5.11 binary here).
//! `/livez` runs `serializable_read`; `/readyz` runs `data_corruption` (no CORRUPT alarm),
//! `serializable_read`, `linearizable_read` and `non_learner`. `exclude=<check>` skips a check
//! on the root path, `/livez/<check>` runs one. OK is 200 `ok\n` (after one `[+]<check> ok`
//! line per check with `verbose`); a failure is 503 with one `[+]`/`[-]<check> failed: <why>`
//! line per check. etcd runs the checks in Go's random map order; oxcd in the order above.
//! Only GET is served (HEAD too gets etcd's 405). `tests/health.rs` holds all this to
//! etcd 3.5.1's answers and 3.5.11's source.

use crate::node::{ALARM_CORRUPT, ALARM_NOSPACE};
use crate::server::driver::NodeHandle;
use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};

/// What the member says about itself for the checks.
struct Facts {
    /// The types of the raised alarms, in the order etcd lists them.
    alarms: Vec<i32>,
    has_leader: bool,
    is_learner: bool,
    /// Why the member stopped serving, if it did.
    stopped: Option<String>,
}

async fn facts(h: &NodeHandle) -> Result<Facts, String> {
    h.run(false, |d| {
        let alarms = d
            .member()
            .applier()
            .alarms()
            .iter()
            .map(|a| a.kind)
            .collect();
        Ok(Facts {
            alarms,
            has_leader: d.leader() != crate::raft::NONE,
            is_learner: d.member().raw().raft.is_learner,
            stopped: d.stopped().map(str::to_string),
        })
    })
    .await
    .map_err(|e| tonic::Status::from(e).message().to_string())
}

/// A read through the driver, as a client's would be served (after a ReadIndex round when
/// not `serializable`); etcd reads one key as root, so permissions do not matter.
async fn read(h: &NodeHandle, serializable: bool) -> Result<(), String> {
    h.run(!serializable, |_| Ok(()))
        .await
        .map_err(|e| tonic::Status::from(e).message().to_string())
}

fn alarm_name(kind: i32) -> &'static str {
    match kind {
        ALARM_NOSPACE => "NOSPACE",
        ALARM_CORRUPT => "CORRUPT",
        _ => "UNKNOWN",
    }
}

/// The query's values for `name` (`a=1&a=2`), empty ones skipped.
fn query_values<'a>(query: &'a Option<String>, name: &str) -> Vec<&'a str> {
    query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
        .collect()
}

fn query_has(query: &Option<String>, name: &str) -> bool {
    query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .any(|kv| kv.split('=').next() == Some(name))
}

pub fn router(h: NodeHandle) -> Router {
    let (health, livez, readyz) = (h.clone(), h.clone(), h);
    let (livez_one, readyz_one) = (livez.clone(), readyz.clone());
    Router::new()
        .route(
            "/health",
            get(move |q: RawQuery| health_handler(health.clone(), q.0)).only(),
        )
        .route(
            "/livez",
            get(move |q: RawQuery| checks(livez.clone(), Probe::Livez, None, q.0)).only(),
        )
        .route(
            "/livez/{check}",
            get(move |c: Path<String>, q: RawQuery| {
                checks(livez_one.clone(), Probe::Livez, Some(c.0), q.0)
            })
            .only(),
        )
        .route(
            "/readyz",
            get(move |q: RawQuery| checks(readyz.clone(), Probe::Readyz, None, q.0)).only(),
        )
        .route(
            "/readyz/{check}",
            get(move |c: Path<String>, q: RawQuery| {
                checks(readyz_one.clone(), Probe::Readyz, Some(c.0), q.0)
            })
            .only(),
        )
}

/// A GET route served as etcd's handlers are: 405 to any other method, HEAD included;
/// OPTIONS gets the empty 200 that etcd's CORS wrapper gives on the client port.
pub(super) trait GetOnly {
    fn only(self) -> Self;
}

impl GetOnly for MethodRouter {
    fn only(self) -> Self {
        self.head(wrong_method)
            .options(|| async { Response::new(axum::body::Body::empty()) })
            .fallback(wrong_method)
    }
}

/// Any method but GET, HEAD included (which axum's `get` would otherwise serve as a GET
/// without its body): etcd's handlers answer 405 to everything but GET.
async fn wrong_method() -> Response {
    let mut r = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed\n".into(),
    );
    r.headers_mut()
        .insert("allow", HeaderValue::from_static("GET"));
    r
}

/// A text answer as Go's `http.Error` writes it (and etcd's sniffed `text/plain` for OK:
/// `/health` sets no header of its own; `/livez` and `/readyz` add [`nosniff`]).
fn plain(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let headers = r.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status != StatusCode::OK {
        nosniff(&mut r);
    }
    r
}

fn nosniff(r: &mut Response) {
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

async fn health_handler(h: NodeHandle, query: Option<String>) -> Response {
    let excluded = query_values(&query, "exclude");
    let serializable = query_values(&query, "serializable").first() == Some(&"true");
    let verdict = async {
        let f = facts(&h).await?;
        if let Some(why) = f.stopped {
            return Err(why);
        }
        if let Some(kind) = f
            .alarms
            .iter()
            .find(|k| !excluded.contains(&alarm_name(**k)))
        {
            return Err(format!("ALARM {}", alarm_name(*kind)));
        }
        if !serializable && !f.has_leader {
            return Err("RAFT NO LEADER".to_string());
        }
        read(&h, serializable)
            .await
            .map_err(|e| format!("RANGE ERROR:{e}"))
    }
    .await;
    match verdict {
        Ok(()) => plain(StatusCode::OK, r#"{"health":"true","reason":""}"#.into()),
        Err(reason) => {
            let body = serde_json::json!({"health": "false", "reason": reason});
            plain(StatusCode::SERVICE_UNAVAILABLE, format!("{body}\n"))
        }
    }
}

#[derive(Clone, Copy)]
enum Probe {
    Livez,
    Readyz,
}

impl Probe {
    fn checks(self) -> &'static [&'static str] {
        match self {
            Probe::Livez => &["serializable_read"],
            Probe::Readyz => &[
                "data_corruption",
                "serializable_read",
                "linearizable_read",
                "non_learner",
            ],
        }
    }
}

async fn run_check(h: &NodeHandle, check: &str) -> Result<(), String> {
    match check {
        "data_corruption" => {
            let f = facts(h).await?;
            if f.alarms.contains(&ALARM_CORRUPT) {
                return Err("alarm activated: CORRUPT".to_string());
            }
            Ok(())
        }
        "serializable_read" => read(h, true).await,
        "linearizable_read" => read(h, false).await,
        "non_learner" => {
            if facts(h).await?.is_learner {
                return Err("not supported for learner".to_string());
            }
            Ok(())
        }
        other => unreachable!("no check {other}"),
    }
}

/// `/livez`, `/readyz` and their sub-paths: run the checks, report each.
async fn checks(
    h: NodeHandle,
    probe: Probe,
    one: Option<String>,
    query: Option<String>,
) -> Response {
    let names: Vec<&str> = match &one {
        Some(name) => match probe.checks().iter().find(|c| **c == name.as_str()) {
            Some(c) => vec![*c],
            None => return plain(StatusCode::NOT_FOUND, "404 page not found\n".into()),
        },
        None => {
            let excluded = query_values(&query, "exclude");
            probe
                .checks()
                .iter()
                .copied()
                .filter(|c| !excluded.contains(c))
                .collect()
        }
    };
    let mut report = String::new();
    let mut ok = true;
    for name in names {
        match run_check(&h, name).await {
            Ok(()) => report.push_str(&format!("[+]{name} ok\n")),
            Err(why) => {
                ok = false;
                report.push_str(&format!("[-]{name} failed: {why}\n"));
            }
        }
    }
    if !ok {
        return plain(StatusCode::SERVICE_UNAVAILABLE, format!("{report}\n"));
    }
    let mut body = String::new();
    if query_has(&query, "verbose") {
        body.push_str(&report);
    }
    body.push_str("ok\n");
    // etcd 3.5.11's probe handler sets it on success too, unlike `/health`.
    let mut r = plain(StatusCode::OK, body);
    nosniff(&mut r);
    r
}
