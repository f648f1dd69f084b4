#![cfg(not(madsim))]
//! `oxcd gateway start`, etcd's L4 gateway, next to `etcd gateway start` on the same steps:
//! etcdctl through the gateway works as against a member, and keeps working when a member
//! behind it dies (new connections go to the live ones); and a gateway that finds its members
//! by DNS SRV records, served by a real DNS server (dnsmasq) inside a network namespace whose
//! `resolv.conf` names it.

mod procs;

use procs::netns::{Netns, tempfile_dir};
use procs::{Cluster, Kind, READY_TIMEOUT, Timing, etcdctl, free_port, poll_until};
use std::process::{Child, Command, Stdio};

/// A gateway process, stopped by PID when dropped.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(kind: Kind, endpoints: &str, listen: &str) -> Gateway {
    let bin = kind.bin();
    let mut c = Command::new(bin);
    // Flags before `start`, as etcd's e2e test gives them.
    c.args([
        "gateway",
        &format!("--endpoints={endpoints}"),
        "start",
        &format!("--listen-addr={listen}"),
        "--retry-delay=1h",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    procs::die_with_parent(&mut c);
    let g = Gateway(c.spawn().expect("the gateway starts"));
    poll_until("the gateway to listen", READY_TIMEOUT, || {
        std::net::TcpStream::connect(listen).ok()
    });
    g
}

fn ok(out: &procs::Output, want: &str, what: &str) {
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(0), want),
        "{what}: {out:?}"
    );
}

/// `GET /version` over one new connection through the gateway: the answer's text, or what
/// came before the connection closed.
fn version_through(gateway: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(gateway).expect("connect to the gateway");
    conn.set_read_timeout(Some(READY_TIMEOUT))
        .expect("a timeout");
    conn.write_all(b"GET /version HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
}

fn through_a_gateway(kind: Kind) {
    let mut cluster = Cluster::start(kind, 3, Timing::default());
    let listen = format!("127.0.0.1:{}", free_port());
    let _gateway = start_gateway(kind, &cluster.endpoints(), &listen);
    ok(
        &etcdctl(&listen, &["put", "foo", "bar"], None),
        "OK\n",
        "put",
    );
    ok(
        &etcdctl(&listen, &["get", "foo"], None),
        "foo\nbar\n",
        "get",
    );
    // A member behind the gateway dies: every new connection still finds a live one (raw
    // connections here, as etcdctl would retry one that closed).
    cluster.kill(0);
    for i in 0..6 {
        assert!(
            version_through(&listen).starts_with("HTTP/1.1 200 OK"),
            "connection {i} found no live member"
        );
    }
    // (The killed member may have led: the writes wait for the next leader.)
    cluster.wait_healthy(1);
    cluster.wait_healthy(2);
    for i in 0..6 {
        let key = format!("k{i}");
        ok(&etcdctl(&listen, &["put", &key, "v"], None), "OK\n", &key);
    }
    ok(
        &etcdctl(&listen, &["get", "k", "--prefix", "--keys-only"], None),
        "k0\n\nk1\n\nk2\n\nk3\n\nk4\n\nk5\n\n",
        "get --prefix",
    );
    ok(&etcdctl(&listen, &["del", "foo"], None), "1\n", "del");
}

#[test]
fn etcdctl_works_through_etcds_gateway() {
    through_a_gateway(Kind::Etcd);
}

#[test]
fn etcdctl_works_through_oxcds_gateway() {
    through_a_gateway(Kind::Oxcd);
}

/// The gateway finds the member through `_etcd-client._tcp` SRV records; the record with the
/// better priority names a port nothing listens on, so the gateway must set it aside and use
/// the other.
fn gateway_by_srv(kind: Kind) {
    let mut ns = Netns::new(&format!("gw{}", kind_tag(kind)));
    let data = tempfile_dir();
    // Not 2379: a gateway that found no records would fall back to 127.0.0.1:2379.
    let (client, peer, dead, gw) = (12379, 12380, 12479, 23790);
    ns.spawn(
        "dnsmasq",
        &[
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--port=53",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--host-record=m1.oxcd.test,127.0.0.1",
            "--host-record=m2.oxcd.test,127.0.0.1",
            &format!("--srv-host=_etcd-client._tcp.oxcd.test,m1.oxcd.test,{client},10,0"),
            &format!("--srv-host=_etcd-client._tcp.oxcd.test,m2.oxcd.test,{dead},0,0"),
        ],
    );
    let bin = kind.bin();
    let curl = |p: u16| format!("http://127.0.0.1:{p}");
    ns.spawn(
        bin,
        &[
            "--data-dir",
            data.path(),
            "--listen-client-urls",
            &curl(client),
            "--advertise-client-urls",
            &curl(client),
            "--listen-peer-urls",
            &curl(peer),
            "--initial-advertise-peer-urls",
            &curl(peer),
            "--initial-cluster",
            &format!("default={}", curl(peer)),
        ],
    );
    poll_until("DNS and the member to listen", READY_TIMEOUT, || {
        (ns.listens(client)).then_some(())
    });
    ns.spawn(
        bin,
        &[
            "gateway",
            "start",
            "--discovery-srv=oxcd.test",
            // Plain http records are refused without it (etcd's default).
            "--insecure-discovery",
            // Plain http records are refused without it (etcd's default).
            "--insecure-discovery",
            &format!("--listen-addr=127.0.0.1:{gw}"),
            "--retry-delay=1h",
        ],
    );
    poll_until("the gateway to listen", READY_TIMEOUT, || {
        ns.listens(gw).then_some(())
    });
    let ep = format!("127.0.0.1:{gw}");
    for i in 0..3 {
        let key = format!("k{i}");
        ok(&ns.etcdctl(&ep, &["put", &key, "v"]), "OK\n", &key);
    }
    ok(
        &ns.etcdctl(&ep, &["get", "k", "--prefix", "--keys-only"]),
        "k0\n\nk1\n\nk2\n\n",
        "get",
    );
}

fn kind_tag(kind: Kind) -> &'static str {
    match kind {
        Kind::Oxcd => "o",
        Kind::Etcd => "e",
        Kind::Etcd35 => "f",
    }
}

#[test]
fn etcds_gateway_finds_members_by_dns_srv() {
    gateway_by_srv(Kind::Etcd);
}

#[test]
fn oxcds_gateway_finds_members_by_dns_srv() {
    gateway_by_srv(Kind::Oxcd);
}
