//! The PE/PU client state machine under operation sequences; see `rsplib_fuzz::asap_client`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rsplib_fuzz::asap_client::run(data));
