#![cfg(not(madsim))]
//! Bootstrapping a cluster by DNS SRV (`--discovery-srv`): three members find each other
//! through `_etcd-server._tcp` records served by a real DNS server (dnsmasq) inside a network
//! namespace whose `resolv.conf` names it. The same steps run with etcd 3.5.1 (3.4.23 gives up
//! when the `_etcd-server-ssl._tcp` lookup fails), and both must list the same members: the
//! IDs derive from the peer URLs the records give, so they are equal too.

mod procs;

use procs::Kind;
use procs::netns::{Netns, tempfile_dir};

const MEMBERS: [(&str, u16, u16); 3] = [
    ("m1", 12380, 12379),
    ("m2", 22380, 22379),
    ("m3", 32380, 32379),
];

/// `etcdctl member list` of a cluster bootstrapped by SRV, sorted.
fn bootstrap_by_srv(kind: Kind, tag: &str) -> String {
    let mut ns = Netns::new(tag);
    let data = tempfile_dir();
    let mut dns = vec![
        "--keep-in-foreground".to_string(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--port=53".into(),
        "--listen-address=127.0.0.1".into(),
        "--bind-interfaces".into(),
    ];
    for (name, peer, _) in MEMBERS {
        dns.push(format!("--host-record={name}.oxcd.test,127.0.0.1"));
        dns.push(format!(
            "--srv-host=_etcd-server._tcp.oxcd.test,{name}.oxcd.test,{peer},0,0"
        ));
    }
    let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
    ns.spawn("dnsmasq", &dns);
    let bin = kind.bin();
    for (name, peer, client) in MEMBERS {
        let (peer, client) = (
            format!("http://127.0.0.1:{peer}"),
            format!("http://127.0.0.1:{client}"),
        );
        let dir = format!("{}/{name}", data.path());
        ns.spawn(
            bin,
            &[
                "--name",
                name,
                "--data-dir",
                &dir,
                "--discovery-srv",
                "oxcd.test",
                "--initial-cluster-token",
                "srv-test",
                "--initial-advertise-peer-urls",
                &peer,
                "--listen-peer-urls",
                &peer,
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ],
        );
    }
    let ports: Vec<u16> = MEMBERS.iter().map(|m| m.2).collect();
    ns.published_member_list(&ports)
}

#[test]
fn members_bootstrap_by_dns_srv_as_etcds_do() {
    let want = bootstrap_by_srv(Kind::Etcd35, "srvf");
    let got = bootstrap_by_srv(Kind::Oxcd, "srvo");
    assert_eq!(want.lines().count(), 3, "{want}");
    assert_eq!(got, want, "oxcd's member list differs from etcd 3.5.1's");
}
