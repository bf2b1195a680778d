//! aforo_policy.wasm: the core's admission and event rules behind the WIT world
//! `aforo:metering/metering`. The host supplies the counter store; the snapshot lives in the
//! component instance.

mod counters;
mod policy;

/// Generated bindings (wit-bindgen's glue is the only unsafe code in the workspace).
#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    use super::Component;
    wit_bindgen::generate!({ world: "metering", path: "wit" });
    export!(Component with_types_in self);
}

/// The component's implementation of the exported interface.
pub struct Component;
