//! The auth token on every request, as etcd's client (clientv3) carries it: with `--user`,
//! oxctl calls `Authenticate` once it has connected, and every request then goes with the
//! token as gRPC metadata `token`. A unary request the server refuses because the token went
//! stale ("invalid auth token", "revision of auth store is old", or "user name is empty"
//! when it was lost) is sent once more with a fresh token, as clientv3's retry interceptor
//! does.
//!
//! This module owns the credentials, the token and that retry. It does not connect
//! (`connect` in the crate root does) and does not decide which commands need a token: all
//! of them get it. A tonic interceptor cannot resend a request, so the token rides on a thin
//! `tower` service around the [`Channel`] ([`Authed`]); [`authed`] is the one function that
//! wraps a connected channel.

use super::{CtlError, EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR, rpc_error};
use http_body_util::{BodyExt, Full};
use oxcd::pb::etcdserverpb as pb;
use pb::auth_client::AuthClient;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::transport::Channel;

/// A user name and password from `--user` / `--password`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// The credentials the global flags give, as etcdctl reads them: `--user name:password`, or
/// `--user name --password pw`, or `--user name` and a prompt (`Password: `). None without
/// `--user`, and None when the name or the password is empty: clientv3 then sends no token.
pub fn credentials(user: &str, password: &str) -> Result<Option<Credentials>, CtlError> {
    if user.is_empty() {
        return Ok(None);
    }
    let (user, password) = if !password.is_empty() {
        (user.to_string(), password.to_string())
    } else if let Some((name, pw)) = user.split_once(':') {
        (name.to_string(), pw.to_string())
    } else {
        let pw = ask_password("Password: ").map_err(|e| CtlError::new(EXIT_ERROR, e))?;
        (user.to_string(), pw)
    };
    if user.is_empty() || password.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials { user, password }))
}

/// Asks for a password as etcdctl's prompt library (speakeasy) does: the prompt on stdout,
/// `stty -echo` on the inherited terminal, one line from stdin (spaces trimmed), `stty echo`,
/// and a line break on stdout. On a stdin that is no terminal, stty complains on stderr just
/// as it does under etcdctl, and the line is read all the same.
pub fn ask_password(prompt: &str) -> Result<String, String> {
    let mut stdout = std::io::stdout();
    let _ = write!(stdout, "{prompt}");
    let _ = stdout.flush();
    // argv[0] "stty", as speakeasy runs it: stty names itself so in its complaints.
    let stty = |arg: &str| {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("/bin/stty")
            .arg0("stty")
            .arg(arg)
            .status()
    };
    if let Err(e) = stty("-echo") {
        let _ = writeln!(stdout);
        return Err(format!(
            "failed turning off console echo for password entry:\n\t{e}"
        ));
    }
    let line = read_line();
    let _ = stty("echo");
    let _ = writeln!(stdout);
    let _ = stdout.flush();
    let line = line.map_err(|e| format!("failed during password entry: {e}"))?;
    Ok(line.trim_end_matches('\r').trim().to_string())
}

