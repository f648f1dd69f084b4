//! Conversions between the wire types ([`crate::pb`]) and the core's: KV requests and
//! responses, watch creates and responses (etcd's `etcdserverpb` and `mvccpb`), and Raft
//! messages (oxcd's peer protocol).
//!
//! It owns the field-by-field mapping and the checks only a wire value can fail: enum numbers
//! the core has no value for, a `RequestOp` with nothing in it, transactions nested deeper than
//! the log accepts, local Raft message kinds arriving from the network. It also decides what
//! etcd puts in the headers of a transaction's nested responses.
//!
//! What it does not do: no IO and no request checks (empty keys, keys written twice and the
//! operation limit are `mvcc::check_*`'s), no size limits (the transport's), and no header of
//! its own: the caller passes cluster, member, revision and term ([`header`]).
//!
//! # Raft message kinds on the wire
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

use super::error::{ServerError, mvcc_status};
use crate::mvcc;
use crate::node::TXN_DEPTH_MAX;
use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb;
use crate::pb::peer;
use crate::raft;
use bytes::Bytes;
use tonic::Status;

/// A response header.
pub fn header(
    cluster_id: u64,
    member_id: u64,
    revision: i64,
    raft_term: u64,
) -> pb::ResponseHeader {
    pb::ResponseHeader {
        cluster_id,
        member_id,
        revision,
        raft_term,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests: wire to core, and back (for clients, tests and the fuzz harness).

/// A range request. An unknown sort order or target is refused ("invalid sort option").
pub fn range_request(r: pb::RangeRequest) -> Result<mvcc::RangeRequest, Status> {
    use pb::range_request::{SortOrder, SortTarget};
    let sort_order = match SortOrder::try_from(r.sort_order) {
        Ok(SortOrder::None) => mvcc::SortOrder::None,
        Ok(SortOrder::Ascend) => mvcc::SortOrder::Ascend,
        Ok(SortOrder::Descend) => mvcc::SortOrder::Descend,
        Err(_) => return Err(ServerError::InvalidSortOption.status()),
    };
    let sort_target = match SortTarget::try_from(r.sort_target) {
        Ok(SortTarget::Key) => mvcc::SortTarget::Key,
        Ok(SortTarget::Version) => mvcc::SortTarget::Version,
        Ok(SortTarget::Create) => mvcc::SortTarget::Create,
        Ok(SortTarget::Mod) => mvcc::SortTarget::Mod,
        Ok(SortTarget::Value) => mvcc::SortTarget::Value,
        Err(_) => return Err(ServerError::InvalidSortOption.status()),
    };
    Ok(mvcc::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn range_request_to_pb(r: &mvcc::RangeRequest) -> pb::RangeRequest {
    use pb::range_request::{SortOrder, SortTarget};
    let sort_order = match r.sort_order {
        mvcc::SortOrder::None => SortOrder::None,
        mvcc::SortOrder::Ascend => SortOrder::Ascend,
        mvcc::SortOrder::Descend => SortOrder::Descend,
    };
    let sort_target = match r.sort_target {
        mvcc::SortTarget::Key => SortTarget::Key,
        mvcc::SortTarget::Version => SortTarget::Version,
        mvcc::SortTarget::Create => SortTarget::Create,
        mvcc::SortTarget::Mod => SortTarget::Mod,
        mvcc::SortTarget::Value => SortTarget::Value,
    };
    pb::RangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        limit: r.limit,
        revision: r.revision,
        sort_order: sort_order as i32,
        sort_target: sort_target as i32,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub fn put_request(r: pb::PutRequest) -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn put_request_to_pb(r: &mvcc::PutRequest) -> pb::PutRequest {
    pb::PutRequest {
        key: r.key.clone(),
        value: r.value.clone(),
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn delete_range_request(r: pb::DeleteRangeRequest) -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest {
        key: r.key,
        range_end: r.range_end,
        prev_kv: r.prev_kv,
    }
}

pub fn delete_range_request_to_pb(r: &mvcc::DeleteRangeRequest) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        prev_kv: r.prev_kv,
    }
}

/// A transaction, with its nested ones.
///
/// Refused, in the order met (compares, then success, then failure, depth first):
/// - nesting deeper than [`TXN_DEPTH_MAX`] levels, the transaction itself being level 1
///   (etcd has no limit; the log refuses deeper ones): InvalidArgument;
/// - a `RequestOp` with no request in it: InvalidArgument "key not found", as etcd 3.4 answers
///   an empty op (its request check knows no other case);
/// - what [`range_request`] and [`compare`] refuse.
///
/// Deeper nesting than the limit cannot arrive through gRPC today: prost stops decoding at 100
/// nested messages, and each level takes two (`TxnRequest` and `RequestOp`).
pub fn txn_request(r: pb::TxnRequest) -> Result<mvcc::TxnRequest, Status> {
    txn_at(r, 1)
}

/// `depth` is this transaction's level, 1 for the request's own.
fn txn_at(r: pb::TxnRequest, depth: usize) -> Result<mvcc::TxnRequest, Status> {
    if depth > TXN_DEPTH_MAX {
        return Err(ServerError::TxnNestedTooDeep {
            depth_max: TXN_DEPTH_MAX,
        }
        .status());
    }
    let ops = |ops: Vec<pb::RequestOp>| {
        ops.into_iter()
            .map(|op| request_op(op, depth))
            .collect::<Result<Vec<_>, Status>>()
    };
    Ok(mvcc::TxnRequest {
        compare: r
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: ops(r.success)?,
        failure: ops(r.failure)?,
    })
}

/// An operation of a transaction at level `depth`.
fn request_op(op: pb::RequestOp, depth: usize) -> Result<mvcc::RequestOp, Status> {
    use pb::request_op::Request;
    Ok(match op.request {
        Some(Request::RequestRange(r)) => mvcc::RequestOp::Range(range_request(r)?),
        Some(Request::RequestPut(r)) => mvcc::RequestOp::Put(put_request(r)),
        Some(Request::RequestDeleteRange(r)) => {
            mvcc::RequestOp::DeleteRange(delete_range_request(r))
        }
        Some(Request::RequestTxn(t)) => mvcc::RequestOp::Txn(txn_at(t, depth + 1)?),
        None => return Err(mvcc_status(&mvcc::Error::KeyNotFound)),
    })
}

/// Panics if `r` nests deeper than [`TXN_DEPTH_MAX`] levels: no request the API edge accepted
/// does, and nothing could send the result (the log refuses it too).
pub fn txn_request_to_pb(r: &mvcc::TxnRequest) -> pb::TxnRequest {
    txn_to_pb_at(r, 1)
}

fn txn_to_pb_at(r: &mvcc::TxnRequest, depth: usize) -> pb::TxnRequest {
    assert!(
        depth <= TXN_DEPTH_MAX,
        "a txn nested deeper than {TXN_DEPTH_MAX} levels"
    );
    let ops = |ops: &[mvcc::RequestOp]| {
        ops.iter()
            .map(|op| request_op_to_pb(op, depth))
            .collect::<Vec<_>>()
    };
    pb::TxnRequest {
        compare: r.compare.iter().map(compare_to_pb).collect(),
        success: ops(&r.success),
        failure: ops(&r.failure),
    }
}

fn request_op_to_pb(op: &mvcc::RequestOp, depth: usize) -> pb::RequestOp {
    use pb::request_op::Request;
    let request = match op {
        mvcc::RequestOp::Range(r) => Request::RequestRange(range_request_to_pb(r)),
        mvcc::RequestOp::Put(r) => Request::RequestPut(put_request_to_pb(r)),
        mvcc::RequestOp::DeleteRange(r) => {
            Request::RequestDeleteRange(delete_range_request_to_pb(r))
        }
        mvcc::RequestOp::Txn(t) => Request::RequestTxn(txn_to_pb_at(t, depth + 1)),
    };
    pb::RequestOp {
        request: Some(request),
    }
}

/// A compare of a transaction.
///
/// `target` alone says what is compared; the operand is the `target_union` variant of that
/// target. As in etcd 3.4 (which compares against the zero value when the union does not hold
/// the target's type), an absent `target_union`, or one holding another target's variant, is
/// the zero value of the target's type: 0, or the empty value. An unknown `result` or `target`
/// number is refused ("invalid compare option", oxcd's own: see [`ServerError`]).
pub fn compare(c: pb::Compare) -> Result<mvcc::Compare, Status> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => mvcc::CompareResult::Equal,
        Ok(CompareResult::Greater) => mvcc::CompareResult::Greater,
        Ok(CompareResult::Less) => mvcc::CompareResult::Less,
        Ok(CompareResult::NotEqual) => mvcc::CompareResult::NotEqual,
        Err(_) => return Err(ServerError::InvalidCompareOption.status()),
    };
    let Ok(target) = CompareTarget::try_from(c.target) else {
        return Err(ServerError::InvalidCompareOption.status());
    };
    let target = match (target, c.target_union) {
        (CompareTarget::Version, Some(TargetUnion::Version(v))) => mvcc::CompareTarget::Version(v),
        (CompareTarget::Version, _) => mvcc::CompareTarget::Version(0),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => {
            mvcc::CompareTarget::Create(v)
        }
        (CompareTarget::Create, _) => mvcc::CompareTarget::Create(0),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => mvcc::CompareTarget::Mod(v),
        (CompareTarget::Mod, _) => mvcc::CompareTarget::Mod(0),
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => mvcc::CompareTarget::Value(v),
        (CompareTarget::Value, _) => mvcc::CompareTarget::Value(Bytes::new()),
        (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => mvcc::CompareTarget::Lease(v),
        (CompareTarget::Lease, _) => mvcc::CompareTarget::Lease(0),
    };
    Ok(mvcc::Compare {
        result,
        target,
        key: c.key,
        range_end: c.range_end,
    })
}

pub fn compare_to_pb(c: &mvcc::Compare) -> pb::Compare {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match c.result {
        mvcc::CompareResult::Equal => CompareResult::Equal,
        mvcc::CompareResult::Greater => CompareResult::Greater,
        mvcc::CompareResult::Less => CompareResult::Less,
        mvcc::CompareResult::NotEqual => CompareResult::NotEqual,
    };
    let (target, union) = match &c.target {
        mvcc::CompareTarget::Version(v) => (CompareTarget::Version, TargetUnion::Version(*v)),
        mvcc::CompareTarget::Create(v) => (CompareTarget::Create, TargetUnion::CreateRevision(*v)),
        mvcc::CompareTarget::Mod(v) => (CompareTarget::Mod, TargetUnion::ModRevision(*v)),
        mvcc::CompareTarget::Value(v) => (CompareTarget::Value, TargetUnion::Value(v.clone())),
        mvcc::CompareTarget::Lease(v) => (CompareTarget::Lease, TargetUnion::Lease(*v)),
    };
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: c.key.clone(),
        range_end: c.range_end.clone(),
        target_union: Some(union),
    }
}

/// A watch create. Filter numbers other than NOPUT (0) and NODELETE (1) are ignored, as etcd
/// ignores them.
pub fn watch_create(r: pb::WatchCreateRequest) -> mvcc::WatchCreate {
    use pb::watch_create_request::FilterType;
    let mut filters = mvcc::WatchFilters::default();
    for f in r.filters {
        match FilterType::try_from(f) {
            Ok(FilterType::Noput) => filters.no_put = true,
            Ok(FilterType::Nodelete) => filters.no_delete = true,
            Err(_) => {}
        }
    }
    mvcc::WatchCreate {
        key: r.key,
        range_end: r.range_end,
        start_revision: r.start_revision,
        progress_notify: r.progress_notify,
        filters,
        prev_kv: r.prev_kv,
        watch_id: r.watch_id,
        fragment: r.fragment,
    }
}

pub fn watch_create_to_pb(r: &mvcc::WatchCreate) -> pb::WatchCreateRequest {
    use pb::watch_create_request::FilterType;
    let mut filters = Vec::new();
    if r.filters.no_put {
        filters.push(FilterType::Noput as i32);
    }
    if r.filters.no_delete {
        filters.push(FilterType::Nodelete as i32);
    }
    pb::WatchCreateRequest {
        key: r.key.clone(),
        range_end: r.range_end.clone(),
        start_revision: r.start_revision,
        progress_notify: r.progress_notify,
        filters,
        prev_kv: r.prev_kv,
        watch_id: r.watch_id,
        fragment: r.fragment,
    }
}

// ---------------------------------------------------------------------------------------------
// Responses: core to wire.

pub fn key_value(kv: &mvcc::KeyValue) -> mvccpb::KeyValue {
    key_value_owned(kv.clone())
}

/// [`key_value`] without the (reference-counted) copies of key and value.
pub fn key_value_owned(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event(e: mvcc::Event) -> mvccpb::Event {
    use mvccpb::event::EventType;
    let kind = match e.kind {
        mvcc::EventKind::Put => EventType::Put,
        mvcc::EventKind::Delete => EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(key_value_owned(e.kv)),
        prev_kv: e.prev_kv.map(key_value_owned),
    }
}

pub fn range_response(r: mvcc::RangeResponse, header: pb::ResponseHeader) -> pb::RangeResponse {
    pb::RangeResponse {
        header: Some(header),
        kvs: r.kvs.into_iter().map(key_value_owned).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_response(r: mvcc::PutResponse, header: pb::ResponseHeader) -> pb::PutResponse {
    pb::PutResponse {
        header: Some(header),
        prev_kv: r.prev_kv.map(key_value_owned),
    }
}

pub fn delete_range_response(
    r: mvcc::DeleteRangeResponse,
    header: pb::ResponseHeader,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: Some(header),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(key_value_owned).collect(),
    }
}

/// A transaction's response. `header` is the transaction's own (its revision is the store's
/// after the transaction); the nested responses get the headers etcd 3.4 gives them, which
/// its server does not fill in (only the top-level header gets cluster, member and term):
///
/// - a range, put or delete-range response: a header with only the revision that operation
///   saw, as etcd's write transaction reports it: the revision before the transaction, plus
///   one once the transaction has changed something (a put, or a delete that deleted keys;
///   a put always reports the transaction's new revision);
/// - a nested transaction's response: an empty header.
///
/// The revision before the transaction is `header.revision`, less one if the transaction
/// changed anything.
pub fn txn_response(r: mvcc::TxnResponse, header: pb::ResponseHeader) -> pb::TxnResponse {
    let before = header.revision - i64::from(txn_writes(&r));
    let mut changed = false;
    let responses = response_ops(r.responses, before, &mut changed);
    debug_assert_eq!(before + i64::from(changed), header.revision);
    pb::TxnResponse {
        header: Some(header),
        succeeded: r.succeeded,
        responses,
    }
}

/// Whether the branch a transaction took changed anything.
fn txn_writes(r: &mvcc::TxnResponse) -> bool {
    r.responses.iter().any(|op| match op {
        mvcc::ResponseOp::Range(_) => false,
        mvcc::ResponseOp::Put(_) => true,
        mvcc::ResponseOp::DeleteRange(d) => d.deleted > 0,
        mvcc::ResponseOp::Txn(t) => txn_writes(t),
    })
}

/// The responses of one branch, in the order they ran. `before` is the store's revision before
/// the whole transaction; `changed` says whether an earlier operation changed something.
fn response_ops(
    ops: Vec<mvcc::ResponseOp>,
    before: i64,
    changed: &mut bool,
) -> Vec<pb::ResponseOp> {
    use pb::response_op::Response;
    let revision_header = |changed: bool| header(0, 0, before + i64::from(changed), 0);
    ops.into_iter()
        .map(|op| {
            let response = match op {
                mvcc::ResponseOp::Range(r) => {
                    Response::ResponseRange(range_response(r, revision_header(*changed)))
                }
                mvcc::ResponseOp::Put(r) => {
                    *changed = true;
                    Response::ResponsePut(put_response(r, revision_header(true)))
                }
                mvcc::ResponseOp::DeleteRange(r) => {
                    *changed |= r.deleted > 0;
                    let h = revision_header(*changed);
                    Response::ResponseDeleteRange(delete_range_response(r, h))
                }
                mvcc::ResponseOp::Txn(t) => Response::ResponseTxn(pb::TxnResponse {
                    header: Some(pb::ResponseHeader::default()),
                    succeeded: t.succeeded,
                    responses: response_ops(t.responses, before, changed),
                }),
            };
            pb::ResponseOp {
                response: Some(response),
            }
        })
        .collect()
}

/// A watch response: the header is `header_base` (cluster, member, term) with the response's
/// own revision.
pub fn watch_response(
    r: mvcc::WatchResponse,
    header_base: &pb::ResponseHeader,
) -> pb::WatchResponse {
    pb::WatchResponse {
        header: Some(pb::ResponseHeader {
            revision: r.header_revision,
            ..*header_base
        }),
        watch_id: r.watch_id,
        created: r.created,
        canceled: r.canceled,
        compact_revision: r.compact_revision,
        cancel_reason: r.cancel_reason,
        fragment: r.fragment,
        events: r.events.into_iter().map(event).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Raft messages (the peer protocol).

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
