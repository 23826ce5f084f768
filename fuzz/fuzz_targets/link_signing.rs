#![no_main]
//! See `pylon::fuzzing::link_signing` for the input format and the properties.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pylon::fuzzing::link_signing(data));
