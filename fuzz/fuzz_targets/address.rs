//! Fuzzes registry address, port and whitelist parsing; the checks are in
//! `registrar::fuzzing::address`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| registrar::fuzzing::address(data));
