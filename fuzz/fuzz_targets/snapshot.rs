//! The entitlement snapshot the filter syncs: any bytes give a snapshot or an error, and read a
//! few bytes at a time (as a worker reads a resync between requests) the same snapshot or the
//! same error as the whole tree gives.
#![no_main]

use aforo_core::entitlement::{Progress, Snapshot, SnapshotReader};
use aforo_core::strict_json::parse_json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the budget of each step (1 to 256 bytes), the rest is the document.
    let Some((&budget, doc)) = data.split_first() else {
        return;
    };
    let whole = parse_json("the entitlement snapshot", doc).and_then(|v| Snapshot::from_value("", &v));
    let mut reader = SnapshotReader::default();
    let stepped = loop {
        let before = reader.position();
        match reader.step(doc, usize::from(budget) + 1) {
            Progress::Done(r) => break r,
            Progress::More => assert!(reader.position() > before, "a step read nothing"),
        }
    };
    match (stepped, whole) {
        // serde_json's depth limit counts from the document's root in the whole tree, from
        // each entry when read in steps: a document that deep is only refused by the former.
        (_, Err(e)) if e.to_string().contains("recursion limit") => {}
        (Ok(a), Ok(b)) => assert_eq!(a.to_value(), b.to_value()),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("stepped ok={} whole ok={}", a.is_ok(), b.is_ok()),
    }
    let _ = Snapshot::from_json(doc);
});
