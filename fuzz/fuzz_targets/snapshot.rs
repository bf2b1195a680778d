//! The entitlement snapshot the filter syncs: any bytes give a snapshot or an error.
#![no_main]

use aforo_core::entitlement::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Snapshot::from_json(data);
});
