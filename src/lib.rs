//! oxcd: a distributed, reliable key-value store that speaks etcd's v3 API.
//!
//! The core is sans-IO and lives in the `oxcd-core` crate, re-exported here: [`raft`]
//! (consensus), [`mvcc`] (the store and its watchers), [`lease`] (the lessor) and [`node`] (a
//! member's apply side) are pure state machines that take time, randomness and messages as
//! arguments and hand back what they want done. The server, the simulator and the tests each
//! drive the same core. This crate is the IO around it: the driver, the peer transport, the
//! gRPC and HTTP front ends, and fjall. The client, `oxctl`, is a crate of its own (`ctl/`).

#[cfg(not(madsim))]
pub mod alloc;
pub mod api;
pub mod clock;
#[cfg(not(madsim))]
pub mod discovery;
pub use oxcd_core::{auth, lease, mvcc, node, raft, v2};
pub mod pb;
pub mod peer;
#[cfg(not(madsim))]
pub mod proxy;
pub mod server;
#[cfg(not(madsim))]
pub mod srv;
pub mod storage;
#[cfg(not(madsim))]
pub mod tcp_gateway;

/// Starts a member on `engine` with `config`, serving etcd's client APIs: the composition
/// root, where the member ([`server`]) and its front ends ([`api`]) meet.
pub async fn start(
    config: server::config::ServerConfig,
    engine: server::driver::ServerEngine,
) -> Result<server::Server, String> {
    server::start(config, engine, api::serve).await
}
