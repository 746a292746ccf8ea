//! The registrar state machine under operation sequences; see `rsplib_fuzz::registrar`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rsplib_fuzz::registrar::run(data));
