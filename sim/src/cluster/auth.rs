//! The auth workload and its check (`sim cluster --auth`): an admin sets auth up before the
//! faults (users `root` and `writer`, role `w` with read-write on the keys `auth/0..`, auth
//! enabled), then grants and revokes `w`'s permission on those keys while `writer` reads
//! and writes them, and one key it is never granted, through any member, re-authenticating
//! when a member forgets its token. After the faults the admin turns auth off again, so that
//! the run's other checks (liveness, equal hashes) read as anyone.
//!
//! The check: every read or write that succeeded was permitted by the auth state at the
//! point of the log where it applied, and every one refused with "permission denied" was
//! not permitted at some moment while it was in flight. Orders come from what the cluster
//! said, never from a member's own view:
//! - A change's answer carries the store revision it applied at (`h`). A write that made
//!   revision `r` applied after it when `h < r` and before it otherwise; a read at revision
//!   `r` applied after it when `h < r`, before it when `h > r`, and either way when `h == r`.
//! - A request sent after a change was acknowledged applies after it, and one answered
//!   before a change was sent applied before it.
//! - A change whose outcome is unknown may apply at any later point: the admin leaves its
//!   key alone from then on, and the check skips the key from the revision it was sent at
//!   (for successes) or the moment it was sent (for refusals). Turning auth off at the end
//!   is such a change for every key.
//!
//! This module does not own the faults or the run's other checks ([`super`]).

use super::{OP_TIMEOUT, client_url};
use bytes::Bytes;
use oxcd::pb::authpb;
use oxcd::pb::etcdserverpb::{self as pb, auth_client::AuthClient, kv_client::KvClient};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tonic::transport::Channel;

/// Keys `auth/0..GRANTED` are granted to the writer at setup and toggled during the run;
/// key `auth/GRANTED` never is.
const GRANTED: u32 = 3;
const ROOT_PASSWORD: &str = "root-pw";
const WRITER_PASSWORD: &str = "writer-pw";
/// How long the setup and the teardown may take, at most.
const SETUP_BOUND: Duration = Duration::from_secs(60);
/// A client's pause between operations, at most.
const THINK_MS_MAX: u64 = 40;

fn key(k: u32) -> Bytes {
    Bytes::from(format!("auth/{k}"))
}

/// A grant or revoke of `w`'s permission on one key that may have applied.
#[derive(Clone, Debug)]
struct Change {
    grant: bool,
    sent: Instant,
    /// The highest store revision seen when it was sent: it applies at this one or later.
    sent_revision: i64,
    /// Acknowledged: when, and the store revision it applied at. `None`: unknown outcome.
    acked: Option<(Instant, i64)>,
}

/// A writer's operation and how it ended.
#[derive(Clone, Debug)]
struct Attempt {
    key: u32,
    write: bool,
    sent: Instant,
    answered: Instant,
    /// `Some(revision)`: it succeeded at that store revision; `None`: permission denied.
    revision: Option<i64>,
}

/// What the run recorded, shared by the admin and the writer.
#[derive(Default)]
pub struct AuthLog {
    revision_seen: i64,
    /// Per key, the changes that applied or may have, in the order they were sent.
    changes: BTreeMap<u32, Vec<Change>>,
    attempts: Vec<Attempt>,
    /// The revision seen when the admin sent the request that turns auth off: anything at a
    /// later revision may have been permitted without a check.
    disabled_from: Option<i64>,
    problems: Vec<String>,
}

impl AuthLog {
    fn saw(&mut self, revision: i64) {
        self.revision_seen = self.revision_seen.max(revision);
    }

    /// Something that stops the run's auth check from holding (the setup failed).
    pub fn problem(&mut self, why: String) {
        self.problems.push(why);
    }

    /// Operations (changes and the writer's attempts) recorded.
    pub fn ops(&self) -> usize {
        self.attempts.len() + self.changes.values().map(Vec::len).sum::<usize>()
    }
}

pub type Shared = Arc<Mutex<AuthLog>>;

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Ok(v) = token.parse() {
        r.metadata_mut().insert("token", v);
    }
    r
}

async fn channel(m: usize) -> Option<Channel> {
    let endpoint = tonic::transport::Endpoint::from_shared(client_url(m)).ok()?;
    tokio::time::timeout(OP_TIMEOUT, endpoint.connect())
        .await
        .ok()?
        .ok()
}

/// How a call ended.
enum Answer<T> {
    Ok(T),
    /// Refused with this message: it did not apply.
    Refused(String),
    /// No answer or an error that does not say: it may have applied.
    Unknown,
}

