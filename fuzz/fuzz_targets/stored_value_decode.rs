//! Every stored-value decoder on arbitrary bytes: see `oxcd_fuzzing::stored_value_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| oxcd_fuzzing::stored_value_decode(data));
