//! The Guix narinfo parser on arbitrary bytes; see `storefs_store::fuzzing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| storefs_store::fuzzing::guix_narinfo(data));
