//! The etcd v3 API edge: the gRPC services (KV, Watch, Lease, Cluster, Maintenance, the
//! health service), plain HTTP (`/health`, `/version`, `/metrics`),
//! conversions between the wire types ([`crate::pb`]) and the core's, and etcd's gRPC errors.
//!
//! What it does not do: touch the member. Every service talks to the driver through a
//! [`crate::server::driver::NodeHandle`].

pub mod cluster;
pub mod convert;
pub mod error;
pub mod health;
#[cfg(not(madsim))]
pub mod http;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod watch;
