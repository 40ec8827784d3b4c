#![no_main]
//! See `imipd::fuzz::mailbox`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    imipd::fuzz::mailbox(data);
});
