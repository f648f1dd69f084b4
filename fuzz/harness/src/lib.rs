//! Fuzz harnesses: deterministic functions of a byte string, shared by the cargo-fuzz targets
//! in `fuzz/fuzz_targets/` and by this crate's corpus replay test (`tests/corpus.rs`). A harness
//! panics exactly when it found something. It reaches the core (Raft, the log's codec, stored
//! values, snapshots) through `oxcd-core` and the API edge (`api::convert`, the generated
//! protobuf types, the peer codec) through `oxcd`; neither crate knows about it.
//!
//! What it does not do: no clock, no OS randomness, no threads, no I/O. The same bytes always
//! take the same path, so any input the fuzzer reports replays on the stable toolchain.
//!
//! # `conf_change_decode`
//!
//! `ConfChange::decode` must never panic on any bytes. When it accepts them, the value must
//! round-trip (`decode` of its `encode` gives it back), and the encoding must be canonical
//! (`encode` gives back exactly the input), except that leaving a joint configuration also
//! decodes from its explicit form while `encode` writes it as no bytes at all.
//!
//! # `command_decode`
//!
//! `Command::decode` must never panic on any bytes, and what it accepts must round-trip and be
//! canonical: `encode` gives back exactly the input. The harness tries the input twice: as a
//! whole frame, and as a command payload that it frames itself with a correct checksum. Random
//! bytes rarely pass the CRC-32C, so without the second reading the fuzzer would spend its
//! time on the frame check and seldom reach the payload parser (tags, counts, nesting).
//!
//! # `request_decode`
//!
//! What the API edge decodes from clients and peers must never panic. The first byte picks a
//! message (modulo [`REQUEST_KINDS`]): `RangeRequest`, `PutRequest`, `DeleteRangeRequest`,
//! `TxnRequest`, `CompactionRequest`, `WatchRequest`, `LeaseGrantRequest`, or the peer
//! protocol's `RaftBatch`. prost decodes the rest as that message and, when it decodes,
//! `api::convert` converts it to the core's type. What converts must come back unchanged
//! through the wire type and its bytes (core, wire, core), and a write must come back
//! unchanged through the log's codec (`Command::encode`, then `decode`): nothing the API edge
//! lets in may trip the codec's assertions (a transaction nested too deep, for one).
//!
//! # `raft_step`
//!
//! One member (id 1) of a three-voter cluster `{1, 2, 3}` bootstrapped the way a founding
//! member is (`MemStorage::new_with_conf_state`, `Config::new(1)`, `ChaCha8Rng` seeded with 0),
//! driven by a sequence of operations decoded from the input by `Input`, a hand-written byte
//! reader (past the end it reads zeros; the run stops at the first operation boundary with no
//! input left, or after [`RAFT_STEP_OPS_MAX`] operations). The operations are the owner's calls
//! (`tick`, `propose`, `propose_conf_change`, `read_index`, `campaign`, `transfer_leader`,
//! `report_unreachable`, `report_snapshot`), two owner actions (restart from the stored state;
//! snapshot the applied state and compact the storage up to it) and, most often, `step` of a
//! message from a peer.
//!
//! After every operation (and after every single tick) the harness handles each Ready the way
//! `Ready`'s docs tell an owner to: persist the snapshot, the entries and the hard state into
//! the `MemStorage`, "send" the messages (to nobody: the peers are imaginary, see below),
//! apply the snapshot and the committed entries (configuration changes through
//! `RawNode::apply_conf_change` when they decode), then `advance`. One operation code defers
//! the `advance` of the Ready that follows an operation until after a second operation, as an
//! asynchronous owner does (`RawNode` takes input between `ready` and `advance`).
//!
//! ## The peers: only what a correct peer could send
//!
//! Peers 2, 3 and 4 (4 is not a member until a configuration change adds it) are not real
//! nodes, but the messages made up for them are ones correct Raft peers could send, possibly
//! late, duplicated or reordered: a panic on a message that no correct peer sends would be a
//! finding about the fuzzer, not about Raft (etcd's raft, too, treats, say, a heartbeat
//! committing past the follower's log as a fatal invariant violation). To that end the harness
//! keeps a *ghost* of the rest of the cluster: for every term in which a peer leads, that
//! leader's log (`Ghost`). The constraints:
//!
//! 1. **Peers never use id 1.** It is the node's own id; no correct peer sends under it. The
//!    one exception is a forwarded `TransferLeader`, whose `from` names the transferee and may
//!    name the node (`RawNode::step` refuses it as sent under the node's own id, which is
//!    harmless: a transfer to the leader itself does nothing).
//! 2. **At most one leader per term.** Leader messages (`Append`, `Heartbeat`, `Snapshot`,
//!    `TimeoutNow`, `ReadIndexResponse`) for term `t` all come from the ghost leader of `t`.
//!    No ghost leads a term the node led, and no peer grants the node a vote in a term a ghost
//!    leads (the ghost's majority and the node's cannot both exist). When the node voted for a
//!    peer in the current term, that peer is the one who leads it.
//! 3. **A leader's messages describe one log that only grows.** Appends carry consecutive
//!    entries of the ghost's log after a `(index, log_term)` of that same log; its entries
//!    never change, they are only added to (with the ghost's term, by the ghost). Stale and
//!    reordered messages are any earlier slice of it, and any commit index up to the ghost's.
//! 4. **Leader Completeness.** A ghost's log starts as a prefix of the node's log (or of an
//!    older ghost's log that agrees with the node's committed entries) reaching at least the
//!    node's commit index, followed by the new leader's empty entry. So no append, snapshot or
//!    commit index ever contradicts an entry the node has committed; in particular appends
//!    never rewrite at or below the node's commit index with a different term.
//! 5. **A heartbeat commits no more than the follower acknowledged.** A leader sends
//!    `min(match, commit)`, and `match` only comes from append responses of its term: the
//!    heartbeat's commit is at most the highest index the node acknowledged to that leader in
//!    that term (which implies it is within the node's log), and at most the ghost's commit.
//! 6. **Snapshots** are of a ghost's log at an index it holds (the ghost's commit index moves
//!    up to it), with the term that log has there, and a configuration `changer` accepts
//!    (incoming voters never empty, learners disjoint from voters, `learners_next` only
//!    outgoing voters, `auto_leave` only when joint). Whether it includes node 1 is random.
//! 7. **Candidates** ask for terms of at least 2 (every member starts at term 1) and describe
//!    a last entry whose term is below the term they ask for (pre-vote: below the term they
//!    would campaign for).
//! 8. **Vote grants** come only for the node's current term (pre-vote grants: the node's term
//!    or the next). Rejections may carry any nearby term, higher ones included.
//! 9. **Followers' answers to the node as leader** carry the node's term, or one less (late),
//!    or one more (the follower moved on). They acknowledge at most the node's last index (a
//!    follower acknowledges only entries it holds, and those it holds in the leader's term
//!    came from the leader, or were committed before and so are in the leader's log); a
//!    rejection names an index within the log, a hint at or below it, and a term no higher
//!    than the node's.
//! 10. **Forwarded requests** look like what `RawNode` forwards: `Propose` with one or two
//!     entries and `ReadIndex` with term 0, `TransferLeader` with a term no higher than the
//!     node's (the follower's, which forwards only to the leader of its term).
//!
//! The node's own calls are unconstrained: any proposal, read, campaign or transfer is legal
//! owner input.
//!
//! ## What else is checked
//!
//! Besides "no panic" inside the core, the harness asserts what an owner relies on: the
//! durable term never goes back, nor the commit index, and the vote never changes within a
//! term; a Ready's entries are consecutive and never rewrite a durable committed entry; its
//! snapshot is above the durable commit index; committed entries come in order without gaps
//! and an index is never applied with two different terms (also across restarts); a vote
//! grant leaves only once the vote is durable; an append acknowledgement leaves only once the
//! acknowledged entries are durable, and they match the leader's log; no message goes to
//! nobody or to the node itself; messages sent before persisting are only of the kinds allowed
//! to, and none when the Ready changes the term or the vote; and every Ready drains within
//! [`READY_ROUNDS_MAX`] rounds. In debug builds (tests, and cargo-fuzz by default) the core also
//! checks its own invariants after every input (`Raft::debug_assert_invariants`).
//!
//! # `snapshot_read`
//!
//! `storage::snapshot::read_snapshot` must never panic on any bytes. When it accepts a stream,
//! `restore_into` an empty simulated disk must accept it too and give the same applied index,
//! and the snapshot of that disk, written again (one pair per chunk, and in default-sized
//! chunks), must read back as the same `Restored`: the same applied index and pairs, in order.
//! Checksums make random bytes almost never a valid stream, so the seed corpus holds valid
//! streams (and corrupt ones) for the fuzzer to mutate.
//!
//! # `wal_read`
//!
//! The Raft log file's reader (`storage::wal`, what a member reads its log from on open)
//! must never panic on any bytes. What `read_segment` accepts must encode back to exactly the bytes it says
//! were written (one encoding per record, so nothing torn or corrupt passes as a record);
//! `read_log` must refuse exactly when applying those records one by one refuses; and the
//! log it gives must hold what a log is, checked here on its own: entries contiguous from
//! just after its start, terms never below the start's nor going down. The input is tried
//! twice: as a segment, and as record payloads (each a length byte and that many bytes) that
//! the harness frames with correct checksums and follows with zeros (a preallocated file's
//! rest), so the fuzzer reaches the payload parser and runs of records behind the CRC.
//!
//! # `stored_value_decode`
//!
//! Every decoder of a stored value, from any bytes: MVCC records, log entries, hard state,
//! membership, snapshot metadata, leases, meta numbers (each decoded with its key, which its
//! checksum covers), and the simulated disk's journal frames. The input is `selector (1) |
//! key length (1) | key | value`; the selector picks the decoder. None may panic, and what one
//! accepts must encode back to exactly the input (one encoding per value, so a corrupt byte
//! can never pass as another record). Each input is tried twice: as it is, and with the value
//! wrapped in a frame of the right kind with a correct checksum, so the fuzzer also reaches
//! the payload parsers behind the CRC.

