#![no_main]
//! See `imipd::fuzz::engine`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    imipd::fuzz::engine(data);
});
