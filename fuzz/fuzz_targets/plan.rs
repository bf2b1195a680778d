//! The pricing plan parser: any bytes give a plan or an error naming a JSON path.
#![no_main]

use aforo_core::rating::Plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Plan::from_json(data);
});
