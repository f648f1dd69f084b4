//! `ConfChange::decode` on arbitrary bytes: see `oxcd_fuzzing::conf_change_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| oxcd_fuzzing::conf_change_decode(data));