/// Refusals that say the request did not apply (everything else may have).
fn refused(status: &tonic::Status) -> bool {
    status.message().starts_with("etcdserver: ")
        && !status.message().contains("timed out")
        && !status.message().contains("leader changed")
        && !status.message().contains("stopped")
}

async fn call<T, F>(m: usize, f: impl FnOnce(Channel) -> F) -> Answer<T>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let Some(ch) = channel(m).await else {
        // Not connected: never sent.
        return Answer::Refused("no connection".into());
    };
    match tokio::time::timeout(OP_TIMEOUT, f(ch)).await {
        Ok(Ok(r)) => Answer::Ok(r.into_inner()),
        Ok(Err(s)) if refused(&s) => Answer::Refused(s.message().to_string()),
        _ => Answer::Unknown,
    }
}

async fn authenticate(m: usize, name: &str, password: &str) -> Option<String> {
    let req = pb::AuthenticateRequest {
        name: name.into(),
        password: password.into(),
    };
    match call(m, |ch| async move {
        AuthClient::new(ch).authenticate(req).await
    })
    .await
    {
        Answer::Ok(r) => Some(r.token),
        _ => None,
    }
}

/// One setup step (before auth is on), repeated until it is acknowledged or refused as
/// already done (an earlier try applied); its answer, if it had one.
async fn step<T, F>(
    nodes: usize,
    rng: &mut ChaCha8Rng,
    f: impl Fn(AuthClient<Channel>) -> F,
) -> Result<Option<T>, String>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let started = Instant::now();
    while started.elapsed() < SETUP_BOUND {
        let m = rng.gen_range(0..nodes);
        match call(m, |ch| f(AuthClient::new(ch))).await {
            Answer::Ok(r) => return Ok(Some(r)),
            Answer::Refused(why) if why.contains("already exists") => return Ok(None),
            Answer::Refused(why) => {
                if std::env::var_os("SIM_DEBUG").is_some() {
                    eprintln!("auth setup at m{m}: {why}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Answer::Unknown => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Err("an auth setup step did not complete".into())
}

/// Sets auth up (before the faults): its errors are the run's violations.
pub async fn setup(seed: u64, nodes: usize, log: Shared) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6175_7468_7375);
    let user = |name: &str, password: &str| pb::AuthUserAddRequest {
        name: name.into(),
        password: password.into(),
        ..Default::default()
    };
    let (root, writer) = (user("root", ROOT_PASSWORD), user("writer", WRITER_PASSWORD));
    step(nodes, &mut rng, |mut c| {
        let r = root.clone();
        async move { c.user_add(r).await }
    })
    .await?;
    step(nodes, &mut rng, |mut c| async move {
        c.user_grant_role(pb::AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        })
        .await
    })
    .await?;
    step(nodes, &mut rng, |mut c| {
        let w = writer.clone();
        async move { c.user_add(w).await }
    })
    .await?;
    step(nodes, &mut rng, |mut c| async move {
        c.role_add(pb::AuthRoleAddRequest { name: "w".into() })
            .await
    })
    .await?;
    for k in 0..GRANTED {
        step(nodes, &mut rng, move |mut c| async move {
            c.role_grant_permission(grant_request(k)).await
        })
        .await?;
    }
    step(nodes, &mut rng, |mut c| async move {
        c.user_grant_role(pb::AuthUserGrantRoleRequest {
            user: "writer".into(),
            role: "w".into(),
        })
        .await
    })
    .await?;
    let enabled = step(nodes, &mut rng, |mut c| async move {
        c.auth_enable(pb::AuthEnableRequest {}).await
    })
    .await?;
    let revision = enabled.and_then(|r| r.header).map_or(0, |h| h.revision);
    if std::env::var_os("SIM_DEBUG").is_some() {
        eprintln!("auth enabled at revision {revision}");
    }
    log.lock().expect("one thread").saw(revision);
    Ok(())
}

fn grant_request(k: u32) -> pb::AuthRoleGrantPermissionRequest {
    pb::AuthRoleGrantPermissionRequest {
        name: "w".into(),
        perm: Some(authpb::Permission {
            perm_type: authpb::permission::Type::Readwrite as i32,
            key: key(k),
            range_end: Bytes::new(),
        }),
    }
}

/// A token for `name` from some member, before `deadline`.
async fn login(
    nodes: usize,
    rng: &mut ChaCha8Rng,
    name: &str,
    password: &str,
    deadline: Instant,
) -> Option<String> {
    while Instant::now() < deadline {
        let m = rng.gen_range(0..nodes);
        if let Some(t) = authenticate(m, name, password).await {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Grants and revokes `w`'s permission on keys whose state is known, until `until`; then
/// turns auth off again (bounded).
pub async fn admin(seed: u64, nodes: usize, until: Instant, log: Shared) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6164_6d69_6e);
    let deadline = until + SETUP_BOUND;
    let Some(mut token) = login(nodes, &mut rng, "root", ROOT_PASSWORD, deadline).await else {
        let why = "the admin could not log in".to_string();
        log.lock().expect("one thread").problem(why);
        return;
    };
    // Per key: granted now, or `None` once a change's outcome is unknown.
    let mut granted: BTreeMap<u32, Option<bool>> = (0..GRANTED).map(|k| (k, Some(true))).collect();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=THINK_MS_MAX * 5))).await;
        let known: Vec<(u32, bool)> = granted
            .iter()
            .filter_map(|(&k, g)| g.map(|g| (k, g)))
            .collect();
        if known.is_empty() {
            break;
        }
        let (k, was) = known[rng.gen_range(0..known.len())];
        let grant = !was;
        let m = rng.gen_range(0..nodes);
        let sent = Instant::now();
        let sent_revision = log.lock().expect("one thread").revision_seen;
        let t = token.clone();
        let answer = call(m, |ch| async move {
            let mut c = AuthClient::new(ch);
            if grant {
                let r = c
                    .role_grant_permission(with_token(grant_request(k), &t))
                    .await;
                r.map(|r| r.map(|r| r.header))
            } else {
                let req = pb::AuthRoleRevokePermissionRequest {
                    role: "w".into(),
                    key: key(k),
                    range_end: Bytes::new(),
                };
                let r = c.role_revoke_permission(with_token(req, &t)).await;
                r.map(|r| r.map(|r| r.header))
            }
        })
        .await;
        let acked = match answer {
            Answer::Ok(header) => {
                let revision = header.map_or(0, |h| h.revision);
                granted.insert(k, Some(grant));
                Some((Instant::now(), revision))
            }
            Answer::Refused(why) => {
                if why.contains("invalid auth token") {
                    let again = login(nodes, &mut rng, "root", ROOT_PASSWORD, deadline).await;
                    token = again.unwrap_or(token);
                }
                continue;
            }
            Answer::Unknown => {
                granted.insert(k, None);
                None
            }
        };
        let mut log = log.lock().expect("one thread");
        if let Some((_, revision)) = acked {
            log.saw(revision);
        }
        log.changes.entry(k).or_default().push(Change {
            grant,
            sent,
            sent_revision,
            acked,
        });
    }
    if std::env::var_os("SIM_DEBUG").is_some() {
        eprintln!(
            "auth admin done: {} changes",
            log.lock().expect("one thread").ops()
        );
    }
    {
        let mut log = log.lock().expect("one thread");
        log.disabled_from = Some(log.revision_seen);
    }
    if let Err(e) = disable(nodes, &mut rng, token, until + SETUP_BOUND).await {
        log.lock().expect("one thread").problems.push(e);
    }
}

