//! The bytes of a committed [`Command`] as it travels in a Raft log entry: [`Command::encode`]
//! and [`Command::decode`], every field of every request, so that what a member applies is
//! exactly what the leader proposed.
//!
//! The command is the payload of a storage frame of kind [`Kind::Command`], so the checksum,
//! the length bound and the strict payload reader come from [`crate::storage::codec`]; this
//! module owns only the payload layout. All numbers are fixed-width little-endian, byte strings
//! are a `u32` length then the bytes, flags are one byte (0 or 1), lists are a `u32` count then
//! the items, and enums are a one-byte tag (etcd's protobuf numbers where etcd has them):
//!
//! ```text
//! command     = tag (1 Put, 2 DeleteRange, 3 Txn, 4 Compact, 5 LeaseGrant, 6 LeaseRevoke,
//!               7 LeaseCheckpoint, 8 SetMember, 9 Alarm, 10 Auth, 11 Authed), then its body
//! Put         = key, value, lease i64, prev_kv, ignore_value, ignore_lease
//! DeleteRange = key, range_end, prev_kv
//! Txn         = count, compare*, count, op* (success), count, op* (failure)
//! compare     = result (0 =, 1 >, 2 <, 3 !=), target (0 version, 1 create, 2 mod, 4 lease:
//!               then i64 | 3 value: then bytes), key, range_end
//! op          = tag (1 Range, 2 Put, 3 DeleteRange, 4 Txn), then its body
//! Range       = key, range_end, limit i64, revision i64, sort_order u8 (0 none, 1 ascend,
//!               2 descend), sort_target u8 (0 key, 1 version, 2 create, 3 mod, 4 value),
//!               serializable, keys_only, count_only, min_mod_revision, max_mod_revision,
//!               min_create_revision, max_create_revision (i64 each)
//! Compact     = revision i64
//! LeaseGrant  = id i64, ttl_s i64
//! LeaseRevoke = id i64
//! LeaseCheckpoint = count, (id i64, remaining_ms u64)*
//! SetMember   = id u64, record
//! Alarm       = action u8 (0 get, 1 activate, 2 deactivate), member u64, type i32
//! Auth        = an auth command (`auth::AuthCommand`'s tag and fields)
//! Authed      = user, auth_revision u64, command (any but Authed)
//! ```
//!
//! A proposal ([`Kind::Proposal`]) is the same command payload after the proposer's
//! [`RequestId`] (member u64, seq u64).
//!
//! Every value has exactly one encoding (no optional fields, no padding, strict flags and tags),
//! so a decoded command re-encodes to the very bytes it came from. A changed layout takes a new
//! command tag rather than reinterpreting an old one: old log entries must keep their meaning.
//!
//! Decoding trusts no byte: a count is checked against the bytes left before anything is
//! allocated for it, and transactions nest at most [`TXN_DEPTH_MAX`] levels, so hostile input
//! costs neither unbounded memory nor the stack.
//!
//! What it does not do: it checks no request (empty keys, keys written twice and the operation
//! limit are for `mvcc::check_*` at the API edge, and for the store when applying), and it
//! bounds no size below the frame's limit: the request size limit is the API edge's too.

use super::apply::{AlarmAction, Command};
use crate::auth::AuthCommand;
use crate::lease::LeaseId;
use crate::mvcc::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    SortOrder, SortTarget, TxnRequest,
};
use crate::storage::codec::{CodecError, Kind, Reader, Writer, decode_exact, encode_frame};
use bytes::Bytes;

/// The deepest nesting of transactions a command may carry, a `Command::Txn` being level 1.
/// Decoding refuses deeper ones; encoding asserts it, so the API edge must refuse deeper
/// requests before they are proposed.
pub const TXN_DEPTH_MAX: usize = 64;

const CMD_PUT: u8 = 1;
const CMD_DELETE_RANGE: u8 = 2;
const CMD_TXN: u8 = 3;
const CMD_COMPACT: u8 = 4;
const CMD_LEASE_GRANT: u8 = 5;
const CMD_LEASE_REVOKE: u8 = 6;
const CMD_LEASE_CHECKPOINT: u8 = 7;
const CMD_SET_MEMBER: u8 = 8;
const CMD_ALARM: u8 = 9;
const CMD_AUTH: u8 = 10;
const CMD_AUTHED: u8 = 11;
const CMD_V2: u8 = 12;
const CMD_V2_AUTH: u8 = 13;

// etcd's `RequestOp` oneof field numbers.
const OP_RANGE: u8 = 1;
const OP_PUT: u8 = 2;
const OP_DELETE_RANGE: u8 = 3;
const OP_TXN: u8 = 4;

