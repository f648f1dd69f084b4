#![cfg(not(madsim))]
//! The v2 API as its clients see it: one script of HTTP requests (etcd's curl examples and
//! more) and `ETCDCTL_API=2 etcdctl` commands runs against a fresh one-member etcd 3.4.23 and
//! a fresh one-member oxcd, both with `--enable-v2`, and the transcripts (status, the headers
//! a client reads, bodies; etcdctl's output and exit code) must be equal once what may differ
//! between two clusters is masked. Then both run without `--enable-v2`, where `/v2/` must
//! answer as etcd 3.4 does without it.
//!
//! Masked, and why: IDs, ports, Raft indexes and terms (URLs, tokens, timing), expiration
//! times and TTLs (the clock), start times and uptimes, and the v2 index's base: etcd's index
//! counts its member records and cluster version, so a fresh etcd's first write is at 4 and
//! oxcd's at 3; every index is shown relative to the run's first write, so the steps between
//! indexes are compared exactly.
//!
//! Watches wait for a write another step makes (no sleeps): a long poll is opened, the next
//! step runs, then the poll's answer is read. TTL expiry is awaited the same way (a watch for
//! the `expire` event).

mod procs;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use procs::{Cluster, Kind, Timing};
use regex::Regex;
use std::process::Command;
use std::time::Duration;

/// How long one response (or one stream line) may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);

enum Step {
    /// A request; a non-empty `form` goes as an urlencoded body. In the path, `{NEXT}` stands
    /// for the last `X-Etcd-Index` seen plus one, `{BASE}` for the run's first index.
    Http {
        method: &'static str,
        path: &'static str,
        form: &'static str,
    },
    /// A request as `user` (`name:password` sent as HTTP Basic; empty: no credentials)
    /// with a JSON body (a form for `/v2/keys`).
    As {
        user: &'static str,
        method: &'static str,
        path: &'static str,
        body: &'static str,
    },
    /// `n` plain sets of one key (not recorded): fills the event history.
    Fill(usize),
    /// A watch opened first, then `during` runs, then `lines` lines of the watch's answer are
    /// read (a long poll ends after one).
    Watch {
        path: &'static str,
        during: &'static [Step],
        lines: usize,
    },
    /// `ETCDCTL_API=2 etcdctl --endpoints <member> <args>`.
    Ctl(&'static [&'static str]),
    /// `etcdctl watch`-like commands that do not end: the first `lines` lines, with `during`
    /// run after it started.
    CtlLines {
        args: &'static [&'static str],
        during: &'static [Step],
        lines: usize,
    },
}

const fn put(path: &'static str, form: &'static str) -> Step {
    Step::Http {
        method: "PUT",
        path,
        form,
    }
}

const fn call(method: &'static str, path: &'static str) -> Step {
    Step::Http {
        method,
        path,
        form: "",
    }
}

