//! oxcd: a distributed, reliable key-value store that speaks etcd's v3 API.
//!
//! The core is sans-IO: [`raft`] (consensus), [`mvcc`] (the store and its watchers), [`lease`]
//! (the lessor) and [`node`] (a member's apply side) are pure state machines that take time,
//! randomness and messages as arguments and hand back what they want done. The server, the
//! simulator and the tests each drive the same core.

#[cfg(not(madsim))]
pub mod alloc;
pub mod api;
pub mod clock;
#[cfg(not(madsim))]
pub mod ctl;
#[doc(hidden)]
pub mod fuzzing;
pub mod lease;
pub mod mvcc;
pub mod node;
pub mod pb;
pub mod raft;
pub mod server;
pub mod storage;
