#![cfg(not(madsim))]
//! TLS as etcd 3.4.23 does it, seen from etcdctl and from a cluster that rotates certificates.
//!
//! - A one-member etcd and a one-member oxcd, both with client TLS and client certificates
//!   required (`--trusted-ca-file`, `--client-cert-auth`), run the same etcdctl steps: put,
//!   get and health with a good certificate, then a wrong CA, no client certificate, and
//!   plaintext to the TLS port. The transcripts (exit codes, stdout, stderr) must be equal
//!   once ports, timestamps and etcdctl's client UUIDs are masked. oxctl runs the same steps
//!   against a third member (oxcd): its transcript must equal etcdctl's against etcd but for
//!   etcdctl's own log lines.
//! - etcd and oxcd with an `https://` `--listen-metrics-urls`: curl with a client certificate
//!   gets the same health and metrics answers from both; without one, the handshake fails.
//! - Three oxcd members with peer TLS and client mTLS: one is restarted with other
//!   certificate files in place (rotation) and the cluster still serves through it; another
//!   gets new files while running and serves them from its next handshake on.
//!
//! The certificates are etcd's test fixtures (tests/fixtures/tls/README.md).

mod procs;

use procs::{
    Client, Cluster, Kind, Output, Security, Timing, client, differences, etcdctl, path_str,
    poll_for, without_client_logs,
};
use regex::Regex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn fixture_str(name: &str) -> String {
    path_str(&fixture(name)).to_string()
}

/// etcdctl's flags for a good client certificate.
fn good_client() -> Vec<String> {
    vec![
        format!("--cacert={}", fixture_str("ca.crt")),
        format!("--cert={}", fixture_str("server.crt")),
        format!("--key={}", fixture_str("server.key.insecure")),
    ]
}

