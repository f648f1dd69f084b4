#![cfg(not(madsim))]
//! Alarms are the cluster's, not one member's: the same steps against a three-member etcd
//! 3.4.23 cluster and a three-member oxcd cluster, driven by a real client (the `etcd-client`
//! crate), must give the same transcript. An alarm raised through one member (for member 0 or
//! for a member's ID) is listed by every member, gates writes on every member (NOSPACE refuses
//! what adds data, CORRUPT every change), is cleared the same way, and survives a restart of
//! every member.
//!
//! Member IDs differ between the two servers (another hash of the same flags), so the
//! transcript names members by their position; every other word is the server's own.

mod procs;

use etcd_client::{AlarmAction, AlarmOptions, AlarmResponse, AlarmType, Client, Txn, TxnOp};
use procs::{Cluster, Kind, Timing};
use std::time::Duration;

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

async fn connect(endpoint: &str) -> Client {
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10));
    Client::connect([format!("http://{endpoint}")], Some(opts))
        .await
        .expect("connect")
}

/// One cluster and the words its steps produced.
struct Run {
    cluster: Cluster,
    /// Member IDs by position (m1, m2, m3).
    ids: Vec<u64>,
    clients: Vec<Client>,
    lines: Vec<String>,
}

impl Run {
    async fn start(kind: Kind) -> Run {
        let cluster = Cluster::start(kind, 3, Timing::default());
        let mut clients = Vec::new();
        for i in 0..3 {
            clients.push(connect(&cluster.endpoint(i)).await);
        }
        let list = clients[0].member_list().await.expect("member list");
        let ids = cluster
            .members
            .iter()
            .map(|m| {
                list.members()
                    .iter()
                    .find(|x| x.name() == m.name)
                    .unwrap_or_else(|| panic!("{} is not in the member list", m.name))
                    .id()
            })
            .collect();
        Run {
            cluster,
            ids,
            clients,
            lines: Vec::new(),
        }
    }

    /// A member ID in position words: `m1`..`m3`, or the number itself.
    fn name(&self, id: u64) -> String {
        match self.ids.iter().position(|x| *x == id) {
            Some(i) => format!("m{}", i + 1),
            None => id.to_string(),
        }
    }

    fn alarms(&self, r: &AlarmResponse) -> String {
        // Sorted: etcd lists from a Go map, in no fixed order.
        let mut words: Vec<String> = r
            .alarms()
            .iter()
            .map(|a| format!("{}:{:?}", self.name(a.member_id()), a.alarm()))
            .collect();
        words.sort();
        format!("[{}]", words.join(" "))
    }

    /// `action` on `kind` for `member` (a position, or None: member ID 0), through member `via`.
    async fn alarm(
        &mut self,
        via: usize,
        action: AlarmAction,
        kind: AlarmType,
        member: Option<usize>,
    ) {
        let mut opts = AlarmOptions::new();
        let target = member.map_or(0, |m| self.ids[m]);
        opts.with_member(target);
        let r = self.clients[via].alarm(action, kind, Some(opts)).await;
        let line = match r {
            Ok(r) => self.alarms(&r),
            Err(e) => format!("error {e}"),
        };
        let who = member.map_or("0".to_string(), |m| format!("m{}", m + 1));
        self.lines.push(format!(
            "{action:?} {kind:?} for {who} via m{}: {line}",
            via + 1
        ));
    }

    /// The alarms every member lists.
    async fn list_all(&mut self, when: &str) {
        for i in 0..3 {
            let r = self.clients[i]
                .alarm(AlarmAction::Get, AlarmType::None, None)
                .await;
            let line = match r {
                Ok(r) => self.alarms(&r),
                Err(e) => format!("error {e}"),
            };
            self.lines.push(format!("{when}: m{} lists {line}", i + 1));
        }
    }

