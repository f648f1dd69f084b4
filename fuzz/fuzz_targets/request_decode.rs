//! The API edge's decoding of client and peer requests: see `oxcd::fuzzing::request_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| oxcd::fuzzing::request_decode(data));
