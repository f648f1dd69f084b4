//! etcd 3.4's v2 auth API: `/v2/auth/enable`, `/v2/auth/users[/<name>]` and
//! `/v2/auth/roles[/<name>]`, with etcd's bodies, statuses and messages; and the checks the
//! rest of the v2 API makes once v2 auth is on: HTTP Basic credentials (or, with
//! `--client-cert-auth` and no credentials, the client certificate's CN as the user) against
//! each key's read or write patterns, `guest` for requests without either, and `root` for the
//! auth API and for changes to the members.
//!
//! What it does not do: decide anything about the auth state. Changes are
//! [`AuthCommand`]s proposed through the log and applied by the core's [`v2::V2Auth`], which
//! holds etcd's rules; this module hashes passwords (bcrypt, cost 10 as etcd's) before
//! proposing and checks them when requests arrive, with the v3 auth's `hash` and `verify`.
//! The v2 auth state is etcd's v2 auth, apart from the v3 auth of the gRPC API, as in etcd.

use super::{V2State, go_json, json_response, not_allowed, percent_decode};
use crate::api::gateway::with_cors;
use crate::node::{Applied, ApplyError, Command};
use crate::server::error::Error;
use crate::server::tls::PeerCn;
use crate::v2::auth::{AuthCommand, AuthReply, Perms, Role, User, UserWrite};
use crate::v2::{self, V2Auth, V2Error, error as code};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// etcd's bcrypt cost for v2 passwords (Go's default).
const BCRYPT_COST: u32 = 10;

/// Who a request is, for the v2 auth checks.
pub(super) enum Caller {
    /// Auth is off: anything goes.
    Anyone,
    /// No credentials and no certificate naming a user.
    Guest(V2Auth),
    /// Credentials that do not hold (a bad header, an unknown user, a wrong password).
    Nobody,
    /// A user whose password (or certificate) checked out, and the auth state it was read in.
    User(User, V2Auth),
}

impl Caller {
    /// Whether the caller holds `root` (or auth is off).
    fn is_root(&self) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::User(u, _) => u.has_role(v2::auth::ROOT),
            Caller::Guest(_) | Caller::Nobody => false,
        }
    }
}

