//! The rule-file parser (YAML, expressions, levels, templates) on arbitrary text: an error with
//! a place, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(problems) = tocsin_rules::parse_file("fuzz.yaml", text) {
            assert!(!problems.is_empty());
        }
    }
});
