#![no_main]
//! See `imipd::fuzz::mime`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| imipd::fuzz::mime(data));