/// Turns auth off as root, logging in again when a member forgot the token.
async fn disable(
    nodes: usize,
    rng: &mut ChaCha8Rng,
    mut token: String,
    deadline: Instant,
) -> Result<(), String> {
    while Instant::now() < deadline {
        let m = rng.gen_range(0..nodes);
        let t = token.clone();
        let req = with_token(pb::AuthDisableRequest {}, &t);
        match call(m, |ch| async move {
            AuthClient::new(ch).auth_disable(req).await
        })
        .await
        {
            Answer::Ok(_) => return Ok(()),
            Answer::Refused(why) if why.contains("invalid auth token") => {
                let again = login(nodes, rng, "root", ROOT_PASSWORD, deadline).await;
                token = again.unwrap_or(token);
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Err("auth could not be turned off after the faults".into())
}

/// The writer: reads and writes the keys `auth/0..=GRANTED` through any member until
/// `until`, recording what succeeded and what was refused for permission.
pub async fn writer(seed: u64, nodes: usize, until: Instant, log: Shared) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7772_6974_6572);
    let Some(mut token) = login(nodes, &mut rng, "writer", WRITER_PASSWORD, until).await else {
        let why = "the writer could not log in".to_string();
        log.lock().expect("one thread").problem(why);
        return;
    };
    let mut n = 0u64;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=THINK_MS_MAX))).await;
        if Instant::now() >= until {
            break;
        }
        n += 1;
        let k = rng.gen_range(0..=GRANTED);
        let write = rng.gen_bool(0.7);
        let m = rng.gen_range(0..nodes);
        let t = token.clone();
        let sent = Instant::now();
        let answer = call(m, |ch| async move {
            let mut c = KvClient::new(ch);
            if write {
                let req = pb::PutRequest {
                    key: key(k),
                    value: Bytes::from(n.to_string()),
                    ..Default::default()
                };
                let r = c.put(with_token(req, &t)).await;
                r.map(|r| r.map(|r| r.header))
            } else {
                let req = pb::RangeRequest {
                    key: key(k),
                    ..Default::default()
                };
                let r = c.range(with_token(req, &t)).await;
                r.map(|r| r.map(|r| r.header))
            }
        })
        .await;
        let revision = match answer {
            Answer::Ok(header) => Some(header.map_or(0, |h| h.revision)),
            Answer::Refused(why) if why.contains("permission denied") => None,
            Answer::Refused(why) => {
                if why.contains("invalid auth token") {
                    match login(nodes, &mut rng, "writer", WRITER_PASSWORD, until).await {
                        Some(t) => token = t,
                        None => break,
                    }
                }
                continue;
            }
            Answer::Unknown => continue,
        };
        let mut log = log.lock().expect("one thread");
        if let Some(r) = revision {
            log.saw(r);
        }
        log.attempts.push(Attempt {
            key: k,
            write,
            sent,
            answered: Instant::now(),
            revision,
        });
    }
}

