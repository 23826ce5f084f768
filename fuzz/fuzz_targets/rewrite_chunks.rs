#![no_main]
//! See `pylon::fuzzing::rewrite_chunks` for the input format and the properties.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pylon::fuzzing::rewrite_chunks(data));
