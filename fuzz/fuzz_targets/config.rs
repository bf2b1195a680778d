//! The configuration parser: any bytes from a host (JSON, a JSON string holding JSON, garbage)
//! and any `AFORO_*` values give a configuration or a field error, never a panic.
#![no_main]

use aforo_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line, when present, is the value of every AFORO_* variable.
    let (env_value, bytes) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            Some(String::from_utf8_lossy(&data[..i]).into_owned()),
            &data[i + 1..],
        ),
        None => (None, data),
    };
    let env = |name: &str| {
        if name == "AFORO_API_KEY" {
            Some("sk_test_fuzz".to_string())
        } else {
            env_value.clone()
        }
    };
    if let Ok(c) = Config::parse(bytes, &env) {
        let _ = c.summary();
    }
    let _ = Config::parse(bytes, &|_| None);
});
