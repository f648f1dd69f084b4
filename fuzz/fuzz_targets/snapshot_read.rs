//! `read_snapshot` on arbitrary bytes: see `oxcd_fuzzing::snapshot_read`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| oxcd_fuzzing::snapshot_read(data));
