//! Fuzzes image reference parsing; the checks are in `registrar::fuzzing::image`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| registrar::fuzzing::image(data));