/// The fewest bytes one encoded compare takes: result, target tag, the shortest operand (an
/// empty value's length), key length, range_end length.
const COMPARE_BYTES_MIN: usize = 1 + 1 + 4 + 4 + 4;
/// The fewest bytes one encoded operation takes: a delete with empty key and range_end.
const OP_BYTES_MIN: usize = 1 + 4 + 4 + 1;
/// The bytes one checkpoint entry takes: lease ID and remaining milliseconds.
const CHECKPOINT_BYTES: usize = 8 + 8;

impl Command {
    /// The command as a framed record ([`Kind::Command`]).
    ///
    /// Panics if a transaction nests deeper than [`TXN_DEPTH_MAX`] or the payload exceeds the
    /// frame's limit: the API edge refuses such requests, so reaching here with one is a bug.
    pub fn encode(&self) -> Bytes {
        let out = encode_frame(Kind::Command, &self.payload());
        debug_assert_eq!(
            Command::decode(&out).as_ref(),
            Ok(self),
            "decode reads what encode wrote"
        );
        out
    }

    /// The command with the ID of the request that proposed it ([`Kind::Proposal`]), so the
    /// proposer can match the applied entry to the waiting client. Panics as [`Command::encode`].
    pub fn encode_proposal(&self, id: RequestId) -> Bytes {
        let payload = self.payload();
        let mut w = Writer::with_capacity(16 + payload.len());
        w.u64(id.member);
        w.u64(id.seq);
        w.raw(&payload);
        let out = encode_frame(Kind::Proposal, &w.finish());
        debug_assert_eq!(
            Command::decode_entry(&out).as_ref(),
            Ok(&(Some(id), self.clone())),
            "decode reads what encode wrote"
        );
        out
    }

    fn payload(&self) -> Bytes {
        let mut w = Writer::with_capacity(match self {
            Command::Put(p) => 32 + p.key.len() + p.value.len(),
            Command::LeaseCheckpoint(batch) => 5 + batch.len() * CHECKPOINT_BYTES,
            _ => 64,
        });
        write_command(&mut w, self);
        w.finish()
    }

    /// Reads a buffer holding exactly one framed command. Any other input is an error, never
    /// a panic.
    pub fn decode(buf: &[u8]) -> Result<Command, CodecError> {
        let mut r = Reader::new(decode_exact(buf, Kind::Command)?);
        let cmd = read_command(&mut r)?;
        r.finish()?;
        Ok(cmd)
    }

    /// Reads a Raft entry's data: a proposal (with its request ID) or a bare command.
    pub fn decode_entry(buf: &[u8]) -> Result<(Option<RequestId>, Command), CodecError> {
        match decode_exact(buf, Kind::Proposal) {
            Ok(payload) => {
                let mut r = Reader::new(payload);
                let id = RequestId {
                    member: r.u64()?,
                    seq: r.u64()?,
                };
                let cmd = read_command(&mut r)?;
                r.finish()?;
                Ok((Some(id), cmd))
            }
            Err(CodecError::WrongKind {
                found: Kind::Command,
                ..
            }) => Ok((None, Command::decode(buf)?)),
            Err(e) => Err(e),
        }
    }
}

fn write_command(w: &mut Writer, cmd: &Command) {
    match cmd {
        Command::Put(p) => {
            w.u8(CMD_PUT);
            write_put(w, p);
        }
        Command::DeleteRange(d) => {
            w.u8(CMD_DELETE_RANGE);
            write_delete_range(w, d);
        }
        Command::Txn(t) => {
            w.u8(CMD_TXN);
            write_txn(w, t, 1);
        }
        Command::Compact { revision } => {
            w.u8(CMD_COMPACT);
            w.i64(*revision);
        }
        Command::LeaseGrant { id, ttl_s } => {
            w.u8(CMD_LEASE_GRANT);
            w.i64(*id);
            w.i64(*ttl_s);
        }
        Command::LeaseRevoke { id } => {
            w.u8(CMD_LEASE_REVOKE);
            w.i64(*id);
        }
        Command::LeaseCheckpoint(batch) => {
            w.u8(CMD_LEASE_CHECKPOINT);
            write_count(w, batch.len());
            for &(id, remaining_ms) in batch {
                w.i64(id);
                w.u64(remaining_ms);
            }
        }
        Command::SetMember { id, record } => {
            w.u8(CMD_SET_MEMBER);
            w.u64(*id);
            w.bytes(record);
        }
        Command::Alarm {
            action,
            member,
            kind,
        } => {
            w.u8(CMD_ALARM);
            w.u8(*action as u8);
            w.u64(*member);
            w.u32(*kind as u32);
        }
        Command::Auth(c) => {
            w.u8(CMD_AUTH);
            c.write(w);
        }
        Command::Authed {
            user,
            revision,
            cmd,
        } => {
            assert!(
                !matches!(**cmd, Command::Authed { .. }),
                "an authed command carries a plain one"
            );
            w.u8(CMD_AUTHED);
            w.bytes(user.as_bytes());
            w.u64(*revision);
            write_command(w, cmd);
        }
        Command::V2(c) => {
            w.u8(CMD_V2);
            c.write(w);
        }
        Command::V2Auth(c) => {
            w.u8(CMD_V2_AUTH);
            c.write(w);
        }
    }
}

