//! oxcd's simulators and checkers. `raft_sim` drives the sans-IO Raft core through a seeded,
//! in-process world (network, disks, crashes, clients) and checks Raft's safety and liveness
//! properties after every step. `member_sim` does the same for whole member servers (Raft, the
//! apply side and the member's policy) with clients, and checks their histories. `bench_mvcc` and `bench_storage` are benchmarks (programs
//! that print figures) behind `sim bench-mvcc` and `sim bench-storage`. `checker` decides
//! whether recorded histories are linearizable (`sim check`). `cluster` (madsim builds only)
//! runs real oxcd members under a nemesis and checks their histories (`sim/run cluster`).

pub mod alloc_count;
pub mod bench_mvcc;
#[cfg(not(madsim))]
pub mod bench_storage;
pub mod checker;
#[cfg(madsim)]
pub mod cluster;
pub mod fnv;
#[cfg(not(madsim))]
pub mod live;
pub mod member_sim;
pub mod raft_sim;
pub mod storage_load;
pub mod workload;