/// Steps: (title, whether to dial the endpoint as plain `http://`, etcdctl flags).
fn steps() -> Vec<(&'static str, bool, Vec<String>)> {
    let good = good_client();
    let with = |extra: &[&str]| {
        let mut v = good.clone();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let failing = |flags: Vec<String>| {
        let mut v = flags;
        v.extend(["--dial-timeout=1s".to_string(), "get".into(), "foo".into()]);
        v
    };
    vec![
        ("put", false, with(&["put", "foo", "bar"])),
        ("get", false, with(&["get", "foo"])),
        ("get json", false, with(&["get", "foo", "-w", "json"])),
        ("endpoint health", false, with(&["endpoint", "health"])),
        (
            "wrong CA",
            false,
            failing(vec![
                format!("--cacert={}", fixture_str("CommonName-root.crt")),
                format!("--cert={}", fixture_str("server.crt")),
                format!("--key={}", fixture_str("server.key.insecure")),
            ]),
        ),
        (
            "no client certificate",
            false,
            failing(vec![format!("--cacert={}", fixture_str("ca.crt"))]),
        ),
        ("plaintext to the TLS port", true, failing(Vec::new())),
    ]
}

fn normalize(out: &Output, client_port: u16) -> String {
    let text = format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
    let masks = [
        (format!(r"\b{client_port}\b"), "<CLIENT>".to_string()),
        (r#""ts":"[^"]*""#.to_string(), r#""ts":"<TS>""#.to_string()),
        (r"client-[0-9a-f-]{36}".to_string(), "client-<UUID>".into()),
        (r"took = [0-9.]+[µnm]?s".to_string(), "took = <T>".into()),
        (
            r#""(cluster_id|member_id|raft_term)":\d+"#.to_string(),
            r#""$1":<ID>"#.into(),
        ),
    ];
    masks.iter().fold(text, |t, (p, r)| {
        Regex::new(p)
            .unwrap()
            .replace_all(&t, r.as_str())
            .into_owned()
    })
}

/// Client TLS with client certificates required (etcd's test certificates), and `extra`
/// server flags.
fn client_mtls(extra: &[String]) -> Security {
    let mut server_args = vec![
        format!("--cert-file={}", fixture_str("server.crt")),
        format!("--key-file={}", fixture_str("server.key.insecure")),
        format!("--trusted-ca-file={}", fixture_str("ca.crt")),
        "--client-cert-auth".to_string(),
    ];
    server_args.extend_from_slice(extra);
    Security {
        client_tls: true,
        peer_tls: false,
        server_args,
        ctl_args: good_client(),
    }
}

fn transcript(kind: Kind, which: Client) -> Vec<String> {
    let c = Cluster::start_secure(kind, 1, Timing::default(), client_mtls(&[]));
    let port = c.members[0].client_port;
    steps()
        .into_iter()
        .map(|(title, plain, args)| {
            let endpoint = if plain {
                format!("http://{}", c.endpoint(0))
            } else {
                c.endpoint(0)
            };
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = client(which, &endpoint, &args, None);
            format!("== {title}\n{}", normalize(&out, port))
        })
        .collect()
}

#[test]
fn etcdctl_sees_oxcd_client_tls_as_etcds() {
    let etcd = transcript(Kind::Etcd, Client::Etcdctl);
    let mut differ = differences(
        &etcd,
        &transcript(Kind::Oxcd, Client::Etcdctl),
        "etcd with etcdctl",
        "oxcd with etcdctl",
    );
    differ.extend(differences(
        &without_client_logs(&etcd),
        &transcript(Kind::Oxcd, Client::Oxctl),
        "etcd with etcdctl",
        "oxcd with oxctl",
    ));
    assert!(
        differ.is_empty(),
        "{} steps differ:\n{}",
        differ.len(),
        differ.join("\n\n")
    );
}

/// The CN of the certificate `addr` serves now (a fresh handshake with a good client
/// certificate).
fn served_cn(addr: &str) -> Result<Option<String>, String> {
    use std::io::Write;
    let config = oxcd::server::tls::ClientTls {
        ca_file: Some(fixture("ca.crt")),
        cert_file: Some(fixture("server.crt")),
        key_file: Some(fixture("server.key.insecure")),
        skip_verify: false,
    }
    .config()?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::clone(&config), name.to_owned())
        .map_err(|e| e.to_string())?;
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The handshake runs on the first write; its flush completes it.
    tls.flush().map_err(|e| e.to_string())?;
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    let cert = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?;
    Ok(oxcd::server::tls::common_name(cert))
}

#[test]
fn a_peer_tls_cluster_serves_through_certificate_rotation() {
    let root = tempfile::Builder::new()
        .prefix("oxcd-itest-tls-")
        .tempdir()
        .expect("a temp dir");
    // One certificate directory for all members (the flags are the cluster's): replacing
    // its files is the restarted member's rotation, and a live reload for the others.
    let shared = root.path().join("certs");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::copy(fixture("server.crt"), shared.join("server.crt")).unwrap();
    std::fs::copy(fixture("server.key.insecure"), shared.join("server.key")).unwrap();
    let cert = path_str(&shared.join("server.crt")).to_string();
    let key = path_str(&shared.join("server.key")).to_string();
    let ca = fixture_str("ca.crt");
    let security = Security {
        client_tls: true,
        peer_tls: true,
        server_args: vec![
            format!("--cert-file={cert}"),
            format!("--key-file={key}"),
            format!("--trusted-ca-file={ca}"),
            "--client-cert-auth".to_string(),
            format!("--peer-cert-file={cert}"),
            format!("--peer-key-file={key}"),
            format!("--peer-trusted-ca-file={ca}"),
            "--peer-client-cert-auth".to_string(),
        ],
        ctl_args: good_client(),
    };
    let mut c = Cluster::start_in(root, Kind::Oxcd, 3, Timing::default(), security);
    let ctl = |c: &Cluster, i: usize, args: &[&str]| {
        let mut a: Vec<String> = good_client();
        a.extend(args.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        etcdctl(&c.endpoint(i), &a, None)
    };
    let out = ctl(&c, 0, &["put", "before", "1"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(served_cn(&c.endpoint(2)), Ok(Some("example.com".into())));

    // Rotation: member 3 stops, the files get the new pair, member 3 starts on them.
    c.kill(2);
    std::fs::copy(fixture("server2.crt"), shared.join("server.crt")).unwrap();
    std::fs::copy(fixture("server2.key.insecure"), shared.join("server.key")).unwrap();
    c.spawn(2);
    c.wait_healthy(2);
    assert_eq!(served_cn(&c.endpoint(2)), Ok(Some("example2.com".into())));
    let out = ctl(&c, 2, &["put", "after", "2"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    // The running members picked up the new files at their next handshake, restart-free.
    for i in 0..2 {
        let cn = poll_for(
            "the rotated certificate",
            Duration::from_secs(10),
            || match served_cn(&c.endpoint(i)) {
                Ok(Some(cn)) if cn == "example2.com" => Ok(cn),
                other => Err(format!("member {} serves {other:?}", i + 1)),
            },
        );
        assert_eq!(cn, "example2.com");
    }
    for i in 0..3 {
        let out = ctl(&c, i, &["get", "after", "--print-value-only"]);
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), "2\n"), "{out:?}");
        let out = ctl(&c, i, &["get", "before", "--print-value-only"]);
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), "1\n"), "{out:?}");
    }
    // Raft between the members still flows over the peer TLS links: a write through member 1
    // reaches member 3's linearizable read.
    let out = ctl(&c, 0, &["put", "last", "3"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = ctl(&c, 2, &["get", "last", "--print-value-only"]);
    assert_eq!((out.code, out.stdout.as_str()), (Some(0), "3\n"), "{out:?}");
}

/// `curl` of `path` on `port` over TLS, with the good client certificate or none: its exit
/// code and what it printed (the HTTP status, then the body).
fn curl_tls(port: u16, path: &str, with_certificate: bool) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "-w", "\nHTTP %{http_code}\n"])
        .args(["--cacert", &fixture_str("ca.crt")]);
    if with_certificate {
        cmd.args(["--cert", &fixture_str("server.crt")])
            .args(["--key", &fixture_str("server.key.insecure")]);
    }
    let out = cmd
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// What etcd and oxcd serve on an `https://` `--listen-metrics-urls` listener (the client
/// side's certificates, client certificates required): the same health answer and version
/// line shape, their metrics, and a refused handshake without a client certificate.
fn metrics_over_tls(kind: Kind) -> Vec<String> {
    let metrics_port = procs::free_port();
    let metrics = format!("--listen-metrics-urls=https://127.0.0.1:{metrics_port}");
    let _c = Cluster::start_secure(kind, 1, Timing::default(), client_mtls(&[metrics]));
    let (code, health) = curl_tls(metrics_port, "/health", true);
    let (_, metrics) = curl_tls(metrics_port, "/metrics", true);
    let has_leader = metrics
        .lines()
        .any(|l| l.starts_with("etcd_server_has_leader 1"));
    let (refused, _) = curl_tls(metrics_port, "/health", false);
    // (etcd 3.4 and 3.5 word the health body differently: its `health` field is compared.)
    let healthy = health.contains(r#""health":"true""#);
    vec![
        format!(
            "health: exit {code:?}: healthy {healthy}; {}",
            health.lines().last().unwrap_or("")
        ),
        format!(
            "metrics: etcd_server_has_leader 1: {has_leader}; {}",
            metrics.lines().last().unwrap_or("")
        ),
        format!(
            "no client certificate: curl exits non-zero: {}",
            refused != Some(0)
        ),
    ]
}

#[test]
fn the_metrics_listener_serves_tls_as_etcds() {
    let etcd = metrics_over_tls(Kind::Etcd);
    let oxcd = metrics_over_tls(Kind::Oxcd);
    assert_eq!(etcd, oxcd);
    assert!(etcd[0].contains("healthy true; HTTP 200"), "{etcd:?}");
}