/// Names one client request among all members' proposals: the proposing member and its own
/// sequence number (unique for as long as the member's process lives, and started from its
/// clock, so a restarted member does not reuse the numbers of its pending proposals).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId {
    /// The ID of the member that proposed the request.
    pub member: u64,
    /// The proposer's sequence number for it.
    pub seq: u64,
}

fn read_command(r: &mut Reader) -> Result<Command, CodecError> {
    Ok(match r.u8()? {
        CMD_PUT => Command::Put(read_put(r)?),
        CMD_DELETE_RANGE => Command::DeleteRange(read_delete_range(r)?),
        CMD_TXN => Command::Txn(read_txn(r, 1)?),
        CMD_COMPACT => Command::Compact { revision: r.i64()? },
        CMD_LEASE_GRANT => Command::LeaseGrant {
            id: r.i64()?,
            ttl_s: r.i64()?,
        },
        CMD_LEASE_REVOKE => Command::LeaseRevoke { id: r.i64()? },
        CMD_LEASE_CHECKPOINT => {
            let n = read_count(r, CHECKPOINT_BYTES)?;
            // Exact: every entry has a fixed size, and `n` of them fit in the payload.
            let mut batch: Vec<(LeaseId, u64)> = Vec::with_capacity(n);
            for _ in 0..n {
                batch.push((r.i64()?, r.u64()?));
            }
            Command::LeaseCheckpoint(batch)
        }
        CMD_SET_MEMBER => Command::SetMember {
            id: r.u64()?,
            record: r.bytes()?,
        },
        CMD_ALARM => Command::Alarm {
            action: match r.u8()? {
                0 => AlarmAction::Get,
                1 => AlarmAction::Activate,
                2 => AlarmAction::Deactivate,
                _ => return Err(malformed("unknown alarm action")),
            },
            member: r.u64()?,
            kind: r.u32()? as i32,
        },
        CMD_AUTH => Command::Auth(AuthCommand::read(r)?),
        CMD_AUTHED => {
            let user = String::from_utf8(r.bytes()?.to_vec())
                .map_err(|_| malformed("user name not UTF-8"))?;
            let revision = r.u64()?;
            let cmd = read_command(r)?;
            if matches!(cmd, Command::Authed { .. }) {
                return Err(malformed("an authed command inside another"));
            }
            Command::Authed {
                user,
                revision,
                cmd: Box::new(cmd),
            }
        }
        CMD_V2 => Command::V2(crate::v2::V2Command::read(r)?),
        CMD_V2_AUTH => Command::V2Auth(crate::v2::AuthCommand::read(r)?),
        _ => return Err(malformed("unknown command tag")),
    })
}

fn malformed(why: &'static str) -> CodecError {
    CodecError::Malformed { why }
}

fn write_count(w: &mut Writer, n: usize) {
    w.u32(u32::try_from(n).expect("list under 4 G items"));
}

/// A list's count, refused unless that many items of at least `item_bytes_min` bytes each fit
/// in what is left of the payload.
fn read_count(r: &mut Reader, item_bytes_min: usize) -> Result<usize, CodecError> {
    debug_assert!(item_bytes_min > 0);
    let n = r.u32()? as usize;
    if n > r.remaining() / item_bytes_min {
        return Err(malformed("list runs past the payload"));
    }
    Ok(n)
}

fn write_put(w: &mut Writer, p: &PutRequest) {
    w.bytes(&p.key);
    w.bytes(&p.value);
    w.i64(p.lease);
    w.bool(p.prev_kv);
    w.bool(p.ignore_value);
    w.bool(p.ignore_lease);
}

fn read_put(r: &mut Reader) -> Result<PutRequest, CodecError> {
    Ok(PutRequest {
        key: r.bytes()?,
        value: r.bytes()?,
        lease: r.i64()?,
        prev_kv: r.bool()?,
        ignore_value: r.bool()?,
        ignore_lease: r.bool()?,
    })
}

