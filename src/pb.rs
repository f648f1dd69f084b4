//! The wire types and gRPC stubs generated from `proto/` (etcd's packages, the health service
//! and oxcd's peer protocol). Nothing here is written by hand.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
pub mod peer {
    tonic::include_proto!("oxcdpeerpb");
}
