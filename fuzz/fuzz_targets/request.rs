//! Fuzzes request validation: API messages turned into commands and decided
//! against a seeded state; the checks are in `registrar::fuzzing::request`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| registrar::fuzzing::request(data));
