//! Conversions between etcd's wire types ([`crate::pb`]) and the core's: KV requests and
//! responses, watch creates and responses (etcd's `etcdserverpb` and `mvccpb`). Raft messages
//! (oxcd's peer protocol) are [`crate::peer::codec`]'s.
//!
//! It owns the field-by-field mapping and the checks only a wire value can fail: enum numbers
//! the core has no value for, a `RequestOp` with nothing in it, transactions nested deeper than
//! the log accepts, local Raft message kinds arriving from the network. It also decides what
//! etcd puts in the headers of a transaction's nested responses.
//!
//! What it does not do: no IO and no request checks (empty keys, keys written twice and the
//! operation limit are `mvcc::check_*`'s), no size limits (the transport's), and no header of
//! its own: the caller passes cluster, member, revision and term ([`header`]).

use super::error::{ServerError, mvcc_status};
use crate::mvcc;
use crate::node::TXN_DEPTH_MAX;
use crate::pb::etcdserverpb as pb;
use crate::pb::mvccpb;
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
/// Nesting as deep as the limit cannot arrive through gRPC today: prost stops decoding at 100
/// nested messages, and each level takes two (`TxnRequest` and `RequestOp`), so at most 51
/// levels decode and tonic answers a deeper request itself (etcd, whose decoder sets no such
/// limit, would accept it).
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use tonic::Code;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    // -- strategies -----------------------------------------------------------------------

    fn bytes() -> impl Strategy<Value = Bytes> + Clone {
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Bytes::from)
    }

    fn range() -> impl Strategy<Value = mvcc::RangeRequest> {
        let order = prop_oneof![
            Just(mvcc::SortOrder::None),
            Just(mvcc::SortOrder::Ascend),
            Just(mvcc::SortOrder::Descend),
        ];
        let target = prop_oneof![
            Just(mvcc::SortTarget::Key),
            Just(mvcc::SortTarget::Version),
            Just(mvcc::SortTarget::Create),
            Just(mvcc::SortTarget::Mod),
            Just(mvcc::SortTarget::Value),
        ];
        (
            (bytes(), bytes(), any::<i64>(), any::<i64>(), order, target),
            any::<[bool; 3]>(),
            any::<[i64; 4]>(),
        )
            .prop_map(
                |((key, range_end, limit, revision, sort_order, sort_target), flags, revs)| {
                    mvcc::RangeRequest {
                        key,
                        range_end,
                        limit,
                        revision,
                        sort_order,
                        sort_target,
                        serializable: flags[0],
                        keys_only: flags[1],
                        count_only: flags[2],
                        min_mod_revision: revs[0],
                        max_mod_revision: revs[1],
                        min_create_revision: revs[2],
                        max_create_revision: revs[3],
                    }
                },
            )
    }

    fn put() -> impl Strategy<Value = mvcc::PutRequest> {
        (bytes(), bytes(), any::<i64>(), any::<[bool; 3]>()).prop_map(
            |(key, value, lease, flags)| mvcc::PutRequest {
                key,
                value,
                lease,
                prev_kv: flags[0],
                ignore_value: flags[1],
                ignore_lease: flags[2],
            },
        )
    }

    fn delete_range() -> impl Strategy<Value = mvcc::DeleteRangeRequest> {
        (bytes(), bytes(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| {
            mvcc::DeleteRangeRequest {
                key,
                range_end,
                prev_kv,
            }
        })
    }

    fn compare_target() -> impl Strategy<Value = mvcc::CompareTarget> {
        prop_oneof![
            any::<i64>().prop_map(mvcc::CompareTarget::Version),
            any::<i64>().prop_map(mvcc::CompareTarget::Create),
            any::<i64>().prop_map(mvcc::CompareTarget::Mod),
            bytes().prop_map(mvcc::CompareTarget::Value),
            any::<i64>().prop_map(mvcc::CompareTarget::Lease),
        ]
    }

    fn core_compare() -> impl Strategy<Value = mvcc::Compare> {
        let result = prop_oneof![
            Just(mvcc::CompareResult::Equal),
            Just(mvcc::CompareResult::Greater),
            Just(mvcc::CompareResult::Less),
            Just(mvcc::CompareResult::NotEqual),
        ];
        (result, compare_target(), bytes(), bytes()).prop_map(|(result, target, key, range_end)| {
            mvcc::Compare {
                result,
                target,
                key,
                range_end,
            }
        })
    }

    fn flat_op() -> BoxedStrategy<mvcc::RequestOp> {
        prop_oneof![
            range().prop_map(mvcc::RequestOp::Range),
            put().prop_map(mvcc::RequestOp::Put),
            delete_range().prop_map(mvcc::RequestOp::DeleteRange),
        ]
        .boxed()
    }

    fn txn_of(op: BoxedStrategy<mvcc::RequestOp>) -> impl Strategy<Value = mvcc::TxnRequest> {
        (
            prop::collection::vec(core_compare(), 0..3),
            prop::collection::vec(op.clone(), 0..4),
            prop::collection::vec(op, 0..4),
        )
            .prop_map(|(compare, success, failure)| mvcc::TxnRequest {
                compare,
                success,
                failure,
            })
    }

    /// Transactions nested up to four levels.
    fn txn() -> impl Strategy<Value = mvcc::TxnRequest> {
        txn_of(flat_op()).prop_recursive(3, 48, 4, |inner| {
            txn_of(prop_oneof![flat_op(), inner.prop_map(mvcc::RequestOp::Txn)].boxed())
        })
    }

    fn watch() -> impl Strategy<Value = mvcc::WatchCreate> {
        (
            bytes(),
            bytes(),
            any::<i64>(),
            any::<[bool; 5]>(),
            any::<i64>(),
        )
            .prop_map(|(key, range_end, start_revision, flags, watch_id)| {
                mvcc::WatchCreate {
                    key,
                    range_end,
                    start_revision,
                    progress_notify: flags[0],
                    filters: mvcc::WatchFilters {
                        no_put: flags[1],
                        no_delete: flags[2],
                    },
                    prev_kv: flags[3],
                    watch_id,
                    fragment: flags[4],
                }
            })
    }

    /// `m` as bytes on the wire and back.
    fn through_bytes<M: prost::Message + Default>(m: &M) -> M {
        M::decode(m.encode_to_vec().as_slice()).expect("what prost writes decodes")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn requests_round_trip_through_the_wire(
            r in range(), p in put(), d in delete_range(), t in txn(), w in watch(),
        ) {
            prop_assert_eq!(range_request(through_bytes(&range_request_to_pb(&r))).unwrap(), r);
            prop_assert_eq!(put_request(through_bytes(&put_request_to_pb(&p))), p);
            let wire = through_bytes(&delete_range_request_to_pb(&d));
            prop_assert_eq!(delete_range_request(wire), d);
            prop_assert_eq!(txn_request(through_bytes(&txn_request_to_pb(&t))).unwrap(), t);
            prop_assert_eq!(watch_create(through_bytes(&watch_create_to_pb(&w))), w);
        }
    }

    fn invalid_argument(s: Status, message: &str) {
        assert_eq!((s.code(), s.message()), (Code::InvalidArgument, message));
    }

    #[test]
    fn every_compare_target_round_trips_with_its_operand() {
        let targets = [
            mvcc::CompareTarget::Version(-3),
            mvcc::CompareTarget::Create(4),
            mvcc::CompareTarget::Mod(i64::MAX),
            mvcc::CompareTarget::Value(b("v")),
            mvcc::CompareTarget::Lease(0x1234),
        ];
        for target in targets {
            let c = mvcc::Compare {
                result: mvcc::CompareResult::NotEqual,
                target,
                key: b("k"),
                range_end: b("z"),
            };
            assert_eq!(compare(through_bytes(&compare_to_pb(&c))).unwrap(), c);
        }
    }

    #[test]
    fn an_absent_or_mismatched_operand_is_the_targets_zero_value() {
        use pb::compare::{CompareTarget as T, TargetUnion as U};
        let cases = [
            (T::Version, None, mvcc::CompareTarget::Version(0)),
            (T::Create, None, mvcc::CompareTarget::Create(0)),
            (T::Mod, None, mvcc::CompareTarget::Mod(0)),
            (T::Value, None, mvcc::CompareTarget::Value(Bytes::new())),
            (T::Lease, None, mvcc::CompareTarget::Lease(0)),
            (
                T::Version,
                Some(U::ModRevision(5)),
                mvcc::CompareTarget::Version(0),
            ),
            (
                T::Value,
                Some(U::Lease(5)),
                mvcc::CompareTarget::Value(Bytes::new()),
            ),
            (
                T::Lease,
                Some(U::Value(b("x"))),
                mvcc::CompareTarget::Lease(0),
            ),
        ];
        for (target, union, want) in cases {
            let c = pb::Compare {
                target: target as i32,
                key: b("k"),
                target_union: union,
                ..pb::Compare::default()
            };
            assert_eq!(compare(c).unwrap().target, want, "{target:?}");
        }
    }

    #[test]
    fn unknown_enum_numbers_are_refused() {
        for (order, target) in [(3, 0), (-1, 0), (0, 5), (0, i32::MAX)] {
            let r = pb::RangeRequest {
                key: b("k"),
                sort_order: order,
                sort_target: target,
                ..pb::RangeRequest::default()
            };
            invalid_argument(
                range_request(r).unwrap_err(),
                "etcdserver: invalid sort option",
            );
        }
        for (result, target) in [(4, 0), (-1, 0), (0, 5), (0, -7)] {
            let c = pb::Compare {
                result,
                target,
                key: b("k"),
                ..pb::Compare::default()
            };
            invalid_argument(
                compare(c).unwrap_err(),
                "etcdserver: invalid compare option",
            );
        }
    }

    #[test]
    fn an_empty_request_op_is_refused_as_etcd_does() {
        use pb::request_op::Request;
        let empty = pb::RequestOp { request: None };
        let flat = pb::TxnRequest {
            failure: vec![empty.clone()],
            ..pb::TxnRequest::default()
        };
        invalid_argument(
            txn_request(flat.clone()).unwrap_err(),
            "etcdserver: key not found",
        );
        let nested = pb::TxnRequest {
            success: vec![pb::RequestOp {
                request: Some(Request::RequestTxn(flat)),
            }],
            ..pb::TxnRequest::default()
        };
        invalid_argument(
            txn_request(nested).unwrap_err(),
            "etcdserver: key not found",
        );
    }

    /// A wire transaction nested `depth` levels deep, each level's success holding the next.
    fn nested_pb_txn(depth: usize) -> pb::TxnRequest {
        let mut t = pb::TxnRequest::default();
        for _ in 1..depth {
            t = pb::TxnRequest {
                success: vec![pb::RequestOp {
                    request: Some(pb::request_op::Request::RequestTxn(t)),
                }],
                ..pb::TxnRequest::default()
            };
        }
        t
    }

    #[test]
    fn txns_nest_up_to_the_limit_and_no_deeper() {
        let deepest = txn_request(nested_pb_txn(TXN_DEPTH_MAX)).expect("the deepest txn allowed");
        assert_eq!(txn_request_to_pb(&deepest), nested_pb_txn(TXN_DEPTH_MAX));
        // What the API edge accepts, the log takes.
        let cmd = crate::node::Command::Txn(deepest);
        assert_eq!(crate::node::Command::decode(&cmd.encode()), Ok(cmd));
        invalid_argument(
            txn_request(nested_pb_txn(TXN_DEPTH_MAX + 1)).unwrap_err(),
            "etcdserver: txn request nested deeper than 64 levels",
        );
    }

    /// Why the limit is not met through gRPC today (see [`txn_request`]).
    #[test]
    fn prost_refuses_deep_txns_before_the_limit_is_reached() {
        use prost::Message as _;
        let decodes = |depth: usize| {
            pb::TxnRequest::decode(nested_pb_txn(depth).encode_to_vec().as_slice()).is_ok()
        };
        assert!(decodes(51));
        assert!(!decodes(52));
        const { assert!(52 <= TXN_DEPTH_MAX) };
    }

    #[test]
    fn watch_filters_ignore_unknown_numbers() {
        let w = |filters: Vec<i32>| {
            watch_create(pb::WatchCreateRequest {
                filters,
                ..pb::WatchCreateRequest::default()
            })
            .filters
        };
        let none = mvcc::WatchFilters::default();
        let both = mvcc::WatchFilters {
            no_put: true,
            no_delete: true,
        };
        assert_eq!(w(vec![]), none);
        assert_eq!(w(vec![2, -1, 99]), none);
        assert_eq!(w(vec![7, 1, 0, 1]), both);
        assert_eq!(
            w(vec![0]),
            mvcc::WatchFilters {
                no_put: true,
                no_delete: false
            }
        );
    }

    fn kv(key: &'static str, mod_revision: i64) -> mvcc::KeyValue {
        mvcc::KeyValue {
            key: b(key),
            create_revision: 1,
            mod_revision,
            version: 2,
            value: b("v"),
            lease: 3,
        }
    }

    fn deleted(n: i64) -> mvcc::ResponseOp {
        mvcc::ResponseOp::DeleteRange(mvcc::DeleteRangeResponse {
            deleted: n,
            prev_kvs: vec![],
        })
    }

    fn ranged() -> mvcc::ResponseOp {
        mvcc::ResponseOp::Range(mvcc::RangeResponse {
            kvs: vec![kv("a", 4)],
            more: true,
            count: 3,
        })
    }

    fn nested(responses: Vec<mvcc::ResponseOp>) -> mvcc::ResponseOp {
        mvcc::ResponseOp::Txn(mvcc::TxnResponse {
            succeeded: false,
            responses,
        })
    }

    /// The header of each response of a converted transaction, depth first; `None` for a
    /// nested transaction's (empty) one.
    fn nested_revisions(r: &pb::TxnResponse) -> Vec<Option<i64>> {
        use pb::response_op::Response;
        let mut out = Vec::new();
        for op in &r.responses {
            match op.response.as_ref().unwrap() {
                Response::ResponseRange(r) => out.push(Some(only_revision(r.header))),
                Response::ResponsePut(r) => out.push(Some(only_revision(r.header))),
                Response::ResponseDeleteRange(r) => out.push(Some(only_revision(r.header))),
                Response::ResponseTxn(t) => {
                    assert_eq!(t.header, Some(pb::ResponseHeader::default()));
                    out.push(None);
                    out.extend(nested_revisions(t));
                }
            }
        }
        out
    }

    fn only_revision(h: Option<pb::ResponseHeader>) -> i64 {
        let h = h.expect("a nested response has a header");
        assert_eq!((h.cluster_id, h.member_id, h.raft_term), (0, 0, 0));
        h.revision
    }

    #[test]
    fn nested_responses_carry_the_revision_each_operation_saw() {
        let top = header(11, 22, 10, 33);
        let put = mvcc::ResponseOp::Put(mvcc::PutResponse { prev_kv: None });
        // A write: 9 before it, 10 after; reads before the first change see 9.
        let r = mvcc::TxnResponse {
            succeeded: true,
            responses: vec![
                ranged(),
                deleted(0),
                nested(vec![ranged(), deleted(2), ranged()]),
                put.clone(),
                ranged(),
            ],
        };
        let wire = txn_response(r, top);
        assert_eq!(wire.header, Some(top));
        assert!(wire.succeeded);
        let want = [
            Some(9),
            Some(9),
            None,
            Some(9),
            Some(10),
            Some(10),
            Some(10),
            Some(10),
        ];
        assert_eq!(nested_revisions(&wire), want);
        // A put reports the new revision even when it comes first.
        let r = mvcc::TxnResponse {
            succeeded: false,
            responses: vec![put, deleted(0), ranged()],
        };
        assert_eq!(nested_revisions(&txn_response(r, top)), [Some(10); 3]);
        // Nothing changed: everything saw the header's revision.
        let r = mvcc::TxnResponse {
            succeeded: true,
            responses: vec![ranged(), deleted(0), nested(vec![ranged()])],
        };
        let want = [Some(10), Some(10), None, Some(10)];
        assert_eq!(nested_revisions(&txn_response(r, top)), want);
        // The range's own fields are converted too.
        let wire = txn_response(
            mvcc::TxnResponse {
                succeeded: true,
                responses: vec![ranged()],
            },
            top,
        );
        let Some(pb::response_op::Response::ResponseRange(range)) = &wire.responses[0].response
        else {
            panic!("not a range response: {wire:?}");
        };
        assert_eq!(
            (range.kvs.clone(), range.more, range.count),
            (vec![key_value(&kv("a", 4))], true, 3)
        );
    }

    #[test]
    fn kv_responses_carry_their_fields_and_header() {
        let h = header(1, 2, 3, 4);
        let r = range_response(
            mvcc::RangeResponse {
                kvs: vec![kv("a", 5), kv("b", 6)],
                more: false,
                count: 2,
            },
            h,
        );
        assert_eq!(r.header, Some(h));
        assert_eq!(r.kvs[1].key, b("b"));
        assert_eq!(r.kvs[1].mod_revision, 6);
        assert_eq!(r.count, 2);
        let p = put_response(
            mvcc::PutResponse {
                prev_kv: Some(kv("a", 5)),
            },
            h,
        );
        assert_eq!(
            p.prev_kv,
            Some(mvccpb::KeyValue {
                key: b("a"),
                create_revision: 1,
                mod_revision: 5,
                version: 2,
                value: b("v"),
                lease: 3,
            })
        );
        let d = delete_range_response(
            mvcc::DeleteRangeResponse {
                deleted: 1,
                prev_kvs: vec![kv("a", 5)],
            },
            h,
        );
        assert_eq!((d.header, d.deleted, d.prev_kvs.len()), (Some(h), 1, 1));
    }

    #[test]
    fn watch_responses_take_the_base_header_with_their_own_revision() {
        let base = header(1, 2, 99, 4);
        let put = mvcc::Event {
            kind: mvcc::EventKind::Put,
            kv: kv("a", 7),
            prev_kv: Some(kv("a", 6)),
        };
        let del = mvcc::Event {
            kind: mvcc::EventKind::Delete,
            kv: mvcc::KeyValue {
                key: b("b"),
                mod_revision: 7,
                ..mvcc::KeyValue::default()
            },
            prev_kv: None,
        };
        let r = mvcc::WatchResponse {
            header_revision: 7,
            watch_id: 5,
            created: false,
            canceled: true,
            compact_revision: 3,
            cancel_reason: "why".into(),
            fragment: true,
            events: vec![put, del],
        };
        let w = watch_response(r, &base);
        assert_eq!(w.header, Some(header(1, 2, 7, 4)));
        assert_eq!((w.watch_id, w.created, w.canceled), (5, false, true));
        assert_eq!(
            (w.compact_revision, w.cancel_reason.as_str(), w.fragment),
            (3, "why", true)
        );
        let types: Vec<i32> = w.events.iter().map(|e| e.r#type).collect();
        assert_eq!(
            types,
            [
                mvccpb::event::EventType::Put as i32,
                mvccpb::event::EventType::Delete as i32
            ]
        );
        assert_eq!(
            w.events[0].prev_kv.as_ref().map(|kv| kv.mod_revision),
            Some(6)
        );
        assert_eq!(
            w.events[1].kv.as_ref().map(|kv| kv.key.clone()),
            Some(b("b"))
        );
        assert_eq!(w.events[1].prev_kv, None);
    }
}