const SCRIPT: &[Step] = &[
    put("/v2/keys/base", "value=0"),
    put("/v2/keys/foo", "value=bar"),
    put("/v2/keys/foo", "value=baz"),
    call("GET", "/v2/keys/foo"),
    call("GET", "/v2/keys/missing"),
    call("GET", "/v2/keys/missing/deeper"),
    call("GET", "/v2/keys/foo/deeper"),
    put("/v2/keys/dir?dir=true", ""),
    put("/v2/keys/dir/a", "value=1"),
    put("/v2/keys/dir/_hidden", "value=h"),
    call("GET", "/v2/keys/dir"),
    call("GET", "/v2/keys/dir/_hidden"),
    put("/v2/keys/dir/sub/b", "value=2"),
    call("GET", "/v2/keys/dir?recursive=true&sorted=true"),
    call("GET", "/v2/keys/?sorted=true"),
    call("GET", "/v2/keys?sorted=true"),
    call("GET", "/v2/keys/dir/?sorted=true"),
    put("/v2/keys/dir", "value=x"),
    put("/v2/keys/foo/x", "value=1"),
    put("/v2/keys/dir?dir=true", ""),
    put("/v2/keys/", "value=x"),
    put("/v2/keys/foo?prevExist=false", "value=x"),
    put("/v2/keys/new?prevExist=false", "value=n"),
    put("/v2/keys/new?prevExist=true", "value=m"),
    put("/v2/keys/nope?prevExist=true", "value=m"),
    put("/v2/keys/new?prevValue=m", "value=o"),
    put("/v2/keys/new?prevValue=zz", "value=o"),
    put("/v2/keys/new?prevIndex=1", "value=o"),
    put("/v2/keys/new?prevValue=zz&prevIndex=1", "value=o"),
    put("/v2/keys/new?prevValue=", "value=o"),
    put("/v2/keys/new?prevIndex=abc", "value=o"),
    put("/v2/keys/new?ttl=abc", "value=o"),
    put("/v2/keys/new?recursive=maybe", "value=o"),
    put("/v2/keys/new?prevExist=maybe", "value=o"),
    put("/v2/keys/new?refresh=true&ttl=5", "value=x"),
    put("/v2/keys/new?refresh=true", ""),
    put("/v2/keys/new?wait=true", "value=x"),
    put("/v2/keys/ttlk?ttl=100", "value=t"),
    put("/v2/keys/ttlk?ttl=200&refresh=true&prevExist=true", ""),
    put("/v2/keys/ttlk?ttl=300&refresh=true", ""),
    put("/v2/keys/ttlk", "value=p"),
    put("/v2/keys/zero?ttl=", "value=z"),
    put("/v2/keys/tdir?dir=true&ttl=100", ""),
    put("/v2/keys/tdir?dir=true&prevExist=true", ""),
    put("/v2/keys/foo?dir=true", ""),
    call("GET", "/v2/keys/foo"),
    put("/v2/keys/foo", "value=bar"),
    call("DELETE", "/v2/keys/foo?dir=true"),
    put("/v2/keys/foo", "value=bar"),
    Step::Http {
        method: "POST",
        path: "/v2/keys/queue",
        form: "value=j1",
    },
    Step::Http {
        method: "POST",
        path: "/v2/keys/queue",
        form: "value=j2",
    },
    call("GET", "/v2/keys/queue?sorted=true"),
    call("DELETE", "/v2/keys/dir"),
    call("DELETE", "/v2/keys/dir?dir=true"),
    call("DELETE", "/v2/keys/dir?recursive=true"),
    call("DELETE", "/v2/keys/new?prevValue=zz"),
    call("DELETE", "/v2/keys/new?prevIndex=1"),
    call("DELETE", "/v2/keys/new?prevValue=o"),
    call("DELETE", "/v2/keys/missing"),
    call("DELETE", "/v2/keys/zero?dir=true"),
    call("DELETE", "/v2/keys/tdir?dir=true"),
    call("DELETE", "/v2/keys/"),
    put("/v2/keys/nv?noValueOnSuccess=true", "value=1"),
    call("DELETE", "/v2/keys/nv?noValueOnSuccess=true"),
    call("HEAD", "/v2/keys/foo"),
    call("HEAD", "/v2/keys/missing"),
    call("PATCH", "/v2/keys/foo"),
    call("OPTIONS", "/v2/keys/foo"),
    call("GET", "/v2/keys/foo?quorum=true"),
    call("GET", "/v2/keys/missing?quorum=true"),
    // Go's JSON escapes, Go's number parsing, compare-and-delete on the root, unclean paths.
    put("/v2/keys/html", "value=a%3Cb%26c%3E%E2%80%A8"),
    call("GET", "/v2/keys/html"),
    put("/v2/keys/plus?ttl=%2B5", "value=1"),
    put("/v2/keys/plus?prevIndex=%2B5", "value=1"),
    call("DELETE", "/v2/keys/?prevValue=x"),
    call("GET", "/v2/keys//foo"),
    call("GET", "/v2/keys/./foo?quorum=true"),
    put("/v2/keys/a/../foo", "value=bar"),
    call("DELETE", "/v2/keys/foo/.."),
    call("HEAD", "/v2/keys/foo//"),
    // Watches: a long poll, one from the history, recursive, a stream, a hidden key.
    Step::Watch {
        path: "/v2/keys/foo?wait=true",
        during: &[put("/v2/keys/foo", "value=w1")],
        lines: 1,
    },
    call("GET", "/v2/keys/foo?wait=true&waitIndex={BASE}"),
    Step::Watch {
        path: "/v2/keys/w2?wait=true&recursive=true",
        during: &[
            put("/v2/keys/w2/_h", "value=hidden"),
            put("/v2/keys/w2/x/y", "value=1"),
        ],
        lines: 1,
    },
    // A scan of the history does not skip hidden keys.
    call(
        "GET",
        "/v2/keys/w2?wait=true&recursive=true&waitIndex={BASE}",
    ),
    Step::Watch {
        path: "/v2/keys/st?wait=true&stream=true",
        during: &[
            put("/v2/keys/st", "value=1"),
            put("/v2/keys/st", "value=2"),
            call("DELETE", "/v2/keys/st"),
        ],
        lines: 3,
    },
    put("/v2/keys/wd/in/deep", "value=1"),
    Step::Watch {
        path: "/v2/keys/wd/in/deep?wait=true",
        during: &[call("DELETE", "/v2/keys/wd?recursive=true")],
        lines: 1,
    },
    // Expiry: the watch waits for the expire event.
    put("/v2/keys/exp?ttl=1", "value=e"),
    Step::Watch {
        path: "/v2/keys/exp?wait=true&waitIndex={NEXT}",
        during: &[],
        lines: 1,
    },
    put("/v2/keys/expd?dir=true&ttl=1", ""),
    put("/v2/keys/expd/child", "value=c"),
    Step::Watch {
        path: "/v2/keys/expd/child?wait=true&waitIndex={NEXT}",
        during: &[],
        lines: 1,
    },
    call("GET", "/v2/keys/expd"),
    // The history keeps 1,000 events.
    Step::Fill(1005),
    call("GET", "/v2/keys/foo?wait=true&waitIndex={BASE}"),
    // Members, machines, stats.
    call("GET", "/v2/members"),
    call("GET", "/v2/members/leader"),
    call("GET", "/v2/members/zz"),
    call("DELETE", "/v2/members/zz"),
    call("DELETE", "/v2/members/1234"),
    call("PUT", "/v2/members/1234"),
    Step::Http {
        method: "POST",
        path: "/v2/members",
        form: "peerURLs=x",
    },
    call("HEAD", "/v2/members"),
    call("GET", "/v2/machines"),
    call("POST", "/v2/machines"),
    call("GET", "/v2/stats/self"),
    call("GET", "/v2/stats/leader"),
    call("POST", "/v2/stats/self"),
    call("GET", "/v2/stats/nothing"),
    call("GET", "/v2/nothing"),
    call("GET", "/version"),
    // etcdctl's v2 commands.
    Step::Ctl(&["set", "/ctl/a", "one"]),
    Step::Ctl(&["get", "/ctl/a"]),
    Step::Ctl(&["get", "/ctl/none"]),
    Step::Ctl(&["mk", "/ctl/a", "two"]),
    Step::Ctl(&["mk", "/ctl/b", "two"]),
    Step::Ctl(&["mkdir", "/ctl/d"]),
    Step::Ctl(&["mkdir", "/ctl/d"]),
    Step::Ctl(&["setdir", "/ctl/d2"]),
    Step::Ctl(&["updatedir", "/ctl/d2", "--ttl", "100"]),
    Step::Ctl(&["update", "/ctl/a", "three"]),
    Step::Ctl(&["update", "/ctl/none", "three"]),
    Step::Ctl(&["set", "/ctl/a", "four", "--swap-with-value", "three"]),
    Step::Ctl(&["set", "/ctl/a", "five", "--swap-with-value", "three"]),
    Step::Ctl(&["ls", "/ctl", "--sort"]),
    Step::Ctl(&["ls", "--recursive", "--sort", "-p"]),
    Step::Ctl(&["get", "/ctl"]),
    Step::Ctl(&["-o", "json", "get", "/ctl/a"]),
    Step::Ctl(&["-o", "extended", "get", "/ctl/a"]),
    Step::Ctl(&["-o", "extended", "set", "/ctl/e", "v"]),
    Step::Ctl(&["rm", "/ctl/a", "--with-value", "nine"]),
    Step::Ctl(&["rm", "/ctl/a", "--with-value", "four"]),
    Step::Ctl(&["rm", "/ctl/d"]),
    Step::Ctl(&["rmdir", "/ctl/d"]),
    Step::Ctl(&["rm", "/ctl", "--recursive"]),
    Step::Ctl(&["rm", "/ctl/none"]),
    Step::Ctl(&["member", "list"]),
    Step::Ctl(&["cluster-health"]),
    Step::CtlLines {
        args: &["watch", "/cw"],
        during: &[put("/v2/keys/cw", "value=seen")],
        lines: 1,
    },
    Step::CtlLines {
        args: &["watch", "/cwr", "--recursive", "--forever"],
        during: &[
            put("/v2/keys/cwr/a", "value=1"),
            put("/v2/keys/cwr/b", "value=2"),
        ],
        lines: 2,
    },
];

