//! The collector and agent configuration parsers and validators on arbitrary text. Inputs that
//! name files are left out: reading arbitrary paths (say /dev/zero) is not what is tested here.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tocsin_config::agent::RawAgentConfig;
use tocsin_config::collector::RawCollectorConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if text.contains("file") {
        return;
    }
    if let Ok(raw) = tocsin_config::parse_yaml::<RawCollectorConfig>(text) {
        let _ = raw.validate();
    }
    if let Ok(raw) = tocsin_config::parse_yaml::<RawAgentConfig>(text) {
        let _ = raw.validate();
    }
});
