#![no_main]
//! See `imipd::fuzz::dav`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    imipd::fuzz::dav(data);
});