/// The user and password of an HTTP Basic `Authorization` header, as Go's `BasicAuth` reads it.
fn basic_auth(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("Basic ") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The auth state if auth is on, for [`caller_in`]; read in the driver, so that a request
/// that goes there anyway reads it on the same trip.
pub(super) fn enabled_state(d: &crate::server::driver::Driver) -> Option<V2Auth> {
    let a = d.member().applier().v2().store.auth();
    a.enabled().then(|| a.clone())
}

/// Who sent a request with `headers` over a connection whose client certificate named `cn`.
pub(super) async fn caller(s: &V2State, headers: &HeaderMap, cn: Option<&PeerCn>) -> Caller {
    match s.h.run(false, |d| Ok(enabled_state(d))).await {
        Ok(auth) => caller_in(auth, headers, cn).await,
        Err(_) => Caller::Nobody,
    }
}

/// [`caller`], given the auth state (`None`: auth is off).
pub(super) async fn caller_in(
    auth: Option<V2Auth>,
    headers: &HeaderMap,
    cn: Option<&PeerCn>,
) -> Caller {
    let Some(auth) = auth else {
        return Caller::Anyone;
    };
    let header = headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if header.is_empty() {
        let by_cert = cn.and_then(|c| c.0.as_deref()).and_then(|cn| auth.user(cn));
        return match by_cert {
            Some(u) => Caller::User(u, auth),
            None => Caller::Guest(auth),
        };
    }
    let Some((name, password)) = basic_auth(&header) else {
        return Caller::Nobody;
    };
    let Some(user) = auth.user(&name) else {
        return Caller::Nobody;
    };
    let hashed = Bytes::from(user.password.clone());
    if crate::api::auth::verify(password, hashed).await {
        Caller::User(user, auth)
    } else {
        Caller::Nobody
    }
}

/// etcd's 401 for a key request the caller may not make (error 110).
pub(super) fn key_denied(s: &V2State) -> Response {
    let e = V2Error::request(code::UNAUTHORIZED, "Insufficient credentials");
    super::error_response(&s.h, &e)
}

/// Whether the caller may read (GET, HEAD) or write `key`, the request's path as it came,
/// given the auth state (`None`: auth is off).
pub(super) async fn key_allowed(
    auth: Option<V2Auth>,
    headers: &HeaderMap,
    cn: Option<&PeerCn>,
    key: &str,
    write: bool,
    recursive: bool,
) -> bool {
    match caller_in(auth, headers, cn).await {
        Caller::Anyone => true,
        Caller::Nobody => false,
        Caller::Guest(a) => a.allows(None, key, write, recursive),
        Caller::User(u, a) => a.allows(Some(&u), key, write, recursive),
    }
}

/// etcd's 401 for an endpoint that needs `root` (no cluster ID: etcd sends it before that).
fn no_auth() -> Response {
    let body = serde_json::json!({ "message": "Insufficient credentials" }).to_string();
    let mut r = (StatusCode::UNAUTHORIZED, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    with_cors(r)
}

/// `None` if the caller holds `root` (or auth is off), else etcd's 401.
pub(super) async fn require_root(
    s: &V2State,
    headers: &HeaderMap,
    cn: Option<&PeerCn>,
) -> Option<Response> {
    (!caller(s, headers, cn).await.is_root()).then(no_auth)
}

fn message(s: &V2State, status: StatusCode, m: &str) -> Response {
    super::message(&s.h, status, m)
}

fn ok_json(s: &V2State, status: StatusCode, body: &impl Serialize) -> Response {
    let text = go_json(serde_json::to_string(body).expect("plain data")) + "\n";
    json_response(&s.h, status, text)
}

fn ok_empty(s: &V2State) -> Response {
    json_response(&s.h, StatusCode::OK, String::new())
}

// JSON shapes, with etcd's field names.

#[derive(Serialize, Deserialize, Default)]
struct KvJson {
    #[serde(default)]
    read: Option<Vec<String>>,
    #[serde(default)]
    write: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Default)]
struct PermsJson {
    #[serde(default)]
    kv: KvJson,
}

impl From<&Perms> for PermsJson {
    fn from(p: &Perms) -> Self {
        PermsJson {
            kv: KvJson {
                read: p.read.clone(),
                write: p.write.clone(),
            },
        }
    }
}

impl From<PermsJson> for Perms {
    fn from(p: PermsJson) -> Self {
        Perms {
            read: p.kv.read,
            write: p.kv.write,
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct RoleJson {
    #[serde(default)]
    role: String,
    #[serde(default)]
    permissions: PermsJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<PermsJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoke: Option<PermsJson>,
}

impl From<&Role> for RoleJson {
    fn from(r: &Role) -> Self {
        RoleJson {
            role: r.name.clone(),
            permissions: (&r.perms).into(),
            grant: None,
            revoke: None,
        }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct UserJson {
    #[serde(default)]
    user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    password: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoke: Option<Vec<String>>,
}

/// A user with its roles spelled out (GET answers).
#[derive(Serialize)]
struct UserWithRoles {
    user: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<RoleJson>,
}

/// The first JSON value of `body`, as Go's `json.Decoder` reads it (what follows is ignored).
fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Option<T> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .next()?
        .ok()
}

/// The name under `/v2/auth/<what>/`: `Ok(None)` for the list, `Err` for a deeper path.
fn item_name(uri: &Uri, what: &str) -> Result<Option<String>, ()> {
    let path = percent_decode(uri.path()).unwrap_or_else(|_| uri.path().to_string());
    let rest = path
        .strip_prefix("/v2/auth/")
        .and_then(|r| r.strip_prefix(what))
        .unwrap_or("");
    let cleaned = v2::store::clean(rest);
    let names: Vec<&str> = cleaned.split('/').filter(|p| !p.is_empty()).collect();
    match names.as_slice() {
        [] => Ok(None),
        [name] => Ok(Some(name.to_string())),
        _ => Err(()),
    }
}

async fn propose(s: &V2State, cmd: AuthCommand) -> Result<AuthReply, Response> {
    match s.h.propose(Command::V2Auth(cmd)).await {
        Ok((Applied::V2Auth(reply), _)) => Ok(reply),
        Ok((other, _)) => Err(message(
            s,
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("unexpected answer {other:?}"),
        )),
        Err(Error::Apply(ApplyError::V2Auth(e))) => Err(message(
            s,
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &e.message,
        )),
        Err(e) => Err(message(
            s,
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
        )),
    }
}

async fn auth_state(s: &V2State) -> V2Auth {
    s.h.run(false, |d| {
        Ok(d.member().applier().v2().store.auth().clone())
    })
    .await
    .unwrap_or_default()
}

/// `/v2/auth/enable`.
pub(super) async fn enable(
    State(s): State<V2State>,
    method: Method,
    headers: HeaderMap,
    cn: Option<Extension<PeerCn>>,
) -> Response {
    if !matches!(method, Method::GET | Method::PUT | Method::DELETE) {
        return not_allowed("GET,PUT,DELETE");
    }
    if method != Method::GET
        && let Some(denied) = require_root(&s, &headers, cn.as_deref()).await
    {
        return denied;
    }
    if method == Method::GET {
        let on = auth_state(&s).await.enabled();
        return ok_json(&s, StatusCode::OK, &serde_json::json!({ "enabled": on }));
    }
    answer(
        &s,
        propose(&s, AuthCommand::SetEnabled(method == Method::PUT)).await,
    )
}

/// etcd's checks before a users or roles request, in its order: the path (one name at
/// most), the method, then `root`. The name, or the answer that refuses the request.
async fn admit(
    s: &V2State,
    what: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    cn: Option<&PeerCn>,
) -> Result<Option<String>, Response> {
    let name = item_name(uri, what).map_err(|()| invalid_path())?;
    let allow = if name.is_some() {
        "GET,PUT,DELETE"
    } else {
        "GET"
    };
    if !allow.split(',').any(|m| m == method.as_str()) {
        return Err(not_allowed(allow));
    }
    match require_root(s, headers, cn).await {
        Some(denied) => Err(denied),
        None => Ok(name),
    }
}

/// `/v2/auth/users`, `/v2/auth/users/<name>`.
pub(super) async fn users(
    State(s): State<V2State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    cn: Option<Extension<PeerCn>>,
    body: Bytes,
) -> Response {
    let name = match admit(&s, "users", &method, &uri, &headers, cn.as_deref()).await {
        Ok(name) => name,
        Err(r) => return r,
    };
    let Some(name) = name else {
        let auth = auth_state(&s).await;
        let users: Vec<UserWithRoles> = auth
            .users()
            .map(|u| UserWithRoles {
                roles: roles_of(&auth, &u)
                    .into_iter()
                    .flatten()
                    .map(|r| (&r).into())
                    .collect(),
                user: u.name,
            })
            .collect();
        let users = (!users.is_empty()).then_some(users);
        #[derive(Serialize)]
        struct Users {
            users: Option<Vec<UserWithRoles>>,
        }
        return ok_json(&s, StatusCode::OK, &Users { users });
    };
    match method {
        Method::GET => {
            let auth = auth_state(&s).await;
            let Some(u) = auth.user(&name) else {
                let m = format!("auth: User {name} does not exist.");
                return message(&s, StatusCode::NOT_FOUND, &m);
            };
            let mut roles = Vec::new();
            for r in roles_of(&auth, &u) {
                match r {
                    Ok(r) => roles.push(RoleJson::from(&r)),
                    Err(missing) => {
                        let m = format!("auth: Role {missing} does not exist.");
                        return message(&s, StatusCode::NOT_FOUND, &m);
                    }
                }
            }
            ok_json(
                &s,
                StatusCode::OK,
                &UserWithRoles {
                    user: u.name,
                    roles,
                },
            )
        }
        Method::PUT => put_user(&s, name, &body).await,
        _ => answer(&s, propose(&s, AuthCommand::DeleteUser { name }).await),
    }
}

/// `u`'s roles in order: each role, or the name of one that does not exist.
fn roles_of(auth: &V2Auth, u: &User) -> Vec<Result<Role, String>> {
    u.roles
        .iter()
        .flatten()
        .map(|r| auth.role(r).ok_or_else(|| r.clone()))
        .collect()
}

async fn put_user(s: &V2State, name: String, body: &[u8]) -> Response {
    let Some(u) = decode::<UserJson>(body) else {
        return message(s, StatusCode::BAD_REQUEST, "Invalid JSON in request body.");
    };
    if u.user != name {
        let m = "User JSON name does not match the name in the URL";
        return message(s, StatusCode::BAD_REQUEST, m);
    }
    let (grant, revoke) = (u.grant.unwrap_or_default(), u.revoke.unwrap_or_default());
    let has_roles = u.roles.as_ref().is_some_and(|r| !r.is_empty());
    let mode = if grant.is_empty() && revoke.is_empty() {
        if has_roles {
            UserWrite::Create
        } else {
            UserWrite::CreateOrUpdate
        }
    } else if has_roles {
        let m = "User JSON contains both roles and grant/revoke";
        return message(s, StatusCode::BAD_REQUEST, m);
    } else {
        UserWrite::Update
    };
    let password = if u.password.is_empty() {
        String::new()
    } else {
        match crate::api::auth::hash(u.password, BCRYPT_COST).await {
            Ok(h) => String::from_utf8_lossy(&h).into_owned(),
            Err(st) => return message(s, StatusCode::INTERNAL_SERVER_ERROR, st.message()),
        }
    };
    let cmd = AuthCommand::PutUser {
        mode,
        name,
        password,
        roles: u.roles,
        grant,
        revoke,
    };
    answer(s, propose(s, cmd).await)
}

fn invalid_path() -> Response {
    let body = serde_json::json!({ "message": "Invalid path" }).to_string();
    let mut r = (StatusCode::BAD_REQUEST, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    with_cors(r)
}

/// `/v2/auth/roles`, `/v2/auth/roles/<name>`.
pub(super) async fn roles(
    State(s): State<V2State>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    cn: Option<Extension<PeerCn>>,
    body: Bytes,
) -> Response {
    let name = match admit(&s, "roles", &method, &uri, &headers, cn.as_deref()).await {
        Ok(name) => name,
        Err(r) => return r,
    };
    let Some(name) = name else {
        let roles: Vec<RoleJson> = auth_state(&s)
            .await
            .roles()
            .iter()
            .map(RoleJson::from)
            .collect();
        #[derive(Serialize)]
        struct Roles {
            roles: Vec<RoleJson>,
        }
        return ok_json(&s, StatusCode::OK, &Roles { roles });
    };
    match method {
        Method::GET => match auth_state(&s).await.role(&name) {
            Some(r) => ok_json(&s, StatusCode::OK, &RoleJson::from(&r)),
            None => {
                let m = format!("auth: Role {name} does not exist.");
                message(&s, StatusCode::NOT_FOUND, &m)
            }
        },
        Method::PUT => put_role(&s, name, &body).await,
        _ => answer(&s, propose(&s, AuthCommand::DeleteRole { name }).await),
    }
}

async fn put_role(s: &V2State, name: String, body: &[u8]) -> Response {
    let Some(r) = decode::<RoleJson>(body) else {
        return message(s, StatusCode::BAD_REQUEST, "Invalid JSON in request body.");
    };
    if r.role != name {
        let m = "Role JSON name does not match the name in the URL";
        return message(s, StatusCode::BAD_REQUEST, m);
    }
    let grant: Option<Perms> = r.grant.map(Into::into);
    let revoke: Option<Perms> = r.revoke.map(Into::into);
    let perms: Perms = r.permissions.into();
    let empty = |p: &Option<Perms>| p.as_ref().is_none_or(Perms::is_empty);
    let cmd = if empty(&grant) && empty(&revoke) {
        AuthCommand::CreateRole(Role { name, perms })
    } else if !perms.is_empty() {
        let m = "Role JSON contains both permissions and grant/revoke";
        return message(s, StatusCode::BAD_REQUEST, m);
    } else {
        AuthCommand::UpdateRole {
            name,
            grant,
            revoke,
        }
    };
    answer(s, propose(s, cmd).await)
}

/// The answer to a change: what it wrote (201 when it created it), or an empty 200.
fn answer(s: &V2State, reply: Result<AuthReply, Response>) -> Response {
    let status = |created| {
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        }
    };
    match reply {
        Ok(AuthReply::User { user, created }) => {
            let j = UserJson {
                user: user.name,
                roles: user.roles,
                ..UserJson::default()
            };
            ok_json(s, status(created), &j)
        }
        Ok(AuthReply::Role { role, created }) => {
            ok_json(s, status(created), &RoleJson::from(&role))
        }
        Ok(AuthReply::Done) => ok_empty(s),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_read_as_gos() {
        // "u:p:q" → user u, password "p:q".
        assert_eq!(
            basic_auth("Basic dTpwOnE="),
            Some(("u".into(), "p:q".into()))
        );
        assert_eq!(basic_auth("basic dTpwOnE=").map(|c| c.0), Some("u".into()));
        assert_eq!(basic_auth("Bearer dTpwOnE="), None);
        assert_eq!(basic_auth("Basic !!"), None);
        // No colon: not credentials.
        assert_eq!(basic_auth("Basic dQ=="), None);
    }
}
