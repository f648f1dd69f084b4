//! The API edge's decoding of client and peer requests: see `oxcd_fuzzing::request_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| oxcd_fuzzing::request_decode(data));