use bytes::Bytes;
use oxcd_core::node::Command;
use oxcd_core::raft::{
    CAMPAIGN_TRANSFER, ConfChange, ConfChangeKind, ConfChangeSingle, ConfChangeTransition,
    ConfState, Config, Entry, EntryKind, HardState, MemStorage, Message, MessageKind, NONE, NodeId,
    RawNode, Ready, Snapshot, SnapshotMetadata, SnapshotStatus, StateRole, Storage,
};
use oxcd_core::storage::codec::{FRAME_PAYLOAD_BYTES_MAX, Kind, encode_frame};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// `ConfChange::decode` never panics; what it accepts round-trips, and is canonical but for the
/// explicit (pre-empty) encoding of leaving a joint configuration.
pub fn conf_change_decode(data: &[u8]) {
    let Ok(cc) = ConfChange::decode(data) else {
        return;
    };
    let encoded = cc.encode();
    let again = ConfChange::decode(&encoded).expect("what encode writes decodes");
    assert_eq!(again, cc, "encode then decode changed the value");
    assert!(
        encoded[..] == *data || cc == ConfChange::leave_joint(),
        "decode accepted a non-canonical encoding of {cc:?}"
    );
}

/// `Command::decode` never panics; what it accepts round-trips and is canonical, read both as a
/// frame and as a payload the harness frames.
pub fn command_decode(data: &[u8]) {
    check_command_decode(data);
    if data.len() <= FRAME_PAYLOAD_BYTES_MAX {
        check_command_decode(&encode_frame(Kind::Command, data));
    }
}

fn check_command_decode(data: &[u8]) {
    let Ok(cmd) = Command::decode(data) else {
        return;
    };
    let encoded = cmd.encode();
    let again = Command::decode(&encoded).expect("what encode writes decodes");
    assert_eq!(again, cmd, "encode then decode changed the value");
    assert!(
        encoded[..] == *data,
        "decode accepted a non-canonical encoding of {cmd:?}"
    );
}

/// How many wire messages `request_decode` picks from.
pub const REQUEST_KINDS: u8 = 8;

