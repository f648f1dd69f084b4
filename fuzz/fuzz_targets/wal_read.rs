//! The Raft log file's reader on arbitrary bytes: see `oxcd_fuzzing::wal_read`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| oxcd_fuzzing::wal_read(data));
