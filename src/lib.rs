//! oxcd: a distributed, reliable key-value store that speaks etcd's v3 API.
//!
//! The core is sans-IO: [`raft`] (and, later, the MVCC store, leases and watches) are pure state
//! machines that take time, randomness and messages as arguments and hand back what they want
//! done. The server, the simulator and the tests each drive the same core.

#[doc(hidden)]
pub mod fuzzing;
pub mod lease;
pub mod mvcc;
pub mod raft;