/// The API edge's decoding and conversion never panic; what converts round-trips through the
/// wire, and writes through the log's codec.
pub fn request_decode(data: &[u8]) {
    use oxcd::api::convert as c;
    use oxcd::pb::etcdserverpb as pb;
    use oxcd::pb::peer;
    use prost::Message as _;
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % REQUEST_KINDS {
        0 => {
            let Ok(Ok(r)) = pb::RangeRequest::decode(body).map(c::range_request) else {
                return;
            };
            let again = c::range_request(through_bytes(&c::range_request_to_pb(&r)));
            assert_eq!(again.ok(), Some(r), "a range changed through the wire");
        }
        1 => {
            let Ok(r) = pb::PutRequest::decode(body).map(c::put_request) else {
                return;
            };
            let again = c::put_request(through_bytes(&c::put_request_to_pb(&r)));
            assert_eq!(again, r, "a put changed through the wire");
            check_logged(Command::Put(r));
        }
        2 => {
            let Ok(r) = pb::DeleteRangeRequest::decode(body).map(c::delete_range_request) else {
                return;
            };
            let again = c::delete_range_request(through_bytes(&c::delete_range_request_to_pb(&r)));
            assert_eq!(again, r, "a delete-range changed through the wire");
            check_logged(Command::DeleteRange(r));
        }
        3 => {
            let Ok(Ok(t)) = pb::TxnRequest::decode(body).map(c::txn_request) else {
                return;
            };
            let again = c::txn_request(through_bytes(&c::txn_request_to_pb(&t)));
            assert_eq!(
                again.ok(),
                Some(t.clone()),
                "a txn changed through the wire"
            );
            check_logged(Command::Txn(t));
        }
        4 => {
            let Ok(r) = pb::CompactionRequest::decode(body) else {
                return;
            };
            check_logged(Command::Compact {
                revision: r.revision,
            });
        }
        5 => {
            let Ok(pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(w)),
            }) = pb::WatchRequest::decode(body)
            else {
                return;
            };
            let w = c::watch_create(w);
            let again = c::watch_create(through_bytes(&c::watch_create_to_pb(&w)));
            assert_eq!(again, w, "a watch create changed through the wire");
        }
        6 => {
            let Ok(r) = pb::LeaseGrantRequest::decode(body) else {
                return;
            };
            // ID 0 asks the server to pick one, which it does before proposing.
            if r.id != 0 {
                check_logged(Command::LeaseGrant {
                    id: r.id,
                    ttl_s: r.ttl,
                });
            }
        }
        _ => {
            let Ok(batch) = peer::RaftBatch::decode(body) else {
                return;
            };
            for m in batch.messages {
                let Ok(m) = oxcd::peer::codec::raft_message_from_pb(m) else {
                    continue;
                };
                let again = oxcd::peer::codec::raft_message_from_pb(through_bytes(
                    &oxcd::peer::codec::raft_message_to_pb(&m),
                ));
                assert_eq!(again, Ok(m), "a Raft message changed through the wire");
            }
        }
    }
}

/// `m` encoded with prost and decoded again.
fn through_bytes<M: prost::Message + Default>(m: &M) -> M {
    M::decode(m.encode_to_vec().as_slice()).expect("what prost encodes decodes")
}

/// A command the API edge made survives the log's encoding.
fn check_logged(cmd: Command) {
    let again = Command::decode(&cmd.encode());
    assert_eq!(again, Ok(cmd), "a command changed through the log's codec");
}

/// Upper bound on the operations one `raft_step` input runs.
pub const RAFT_STEP_OPS_MAX: usize = 256;
/// Upper bound on the Ready rounds after one operation before the harness calls it a livelock.
pub const READY_ROUNDS_MAX: usize = 64;
const TICKS_PER_OP_MAX: u64 = 24;
const APPEND_ENTRIES_MAX: u64 = 4;
/// Upper bound on the entries a ghost leader adds to its log before sending one append.
const GHOST_GROWTH_MAX: u64 = 2;
const DATA_BYTES_MAX: u64 = 4;

const ME: NodeId = 1;
const PEERS: [NodeId; 3] = [2, 3, 4];
const ANYONE: [NodeId; 4] = [1, 2, 3, 4];

/// Drives one member with the operations `data` encodes; panics on a bug (see the module
/// docs for what counts).
pub fn raft_step(data: &[u8]) {
    let mut input = Input(data);
    let mut h = Harness::new();
    for _ in 0..RAFT_STEP_OPS_MAX {
        if input.is_empty() {
            break;
        }
        h.op(&mut input, false);
        h.drain_ready();
    }
}

/// Reads the fuzzer's bytes as small decisions. Past the end every read gives zero, so any
/// prefix of an input is an input.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// A value in `0..n` (0 when `n` is 0); one byte when `n` fits in one, else two.
    fn below(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        let v = if n <= 256 {
            u64::from(self.byte())
        } else {
            u64::from(u16::from_le_bytes([self.byte(), self.byte()]))
        };
        v % n
    }

    /// A value in `lo..=hi` (`lo` when the range is empty).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below(hi - lo + 1)
        }
    }

    fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn bytes(&mut self, len_max: u64) -> Bytes {
        let n = (self.below(len_max + 1) as usize).min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Bytes::copy_from_slice(head)
    }

    /// A heartbeat's read round: none, or a small one.
    fn round(&mut self) -> Bytes {
        match self.below(4) {
            0 => Bytes::new(),
            _ => Bytes::copy_from_slice(&(1 + self.below(6)).to_be_bytes()),
        }
    }

    fn conf_change(&mut self) -> ConfChange {
        let transition = self.pick(&[
            ConfChangeTransition::Auto,
            ConfChangeTransition::Auto,
            ConfChangeTransition::JointImplicit,
            ConfChangeTransition::JointExplicit,
        ]);
        let kinds = [
            ConfChangeKind::AddNode,
            ConfChangeKind::RemoveNode,
            ConfChangeKind::AddLearnerNode,
        ];
        let changes = (0..self.below(3))
            .map(|_| ConfChangeSingle {
                kind: self.pick(&kinds),
                node_id: self.pick(&ANYONE),
            })
            .collect();
        ConfChange {
            transition,
            changes,
            context: Bytes::new(),
        }
    }

    /// An entry for a leader's log: mostly data, sometimes a configuration change.
    fn entry(&mut self, term: u64, index: u64) -> Entry {
        let (kind, data) = if self.below(8) == 0 {
            (EntryKind::ConfChange, self.conf_change().encode())
        } else {
            (EntryKind::Normal, self.bytes(DATA_BYTES_MAX))
        };
        Entry {
            term,
            index,
            kind,
            data,
        }
    }

    /// A membership `changer::restore` accepts, over ids 1 to 4.
    fn conf_state(&mut self) -> ConfState {
        let ids = |mask: u8| -> Vec<NodeId> {
            (0u8..4)
                .filter(|bit| mask & (1 << bit) != 0)
                .map(|bit| NodeId::from(bit) + 1)
                .collect()
        };
        let (a, b) = (self.byte(), self.byte());
        let incoming = match a & 0xf {
            0 => 0b0111,
            m => m,
        };
        let outgoing = a >> 4;
        let learners = b & 0xf & !(incoming | outgoing);
        let learners_next = (b >> 4) & outgoing & !incoming;
        ConfState {
            voters: ids(incoming),
            learners: ids(learners),
            voters_outgoing: ids(outgoing),
            learners_next: ids(learners_next),
            auto_leave: outgoing != 0 && self.bool(),
        }
    }
}