fn write_delete_range(w: &mut Writer, d: &DeleteRangeRequest) {
    w.bytes(&d.key);
    w.bytes(&d.range_end);
    w.bool(d.prev_kv);
}

fn read_delete_range(r: &mut Reader) -> Result<DeleteRangeRequest, CodecError> {
    Ok(DeleteRangeRequest {
        key: r.bytes()?,
        range_end: r.bytes()?,
        prev_kv: r.bool()?,
    })
}

fn write_range(w: &mut Writer, q: &RangeRequest) {
    w.bytes(&q.key);
    w.bytes(&q.range_end);
    w.i64(q.limit);
    w.i64(q.revision);
    w.u8(match q.sort_order {
        SortOrder::None => 0,
        SortOrder::Ascend => 1,
        SortOrder::Descend => 2,
    });
    w.u8(match q.sort_target {
        SortTarget::Key => 0,
        SortTarget::Version => 1,
        SortTarget::Create => 2,
        SortTarget::Mod => 3,
        SortTarget::Value => 4,
    });
    w.bool(q.serializable);
    w.bool(q.keys_only);
    w.bool(q.count_only);
    w.i64(q.min_mod_revision);
    w.i64(q.max_mod_revision);
    w.i64(q.min_create_revision);
    w.i64(q.max_create_revision);
}

fn read_range(r: &mut Reader) -> Result<RangeRequest, CodecError> {
    Ok(RangeRequest {
        key: r.bytes()?,
        range_end: r.bytes()?,
        limit: r.i64()?,
        revision: r.i64()?,
        sort_order: match r.u8()? {
            0 => SortOrder::None,
            1 => SortOrder::Ascend,
            2 => SortOrder::Descend,
            _ => return Err(malformed("unknown sort order")),
        },
        sort_target: match r.u8()? {
            0 => SortTarget::Key,
            1 => SortTarget::Version,
            2 => SortTarget::Create,
            3 => SortTarget::Mod,
            4 => SortTarget::Value,
            _ => return Err(malformed("unknown sort target")),
        },
        serializable: r.bool()?,
        keys_only: r.bool()?,
        count_only: r.bool()?,
        min_mod_revision: r.i64()?,
        max_mod_revision: r.i64()?,
        min_create_revision: r.i64()?,
        max_create_revision: r.i64()?,
    })
}

fn write_compare(w: &mut Writer, c: &Compare) {
    w.u8(match c.result {
        CompareResult::Equal => 0,
        CompareResult::Greater => 1,
        CompareResult::Less => 2,
        CompareResult::NotEqual => 3,
    });
    match &c.target {
        CompareTarget::Version(v) => {
            w.u8(0);
            w.i64(*v);
        }
        CompareTarget::Create(v) => {
            w.u8(1);
            w.i64(*v);
        }
        CompareTarget::Mod(v) => {
            w.u8(2);
            w.i64(*v);
        }
        CompareTarget::Value(v) => {
            w.u8(3);
            w.bytes(v);
        }
        CompareTarget::Lease(v) => {
            w.u8(4);
            w.i64(*v);
        }
    }
    w.bytes(&c.key);
    w.bytes(&c.range_end);
}

fn read_compare(r: &mut Reader) -> Result<Compare, CodecError> {
    let result = match r.u8()? {
        0 => CompareResult::Equal,
        1 => CompareResult::Greater,
        2 => CompareResult::Less,
        3 => CompareResult::NotEqual,
        _ => return Err(malformed("unknown compare result")),
    };
    let target = match r.u8()? {
        0 => CompareTarget::Version(r.i64()?),
        1 => CompareTarget::Create(r.i64()?),
        2 => CompareTarget::Mod(r.i64()?),
        3 => CompareTarget::Value(r.bytes()?),
        4 => CompareTarget::Lease(r.i64()?),
        _ => return Err(malformed("unknown compare target")),
    };
    Ok(Compare {
        result,
        target,
        key: r.bytes()?,
        range_end: r.bytes()?,
    })
}

/// `depth` is this transaction's level: 1 for a command's own.
fn write_txn(w: &mut Writer, t: &TxnRequest, depth: usize) {
    assert!(
        depth <= TXN_DEPTH_MAX,
        "a txn nested deeper than {TXN_DEPTH_MAX} levels reached the log"
    );
    write_count(w, t.compare.len());
    for c in &t.compare {
        write_compare(w, c);
    }
    for ops in [&t.success, &t.failure] {
        write_count(w, ops.len());
        for op in ops {
            write_op(w, op, depth);
        }
    }
}

