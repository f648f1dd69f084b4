//! The peer protocol's codec: Raft messages ([`raft::Message`]) as `proto/peer.proto`'s
//! `RaftMessage`, field by field, and the checks only a wire value can fail (a kind or entry
//! kind the core has no value for, a local kind arriving from the network).
//!
//! # Raft message kinds on the wire
//!
//!
//! `RaftMessage.kind` numbers [`raft::MessageKind`] as etcd's `raftpb.MessageType` does, so
//! a capture reads the same as etcd's. The local kinds (marked *) never travel: encoding one is
//! a bug, and decoding refuses them, as it refuses a number not in the table.
//!
//! | number | kind | number | kind |
//! |---|---|---|---|
//! | 0 | `Hup` * | 10 | `Unreachable` * |
//! | 1 | `Beat` * | 11 | `SnapshotStatus` * |
//! | 2 | `Propose` | 12 | `CheckQuorum` * |
//! | 3 | `Append` | 13 | `TransferLeader` |
//! | 4 | `AppendResponse` | 14 | `TimeoutNow` |
//! | 5 | `RequestVote` | 15 | `ReadIndex` |
//! | 6 | `RequestVoteResponse` | 16 | `ReadIndexResponse` |
//! | 7 | `Snapshot` | 17 | `RequestPreVote` |
//! | 8 | `Heartbeat` | 18 | `RequestPreVoteResponse` |
//! | 9 | `HeartbeatResponse` | | |
//!
//! `Entry.kind` is 0 for [`raft::EntryKind::Normal`] and 1 for [`raft::EntryKind::ConfChange`].

use crate::pb::peer;
use crate::raft;

/// The wire number of a message kind (the table in the module docs).
fn message_kind_number(kind: raft::MessageKind) -> u32 {
    use raft::MessageKind as K;
    match kind {
        K::Hup => 0,
        K::Beat => 1,
        K::Propose => 2,
        K::Append => 3,
        K::AppendResponse => 4,
        K::RequestVote => 5,
        K::RequestVoteResponse => 6,
        K::Snapshot => 7,
        K::Heartbeat => 8,
        K::HeartbeatResponse => 9,
        K::Unreachable => 10,
        K::SnapshotStatus => 11,
        K::CheckQuorum => 12,
        K::TransferLeader => 13,
        K::TimeoutNow => 14,
        K::ReadIndex => 15,
        K::ReadIndexResponse => 16,
        K::RequestPreVote => 17,
        K::RequestPreVoteResponse => 18,
    }
}

fn message_kind_from_number(n: u32) -> Option<raft::MessageKind> {
    use raft::MessageKind as K;
    Some(match n {
        0 => K::Hup,
        1 => K::Beat,
        2 => K::Propose,
        3 => K::Append,
        4 => K::AppendResponse,
        5 => K::RequestVote,
        6 => K::RequestVoteResponse,
        7 => K::Snapshot,
        8 => K::Heartbeat,
        9 => K::HeartbeatResponse,
        10 => K::Unreachable,
        11 => K::SnapshotStatus,
        12 => K::CheckQuorum,
        13 => K::TransferLeader,
        14 => K::TimeoutNow,
        15 => K::ReadIndex,
        16 => K::ReadIndexResponse,
        17 => K::RequestPreVote,
        18 => K::RequestPreVoteResponse,
        _ => return None,
    })
}

const ENTRY_KIND_NORMAL: u32 = 0;
const ENTRY_KIND_CONF_CHANGE: u32 = 1;

/// A Raft message for the peer stream.
///
/// Panics on a local kind ([`raft::MessageKind::is_local`]): Raft never hands one out to send.
pub fn raft_message_to_pb(m: &raft::Message) -> peer::RaftMessage {
    assert!(
        !m.kind.is_local(),
        "local Raft message kind {:?} handed out to send",
        m.kind
    );
    peer::RaftMessage {
        kind: message_kind_number(m.kind),
        to: m.to,
        from: m.from,
        term: m.term,
        log_term: m.log_term,
        index: m.index,
        entries: m.entries.iter().map(entry_to_pb).collect(),
        commit: m.commit,
        snapshot: m.snapshot.as_ref().map(snapshot_to_pb),
        reject: m.reject,
        reject_hint: m.reject_hint,
        context: m.context.clone(),
    }
}