/// The log of the leader of one term, as far as the harness made it up.
#[derive(Debug)]
struct Ghost {
    leader: NodeId,
    /// The index and term of the entry `entries` follow.
    start: (u64, u64),
    entries: Vec<Entry>,
    commit: u64,
}

impl Ghost {
    fn last_index(&self) -> u64 {
        self.start.0 + self.entries.len() as u64
    }

    fn term(&self, index: u64) -> Option<u64> {
        if index == self.start.0 {
            return Some(self.start.1);
        }
        let offset = index.checked_sub(self.start.0 + 1)?;
        self.entries.get(offset as usize).map(|e| e.term)
    }

    /// Entries in `[lo, hi]`.
    fn slice(&self, lo: u64, hi: u64) -> Vec<Entry> {
        if hi < lo {
            return Vec::new();
        }
        let first = (lo - self.start.0 - 1) as usize;
        self.entries[first..=(hi - self.start.0 - 1) as usize].to_vec()
    }
}

struct Harness {
    node: RawNode<MemStorage>,
    restarts: u64,
    /// The durable hard state.
    hard: HardState,
    /// The last index applied to the (imaginary) state machine.
    applied: u64,
    /// The membership at `applied`, for compaction snapshots.
    conf: ConfState,
    /// Every applied index and its term, to catch an index applied twice differently.
    applied_terms: BTreeMap<u64, u64>,
    /// Peers' logs, by the term they lead.
    ghosts: BTreeMap<u64, Ghost>,
    /// Terms the node led.
    led: BTreeSet<u64>,
    /// The highest index the node acknowledged to (term, leader).
    acked: BTreeMap<(u64, NodeId), u64>,
}

impl Harness {
    fn new() -> Harness {
        let conf = ConfState::with_voters([1, 2, 3]);
        let storage = MemStorage::new_with_conf_state(conf.clone());
        let hard = storage.hard_state();
        let node = RawNode::new(&Config::new(ME), storage, ChaCha8Rng::seed_from_u64(0))
            .expect("the default configuration is valid");
        Harness {
            applied: node.raft.raft_log.applied,
            node,
            restarts: 0,
            hard,
            conf,
            applied_terms: BTreeMap::new(),
            ghosts: BTreeMap::new(),
            led: BTreeSet::new(),
            acked: BTreeMap::new(),
        }
    }

    /// One operation. `nested` is set inside a deferred advance, which does not nest.
    fn op(&mut self, input: &mut Input, nested: bool) {
        match input.below(32) {
            0..=3 => {
                for _ in 0..=input.below(TICKS_PER_OP_MAX) {
                    self.node.tick();
                    self.drain_ready();
                }
            }
            4 | 5 => {
                let data = input.bytes(DATA_BYTES_MAX);
                let _ = self.node.propose(data);
            }
            6 => {
                let cc = input.conf_change();
                let _ = self.node.propose_conf_change(&cc);
            }
            7 | 8 => {
                let ctx = input.bytes(DATA_BYTES_MAX);
                let _ = self.node.read_index(ctx);
            }
            9 => {
                let _ = self.node.campaign();
            }
            10 => {
                let transferee = input.pick(&ANYONE);
                self.node.transfer_leader(transferee);
            }
            11 => {
                let peer = input.pick(&PEERS);
                match input.below(3) {
                    0 => self.node.report_unreachable(peer),
                    1 => self.node.report_snapshot(peer, SnapshotStatus::Finish),
                    _ => self.node.report_snapshot(peer, SnapshotStatus::Failure),
                }
            }
            12 => self.restart(),
            13 => self.compact(input),
            14 if !nested => self.deferred_advance(input),
            _ => {
                let m = self.message(input);
                let _ = self.node.step(m);
            }
        }
    }

    /// An operation, then its Ready handled in full except for `advance`, which comes only
    /// after a second operation: `RawNode` allows any input between `ready` and `advance`, as
    /// an owner that persists and applies asynchronously does. (The second operation comes
    /// after the apply step, so that a snapshot it brings cannot overtake configuration
    /// changes the owner is still applying.) A restart as the second operation is a crash
    /// before `advance`.
    fn deferred_advance(&mut self, input: &mut Input) {
        self.op(input, true);
        if !self.node.has_ready() {
            return;
        }
        let rd = self.node.ready();
        self.handle_ready(rd);
        let restarts = self.restarts;
        self.op(input, true);
        if self.restarts == restarts {
            self.node.advance();
        }
    }

    /// The node crashes and restarts from what it persisted (everything: a Ready is persisted
    /// before the next operation). The state machine is rebuilt from the stored snapshot and
    /// replayed from the log.
    fn restart(&mut self) {
        self.restarts += 1;
        let storage = self.node.storage().clone();
        let (hard, conf) = storage.initial_state().expect("MemStorage answers");
        self.hard = hard;
        self.conf = conf;
        self.node = RawNode::new(
            &Config::new(ME),
            storage,
            ChaCha8Rng::seed_from_u64(self.restarts),
        )
        .expect("a member restarts from its own durable state");
        self.applied = self.node.raft.raft_log.applied;
    }