/// Every success was permitted where it applied and every refusal was not, at some moment
/// while it was in flight (see the module docs).
pub fn check(log: &AuthLog) -> Vec<String> {
    if std::env::var_os("SIM_DEBUG").is_some() {
        let ok = log.attempts.iter().filter(|a| a.revision.is_some()).count();
        let all: Vec<&Change> = log.changes.values().flatten().collect();
        let acked = all.iter().filter(|c| c.acked.is_some()).count();
        eprintln!(
            "auth: {} attempts ({ok} succeeded, {} denied), {} changes ({acked} acknowledged)",
            log.attempts.len(),
            log.attempts.len() - ok,
            all.len()
        );
    }
    let mut out: Vec<String> = log.problems.iter().map(|p| format!("auth: {p}")).collect();
    let none = Vec::new();
    for a in &log.attempts {
        let what = if a.write { "write" } else { "read" };
        let changes = log.changes.get(&a.key).unwrap_or(&none);
        match a.revision {
            Some(r) if log.disabled_from.is_some_and(|d| r > d) => {}
            Some(r) if a.key == GRANTED => out.push(format!(
                "auth: the writer's {what} of auth/{} succeeded at revision {r}, a key it was \
                 never granted",
                a.key
            )),
            Some(r) => {
                if !may_be_granted_at(changes, r, a.write) {
                    out.push(format!(
                        "auth: the writer's {what} of auth/{} succeeded at revision {r} while \
                         its permission was revoked (changes {})",
                        a.key,
                        describe(changes)
                    ));
                }
            }
            None if a.key == GRANTED => {}
            None => {
                if surely_granted_during(changes, a.sent, a.answered) {
                    out.push(format!(
                        "auth: the writer's {what} of auth/{} was refused although its \
                         permission was granted the whole time it was in flight (changes {})",
                        a.key,
                        describe(changes)
                    ));
                }
            }
        }
        if out.len() > 10 {
            break;
        }
    }
    out
}

/// A key's changes, short: `+7` a grant acknowledged at revision 7, `-?` a revoke of unknown
/// outcome.
fn describe(changes: &[Change]) -> String {
    let each: Vec<String> = changes
        .iter()
        .map(|c| {
            let sign = if c.grant { '+' } else { '-' };
            match c.acked {
                Some((_, h)) => format!("{sign}{h}"),
                None => format!("{sign}?"),
            }
        })
        .collect();
    format!("[{}]", each.join(" "))
}

/// Whether the key may have been granted where an operation at store revision `r` applied
/// (a write made `r`; a read saw it).
fn may_be_granted_at(changes: &[Change], r: i64, write: bool) -> bool {
    let mut before = true; // granted at setup
    let mut either = Vec::new();
    for c in changes {
        match c.acked {
            None if c.sent_revision < r || (!write && c.sent_revision == r) => return true,
            None => {}
            Some((_, h)) if h < r => before = c.grant,
            Some((_, h)) if h == r && !write => either.push(c.grant),
            Some(_) => {}
        }
    }
    before || either.contains(&true)
}

/// Whether the key was granted at every moment of `[sent, answered]`: every change that
/// may have applied by `answered` was acknowledged before `sent`, and the last was a grant.
fn surely_granted_during(changes: &[Change], sent: Instant, answered: Instant) -> bool {
    let mut granted = true;
    for c in changes.iter().filter(|c| c.sent < answered) {
        match c.acked {
            Some((at, _)) if at <= sent => granted = c.grant,
            _ => return false,
        }
    }
    granted
}