/// A Raft message from a peer. Refuses a kind number not in the table, a local kind and an
/// unknown entry kind. An absent snapshot metadata or configuration reads as the default one
/// (proto3's reading of an absent message); [`raft_message_to_pb`] always writes both.
pub fn raft_message_from_pb(m: peer::RaftMessage) -> Result<raft::Message, String> {
    let kind = message_kind_from_number(m.kind)
        .ok_or_else(|| format!("unknown Raft message kind {}", m.kind))?;
    if kind.is_local() {
        return Err(format!(
            "local Raft message kind {kind:?} ({}) from the network",
            m.kind
        ));
    }
    Ok(raft::Message {
        kind,
        to: m.to,
        from: m.from,
        term: m.term,
        log_term: m.log_term,
        index: m.index,
        entries: m
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<_, _>>()?,
        commit: m.commit,
        snapshot: m.snapshot.map(snapshot_from_pb),
        reject: m.reject,
        reject_hint: m.reject_hint,
        context: m.context,
    })
}

fn entry_to_pb(e: &raft::Entry) -> peer::Entry {
    peer::Entry {
        term: e.term,
        index: e.index,
        kind: match e.kind {
            raft::EntryKind::Normal => ENTRY_KIND_NORMAL,
            raft::EntryKind::ConfChange => ENTRY_KIND_CONF_CHANGE,
        },
        data: e.data.clone(),
    }
}

fn entry_from_pb(e: peer::Entry) -> Result<raft::Entry, String> {
    let kind = match e.kind {
        ENTRY_KIND_NORMAL => raft::EntryKind::Normal,
        ENTRY_KIND_CONF_CHANGE => raft::EntryKind::ConfChange,
        n => return Err(format!("unknown Raft entry kind {n}")),
    };
    Ok(raft::Entry {
        term: e.term,
        index: e.index,
        kind,
        data: e.data,
    })
}

fn snapshot_to_pb(s: &raft::Snapshot) -> peer::Snapshot {
    let c = &s.metadata.conf_state;
    peer::Snapshot {
        data: s.data.clone(),
        metadata: Some(peer::SnapshotMetadata {
            conf_state: Some(peer::ConfState {
                voters: c.voters.clone(),
                learners: c.learners.clone(),
                voters_outgoing: c.voters_outgoing.clone(),
                learners_next: c.learners_next.clone(),
                auto_leave: c.auto_leave,
            }),
            index: s.metadata.index,
            term: s.metadata.term,
        }),
    }
}

