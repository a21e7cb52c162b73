//! Fuzzes `gateway.toml` parsing and validation: arbitrary text as the
//! file. A panic is a crash; every outcome must be a configuration or a
//! list of diagnostics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::load_from_str;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name.len() < 64).then(|| "0123456789abcdef0123456789abcdef".to_owned());
    let _ = load_from_str(std::path::Path::new("/nonexistent/gateway.toml"), text, &env);
});
