//! The wire types and gRPC stubs generated from `proto/` (etcd's packages, the health service
//! and oxcd's peer protocol), and, outside simulation, the serde impls of etcd's packages that
//! the JSON gateway uses (see build.rs). Nothing here is written by hand.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
    #[cfg(not(madsim))]
    include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
}
pub mod authpb {
    tonic::include_proto!("authpb");
    #[cfg(not(madsim))]
    include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
    #[cfg(not(madsim))]
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
    #[cfg(not(madsim))]
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
    #[cfg(not(madsim))]
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
}
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
pub mod peer {
    tonic::include_proto!("oxcdpeerpb");
}
