//! The ingest v1 body: any bytes are parsed into events or refusals, never a panic; every
//! event parsed re-encodes.
#![no_main]

use aforo_core::ingest::parse_batch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = parse_batch(data) {
        for e in batch.into_iter().flatten() {
            let _ = aforo_core::event::encode_v1(&e);
        }
    }
});