fn snapshot_from_pb(s: peer::Snapshot) -> raft::Snapshot {
    let m = s.metadata.unwrap_or_default();
    let c = m.conf_state.unwrap_or_default();
    raft::Snapshot {
        data: s.data,
        metadata: raft::SnapshotMetadata {
            conf_state: raft::ConfState {
                voters: c.voters,
                learners: c.learners,
                voters_outgoing: c.voters_outgoing,
                learners_next: c.learners_next,
                auto_leave: c.auto_leave,
            },
            index: m.index,
            term: m.term,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn bytes() -> impl Strategy<Value = Bytes> + Clone {
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Bytes::from)
    }

    /// Every kind, in the order of the wire table.
    const MESSAGE_KINDS: [raft::MessageKind; 19] = {
        use raft::MessageKind as K;
        [
            K::Hup,
            K::Beat,
            K::Propose,
            K::Append,
            K::AppendResponse,
            K::RequestVote,
            K::RequestVoteResponse,
            K::Snapshot,
            K::Heartbeat,
            K::HeartbeatResponse,
            K::Unreachable,
            K::SnapshotStatus,
            K::CheckQuorum,
            K::TransferLeader,
            K::TimeoutNow,
            K::ReadIndex,
            K::ReadIndexResponse,
            K::RequestPreVote,
            K::RequestPreVoteResponse,
        ]
    };

    fn entry() -> impl Strategy<Value = raft::Entry> {
        (any::<u64>(), any::<u64>(), any::<bool>(), bytes()).prop_map(
            |(term, index, conf, data)| raft::Entry {
                term,
                index,
                kind: if conf {
                    raft::EntryKind::ConfChange
                } else {
                    raft::EntryKind::Normal
                },
                data,
            },
        )
    }

    fn snapshot() -> impl Strategy<Value = raft::Snapshot> {
        let ids = || prop::collection::vec(any::<u64>(), 0..4);
        (
            bytes(),
            ids(),
            ids(),
            ids(),
            ids(),
            any::<bool>(),
            any::<[u64; 2]>(),
        )
            .prop_map(
                |(
                    data,
                    voters,
                    learners,
                    voters_outgoing,
                    learners_next,
                    auto_leave,
                    [index, term],
                )| {
                    raft::Snapshot {
                        data,
                        metadata: raft::SnapshotMetadata {
                            conf_state: raft::ConfState {
                                voters,
                                learners,
                                voters_outgoing,
                                learners_next,
                                auto_leave,
                            },
                            index,
                            term,
                        },
                    }
                },
            )
    }

    fn network_kind() -> impl Strategy<Value = raft::MessageKind> {
        let kinds: Vec<_> = MESSAGE_KINDS
            .into_iter()
            .filter(|k| !k.is_local())
            .collect();
        prop::sample::select(kinds)
    }

    fn message() -> impl Strategy<Value = raft::Message> {
        (
            (network_kind(), any::<[u64; 6]>()),
            prop::collection::vec(entry(), 0..4),
            prop::option::of(snapshot()),
            any::<bool>(),
            bytes(),
        )
            .prop_map(
                |(
                    (kind, [to, from, term, log_term, index, commit]),
                    entries,
                    snapshot,
                    reject,
                    context,
                )| {
                    raft::Message {
                        kind,
                        to,
                        from,
                        term,
                        log_term,
                        index,
                        entries,
                        commit,
                        snapshot,
                        reject,
                        reject_hint: index.wrapping_mul(3),
                        context,
                    }
                },
            )
    }

    /// `m` as bytes on the wire and back.
    fn through_bytes<M: prost::Message + Default>(m: &M) -> M {
        M::decode(m.encode_to_vec().as_slice()).expect("what prost writes decodes")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn raft_messages_round_trip_through_the_wire(m in message()) {
            let wire = through_bytes(&raft_message_to_pb(&m));
            prop_assert_eq!(raft_message_from_pb(wire), Ok(m));
        }
    }

    #[test]
    fn message_kinds_have_one_number_each() {
        let mut kinds = BTreeSet::new();
        for (n, kind) in MESSAGE_KINDS.into_iter().enumerate() {
            let n = n as u32;
            assert_eq!(message_kind_number(kind), n);
            assert_eq!(message_kind_from_number(n), Some(kind));
            kinds.insert(kind);
        }
        assert_eq!(kinds.len(), MESSAGE_KINDS.len());
        assert_eq!(message_kind_from_number(MESSAGE_KINDS.len() as u32), None);
    }

    #[test]
    fn local_and_unknown_kinds_are_refused_from_the_network() {
        for kind in MESSAGE_KINDS.into_iter().filter(|k| k.is_local()) {
            let m = peer::RaftMessage {
                kind: message_kind_number(kind),
                ..peer::RaftMessage::default()
            };
            assert!(
                raft_message_from_pb(m).unwrap_err().contains("local"),
                "{kind:?}"
            );
        }
        for kind in [19, 1000, u32::MAX] {
            let m = peer::RaftMessage {
                kind,
                ..peer::RaftMessage::default()
            };
            assert_eq!(
                raft_message_from_pb(m),
                Err(format!("unknown Raft message kind {kind}"))
            );
        }
        let m = peer::RaftMessage {
            kind: message_kind_number(raft::MessageKind::Append),
            entries: vec![peer::Entry {
                kind: 2,
                ..peer::Entry::default()
            }],
            ..peer::RaftMessage::default()
        };
        assert_eq!(
            raft_message_from_pb(m),
            Err("unknown Raft entry kind 2".to_owned())
        );
    }

    #[test]
    #[should_panic(expected = "local Raft message kind")]
    fn sending_a_local_kind_is_a_bug() {
        raft_message_to_pb(&raft::Message {
            kind: raft::MessageKind::Hup,
            ..raft::Message::default()
        });
    }

    #[test]
    fn a_snapshot_without_metadata_reads_as_the_default() {
        let m = peer::RaftMessage {
            kind: message_kind_number(raft::MessageKind::Snapshot),
            snapshot: Some(peer::Snapshot {
                data: b("d"),
                metadata: None,
            }),
            ..peer::RaftMessage::default()
        };
        let snapshot = raft_message_from_pb(m).unwrap().snapshot.unwrap();
        assert_eq!(snapshot.data, b("d"));
        assert_eq!(snapshot.metadata, raft::SnapshotMetadata::default());
    }
}
