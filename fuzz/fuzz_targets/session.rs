#![no_main]
//! See `imipd::fuzz::session`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    imipd::fuzz::session(data);
});
