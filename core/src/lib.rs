//! oxcd's sans-IO core: one etcd member's logic as pure state machines.
//!
//! What it does not do: it reads no clock, draws no OS randomness, opens no socket or file,
//! and starts no thread or task. Time arrives as an argument (`tick()`, `now_ms`), randomness
//! as a seeded `ChaCha8Rng`, storage through the synchronous [`storage::Engine`] trait, and
//! everything it wants done leaves as data (messages to send, entries to persist, responses,
//! watch events). The server crate (`oxcd`) drives it over tokio, fjall and gRPC; the
//! simulators drive it with simulated time, network and disk. This crate depends on none of
//! tokio, tonic or fjall, so the compiler holds that line.
//!
//! - [`raft`]: consensus (`RawNode`: tick, step, propose, read_index, ready/advance).
//! - [`mvcc`]: the revisioned store, its backend trait and the watchers.
//! - [`auth`]: users, roles, key permissions and simple tokens.
//! - [`lease`]: the lessor (grant, revoke, keep-alive, expiry, checkpoints).
//! - [`node`]: a member's apply side and the member over durable storage.
//! - [`storage`]: the storage traits and codecs, snapshots, and the simulated disk.

#![deny(missing_docs)]

pub mod auth;
pub mod lease;
pub mod mvcc;
pub mod node;
pub mod raft;
pub mod storage;
pub mod v2;