fn read_txn(r: &mut Reader, depth: usize) -> Result<TxnRequest, CodecError> {
    if depth > TXN_DEPTH_MAX {
        return Err(malformed("txns nested too deep"));
    }
    // Collected rather than allocated by count: the lists of nested txns all count against
    // the same remaining bytes, so memory grows only with the items actually read.
    let n = read_count(r, COMPARE_BYTES_MIN)?;
    let compare = (0..n).map(|_| read_compare(r)).collect::<Result<_, _>>()?;
    let success = read_ops(r, depth)?;
    let failure = read_ops(r, depth)?;
    Ok(TxnRequest {
        compare,
        success,
        failure,
    })
}

/// `depth` is the level of the transaction holding the operation.
fn write_op(w: &mut Writer, op: &RequestOp, depth: usize) {
    match op {
        RequestOp::Range(q) => {
            w.u8(OP_RANGE);
            write_range(w, q);
        }
        RequestOp::Put(p) => {
            w.u8(OP_PUT);
            write_put(w, p);
        }
        RequestOp::DeleteRange(d) => {
            w.u8(OP_DELETE_RANGE);
            write_delete_range(w, d);
        }
        RequestOp::Txn(t) => {
            w.u8(OP_TXN);
            write_txn(w, t, depth + 1);
        }
    }
}

fn read_ops(r: &mut Reader, depth: usize) -> Result<Vec<RequestOp>, CodecError> {
    let n = read_count(r, OP_BYTES_MIN)?;
    (0..n).map(|_| read_op(r, depth)).collect()
}

