//! `Command::decode` on arbitrary bytes: see `oxcd_fuzzing::command_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| oxcd_fuzzing::command_decode(data));