    /// Snapshots the applied state and drops the log up to it.
    fn compact(&mut self, input: &mut Input) {
        let index = self.applied;
        let data = input.bytes(DATA_BYTES_MAX);
        let storage = self.node.storage_mut();
        let snapshot_index = storage
            .snapshot()
            .expect("MemStorage answers")
            .metadata
            .index;
        if index <= snapshot_index {
            return;
        }
        storage
            .create_snapshot(index, self.conf.clone(), data)
            .expect("the applied index is in the log and above the snapshot");
        storage
            .compact(index)
            .expect("the applied index is above the old snapshot");
    }

    fn note_leadership(&mut self) {
        let r = &self.node.raft;
        if r.state == StateRole::Leader {
            assert!(
                !self.ghosts.contains_key(&r.term),
                "harness bug: the node leads term {}, which a ghost leads",
                r.term
            );
            self.led.insert(r.term);
        }
    }

    fn drain_ready(&mut self) {
        for _ in 0..READY_ROUNDS_MAX {
            self.note_leadership();
            if !self.node.has_ready() {
                return;
            }
            let rd = self.node.ready();
            self.handle_ready(rd);
            self.node.advance();
        }
        self.note_leadership();
        assert!(
            !self.node.has_ready(),
            "the node still has a Ready after {READY_ROUNDS_MAX} rounds"
        );
    }

    /// Checks, persists, "sends" and applies a Ready; the caller advances.
    fn handle_ready(&mut self, rd: Ready) {
        let before = self.hard;
        // What the Ready asks for must not contradict what is durable.
        if let Some(hs) = rd.hard_state {
            assert!(
                hs.term >= before.term,
                "term went back: {before:?} -> {hs:?}"
            );
            assert!(
                hs.term != before.term || before.vote == NONE || hs.vote == before.vote,
                "vote changed within a term: {before:?} -> {hs:?}"
            );
            assert!(
                hs.commit >= before.commit,
                "commit went back: {before:?} -> {hs:?}"
            );
        }
        for pair in rd.entries.windows(2) {
            assert_eq!(
                pair[1].index,
                pair[0].index + 1,
                "Ready entries not consecutive"
            );
        }
        if let Some(s) = &rd.snapshot {
            assert!(
                s.metadata.index > before.commit,
                "Ready snapshot at {} is not above the durable commit {}",
                s.metadata.index,
                before.commit
            );
        }
        for e in &rd.entries {
            if e.index > before.commit {
                continue;
            }
            if let Ok(term) = self.node.storage().term(e.index) {
                assert_eq!(
                    term, e.term,
                    "Ready rewrites committed entry {} (term {term} -> {})",
                    e.index, e.term
                );
            }
        }
        for m in rd.messages.iter().chain(&rd.persisted_messages) {
            assert!(
                m.to != NONE && m.to != ME,
                "message to nobody or to itself: {m:?}"
            );
        }
        for m in &rd.messages {
            assert!(
                m.kind.may_send_before_persist(),
                "{:?} leaves before persisting",
                m.kind
            );
        }
        let new_term_or_vote = rd
            .hard_state
            .is_some_and(|hs| (hs.term, hs.vote) != (before.term, before.vote));
        assert!(
            !new_term_or_vote || rd.messages.is_empty(),
            "messages leave before a new term or vote is durable: {:?}",
            rd.messages
        );

        // Persist: snapshot, entries, hard state.
        let storage = self.node.storage_mut();
        if let Some(s) = &rd.snapshot {
            storage
                .apply_snapshot(s.clone())
                .expect("a Ready's snapshot is newer than the stored one");
        }
        storage
            .append(&rd.entries)
            .expect("MemStorage takes a Ready's entries");
        if let Some(hs) = rd.hard_state {
            storage.set_hard_state(hs);
        }
        self.hard = storage.hard_state();

        // Send: what the messages promise must now be durable.
        for m in &rd.persisted_messages {
            self.check_promise(m);
        }

        // Apply.
        if let Some(s) = &rd.snapshot {
            self.applied = s.metadata.index;
            self.conf = s.metadata.conf_state.clone();
        }
        for e in &rd.committed_entries {
            assert_eq!(
                e.index,
                self.applied + 1,
                "committed entries skip or repeat"
            );
            assert!(
                e.index <= self.hard.commit,
                "entry {} handed out above the durable commit {}",
                e.index,
                self.hard.commit
            );
            let term = *self.applied_terms.entry(e.index).or_insert(e.term);
            assert_eq!(
                term, e.term,
                "index {} applied with term {term}, then with term {}",
                e.index, e.term
            );
            self.applied = e.index;
            if e.kind != EntryKind::ConfChange {
                continue;
            }
            if let Ok(cc) = ConfChange::decode(&e.data)
                && let Ok(cs) = self.node.apply_conf_change(&cc)
            {
                self.conf = cs;
            }
        }
    }

    /// Checks a message sent after persisting against the durable state, and notes
    /// acknowledgements for later heartbeats.
    fn check_promise(&mut self, m: &Message) {
        let hs = self.hard;
        match m.kind {
            MessageKind::RequestVoteResponse if !m.reject => assert!(
                hs.term > m.term || (hs.term == m.term && hs.vote == m.to),
                "vote for {} in term {} granted but not durable ({hs:?})",
                m.to,
                m.term
            ),
            MessageKind::AppendResponse if !m.reject && m.term == hs.term => {
                let storage = self.node.storage();
                let last = storage.last_index().expect("MemStorage answers");
                assert!(
                    m.index <= last,
                    "acknowledged {} beyond the durable log (last {last})",
                    m.index
                );
                if let Some(g) = self.ghosts.get(&m.term).filter(|g| g.leader == m.to) {
                    assert!(
                        m.index <= g.last_index(),
                        "acknowledged {} beyond the leader's log (last {})",
                        m.index,
                        g.last_index()
                    );
                    if let (Ok(ours), Some(theirs)) = (storage.term(m.index), g.term(m.index)) {
                        assert_eq!(
                            ours, theirs,
                            "acknowledged {} but holds term {ours} where the leader has {theirs}",
                            m.index
                        );
                    }
                }
                let acked = self.acked.entry((m.term, m.to)).or_default();
                *acked = (*acked).max(m.index);
            }
            _ => {}
        }
    }

