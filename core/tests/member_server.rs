//! The member server's request timeouts: a request with no outcome is answered
//! `Refusal::Timeout` once the request timeout has passed, `poll_timeout` says when, and a
//! member that stops answers everything still waiting; a command whose simple token another
//! member issued at an index not applied here waits for it; a member that leads alone
//! answers linearizable reads and covered keep-alives at once, one that does not never.

use oxcd_core::lease::{IdGen, LessorConfig};
use oxcd_core::mvcc::WatchConfig;
use oxcd_core::node::{
    Member, MemberConfig, MemberRecord, MemberServer, PolicyConfig, Refusal, Response, Waiter,
};
use oxcd_core::raft;
use oxcd_core::storage::{DiskFaults, SimDisk};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const ELECTION_MS: u64 = 1000;
const TICK_MS: u64 = 100;

#[derive(Debug, PartialEq, Eq)]
struct Client(u32);

impl Waiter for Client {
    fn abandoned(&self) -> bool {
        false
    }
}

/// Member 1 of a three-voter cluster whose peers never answer: it can neither lead nor
/// confirm a read.
fn lonely_member() -> MemberServer<SimDisk, Client> {
    member_of(vec![1, 2, 3])
}

/// Member 1 of a new cluster of `voters`.
fn member_of(voters: Vec<u64>) -> MemberServer<SimDisk, Client> {
    let mut raft = raft::Config::new(1);
    raft.election_ticks = (ELECTION_MS / TICK_MS) as usize;
    let records = voters
        .iter()
        .map(|&id| {
            let record = MemberRecord {
                id,
                name: format!("m{id}"),
                peer_urls: vec![format!("http://m{id}:2380")],
                client_urls: vec![format!("http://m{id}:2379")],
                version: String::new(),
            };
            (id, record.encode())
        })
        .collect();
    let config = MemberConfig {
        raft,
        initial_voters: voters,
        cluster_id: 7,
        initial_members: records,
        lessor: LessorConfig::new(ELECTION_MS, TICK_MS),
        watch: WatchConfig::default(),
        txn_ops_max: 128,
        force_new_cluster: false,
    };
    let disk = SimDisk::new(1, DiskFaults::default());
    let member = Member::open(disk, config, ChaCha8Rng::seed_from_u64(1), 0).expect("opens");
    let mut server = MemberServer::new(member, PolicyConfig::new(ELECTION_MS), 1, IdGen::new(1, 0));
    let cs = server.membership_now();
    server.on_membership(&cs);
    server
}

/// One turn of a driver loop with nothing to send anywhere.
fn turn(s: &mut MemberServer<SimDisk, Client>, now_ms: u64) -> Vec<(Client, Response)> {
    s.start_turn(now_ms);
    while s.has_ready() {
        let _ = s.early_messages();
        s.handle_ready(now_ms)
            .expect("the simulated disk does not fail");
        s.after_ready(now_ms);
    }
    s.finish_turn(now_ms);
    std::iter::from_fn(|| s.poll_response()).collect()
}

