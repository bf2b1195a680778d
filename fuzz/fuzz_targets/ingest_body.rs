//! The ingest v1 body: any bytes are parsed into events or refusals, never a panic; every
//! event parsed re-encodes; and the one-pass read of well-formed batches gives what reading
//! each entry on its own gives.
#![no_main]

use aforo_core::ingest::{parse_batch, parse_batch_with_text, ParsedBatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let alone = parse_batch_with_text(data)
        .map(|v| v.into_iter().map(|(_, e)| e).collect::<ParsedBatch>());
    let batch = parse_batch(data);
    assert_eq!(batch, alone, "one pass and entry by entry differ");
    if let Ok(batch) = batch {
        for e in batch.into_iter().flatten() {
            let _ = aforo_core::event::encode_v1(&e);
        }
    }
});