    /// Writes and reads through member `via`, each as ok or its error.
    async fn writes(&mut self, via: usize, tag: &str) {
        let c = &mut self.clients[via];
        let key = format!("alarm/{tag}");
        let put = c.put(key.clone(), "v", None).await.map(|_| ());
        let txn_put = c
            .txn(Txn::new().and_then([TxnOp::put(key.clone(), "w", None)]))
            .await
            .map(|_| ());
        let txn_get = c
            .txn(Txn::new().and_then([TxnOp::get(key.clone(), None)]))
            .await
            .map(|_| ());
        let grant = c.lease_grant(60, None).await.map(|_| ());
        let get = c.get(key.clone(), None).await.map(|_| ());
        let delete = c.delete(key, None).await.map(|_| ());
        for (what, r) in [
            ("put", put),
            ("txn with a put", txn_put),
            ("txn with a get", txn_get),
            ("lease grant", grant),
            ("get", get),
            ("delete", delete),
        ] {
            let outcome = match r {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("error {e}"),
            };
            self.lines
                .push(format!("{what} via m{}: {outcome}", via + 1));
        }
    }

    /// Stops every member with SIGTERM, then starts each again on its data dir.
    async fn restart_all(&mut self) {
        for i in 0..3 {
            self.cluster.terminate(i);
            let cluster = &mut self.cluster;
            procs::poll_until("a member to exit", EXIT_TIMEOUT, || cluster.try_wait(i));
        }
        for i in 0..3 {
            self.cluster.spawn(i);
        }
        for i in 0..3 {
            self.cluster.wait_healthy(i);
        }
        for i in 0..3 {
            self.clients[i] = connect(&self.cluster.endpoint(i)).await;
        }
        self.lines.push("every member restarted".into());
    }
}

async fn transcript(kind: Kind) -> Vec<String> {
    use AlarmAction::{Activate, Deactivate};
    use AlarmType::{Corrupt, Nospace};
    let mut run = Run::start(kind).await;
    run.list_all("at first").await;

    run.alarm(1, Activate, Nospace, None).await;
    run.list_all("NOSPACE for 0").await;
    run.writes(2, "a").await;
    // Raising a raised alarm answers with it and changes nothing.
    run.alarm(0, Activate, Nospace, None).await;
    run.alarm(2, Activate, Nospace, Some(0)).await;
    run.list_all("NOSPACE for 0 and m1").await;

    run.restart_all().await;
    run.list_all("after the restart").await;
    run.writes(0, "b").await;

    run.alarm(2, Deactivate, Nospace, None).await;
    run.alarm(1, Deactivate, Nospace, None).await;
    run.list_all("NOSPACE cleared for 0").await;
    run.alarm(1, Deactivate, Nospace, Some(0)).await;
    run.list_all("NOSPACE cleared").await;
    run.writes(1, "c").await;

    run.alarm(0, Activate, Corrupt, Some(2)).await;
    run.list_all("CORRUPT for m3").await;
    run.writes(1, "d").await;
    run.alarm(1, Deactivate, Corrupt, Some(1)).await;
    run.alarm(1, Deactivate, Corrupt, Some(2)).await;
    run.list_all("CORRUPT cleared").await;
    run.writes(2, "e").await;
    run.lines
}

#[tokio::test]
async fn alarms_are_replicated_gated_and_kept_as_etcd_does() {
    let etcd = transcript(Kind::Etcd).await;
    let oxcd = transcript(Kind::Oxcd).await;
    let mut differ = Vec::new();
    for (i, (e, o)) in etcd.iter().zip(&oxcd).enumerate() {
        if e != o {
            differ.push(format!("step {i}\n  etcd: {e}\n  oxcd: {o}"));
        }
    }
    assert_eq!(etcd.len(), oxcd.len(), "both ran every step");
    assert!(
        differ.is_empty(),
        "oxcd differs from etcd:\n{}\n\netcd's whole transcript:\n{}",
        differ.join("\n"),
        etcd.join("\n")
    );
}