fn read_op(r: &mut Reader, depth: usize) -> Result<RequestOp, CodecError> {
    Ok(match r.u8()? {
        OP_RANGE => RequestOp::Range(read_range(r)?),
        OP_PUT => RequestOp::Put(read_put(r)?),
        OP_DELETE_RANGE => RequestOp::DeleteRange(read_delete_range(r)?),
        OP_TXN => RequestOp::Txn(read_txn(r, depth + 1)?),
        _ => return Err(malformed("unknown txn operation")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Bytes::from)
    }

    fn put() -> impl Strategy<Value = PutRequest> {
        (bytes(), bytes(), any::<i64>(), any::<[bool; 3]>()).prop_map(|(key, value, lease, f)| {
            PutRequest {
                key,
                value,
                lease,
                prev_kv: f[0],
                ignore_value: f[1],
                ignore_lease: f[2],
            }
        })
    }

    fn delete_range() -> impl Strategy<Value = DeleteRangeRequest> {
        (bytes(), bytes(), any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
            key,
            range_end,
            prev_kv,
        })
    }

    fn range() -> impl Strategy<Value = RangeRequest> {
        let sort_order = prop_oneof![
            Just(SortOrder::None),
            Just(SortOrder::Ascend),
            Just(SortOrder::Descend),
        ];
        let sort_target = prop_oneof![
            Just(SortTarget::Key),
            Just(SortTarget::Version),
            Just(SortTarget::Create),
            Just(SortTarget::Mod),
            Just(SortTarget::Value),
        ];
        (
            (bytes(), bytes(), any::<[i64; 2]>()),
            (
                sort_order,
                sort_target,
                any::<[bool; 3]>(),
                any::<[i64; 4]>(),
            ),
        )
            .prop_map(
                |((key, range_end, n), (sort_order, sort_target, f, bounds))| RangeRequest {
                    key,
                    range_end,
                    limit: n[0],
                    revision: n[1],
                    sort_order,
                    sort_target,
                    serializable: f[0],
                    keys_only: f[1],
                    count_only: f[2],
                    min_mod_revision: bounds[0],
                    max_mod_revision: bounds[1],
                    min_create_revision: bounds[2],
                    max_create_revision: bounds[3],
                },
            )
    }

    fn compare() -> impl Strategy<Value = Compare> {
        let result = prop_oneof![
            Just(CompareResult::Equal),
            Just(CompareResult::Greater),
            Just(CompareResult::Less),
            Just(CompareResult::NotEqual),
        ];
        let target = prop_oneof![
            any::<i64>().prop_map(CompareTarget::Version),
            any::<i64>().prop_map(CompareTarget::Create),
            any::<i64>().prop_map(CompareTarget::Mod),
            bytes().prop_map(CompareTarget::Value),
            any::<i64>().prop_map(CompareTarget::Lease),
        ];
        (result, target, bytes(), bytes()).prop_map(|(result, target, key, range_end)| Compare {
            result,
            target,
            key,
            range_end,
        })
    }

    fn flat_op() -> BoxedStrategy<RequestOp> {
        prop_oneof![
            range().prop_map(RequestOp::Range),
            put().prop_map(RequestOp::Put),
            delete_range().prop_map(RequestOp::DeleteRange),
        ]
        .boxed()
    }

    fn txn_of(op: BoxedStrategy<RequestOp>) -> impl Strategy<Value = TxnRequest> {
        (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(op.clone(), 0..4),
            prop::collection::vec(op, 0..4),
        )
            .prop_map(|(compare, success, failure)| TxnRequest {
                compare,
                success,
                failure,
            })
    }

    /// Transactions nested up to four levels.
    fn txn() -> impl Strategy<Value = TxnRequest> {
        txn_of(flat_op()).prop_recursive(3, 48, 4, |inner| {
            txn_of(prop_oneof![flat_op(), inner.prop_map(RequestOp::Txn)].boxed())
        })
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            put().prop_map(Command::Put),
            delete_range().prop_map(Command::DeleteRange),
            txn().prop_map(Command::Txn),
            any::<i64>().prop_map(|revision| Command::Compact { revision }),
            any::<(i64, i64)>().prop_map(|(id, ttl_s)| Command::LeaseGrant { id, ttl_s }),
            any::<i64>().prop_map(|id| Command::LeaseRevoke { id }),
            prop::collection::vec(any::<(i64, u64)>(), 0..5).prop_map(Command::LeaseCheckpoint),
            auth_command().prop_map(Command::Auth),
            ("[a-z]{0,8}", any::<u64>(), put()).prop_map(|(user, revision, p)| Command::Authed {
                user,
                revision,
                cmd: Box::new(Command::Put(p)),
            }),
            ("[a-z]{0,8}", any::<u64>(), auth_command()).prop_map(|(user, revision, c)| {
                Command::Authed {
                    user,
                    revision,
                    cmd: Box::new(Command::Auth(c)),
                }
            }),
            v2_command().prop_map(Command::V2),
            v2_auth_command().prop_map(Command::V2Auth),
        ]
    }

    fn v2_auth_command() -> impl Strategy<Value = crate::v2::AuthCommand> {
        use crate::v2::auth::{AuthCommand as A, Perms, Role, UserWrite};
        let name = "\\PC{0,6}";
        let names = || prop::collection::vec(name, 0..3);
        let list = || prop::option::of(names());
        let perms = || (list(), list()).prop_map(|(read, write)| Perms { read, write });
        let mode = prop_oneof![
            Just(UserWrite::Create),
            Just(UserWrite::CreateOrUpdate),
            Just(UserWrite::Update)
        ];
        prop_oneof![
            (mode, name, name, list(), names(), names()).prop_map(
                |(mode, name, password, roles, grant, revoke)| A::PutUser {
                    mode,
                    name,
                    password,
                    roles,
                    grant,
                    revoke
                }
            ),
            name.prop_map(|name| A::DeleteUser { name }),
            (name, perms()).prop_map(|(name, perms)| A::CreateRole(Role { name, perms })),
            (name, prop::option::of(perms()), prop::option::of(perms())).prop_map(
                |(name, grant, revoke)| A::UpdateRole {
                    name,
                    grant,
                    revoke
                }
            ),
            name.prop_map(|name| A::DeleteRole { name }),
            any::<bool>().prop_map(A::SetEnabled),
        ]
    }

    fn v2_command() -> impl Strategy<Value = crate::v2::V2Command> {
        use crate::v2::{Expiry, V2Command as V};
        let expiry = (prop::option::of(1..u64::MAX), any::<bool>())
            .prop_map(|(at_ms, refresh)| Expiry { at_ms, refresh });
        let path = "(/[a-z_0-9]{0,6}){0,3}";
        let text = "\\PC{0,12}";
        prop_oneof![
            (path, any::<bool>(), text, expiry.clone()).prop_map(|(p, dir, v, expiry)| V::Set {
                path: p,
                dir,
                value: v,
                expiry
            }),
            (path, any::<bool>(), text, any::<bool>(), expiry.clone()).prop_map(
                |(p, dir, v, unique, expiry)| V::Create {
                    path: p,
                    dir,
                    value: v,
                    unique,
                    expiry
                }
            ),
            (path, text, expiry.clone()).prop_map(|(p, v, expiry)| V::Update {
                path: p,
                value: v,
                expiry
            }),
            (path, text, any::<u64>(), text, expiry).prop_map(|(p, pv, pi, v, expiry)| {
                V::CompareAndSwap {
                    path: p,
                    prev_value: pv,
                    prev_index: pi,
                    value: v,
                    expiry,
                }
            }),
            (path, any::<bool>(), any::<bool>()).prop_map(|(p, dir, recursive)| V::Delete {
                path: p,
                dir,
                recursive
            }),
            (path, text, any::<u64>()).prop_map(|(p, pv, pi)| V::CompareAndDelete {
                path: p,
                prev_value: pv,
                prev_index: pi
            }),
            any::<u64>().prop_map(|now_ms| V::Sync { now_ms }),
        ]
    }

    fn auth_command() -> impl Strategy<Value = AuthCommand> {
        use crate::auth::{PermKind, Permission};
        let name = "[a-z]{0,6}";
        prop_oneof![
            Just(AuthCommand::Enable),
            Just(AuthCommand::Disable),
            Just(AuthCommand::UserList),
            (name, bytes(), any::<bool>()).prop_map(|(name, password, no_password)| {
                AuthCommand::UserAdd {
                    name,
                    password,
                    no_password,
                }
            }),
            (name, name, any::<u64>()).prop_map(|(name, token_prefix, revision)| {
                AuthCommand::Authenticate {
                    name,
                    token_prefix,
                    revision,
                }
            }),
            (name, 0..3i32, bytes(), bytes()).prop_map(|(name, kind, key, range_end)| {
                AuthCommand::RoleGrantPermission {
                    name,
                    perm: Permission {
                        kind: PermKind::from_i32(kind).expect("0..3"),
                        key,
                        range_end,
                    },
                }
            }),
            (name, bytes(), bytes()).prop_map(|(name, key, range_end)| {
                AuthCommand::RoleRevokePermission {
                    name,
                    key,
                    range_end,
                }
            }),
        ]
    }

    /// The payload of a `Command::Txn` nested `depth` levels deep (each level's success holds
    /// the next), written by hand: `encode` refuses to write one too deep.
    fn nested_txn_payload(depth: usize) -> Vec<u8> {
        let mut w = Writer::with_capacity(depth * 18);
        w.u8(CMD_TXN);
        for level in 1..=depth {
            w.u32(0);
            if level < depth {
                w.u32(1);
                w.u8(OP_TXN);
            } else {
                w.u32(0);
            }
        }
        for _ in 0..depth {
            w.u32(0); // failure
        }
        w.finish().to_vec()
    }

    fn nested_txn(depth: usize) -> TxnRequest {
        let mut t = TxnRequest::default();
        for _ in 1..depth {
            t = TxnRequest {
                success: vec![RequestOp::Txn(t)],
                ..TxnRequest::default()
            };
        }
        t
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn commands_round_trip(cmd in command()) {
            prop_assert_eq!(Command::decode(&cmd.encode()), Ok(cmd));
        }

        #[test]
        fn any_corrupted_byte_is_an_error(cmd in command(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut bytes = cmd.encode().to_vec();
            let i = at.index(bytes.len());
            bytes[i] ^= flip;
            prop_assert!(Command::decode(&bytes).is_err(), "byte {} flipped by {:#x} read as a command", i, flip);
        }

        #[test]
        fn any_truncation_is_an_error(cmd in command(), at in any::<prop::sample::Index>()) {
            let bytes = cmd.encode();
            let cut = at.index(bytes.len());
            prop_assert!(Command::decode(&bytes[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = Command::decode(&bytes);
        }

        /// The checksum keeps random bytes away from the payload parser; this reaches it.
        #[test]
        fn arbitrary_payloads_never_panic_and_what_is_read_is_canonical(payload in prop::collection::vec(any::<u8>(), 0..400)) {
            let framed = encode_frame(Kind::Command, &payload);
            if let Ok(cmd) = Command::decode(&framed) {
                prop_assert_eq!(cmd.encode(), framed);
            }
        }

        /// A damaged payload under a valid checksum (a bug upstream, not the disk) is refused
        /// or read as some command, never a panic.
        #[test]
        fn corrupted_payloads_never_panic(cmd in command(), at in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let framed = cmd.encode();
            let mut payload = decode_exact(&framed, Kind::Command).unwrap().to_vec();
            let i = at.index(payload.len());
            payload[i] ^= flip;
            let framed = encode_frame(Kind::Command, &payload);
            if let Ok(cmd) = Command::decode(&framed) {
                prop_assert_eq!(cmd.encode(), framed);
            }
        }
    }

    #[test]
    fn txns_nest_up_to_the_limit_and_no_deeper() {
        let deepest = Command::Txn(nested_txn(TXN_DEPTH_MAX));
        let framed = encode_frame(Kind::Command, &nested_txn_payload(TXN_DEPTH_MAX));
        assert_eq!(deepest.encode(), framed);
        assert_eq!(Command::decode(&framed), Ok(deepest));
        for depth in [TXN_DEPTH_MAX + 1, 100, 100_000] {
            let framed = encode_frame(Kind::Command, &nested_txn_payload(depth));
            assert_eq!(
                Command::decode(&framed),
                Err(CodecError::Malformed {
                    why: "txns nested too deep"
                }),
                "depth {depth}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "nested deeper")]
    fn encoding_a_txn_nested_too_deep_is_a_bug() {
        Command::Txn(nested_txn(TXN_DEPTH_MAX + 1)).encode();
    }

    #[test]
    fn a_count_is_refused_before_it_is_believed() {
        let mut w = Writer::with_capacity(5);
        w.u8(CMD_LEASE_CHECKPOINT);
        w.u32(u32::MAX);
        let framed = encode_frame(Kind::Command, &w.finish());
        assert_eq!(
            Command::decode(&framed),
            Err(malformed("list runs past the payload"))
        );
        let mut w = Writer::with_capacity(5);
        w.u8(CMD_TXN);
        w.u32(0);
        w.u32(u32::MAX);
        let framed = encode_frame(Kind::Command, &w.finish());
        assert_eq!(
            Command::decode(&framed),
            Err(malformed("list runs past the payload"))
        );
    }

    /// The minimum item sizes the counts are checked against are the smallest encodings.
    #[test]
    fn item_sizes_min_are_the_smallest_encodings() {
        let smallest_op = RequestOp::DeleteRange(DeleteRangeRequest::default());
        let mut w = Writer::with_capacity(OP_BYTES_MIN);
        write_op(&mut w, &smallest_op, 1);
        assert_eq!(w.finish().len(), OP_BYTES_MIN);
        for op in [
            RequestOp::Range(RangeRequest::default()),
            RequestOp::Put(PutRequest::default()),
            RequestOp::Txn(TxnRequest::default()),
        ] {
            let mut w = Writer::with_capacity(64);
            write_op(&mut w, &op, 1);
            assert!(w.finish().len() >= OP_BYTES_MIN, "{op:?}");
        }
        let smallest_compare = Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Value(Bytes::new()),
            key: Bytes::new(),
            range_end: Bytes::new(),
        };
        let mut w = Writer::with_capacity(COMPARE_BYTES_MIN);
        write_compare(&mut w, &smallest_compare);
        assert_eq!(w.finish().len(), COMPARE_BYTES_MIN);
    }

    #[test]
    fn proposals_carry_their_request_and_bare_commands_none() {
        let id = RequestId { member: 7, seq: 9 };
        for cmd in [
            Command::Compact { revision: 3 },
            Command::SetMember {
                id: 5,
                record: Bytes::from_static(b"record"),
            },
            Command::Alarm {
                action: AlarmAction::Deactivate,
                member: 0x8e9e05c52164694d,
                kind: -3,
            },
        ] {
            let framed = cmd.encode_proposal(id);
            assert_eq!(Command::decode_entry(&framed), Ok((Some(id), cmd.clone())));
            assert_eq!(
                Command::decode_entry(&cmd.encode()),
                Ok((None, cmd.clone()))
            );
            // A proposal is not a bare command, and a cut one is refused.
            assert!(Command::decode(&framed).is_err());
            assert!(Command::decode_entry(&framed[..framed.len() - 1]).is_err());
        }
    }

    #[test]
    fn unknown_tags_are_malformed() {
        for (payload, why) in [
            (vec![0], "unknown command tag"),
            (vec![14], "unknown command tag"),
            (vec![CMD_V2_AUTH, 99], "unknown v2 auth command tag"),
            (vec![CMD_V2, 99], "unknown v2 command tag"),
            (vec![CMD_AUTH, 99], "unknown auth command"),
            (
                [
                    &[CMD_AUTHED][..],
                    &0u32.to_le_bytes(),
                    &0u64.to_le_bytes(),
                    &[CMD_AUTHED],
                    &0u32.to_le_bytes(),
                    &0u64.to_le_bytes(),
                    &[CMD_AUTH, 1],
                ]
                .concat(),
                "an authed command inside another",
            ),
            (
                [&[CMD_ALARM, 3][..], &[0; 12]].concat(),
                "unknown alarm action",
            ),
            (
                [
                    &[CMD_TXN][..],
                    &0u32.to_le_bytes(),
                    &1u32.to_le_bytes(),
                    &[9; 10],
                ]
                .concat(),
                "unknown txn operation",
            ),
        ] {
            let framed = encode_frame(Kind::Command, &payload);
            assert_eq!(Command::decode(&framed), Err(malformed(why)));
        }
    }
}
