//! The MVCC key-value store: etcd's data model as a pure state machine.
//!
//! What it does not do: it reads no clock, starts no thread and touches no file. Storage is the
//! synchronous [`Backend` trait, keyed by revision as etcd's backend is; the in-memory
//! [`MemBackend`] is its deterministic implementation (fjall comes with durable storage).
//!
//! It owns revisions, the per-key index of generations, range / put / delete-range / txn /
//! compact / hash-kv, and the watchers that follow it. Leases live in [`crate::lease`]; the
//! apply layer checks that a put's lease exists and keeps the lessor's key lists in step with
//! the events the store returns.

mod backend;
mod error;
mod footprint;
mod history;
mod key_index;
mod kv;
mod request;
mod store;
mod watch;

pub use backend::{Alarm, Backend, BackendError, Batch, LeaseRecord, MemBackend, MetaKey, Record};
pub use error::{Error, Result};
pub use footprint::{Footprint, record_bytes};
pub use history::History;
pub use key_index::KeyIndex;
pub use kv::{Event, EventKind, KeyValue, Revision, in_range, prefix_end};
pub use request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget,
    TXN_OPS_MAX_DEFAULT, TxnRequest, TxnResponse, check_delete, check_put, check_range, check_txn,
};
pub use store::{HashKv, KvStore, Write};
pub use watch::{
    AUTO_WATCH_ID, INVALID_WATCH_ID, StreamId, WatchConfig, WatchCreate, WatchFilters,
    WatchResponse, Watchers,
};