/// One line of stdin, read byte by byte so that nothing after the line break is consumed
/// (a second prompt reads the next line).
fn read_line() -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let mut b = [0u8; 1];
    loop {
        match stdin.read(&mut b) {
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => line.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The password `--interactive=false` reads: Go's `fmt.Scanf("%s")` on stdin, i.e. the first
/// word of the first line ("" when that line is empty or stdin is).
pub fn scan_word() -> String {
    let line = read_line().unwrap_or_default();
    line.split([' ', '\t', '\r'])
        .find(|w| !w.is_empty())
        .unwrap_or_default()
        .to_string()
}

/// The error text of a password prompt that failed, as `user add` / `passwd` report it.
pub fn prompt_failed(e: String) -> CtlError {
    CtlError::new(EXIT_BAD_ARGS, format!("failed to ask password: {e}"))
}

/// The token and what it takes to get a fresh one.
struct Session {
    credentials: Credentials,
    /// For `Authenticate` on a fresh token (without the token itself).
    channel: Channel,
    timeout: Duration,
    token: Mutex<http::HeaderValue>,
}

impl Session {
    fn token(&self) -> http::HeaderValue {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn refresh(&self) -> Result<(), tonic::Status> {
        let token = authenticate(&self.channel, &self.credentials, self.timeout).await?;
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = token;
        Ok(())
    }
}

/// A channel whose requests carry the auth token (when there is one).
#[derive(Clone)]
pub struct Authed {
    inner: Channel,
    session: Option<Arc<Session>>,
}

/// Asks for a token; the header value that carries it.
async fn authenticate(
    ch: &Channel,
    c: &Credentials,
    timeout: Duration,
) -> Result<http::HeaderValue, tonic::Status> {
    let req = pb::AuthenticateRequest {
        name: c.user.clone(),
        password: c.password.clone(),
    };
    let r = tokio::time::timeout(timeout, AuthClient::new(ch.clone()).authenticate(req))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("context deadline exceeded"))??;
    http::HeaderValue::from_str(&r.into_inner().token)
        .map_err(|e| tonic::Status::internal(format!("the server's token: {e}")))
}

/// `ch` with the token of `credentials` on every request: what clientv3 does when it dials
/// with a user name and password. Auth being disabled is no failure (requests then go
/// without a token); any other failure is, with etcdctl's exit code for a bad connection.
pub async fn authed(
    ch: Channel,
    credentials: Option<&Credentials>,
    timeout: Duration,
) -> Result<Authed, CtlError> {
    let Some(c) = credentials else {
        return Ok(Authed {
            inner: ch,
            session: None,
        });
    };
    match authenticate(&ch, c, timeout).await {
        Ok(token) => Ok(Authed {
            session: Some(Arc::new(Session {
                credentials: c.clone(),
                channel: ch.clone(),
                timeout,
                token: Mutex::new(token),
            })),
            inner: ch,
        }),
        Err(s) if s.message() == "etcdserver: authentication is not enabled" => Ok(Authed {
            inner: ch,
            session: None,
        }),
        Err(s) => Err(CtlError::new(EXIT_BAD_CONNECTION, rpc_error(s).message)),
    }
}

/// Whether the server refused a request because its token went stale, so that a fresh
/// token may get it through (clientv3's `shouldRefreshToken`).
fn stale_token(s: &tonic::Status) -> bool {
    matches!(
        (s.code(), s.message()),
        (
            tonic::Code::Unauthenticated,
            "etcdserver: invalid auth token"
        ) | (
            tonic::Code::InvalidArgument,
            "etcdserver: revision of auth store is old" | "etcdserver: user name is empty"
        )
    )
}

/// The calls whose requests are streams (sent as they come, so they cannot be sent twice).
fn streams_requests(path: &str) -> bool {
    matches!(
        path,
        "/etcdserverpb.Watch/Watch" | "/etcdserverpb.Lease/LeaseKeepAlive"
    )
}

impl Service<http::Request<Body>> for Authed {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // The channel that was made ready goes with this call; a clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(session) = self.session.clone() else {
            let call = inner.call(req);
            return Box::pin(async move { call.await.map_err(Into::into) });
        };
        req.headers_mut().insert("token", session.token());
        if streams_requests(req.uri().path()) {
            let call = inner.call(req);
            return Box::pin(async move { call.await.map_err(Into::into) });
        }
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await?.to_bytes();
            let (method, uri, version, mut headers) = (
                parts.method.clone(),
                parts.uri.clone(),
                parts.version,
                parts.headers.clone(),
            );
            let first = http::Request::from_parts(parts, Body::new(Full::new(body.clone())));
            let response = inner.call(first).await?;
            match tonic::Status::from_header_map(response.headers()) {
                Some(s) if stale_token(&s) => {}
                _ => return Ok(response),
            }
            if let Err(s) = session.refresh().await {
                return Ok(s.into_http());
            }
            headers.insert("token", session.token());
            let mut again = http::Request::new(Body::new(Full::new(body)));
            *again.method_mut() = method;
            *again.uri_mut() = uri;
            *again.version_mut() = version;
            *again.headers_mut() = headers;
            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            Ok(inner.call(again).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_user_and_password_as_etcdctl_reads_them() {
        let c = |user: &str, password: &str| Credentials {
            user: user.into(),
            password: password.into(),
        };
        assert_eq!(credentials("", "x"), Ok(None));
        assert_eq!(credentials("root:pw", ""), Ok(Some(c("root", "pw"))));
        assert_eq!(credentials("root:a:b", ""), Ok(Some(c("root", "a:b"))));
        assert_eq!(credentials("root", "pw"), Ok(Some(c("root", "pw"))));
        // clientv3 authenticates only with both a name and a password.
        assert_eq!(credentials("root:", ""), Ok(None));
        assert_eq!(credentials(":pw", ""), Ok(None));
    }

    #[test]
    fn only_stale_tokens_are_refreshed() {
        use tonic::{Code, Status};
        assert!(stale_token(&Status::new(
            Code::Unauthenticated,
            "etcdserver: invalid auth token"
        )));
        assert!(stale_token(&Status::new(
            Code::InvalidArgument,
            "etcdserver: revision of auth store is old"
        )));
        assert!(!stale_token(&Status::new(
            Code::PermissionDenied,
            "etcdserver: permission denied"
        )));
    }
}