#[test]
fn an_unconfirmed_read_times_out_when_poll_timeout_says() {
    let mut s = lonely_member();
    let timeout_ms = PolicyConfig::new(ELECTION_MS).request_timeout_ms;
    s.handle_read(Client(1), 250);
    assert!(turn(&mut s, 250).is_empty());
    s.handle_read(Client(2), 400);
    assert!(turn(&mut s, 400).is_empty());
    assert_eq!(s.poll_timeout(), Some(250 + timeout_ms));
    let mut answered = Vec::new();
    let mut now = 400;
    while now < 400 + timeout_ms + TICK_MS {
        now += TICK_MS;
        s.tick(now);
        for (client, response) in turn(&mut s, now) {
            let Response::Read(Err(Refusal::Timeout)) = response else {
                panic!("{client:?} got {response:?}");
            };
            answered.push((client.0, now));
        }
    }
    // Answered at the first tick at or after each one's deadline, not before.
    assert_eq!(
        answered,
        vec![(1, 250 + timeout_ms + 50), (2, 400 + timeout_ms)]
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn a_stopping_member_answers_every_waiting_request() {
    let mut s = lonely_member();
    s.handle_read(Client(1), 0);
    assert!(turn(&mut s, 0).is_empty());
    s.handle_read(Client(2), 10);
    s.handle_removed_by_peer();
    let answers: Vec<_> = std::iter::from_fn(|| s.poll_response()).collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    for (_, response) in answers {
        assert!(
            matches!(response, Response::Read(Err(Refusal::Stopped))),
            "{response:?}"
        );
    }
}

#[test]
fn a_request_is_not_answered_before_its_deadline() {
    let mut s = lonely_member();
    let timeout_ms = PolicyConfig::new(ELECTION_MS).request_timeout_ms;
    s.handle_read(Client(1), 0);
    assert!(turn(&mut s, 0).is_empty());
    s.tick(timeout_ms - 1);
    assert!(turn(&mut s, timeout_ms - 1).is_empty());
    // A turn at the deadline answers it even without a tick (the driver wakes at
    // `poll_timeout`).
    let answers = turn(&mut s, timeout_ms);
    assert_eq!(answers.len(), 1, "{answers:?}");
}

#[test]
fn a_token_from_an_index_not_applied_here_waits_for_it() {
    use bytes::Bytes;
    use oxcd_core::mvcc::PutRequest;
    use oxcd_core::node::{ApplyError, Command, Credential};
    let mut s = lonely_member();
    let timeout_ms = PolicyConfig::new(ELECTION_MS).request_timeout_ms;
    let put = || {
        Command::Put(PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            ..Default::default()
        })
    };
    // Issued at index 50, which this member has not applied: it waits (and here, where
    // nothing commits, times out) instead of being refused as unknown.
    let ahead = Credential::Token("abcdef.50".into());
    s.handle_propose_as(&ahead, put(), Client(1), 0);
    assert!(turn(&mut s, 0).is_empty());
    assert_eq!(s.poll_timeout(), Some(timeout_ms));
    // A token this member could know and does not is refused at once.
    let unknown = Credential::Token("abcdef".into());
    s.handle_propose_as(&unknown, put(), Client(2), 10);
    let answers: Vec<_> = std::iter::from_fn(|| s.poll_response()).collect();
    assert!(
        matches!(
            &answers[..],
            [(
                Client(2),
                Response::Command(Err(Refusal::Apply(ApplyError::Auth(_))))
            )]
        ),
        "{answers:?}"
    );
    s.tick(timeout_ms);
    let answers = turn(&mut s, timeout_ms);
    assert!(
        matches!(
            &answers[..],
            [(Client(1), Response::Command(Err(Refusal::Timeout)))]
        ),
        "{answers:?}"
    );
}

#[test]
fn a_member_that_leads_alone_answers_reads_and_covered_keep_alives_at_once() {
    use oxcd_core::node::{Applied, Command};
    let mut s = member_of(vec![1]);
    // Not leading yet: a read waits for a round.
    assert!(!s.reads_at_once());
    s.handle_read(Client(1), 0);
    assert!(s.poll_response().is_none());
    let mut now = 0;
    while !s.is_leader() || !s.reads_at_once() {
        now += TICK_MS;
        assert!(now <= 10 * ELECTION_MS, "the only voter leads");
        s.tick(now);
        turn(&mut s, now);
    }
    // Leading alone, with this term's entry applied: answered without a turn.
    s.handle_read(Client(2), now);
    let answer = s.poll_response();
    assert!(
        matches!(answer, Some((Client(2), Response::Read(Ok(()))))),
        "{answer:?}"
    );
    s.handle_propose(Command::LeaseGrant { id: 0, ttl_s: 10 }, Client(3), now);
    let granted = turn(&mut s, now);
    let [(Client(3), Response::Command(Ok((Applied::LeaseGrant(g), _))))] = &granted[..] else {
        panic!("{granted:?}");
    };
    let id = g.id;
    // The first renew goes past every committed deadline: it waits for its checkpoint.
    assert!(s.keep_alive_at_once(id, now).is_none());
    s.handle_keep_alive(id, Client(4), now);
    let mut answers = Vec::new();
    while answers.is_empty() {
        now += TICK_MS;
        assert!(now <= 20 * ELECTION_MS, "the checkpoint commits");
        s.tick(now);
        answers = turn(&mut s, now);
    }
    assert!(
        matches!(
            &answers[..],
            [(Client(4), Response::KeepAlive(Ok((10, _))))]
        ),
        "{answers:?}"
    );
    // The checkpoint's deadline covers a renew now: answered on the spot.
    let renewed = s.keep_alive_at_once(id, now);
    assert!(matches!(renewed, Some(Ok((10, _)))), "{renewed:?}");
    // Half a TTL later the renew goes past what was committed: it waits for a checkpoint.
    assert!(s.keep_alive_at_once(id, now + 5000).is_none());
}

#[test]
fn a_member_that_cannot_confirm_it_leads_reads_nothing_at_once_and_refuses_keep_alives() {
    let mut s = lonely_member();
    assert!(!s.reads_at_once());
    // Not the leader: a keep-alive is refused on the spot, as the inbox refuses it, for the
    // front end to forward it to the leader.
    let at_once = s.keep_alive_at_once(1, 0);
    assert!(
        matches!(at_once, Some(Err(Refusal::NotLeader))),
        "{at_once:?}"
    );
    s.handle_keep_alive(1, Client(2), 0);
    let answer = s.poll_response();
    assert!(
        matches!(
            answer,
            Some((Client(2), Response::KeepAlive(Err(Refusal::NotLeader))))
        ),
        "{answer:?}"
    );
    s.handle_read(Client(1), 0);
    assert!(s.poll_response().is_none());
}