    // ----- messages from peers --------------------------------------------------------------

    fn message(&mut self, input: &mut Input) -> Message {
        // The node may have taken the lead in this operation (before a deferred advance).
        self.note_leadership();
        let mut m = match input.below(16) {
            0..=2 => self.append(input),
            3 | 4 => self.heartbeat(input),
            5 => self.snapshot(input),
            6 => {
                let term = self.leader_term(input);
                self.leader_message(MessageKind::TimeoutNow, term)
            }
            7 => self.read_index_response(input),
            8 => self.vote_request(input, MessageKind::RequestVote),
            9 => self.vote_request(input, MessageKind::RequestPreVote),
            10 => self.vote_response(input, MessageKind::RequestVoteResponse),
            11 => self.vote_response(input, MessageKind::RequestPreVoteResponse),
            12 | 13 => self.append_response(input),
            14 => self.heartbeat_response(input),
            _ => self.forwarded(input),
        };
        m.to = ME;
        m
    }

    /// A term for a leader message, with its ghost leader (created on first use).
    fn leader_term(&mut self, input: &mut Input) -> u64 {
        let term = self.node.raft.term;
        let mut t = match input.below(8) {
            0..=3 => term,
            4 => term + 1,
            5 => term + 2,
            _ => {
                let n = self.ghosts.len() as u64;
                let i = input.below(n) as usize;
                self.ghosts.keys().nth(i).copied().unwrap_or(term)
            }
        };
        if !self.ghosts.contains_key(&t) && self.led.contains(&t) {
            let highest_ghost = self.ghosts.keys().next_back().copied().unwrap_or(0);
            let highest_led = self.led.last().copied().unwrap_or(0);
            t = term.max(highest_ghost).max(highest_led) + 1;
        }
        if !self.ghosts.contains_key(&t) {
            let ghost = self.new_ghost(t, input);
            self.ghosts.insert(t, ghost);
        }
        t
    }

    /// The leader of term `t` (which the node will adopt, as `t` is at least the node's term):
    /// its log holds the node's committed entries (Leader Completeness), then maybe some of
    /// the node's uncommitted ones or an older leader's, then its empty entry.
    fn new_ghost(&mut self, t: u64, input: &mut Input) -> Ghost {
        let r = &self.node.raft;
        debug_assert!(t >= r.term, "ghosts are made for current or future terms");
        let leader = if r.term == t && r.vote != NONE && r.vote != ME {
            r.vote
        } else {
            input.pick(&PEERS)
        };
        let log = &r.raft_log;
        let committed = log.committed;
        let start = log.first_index() - 1;
        let start_term = log.term(start).expect("the log knows its first index - 1");
        let agrees = |g: &Ghost| {
            g.last_index() >= committed
                && (start..=committed).all(|i| g.term(i).is_some() && g.term(i) == log.term(i).ok())
        };
        let bases: Vec<u64> = self
            .ghosts
            .iter()
            .filter(|&(&gt, g)| gt < t && agrees(g))
            .map(|(&gt, _)| gt)
            .collect();
        let entries = if !bases.is_empty() && input.bool() {
            let base = &self.ghosts[&bases[input.below(bases.len() as u64) as usize]];
            let k = input.range(committed, base.last_index());
            base.slice(start + 1, k)
        } else {
            let k = input.range(committed, log.last_index());
            log.slice(start + 1, k + 1, u64::MAX)
                .expect("the node's log holds its entries")
        };
        let mut g = Ghost {
            leader,
            start: (start, start_term),
            entries,
            commit: start,
        };
        let index = g.last_index() + 1;
        g.entries.push(Entry {
            term: t,
            index,
            ..Entry::default()
        });
        g
    }

    fn leader_message(&self, kind: MessageKind, term: u64) -> Message {
        Message {
            kind,
            from: self.ghosts[&term].leader,
            term,
            ..Message::default()
        }
    }

    fn append(&mut self, input: &mut Input) -> Message {
        let t = self.leader_term(input);
        let (node_last, node_committed) = {
            let log = &self.node.raft.raft_log;
            (log.last_index(), log.committed)
        };
        let g = self.ghosts.get_mut(&t).expect("made by leader_term");
        for _ in 0..input.below(GHOST_GROWTH_MAX + 1) {
            let e = input.entry(t, g.last_index() + 1);
            g.entries.push(e);
        }
        if input.bool() {
            g.commit = input.range(g.commit, g.last_index());
        }
        let (lo, hi) = (g.start.0, g.last_index());
        let prev = match input.below(4) {
            0 => node_last.clamp(lo, hi),
            1 => node_committed.clamp(lo, hi),
            2 => hi.saturating_sub(input.below(3)).max(lo),
            _ => input.range(lo, hi),
        };
        let last = (prev + input.below(APPEND_ENTRIES_MAX + 1)).min(hi);
        let commit = if input.bool() {
            g.commit
        } else {
            input.range(0, g.commit)
        };
        let log_term = g.term(prev).expect("prev is in the ghost's log");
        let entries = g.slice(prev + 1, last);
        Message {
            index: prev,
            log_term,
            entries,
            commit,
            ..self.leader_message(MessageKind::Append, t)
        }
    }

    fn heartbeat(&mut self, input: &mut Input) -> Message {
        let t = self.leader_term(input);
        let g = &self.ghosts[&t];
        let matched = self.acked.get(&(t, g.leader)).copied().unwrap_or(0);
        let commit_max = g.commit.min(matched);
        let commit = if input.bool() {
            commit_max
        } else {
            input.range(0, commit_max)
        };
        Message {
            commit,
            context: input.round(),
            ..self.leader_message(MessageKind::Heartbeat, t)
        }
    }

