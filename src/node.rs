//! One member as a pure state machine: Raft plus the apply side. Today it holds the apply
//! side ([`Applier`]): what a committed command does to the store, the leases and the watchers.
//! The Raft half and the encoding of commands in log entries come with the server.

mod apply;

pub use apply::{Applied, Applier, ApplyError, Command};
