//! aforo_policy.wasm: the core's admission and event rules behind the WIT world
//! `aforo:metering/metering`. The host supplies the counter store; the snapshot lives in the
//! component instance.

mod counters;
mod policy;

/// Generated bindings (wit-bindgen's glue is the only unsafe code in the workspace). The
/// exports exist only in the wasm32 build: a native build (workspace builds, clippy) type-checks
/// the implementation without emitting component symbols a native linker cannot take.
#[allow(unsafe_code, missing_docs, dead_code, clippy::all)]
mod bindings {
    wit_bindgen::generate!({ world: "metering", path: "wit" });
    #[cfg(target_arch = "wasm32")]
    use super::Component;
    #[cfg(target_arch = "wasm32")]
    export!(Component with_types_in self);
}

/// The component's implementation of the exported interface.
pub struct Component;
