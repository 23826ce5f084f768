#![no_main]
//! See `pylon::fuzzing::redirect` for the input format and the properties.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pylon::fuzzing::redirect(data));
