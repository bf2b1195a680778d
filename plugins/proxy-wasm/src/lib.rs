//! aforo_metering.wasm: a thin proxy-wasm adapter around `aforo_core::gateway::Gateway`.
//!
//! One root context per worker VM owns the engine; HTTP contexts share it through an `Rc`.
//! Every rule lives in `aforo-core`; this crate only moves bytes between the host and it.

mod abi;
mod host;
mod http;
mod metrics;
mod root;
