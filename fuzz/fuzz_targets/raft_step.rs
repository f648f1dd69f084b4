//! One Raft member driven by owner calls and messages from correct peers: see
//! `oxcd_fuzzing::raft_step`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| oxcd_fuzzing::raft_step(data));
