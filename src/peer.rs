//! The peer protocol, in one place: how members talk to each other (`proto/peer.proto`).
//!
//! - [`codec`]: Raft messages as `RaftMessage`, and the checks a wire value can fail.
//! - [`transport`]: the sending side, one long-lived gRPC stream per peer, reconnected with
//!   backoff; batches carry their sender's ID.
//! - [`service`]: the receiving side, which hands messages to the member in order, refuses
//!   removed senders, and tells a joining member who it is.
//! - [`forward`]: what a follower forwards to the leader on a client's behalf.
//!
//! Peer TLS goes in at two places: the transport's `connect` (the client side of each
//! stream) and the peer listener in [`crate::server`], which serves [`service`].
//!
//! What it does not do: decide what to send (the member server does) or serve clients.

pub mod codec;
pub mod forward;
pub mod service;
pub mod transport;
