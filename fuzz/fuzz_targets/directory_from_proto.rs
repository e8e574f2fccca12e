//! Protobuf `Directory` decoding and validation on arbitrary bytes; see
//! `storefs_castore::fuzzing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| storefs_castore::fuzzing::directory_from_proto(data));
