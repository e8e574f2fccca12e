//! The daemon protocol server on arbitrary client bytes; see
//! `storefs_store::fuzzing::daemon_server`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| storefs_store::fuzzing::daemon_server(data));
