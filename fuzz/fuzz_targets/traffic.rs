//! The traffic parsers of aforo-replay: JSONL and HAR 1.2, any text, never a panic, and a
//! parsed file iterates (repeat lines expand lazily) without one either.
#![no_main]

use aforo_core::Timestamp;
use aforo_host_tests::traffic::{parse_har, parse_jsonl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(t) = parse_jsonl("fuzz.jsonl", &text, Timestamp::EPOCH) {
        for e in t.iter().take(1000) {
            let _ = e.as_ref().time;
        }
    }
    let _ = parse_har("fuzz.har", &text);
});
