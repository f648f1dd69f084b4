#![cfg(not(madsim))]
//! Bootstrapping a cluster through a discovery service (`--discovery <url>`, etcd 3.4's
//! protocol over v2 keys): three members register at a one-member cluster serving
//! `--enable-v2` and find each other there. Run three ways, each in a network namespace of
//! its own (so every run has the same ports, and so the same member IDs): etcd 3.4.23 members
//! at an etcd 3.4.23 service, oxcd members at an oxcd service, and oxcd members at an etcd
//! service. The three `member list`s must be equal, IDs included (they derive from the peer
//! URLs and the discovery URL). Each time a fourth member comes after the cluster is full and
//! becomes a v2 proxy to it (`--discovery-fallback=proxy`, etcd's default). In the mixed run
//! the members reach the service through an HTTP proxy (tinyproxy, `--discovery-proxy`).

mod procs;

use procs::netns::{Netns, tempfile_dir};
use procs::{Kind, READY_TIMEOUT, poll_for};

const SERVICE: (u16, u16) = (4001, 4002);
const MEMBERS: [(&str, u16, u16); 3] = [
    ("m1", 12380, 12379),
    ("m2", 22380, 22379),
    ("m3", 32380, 32379),
];

/// Starts `kind` named `name` in `ns` with its data under `data`, plus `extra` flags.
fn member(
    ns: &mut Netns,
    kind: Kind,
    data: &str,
    (name, peer, client): (&str, u16, u16),
    extra: &[&str],
) {
    let (peer, client) = (
        format!("http://127.0.0.1:{peer}"),
        format!("http://127.0.0.1:{client}"),
    );
    let dir = format!("{data}/{name}");
    let mut args = vec![
        "--name",
        name,
        "--data-dir",
        &dir,
        "--initial-advertise-peer-urls",
        &peer,
        "--listen-peer-urls",
        &peer,
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
    ];
    args.extend_from_slice(extra);
    ns.spawn(kind.bin(), &args);
}

/// The port of the HTTP proxy (tinyproxy) that members reach the service through, when a
/// run asks for one.
const HTTP_PROXY: u16 = 8888;

/// The sorted `member list` of three `members` founded through a `service` discovery service,
/// reached straight or, with `through_proxy`, through tinyproxy (`--discovery-proxy`), whose
/// log must then show the members' requests.
fn bootstrap(service: Kind, members: Kind, tag: &str, through_proxy: bool) -> String {
    let mut ns = Netns::new(tag);
    let data = tempfile_dir();
    let proxy_log = format!("{}/tinyproxy.log", data.path());
    let mut proxy_flags: Vec<String> = Vec::new();
    if through_proxy {
        let conf = format!("{}/tinyproxy.conf", data.path());
        std::fs::write(
            &conf,
            format!(
                "Port {HTTP_PROXY}\nListen 127.0.0.1\nTimeout 600\nAllow 127.0.0.1\n\
                 LogFile \"{proxy_log}\"\nLogLevel Info\nMaxClients 100\n"
            ),
        )
        .expect("tinyproxy's configuration");
        ns.spawn("tinyproxy", &["-d", "-c", &conf]);
        poll_for("tinyproxy to listen", READY_TIMEOUT, || {
            ns.listens(HTTP_PROXY)
                .then_some(())
                .ok_or_else(|| "not yet".to_string())
        });
        proxy_flags = vec![
            "--discovery-proxy".to_string(),
            format!("http://127.0.0.1:{HTTP_PROXY}"),
        ];
    }
    let peer = format!("http://127.0.0.1:{}", SERVICE.1);
    let cluster = format!("ds={peer}");
    member(
        &mut ns,
        service,
        data.path(),
        ("ds", SERVICE.1, SERVICE.0),
        &["--enable-v2", "--initial-cluster", &cluster],
    );
    let ds = format!("http://127.0.0.1:{}", SERVICE.0);
    poll_for(
        "the discovery service to take the size",
        READY_TIMEOUT,
        || {
            let out = ns
                .command(
                    "etcdctl",
                    &[
                        &format!("--endpoints={ds}"),
                        "set",
                        "/_etcd/registry/tok/_config/size",
                        "3",
                    ],
                )
                .env("ETCDCTL_API", "2")
                .output()
                .expect("etcdctl runs");
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    );
    let durl = format!("{ds}/v2/keys/_etcd/registry/tok");
    let mut flags: Vec<&str> = vec!["--discovery", &durl];
    flags.extend(proxy_flags.iter().map(String::as_str));
    for m in MEMBERS {
        // `--enable-v2`: the late member's proxy check reads `/v2/members` through it.
        let mut flags = flags.clone();
        flags.push("--enable-v2");
        member(&mut ns, members, data.path(), m, &flags);
    }
    let ports: Vec<u16> = MEMBERS.iter().map(|m| m.2).collect();
    let list = ns.published_member_list(&ports);
    // A fourth finds the cluster full and, with etcd's default `--discovery-fallback=proxy`,
    // serves as a v2 proxy to it: an HTTP request to it is a member's answer.
    let (name, peer, client) = LATE;
    member(&mut ns, members, data.path(), LATE, &flags);
    let proxied = poll_for("the late member to serve as a proxy", READY_TIMEOUT, || {
        let out = ns
            .command(
                "curl",
                &[
                    "-s",
                    "-m",
                    "2",
                    &format!("http://127.0.0.1:{client}/v2/members"),
                ],
            )
            .output()
            .expect("curl runs");
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        if body.contains("\"members\"") {
            Ok(body)
        } else {
            Err(body)
        }
    });
    for (m, p, _) in MEMBERS {
        assert!(
            proxied.contains(&format!("\"name\":\"{m}\"")),
            "{m} in {proxied}"
        );
        assert!(
            proxied.contains(&format!("127.0.0.1:{p}")),
            "{m}'s peer URL in {proxied}"
        );
    }
    assert!(
        !proxied.contains(name) && !proxied.contains(&peer.to_string()),
        "the late member did not join: {proxied}"
    );
    assert_eq!(
        ns.published_member_list(&ports),
        list,
        "the cluster is unchanged"
    );
    if through_proxy {
        let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
        let registration = format!("PUT {durl}/");
        assert!(
            log.contains(&registration) && log.contains(&format!("GET {durl}")),
            "the members' requests went through the HTTP proxy: {log}"
        );
    }
    list
}

/// A member that comes after the cluster is full.
const LATE: (&str, u16, u16) = ("m4", 42380, 42379);

#[test]
fn members_bootstrap_through_a_discovery_service_as_etcds_do() {
    let want = bootstrap(Kind::Etcd, Kind::Etcd, "dse", false);
    assert_eq!(want.lines().count(), 3, "{want}");
    let own = bootstrap(Kind::Oxcd, Kind::Oxcd, "dso", false);
    assert_eq!(
        own, want,
        "oxcd members at oxcd's service differ from etcd's"
    );
    let mixed = bootstrap(Kind::Etcd, Kind::Oxcd, "dsm", true);
    assert_eq!(
        mixed, want,
        "oxcd members at etcd's service differ from etcd's"
    );
}
