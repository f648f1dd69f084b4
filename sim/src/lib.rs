//! oxcd's simulators and checkers. `raft_sim` drives the sans-IO Raft core through a seeded,
//! in-process world (network, disks, crashes, clients) and checks Raft's safety and liveness
//! properties after every step.

pub mod alloc_count;
pub mod bench_mvcc;
pub mod fnv;
pub mod raft_sim;
pub mod storage_load;