    fn snapshot(&mut self, input: &mut Input) -> Message {
        let t = self.leader_term(input);
        let node_committed = self.node.raft.raft_log.committed;
        let g = self.ghosts.get_mut(&t).expect("made by leader_term");
        let hi = g.last_index();
        let lo = if input.below(4) == 0 || node_committed >= hi {
            g.start.0
        } else {
            g.start.0.max(node_committed + 1)
        };
        let index = input.range(lo, hi);
        g.commit = g.commit.max(index);
        let term = g.term(index).expect("index is in the ghost's log");
        let snapshot = Snapshot {
            data: input.bytes(DATA_BYTES_MAX),
            metadata: SnapshotMetadata {
                conf_state: input.conf_state(),
                index,
                term,
            },
        };
        Message {
            snapshot: Some(snapshot),
            ..self.leader_message(MessageKind::Snapshot, t)
        }
    }

    fn read_index_response(&mut self, input: &mut Input) -> Message {
        if self.ghosts.is_empty() {
            return self.heartbeat(input);
        }
        let i = input.below(self.ghosts.len() as u64) as usize;
        let (&t, g) = self.ghosts.iter().nth(i).expect("i < len");
        Message {
            index: g.commit,
            context: input.bytes(DATA_BYTES_MAX),
            ..self.leader_message(MessageKind::ReadIndexResponse, t)
        }
    }

    fn vote_request(&mut self, input: &mut Input, kind: MessageKind) -> Message {
        let log = &self.node.raft.raft_log;
        let term = self.node.raft.term;
        let t = match input.below(4) {
            0 => term.saturating_sub(1),
            1 => term,
            2 => term + 1,
            _ => term + 2,
        }
        .max(2);
        let (node_last, node_last_term) = (log.last_index(), log.last_term());
        let (index, log_term) = match input.below(4) {
            0 => (node_last, node_last_term),
            1 => {
                let k = input.range(log.first_index() - 1, node_last);
                (k, log.term(k).expect("k is in the log"))
            }
            2 if !self.ghosts.is_empty() => {
                let i = input.below(self.ghosts.len() as u64) as usize;
                let g = self.ghosts.values().nth(i).expect("i < len");
                (g.last_index(), g.term(g.last_index()).expect("last"))
            }
            _ => (
                node_last + input.below(3),
                input.range(node_last_term, t - 1),
            ),
        };
        // A candidate's log holds no entry of the term it asks for.
        let t = t.max(log_term + 1);
        let context = if input.below(4) == 0 {
            Bytes::from_static(CAMPAIGN_TRANSFER)
        } else {
            Bytes::new()
        };
        Message {
            kind,
            from: input.pick(&PEERS),
            term: t,
            index,
            log_term,
            context,
            ..Message::default()
        }
    }

    fn vote_response(&mut self, input: &mut Input, kind: MessageKind) -> Message {
        let term = self.node.raft.term;
        let from = input.pick(&PEERS);
        let pre = kind == MessageKind::RequestPreVoteResponse;
        let grant_term = if pre && input.below(4) != 0 {
            term + 1
        } else {
            term
        };
        let grant = input.bool() && (pre || !self.ghosts.contains_key(&grant_term));
        let (t, reject) = if grant {
            (grant_term, false)
        } else {
            (input.range(term.saturating_sub(1), term + 1).max(1), true)
        };
        Message {
            kind,
            from,
            term: t,
            reject,
            ..Message::default()
        }
    }

    /// A term for a follower's answer: mostly the node's, sometimes a stale or a newer one.
    fn follower_term(&self, input: &mut Input) -> u64 {
        let term = self.node.raft.term;
        match input.below(8) {
            0 => term.saturating_sub(1).max(1),
            1 => term + 1,
            _ => term,
        }
    }

    fn append_response(&mut self, input: &mut Input) -> Message {
        let term = self.follower_term(input);
        let last = self.node.raft.raft_log.last_index();
        let from = input.pick(&PEERS);
        let mut m = Message {
            kind: MessageKind::AppendResponse,
            from,
            term,
            ..Message::default()
        };
        if input.below(4) == 0 {
            m.reject = true;
            m.index = input.range(0, last);
            m.reject_hint = input.range(0, m.index);
            m.log_term = input.range(0, self.node.raft.term);
        } else {
            m.index = match input.below(3) {
                0 => last,
                1 => last.saturating_sub(input.below(3)),
                _ => input.range(0, last),
            };
        }
        m
    }

    fn heartbeat_response(&mut self, input: &mut Input) -> Message {
        Message {
            kind: MessageKind::HeartbeatResponse,
            term: self.follower_term(input),
            from: input.pick(&PEERS),
            context: input.round(),
            ..Message::default()
        }
    }

    fn forwarded(&mut self, input: &mut Input) -> Message {
        match input.below(3) {
            0 => {
                // As `RawNode::propose` makes them: the leader assigns index and term.
                let entries = (0..=input.below(2)).map(|_| input.entry(0, 0)).collect();
                Message {
                    kind: MessageKind::Propose,
                    from: input.pick(&PEERS),
                    entries,
                    ..Message::default()
                }
            }
            1 => Message {
                kind: MessageKind::ReadIndex,
                from: input.pick(&PEERS),
                context: input.bytes(DATA_BYTES_MAX),
                ..Message::default()
            },
            _ => {
                let term = self.node.raft.term;
                Message {
                    kind: MessageKind::TransferLeader,
                    from: input.pick(&ANYONE),
                    term: term.saturating_sub(input.below(2)).max(1),
                    ..Message::default()
                }
            }
        }
    }
}

