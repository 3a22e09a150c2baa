//! Fuzzes log record verification and event payload decoding; the checks are
//! in `registrar::fuzzing::event`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| registrar::fuzzing::event(data));
