//! The server under madsim: three real members (driver, gRPC services, core) on simulated
//! nodes, each on its own simulated disk. A client writes, one member is killed (losing its
//! unsynced writes) and restarted, more writes land, and every acknowledged write reads back
//! from the restarted member. The full harness (nemesis, workloads, checkers) is `sim`'s.
//!
//! Run with `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo test --test madsim_smoke`.

#![cfg(madsim)]

use madsim::runtime::Handle;
use oxcd::pb::etcdserverpb::kv_client::KvClient;
use oxcd::pb::etcdserverpb::{PutRequest, RangeRequest};
use oxcd::server::ServerConfig;
use oxcd::start;
use oxcd::storage::{DiskFaults, SimDisk};
use std::net::IpAddr;
use std::time::Duration;

const MEMBERS: usize = 3;

fn ip(i: usize) -> IpAddr {
    format!("10.0.0.{}", i + 1).parse().unwrap()
}

fn config(i: usize) -> ServerConfig {
    let peer = |j: usize| format!("http://{}:2380", ip(j));
    let mut c = ServerConfig::single(&format!("m{i}"), "unused".into());
    c.listen_client = vec![format!("{}:2379", ip(i))];
    c.advertise_client_urls = vec![format!("http://{}:2379", ip(i))];
    c.listen_peer = vec![format!("{}:2380", ip(i))];
    c.advertise_peer_urls = vec![peer(i)];
    c.initial_cluster = (0..MEMBERS)
        .map(|j| (format!("m{j}"), vec![peer(j)]))
        .collect();
    c
}

/// Puts `key` through any member that answers, retrying across members and elections.
async fn put(key: &str, value: &str) {
    for attempt in 0..200 {
        let url = format!("http://{}:2379", ip(attempt % MEMBERS));
        if let Ok(mut c) = KvClient::connect(url).await {
            let req = PutRequest {
                key: key.as_bytes().to_vec().into(),
                value: value.as_bytes().to_vec().into(),
                ..Default::default()
            };
            if c.put(req).await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("put {key} never succeeded");
}

/// The value member `i` holds for `key` (a serializable read: its own applied state).
async fn local_get(i: usize, key: &str) -> Option<Vec<u8>> {
    let mut c = KvClient::connect(format!("http://{}:2379", ip(i)))
        .await
        .ok()?;
    let req = RangeRequest {
        key: key.as_bytes().to_vec().into(),
        serializable: true,
        ..Default::default()
    };
    let r = c.range(req).await.ok()?.into_inner();
    r.kvs.first().map(|kv| kv.value.to_vec())
}

#[madsim::test]
async fn three_members_write_kill_restart_read_back() {
    let handle = Handle::current();
    let seed = handle.seed();
    let disks: Vec<SimDisk> = (0..MEMBERS)
        .map(|i| SimDisk::new(seed.wrapping_add(i as u64), DiskFaults::default()))
        .collect();
    let mut nodes = Vec::new();
    for (i, disk) in disks.iter().enumerate() {
        let disk = disk.clone();
        let node = handle
            .create_node()
            .name(format!("m{i}"))
            .ip(ip(i))
            .init(move || {
                let disk = disk.reopen();
                async move {
                    let server = start(config(i), disk).await.expect("the member starts");
                    // Serve until killed.
                    std::future::pending::<()>().await;
                    drop(server);
                }
            })
            .build();
        nodes.push(node.id());
    }
    let client = handle
        .create_node()
        .name("client")
        .ip("10.0.1.1".parse().unwrap())
        .build();
    let victim = 0;
    client
        .spawn(async move {
            for k in 0..20 {
                put(&format!("k{k}"), &format!("v{k}")).await;
            }
            let h = Handle::current();
            h.kill(nodes[victim]);
            // Power loss too: its unsynced writes are lost or torn as the seed decides.
            disks[victim].crash();
            for k in 20..40 {
                put(&format!("k{k}"), &format!("v{k}")).await;
            }
            h.restart(nodes[victim]);
            // The restarted member catches up from the others; poll until it has it all.
            for k in 0..40 {
                let (key, want) = (format!("k{k}"), format!("v{k}"));
                let mut got = None;
                for _ in 0..300 {
                    got = local_get(victim, &key).await;
                    if got.as_deref() == Some(want.as_bytes()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                assert_eq!(
                    got.as_deref(),
                    Some(want.as_bytes()),
                    "{key} on the restarted member"
                );
            }
        })
        .await
        .unwrap();
}