const fn auth(
    user: &'static str,
    method: &'static str,
    path: &'static str,
    body: &'static str,
) -> Step {
    Step::As {
        user,
        method,
        path,
        body,
    }
}

/// The v2 auth API and its checks. The key writes between auth changes show how many indexes
/// each change took.
const AUTH_SCRIPT: &[Step] = &[
    put("/v2/keys/base", "value=0"),
    call("GET", "/v2/auth/enable"),
    call("GET", "/v2/auth/users"),
    call("GET", "/v2/auth/roles"),
    call("GET", "/v2/auth/roles/guest"),
    call("DELETE", "/v2/auth/roles/nobody"),
    put("/v2/keys/i1", "value=1"),
    auth(
        "",
        "PUT",
        "/v2/auth/users/u",
        r#"{"user":"u","password":"p"}"#,
    ),
    put("/v2/keys/i2", "value=1"),
    auth(
        "",
        "PUT",
        "/v2/auth/users/u",
        r#"{"user":"u","password":"p"}"#,
    ),
    auth("", "PUT", "/v2/auth/users/u", r#"{"user":"x"}"#),
    auth("", "PUT", "/v2/auth/users/u", "nonsense"),
    auth("", "PUT", "/v2/auth/users/e", r#"{"user":"e"}"#),
    auth(
        "",
        "PUT",
        "/v2/auth/users/r",
        r#"{"user":"r","password":"p","roles":["a"]}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/users/r",
        r#"{"user":"r","password":"p","roles":["a"]}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/users/r",
        r#"{"user":"r","password":"","roles":["a"]}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/users/n",
        r#"{"user":"n","password":"p"}"#,
    ),
    auth("", "PUT", "/v2/auth/users/n", r#"{"user":"n"}"#),
    auth("", "PUT", "/v2/auth/users/n", r#"{"user":"n"}"#),
    auth(
        "",
        "PUT",
        "/v2/auth/users/u",
        r#"{"user":"u","grant":["rw"]}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/users/u",
        r#"{"user":"u","grant":["rw"]}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/users/u",
        r#"{"user":"u","revoke":["zz"]}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/users/u",
        r#"{"user":"u","grant":["g"],"revoke":["g"]}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/users/u",
        r#"{"user":"u","roles":["x"],"grant":["y"]}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/users/zz",
        r#"{"user":"zz","grant":["a"]}"#,
    ),
    call("GET", "/v2/auth/users/u"),
    call("GET", "/v2/auth/users/nobody"),
    put("/v2/keys/i3", "value=1"),
    auth(
        "",
        "PUT",
        "/v2/auth/roles/rw",
        r#"{"role":"rw","permissions":{"kv":{"read":["/foo/*","/k"],"write":["/k"]}}}"#,
    ),
    auth("", "PUT", "/v2/auth/roles/rw", r#"{"role":"rw"}"#),
    auth("", "PUT", "/v2/auth/roles/root", r#"{"role":"root"}"#),
    auth(
        "",
        "PUT",
        "/v2/auth/roles/ro",
        r#"{"role":"ro","permissions":{"kv":{"read":["/<&>"]}}}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/roles/ro",
        r#"{"role":"ro","revoke":{"kv":{"read":["/nope"]}}}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/roles/ro",
        r#"{"role":"ro","revoke":{"kv":{"read":["/nope"]}}}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/roles/rw",
        r#"{"role":"rw","grant":{"kv":{"read":["/bar","/a"]}}}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/roles/rw",
        r#"{"role":"rw","grant":{"kv":{"write":["/k"]}}}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/roles/rw",
        r#"{"role":"rw","permissions":{"kv":{"read":["/x"]}},"grant":{"kv":{"read":["/y"]}}}"#,
    ),
    auth(
        "",
        "PUT",
        "/v2/auth/roles/nope",
        r#"{"role":"nope","grant":{"kv":{"read":["/y"]}}}"#,
    ),
    auth("", "PUT", "/v2/auth/roles/rw", r#"{"role":"x"}"#),
    call("GET", "/v2/auth/roles/rw"),
    call("GET", "/v2/auth/roles"),
    call("GET", "/v2/auth/users/u"),
    call("GET", "/v2/auth/users/"),
    call("GET", "/v2/auth/users/a/b"),
    call("POST", "/v2/auth/users"),
    call("PATCH", "/v2/auth/roles/rw"),
    call("HEAD", "/v2/auth/enable"),
    put("/v2/keys/i4", "value=1"),
    call("PUT", "/v2/auth/enable"),
    auth(
        "",
        "PUT",
        "/v2/auth/users/root",
        r#"{"user":"root","password":"rootpw"}"#,
    ),
    call("PUT", "/v2/auth/enable"),
    put("/v2/keys/i5", "value=1"),
    call("GET", "/v2/auth/enable"),
    call("GET", "/v2/auth/users"),
    call("PUT", "/v2/auth/enable"),
    auth("root:rootpw", "PUT", "/v2/auth/enable", ""),
    auth("root:rootpw", "GET", "/v2/auth/users", ""),
    auth("root:rootpw", "GET", "/v2/auth/roles/guest", ""),
    auth("root:rootpw", "GET", "/v2/auth/users/root", ""),
    auth("root:rootpw", "DELETE", "/v2/auth/users/root", ""),
    auth("u:p", "GET", "/v2/auth/users", ""),
    auth("root:wrong", "GET", "/v2/auth/users", ""),
    // Keys: guest (rw on everything), u (role rw), wrong passwords.
    call("GET", "/v2/keys/base"),
    put("/v2/keys/g", "value=guest"),
    auth("u:p", "GET", "/v2/keys/foo/", ""),
    auth("u:p", "GET", "/v2/keys/foo", ""),
    auth("u:p", "GET", "/v2/keys/foo/a?recursive=true", ""),
    auth("u:p", "GET", "/v2/keys/foo?recursive=true", ""),
    auth("u:p", "GET", "/v2/keys/k", ""),
    auth("u:p", "GET", "/v2/keys/k?recursive=true", ""),
    auth("u:p", "PUT", "/v2/keys/k", "value=one"),
    auth("u:p", "PUT", "/v2/keys/k2", "value=1"),
    auth("u:p", "GET", "/v2/keys/base", ""),
    auth("u:p", "GET", "/v2/keys/k?wait=true&waitIndex={BASE}", ""),
    auth("u:wrong", "GET", "/v2/keys/k", ""),
    auth("u:", "GET", "/v2/keys/k", ""),
    auth("ghost:p", "GET", "/v2/keys/k", ""),
    auth("root:rootpw", "PUT", "/v2/keys/r", "value=1"),
    auth("u:p", "PUT", "/v2/keys/k", "value=2&prevValue=9"),
    auth("u:p", "DELETE", "/v2/auth/enable", ""),
    auth(
        "u:p",
        "POST",
        "/v2/members",
        r#"{"peerURLs":["http://127.0.0.1:1"]}"#,
    ),
    call("DELETE", "/v2/members/1234"),
    auth(
        "root:rootpw",
        "PUT",
        "/v2/auth/roles/guest",
        r#"{"role":"guest","revoke":{"kv":{"write":["/*"]}}}"#,
    ),
    put("/v2/keys/g", "value=guest2"),
    call("GET", "/v2/keys/g"),
    auth("root:rootpw", "DELETE", "/v2/auth/enable", ""),
    call("DELETE", "/v2/auth/enable"),
    put("/v2/keys/i6", "value=1"),
    call("DELETE", "/v2/auth/users/nobody"),
    call("DELETE", "/v2/auth/roles/rw"),
    call("DELETE", "/v2/auth/roles/root"),
    call("DELETE", "/v2/auth/users/u"),
    call("DELETE", "/v2/auth/users/root"),
    put("/v2/keys/i7", "value=1"),
    // etcdctl's auth commands.
    Step::Ctl(&["role", "add", "foo"]),
    Step::Ctl(&["role", "add", "foo"]),
    Step::Ctl(&["user", "add", "username:password"]),
    Step::Ctl(&["user", "grant", "--roles", "foo", "username"]),
    Step::Ctl(&["user", "get", "username"]),
    Step::Ctl(&["user", "grant", "--roles", "foo", "username"]),
    Step::Ctl(&["user", "list"]),
    Step::Ctl(&["role", "list"]),
    Step::Ctl(&["role", "grant", "foo", "--rw", "--path", "/ctl/*"]),
    Step::Ctl(&["role", "get", "foo"]),
    Step::Ctl(&["role", "revoke", "foo", "--write", "--path", "/ctl/*"]),
    Step::Ctl(&["user", "revoke", "--roles", "foo", "username"]),
    Step::Ctl(&["user", "add", "root:rootpw"]),
    Step::Ctl(&["auth", "enable"]),
    Step::Ctl(&["role", "list"]),
    Step::Ctl(&["user", "list"]),
    Step::Ctl(&["set", "/ctl/a", "1"]),
    Step::Ctl(&["--username", "username:password", "set", "/ctl/a", "1"]),
    Step::Ctl(&["--username", "root:rootpw", "user", "list"]),
    Step::Ctl(&["--username", "root:rootpw", "auth", "disable"]),
    Step::Ctl(&["user", "remove", "username"]),
    Step::Ctl(&["role", "remove", "foo"]),
    put("/v2/keys/i8", "value=1"),
];

/// With `--enable-v2` off.
const OFF_SCRIPT: &[Step] = &[
    call("GET", "/v2/keys/foo"),
    put("/v2/keys/foo", "value=1"),
    call("GET", "/v2/members"),
    call("GET", "/v2/machines"),
    call("GET", "/v2/stats/self"),
    call("GET", "/version"),
];

/// The headers a client reads.
const HEADERS: &[&str] = &[
    "content-type",
    "x-etcd-cluster-id",
    "x-etcd-index",
    "x-raft-index",
    "x-raft-term",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "x-content-type-options",
    "allow",
    "content-length",
];

struct Run {
    member: String,
    base: Option<u64>,
    last_index: u64,
}

impl Run {
    fn path(&self, path: &str) -> String {
        path.replace("{NEXT}", &(self.last_index + 1).to_string())
            .replace("{BASE}", &self.base.unwrap_or(0).to_string())
    }

    fn saw(&mut self, head: &http::response::Parts) {
        if let Some(i) = head
            .headers
            .get("x-etcd-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if self.base.is_none() {
                self.base = Some(i);
            }
            self.last_index = i;
        }
    }
}

async fn send(
    run: &Run,
    method: &str,
    path: &str,
    form: &str,
) -> hyper::Response<hyper::body::Incoming> {
    send_as(run, "", method, path, form).await
}

/// `send` as `user` (see [`Step::As`]); a body for `/v2/auth` goes as JSON.
async fn send_as(
    run: &Run,
    user: &str,
    method: &str,
    path: &str,
    body: &str,
) -> hyper::Response<hyper::body::Incoming> {
    let tcp = tokio::net::TcpStream::connect(&run.member)
        .await
        .expect("connect to the member");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    let mut b = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", &run.member);
    if !body.is_empty() {
        let ctype = if path.starts_with("/v2/auth") {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        b = b.header("content-type", ctype);
    }
    if !user.is_empty() {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(user);
        b = b.header("authorization", format!("Basic {token}"));
    }
    let req = b
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a request");
    tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(req))
        .await
        .unwrap_or_else(|_| panic!("no response to {method} {path} in time"))
        .expect("a response")
}

fn head(parts: &http::response::Parts) -> String {
    let mut s = format!("{}\n", parts.status);
    for name in HEADERS {
        for v in parts.headers.get_all(*name) {
            s.push_str(&format!("{name}: {}\n", v.to_str().unwrap_or("<binary>")));
        }
    }
    s
}

/// Reads `lines` lines of a body (a long poll's one line, a stream's several).
async fn read_lines(body: &mut hyper::body::Incoming, lines: usize, what: &str) -> String {
    let mut pending: Vec<u8> = Vec::new();
    let mut out = String::new();
    let mut n = 0;
    while n < lines {
        if let Some(at) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            out.push_str(&String::from_utf8_lossy(&line));
            n += 1;
            continue;
        }
        let frame = tokio::time::timeout(RESPONSE_TIMEOUT, body.frame())
            .await
            .unwrap_or_else(|_| panic!("{what}: {n} lines, no more in time:\n{out}"));
        match frame {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    pending.extend_from_slice(&d);
                }
            }
            _ => {
                out.push_str(&String::from_utf8_lossy(&pending));
                out.push_str(&format!("<end after {n} lines>\n"));
                break;
            }
        }
    }
    out
}

fn ctl(member: &str, args: &[&str]) -> std::process::Child {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "2")
        .arg(format!("--endpoints=http://{member}"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl runs")
}

fn run_step<'a>(
    run: &'a mut Run,
    step: &'a Step,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + 'a>> {
    Box::pin(async move {
        match step {
            Step::Http { method, path, form } => {
                run_step(
                    run,
                    &Step::As {
                        user: "",
                        method,
                        path,
                        body: form,
                    },
                )
                .await
            }
            Step::As {
                user,
                method,
                path,
                body: form,
            } => {
                let path = run.path(path);
                let resp = send_as(run, user, method, &path, form).await;
                let (parts, body) = resp.into_parts();
                run.saw(&parts);
                let body = tokio::time::timeout(RESPONSE_TIMEOUT, body.collect())
                    .await
                    .unwrap_or_else(|_| panic!("{method} {path}: no body in time"))
                    .expect("the body")
                    .to_bytes();
                let who = if user.is_empty() {
                    String::new()
                } else {
                    format!("(as {user}) ")
                };
                format!(
                    "{who}{method} {path} {form}\n{}{}\n",
                    head(&parts),
                    String::from_utf8_lossy(&body)
                )
            }
            Step::Fill(n) => {
                for i in 0..*n {
                    let form = format!("value={i}");
                    let resp = send(run, "PUT", "/v2/keys/fill", &form).await;
                    let (parts, body) = resp.into_parts();
                    run.saw(&parts);
                    assert!(parts.status.is_success(), "fill {i}: {}", parts.status);
                    body.collect().await.expect("the body");
                }
                format!("<{n} sets of /v2/keys/fill>\n")
            }
            Step::Watch {
                path,
                during,
                lines,
            } => {
                let path = run.path(path);
                // The answer's head may come only with its first event (etcd's does), so the
                // watch runs beside the steps that write.
                if !during.is_empty() {
                    watchers_become(run, |n| n == 0).await;
                }
                let (member, p, lines) = (run.member.clone(), path.clone(), *lines);
                let watch = tokio::spawn(async move {
                    let probe = Run {
                        member,
                        base: None,
                        last_index: 0,
                    };
                    let resp = send(&probe, "GET", &p, "").await;
                    let (parts, mut body) = resp.into_parts();
                    let text = read_lines(&mut body, lines, &p).await;
                    (head(&parts), text)
                });
                let mut writes = String::new();
                if !during.is_empty() {
                    watchers_become(run, |n| n > 0).await;
                }
                for inner in *during {
                    let r = run_step(run, inner).await;
                    writes.push_str(&format!("# {r}"));
                }
                let (head, text) = watch.await.expect("the watch ran");
                format!("WATCH {path}\n{head}{writes}{text}")
            }
            Step::Ctl(args) => {
                let member = run.member.clone();
                let out = tokio::task::spawn_blocking({
                    let args: Vec<&'static str> = args.to_vec();
                    move || {
                        ctl(&member, &args)
                            .wait_with_output()
                            .expect("etcdctl ends")
                    }
                })
                .await
                .expect("joined");
                format!(
                    "etcdctl {}\n{}{}exit {}\n",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    out.status.code().unwrap_or(-1)
                )
            }
            Step::CtlLines {
                args,
                during,
                lines,
            } => {
                watchers_become(run, |n| n == 0).await;
                let mut child = ctl(&run.member, args);
                let stdout = child.stdout.take().expect("piped");
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    use std::io::BufRead;
                    for line in std::io::BufReader::new(stdout).lines() {
                        if tx.send(line.unwrap_or_default()).is_err() {
                            break;
                        }
                    }
                });
                // etcdctl's watch is open once its first request is; wait for the member to
                // count it (no sleep: the store's watcher count says so).
                let mut s = format!("etcdctl {}\n", args.join(" "));
                watchers_become(run, |n| n > 0).await;
                for inner in *during {
                    let r = run_step(run, inner).await;
                    s.push_str(&format!("# {r}"));
                }
                for _ in 0..*lines {
                    match rx.recv_timeout(RESPONSE_TIMEOUT) {
                        Ok(l) => s.push_str(&format!("{l}\n")),
                        Err(_) => {
                            s.push_str("<no more lines>\n");
                            break;
                        }
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
                s
            }
        }
    })
}

/// Waits until the number of watchers `/v2/stats/store` counts passes `ok` (a poll of the
/// member's own state, not a sleep standing in for it).
async fn watchers_become(run: &Run, ok: impl Fn(u64) -> bool) {
    let deadline = tokio::time::Instant::now() + RESPONSE_TIMEOUT;
    let re = Regex::new(r#""watchers":(\d+)"#).unwrap();
    loop {
        let resp = send(run, "GET", "/v2/stats/store", "").await;
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&body).to_string();
        let n: u64 = re.captures(&text).expect("a watcher count")[1]
            .parse()
            .unwrap();
        if ok(n) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher count stayed at {n}"
        );
        tokio::time::sleep(procs::POLL_INTERVAL).await;
    }
}

fn transcript(member: &str, script: &[Step]) -> (Vec<String>, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut run = Run {
            member: member.to_string(),
            base: None,
            last_index: 0,
        };
        let mut out = Vec::new();
        for step in script {
            out.push(run_step(&mut run, step).await);
        }
        (out, run.base.unwrap_or(0))
    })
}

/// What may differ between two clusters (see the module docs).
fn masked(entry: &str, base: u64) -> String {
    let relative = |n: &str| -> String {
        let n: u64 = n.parse().expect("a number");
        if n == 0 {
            // Not an index: a request's error happens at none.
            "0".to_string()
        } else if n >= base {
            format!("B+{}", n - base)
        } else {
            format!("B-{}", base - n)
        }
    };
    let mut s = entry.to_string();
    // Indexes, relative to the base.
    for pattern in [
        r#"("(?:modifiedIndex|createdIndex|index)":)(\d+)"#,
        r"(x-etcd-index: )(\d+)",
        r"(waitIndex=)(\d+)",
        r"(/)(\d{20})\b",
        r"(cleared \[)(\d+)",
        r"(cleared \[B[+-]\d+/)(\d+)",
        r"(\[\d+ != |\[)(\d+)(\])",
        r"(Index: )(\d+)",
        r#"("(?:Index|modifiedIndex|createdIndex)": ?)(\d+)"#,
    ] {
        let re = Regex::new(pattern).unwrap();
        s = re
            .replace_all(&s, |c: &regex::Captures| {
                let tail = c.get(3).map_or("", |m| m.as_str());
                format!("{}{}{tail}", &c[1], relative(&c[2]))
            })
            .to_string();
    }
    let masks: &[(&str, &str)] = &[
        (
            r"(x-raft-index|x-raft-term|x-etcd-cluster-id): \S+",
            "$1: <$1>",
        ),
        (r#""expiration":"[^"]+""#, r#""expiration":"<time>""#),
        (r#""ttl":\d+"#, r#""ttl":<ttl>"#),
        (r#""(startTime|uptime)":"[^"]+""#, r#""$1":"<$1>""#),
        (r#""(id|leader)":"[0-9a-f]+""#, r#""$1":"<id>""#),
        (r#""[0-9a-f]{8,16}":"#, r#""<id>":"#),
        (r"\b[0-9a-f]{14,16}\b", "<id>"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r#""name":"[^"]*""#, r#""name":"<name>""#),
        (r"name=\S+", "name=<name>"),
        (
            r#""etcdserver":"[0-9.]+","etcdcluster":"[0-9.]+""#,
            "<versions>",
        ),
        (r"content-length: \d+", "content-length: <n>"),
        (r"TTL: \d+", "TTL: <ttl>"),
        (r#""(TTL|ttl)": ?\d+"#, r#""$1":<ttl>"#),
        (r"Expiration: \S+", "Expiration: <time>"),
    ];
    for (pattern, replacement) in masks {
        s = Regex::new(pattern)
            .unwrap()
            .replace_all(&s, *replacement)
            .to_string();
    }
    s
}

fn compare(script: &[Step], flags: &[&str]) {
    let etcd = Cluster::start_with_flags(Kind::Etcd, 1, Timing::default(), flags);
    let (want, base) = transcript(&etcd.endpoint(0), script);
    let want: Vec<String> = want.iter().map(|e| masked(e, base)).collect();
    drop(etcd);
    let oxcd = Cluster::start_with_flags(Kind::Oxcd, 1, Timing::default(), flags);
    let (got, base) = transcript(&oxcd.endpoint(0), script);
    let got: Vec<String> = got.iter().map(|e| masked(e, base)).collect();
    procs::assert_same_transcripts(&want, &got, "etcd 3.4.23", "oxcd");
}

#[test]
fn v2_transcript_matches_etcd() {
    compare(SCRIPT, &["--enable-v2"]);
}

#[test]
fn v2_auth_transcript_matches_etcd() {
    compare(AUTH_SCRIPT, &["--enable-v2"]);
}

#[test]
fn without_enable_v2_the_v2_paths_answer_as_etcd_does() {
    compare(OFF_SCRIPT, &[]);
}