/// Every stored-value decoder never panics, and what it accepts is canonical.
pub fn stored_value_decode(data: &[u8]) {
    use oxcd_core::storage::codec::{self as c, encode_frame_keyed};
    use oxcd_core::storage::{decode_journal_frame, encode_journal_frame};
    let [selector, key_len, rest @ ..] = data else {
        return;
    };
    let (key, value) = rest.split_at(usize::from(*key_len).min(rest.len()));
    let kinds = [
        Kind::MvccRecord,
        Kind::LogEntry,
        Kind::HardState,
        Kind::ConfState,
        Kind::SnapshotMeta,
        Kind::Lease,
        Kind::Meta,
        Kind::DiskBatch,
    ];
    let which = usize::from(*selector) % kinds.len();
    let check = |v: &[u8]| {
        let again: Option<Bytes> = match which {
            0 => c::decode_record(key, v)
                .ok()
                .map(|r| c::encode_record(key, &r)),
            1 => c::decode_entry(key, v).ok().map(|e| c::encode_entry(&e)),
            2 => c::decode_hard_state(key, v)
                .ok()
                .map(|h| c::encode_hard_state(key, &h)),
            3 => c::decode_conf_state(key, v)
                .ok()
                .map(|cs| c::encode_conf_state(key, &cs)),
            4 => c::decode_snapshot_meta(key, v)
                .ok()
                .map(|m| c::encode_snapshot_meta(key, &m)),
            5 => c::decode_lease(key, v).ok().map(|l| c::encode_lease(&l)),
            6 => c::decode_meta(key, v).ok().map(|n| c::encode_meta(key, n)),
            _ => decode_journal_frame(v)
                .ok()
                .map(|b| encode_journal_frame(&b)),
        };
        if let Some(again) = again {
            assert_eq!(&again[..], v, "an accepted value encodes differently");
        }
    };
    check(value);
    if value.len() <= FRAME_PAYLOAD_BYTES_MAX {
        // Journal frames are not keyed: their checksum starts from nothing.
        let frame_key = if which == 7 { &[][..] } else { key };
        check(&encode_frame_keyed(kinds[which], frame_key, value));
    }
}

/// `read_snapshot` never panics; what it accepts restores, and re-encodes to the same pairs.
pub fn snapshot_read(data: &[u8]) {
    use oxcd_core::storage::snapshot::{self, SnapshotWriter};
    use oxcd_core::storage::{DiskFaults, Engine, SimDisk};
    let Ok(restored) = snapshot::read_snapshot(data) else {
        return;
    };
    let disk = SimDisk::new(0, DiskFaults::default());
    let applied_index =
        snapshot::restore_into(&disk, data).expect("restore refused what read_snapshot accepted");
    assert_eq!(applied_index, restored.applied_index);
    for chunk_bytes in [1, snapshot::CHUNK_BYTES_DEFAULT] {
        let mut again = Vec::new();
        for chunk in SnapshotWriter::new(disk.view(), chunk_bytes) {
            again.extend_from_slice(&chunk.expect("the writer refused what was restored"));
        }
        let reread = snapshot::read_snapshot(&again).expect("what the writer writes reads");
        assert_eq!(
            reread, restored,
            "re-encoded in {chunk_bytes}-byte chunks, it changed"
        );
    }
}

/// The Raft log file's reader on arbitrary bytes: see the module docs.
pub fn wal_read(data: &[u8]) {
    check_wal_segment(data);
    let mut segment = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let (payload, after) = tail.split_at(usize::from(n).min(tail.len()));
        segment.extend_from_slice(&encode_frame(Kind::WalRecord, payload));
        rest = after;
    }
    segment.extend_from_slice(&[0; 8]);
    check_wal_segment(&segment);
}

fn check_wal_segment(segment: &[u8]) {
    use oxcd_core::storage::wal::{self, SegmentEnd, WalLog};
    let Ok(read) = wal::read_segment(segment) else {
        return;
    };
    let again: Vec<u8> = read.records.iter().flat_map(|r| r.encode()).collect();
    assert_eq!(
        &again[..],
        &segment[..read.written_bytes],
        "accepted records encode differently"
    );
    let mut one_by_one = WalLog::default();
    let applied = read
        .records
        .iter()
        .try_for_each(|r| one_by_one.apply(r.clone()));
    match wal::read_log((0, 0), &[segment]) {
        Ok((log, torn)) => {
            assert!(applied.is_ok(), "read_log took what apply refused");
            assert_eq!(log, one_by_one);
            assert_eq!(torn.is_some(), read.end != SegmentEnd::Clean);
            let mut expect = log.start.0.checked_add(1);
            let mut term = log.start.1;
            for e in &log.entries {
                assert_eq!(Some(e.index), expect, "the log has a gap");
                assert!(e.term >= term, "a term goes down at {}", e.index);
                expect = e.index.checked_add(1);
                term = e.term;
            }
        }
        Err(e) => assert!(applied.is_err(), "read_log refused what apply took: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn conf_change_decode_accepts_what_encode_writes() {
        let cc = ConfChange::simple(ConfChangeKind::AddNode, 4);
        conf_change_decode(&cc.encode());
        conf_change_decode(&[]);
        conf_change_decode(&[1, 0, 255, 255, 255, 255]);
    }

    #[test]
    fn raft_step_survives_pseudo_random_inputs() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            let mut data = vec![0u8; (rng.next_u32() % 512) as usize];
            rng.fill_bytes(&mut data);
            raft_step(&data);
        }
    }

    #[test]
    fn snapshot_read_accepts_what_the_writer_writes() {
        use oxcd_core::storage::snapshot::SnapshotWriter;
        use oxcd_core::storage::{DiskFaults, Engine, SimDisk, Space, WriteBatch, codec};
        let disk = SimDisk::new(0, DiskFaults::default());
        let mut batch = WriteBatch::default();
        let lease = oxcd_core::mvcc::LeaseRecord {
            id: 1,
            ttl_s: 5,
            remaining_ms: 5000,
        };
        batch.put(
            Space::Lease,
            codec::lease_key(1).to_vec(),
            codec::encode_lease(&lease),
        );
        batch.put(Space::Meta, &b"m"[..], codec::encode_meta(b"m", 3));
        disk.write(batch).unwrap();
        let chunks: Vec<_> = SnapshotWriter::new(disk.view(), 1)
            .map(Result::unwrap)
            .collect();
        assert_eq!(chunks.len(), 2);
        let stream = chunks.concat();
        snapshot_read(&stream);
        snapshot_read(&stream[..stream.len() - 1]);
        snapshot_read(&[]);
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for _ in 0..200 {
            let mut data = stream.clone();
            let i = (rng.next_u32() as usize) % data.len();
            data[i] = rng.next_u32() as u8;
            snapshot_read(&data);
        }
    }
}
