//! `cargo fuzz run inflate`: see targets::inflate (fuzz/targets.rs).
#![no_main]

// Each target uses one of the bodies.
#[allow(dead_code)]
#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::inflate(data));
