//! aforo_metering.wasm: a thin proxy-wasm adapter around `aforo_core::gateway::Gateway`.
//!
//! One root context per worker VM owns the engine; HTTP contexts share it through an `Rc`.
//! Every rule lives in `aforo-core`; this crate only moves bytes between the host and it.

mod host;
mod http;
mod metrics;
mod root;

// The entry point the host calls once per VM (`_initialize`).
#[allow(missing_docs)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(super::root::Root::default())
        });
    }}
}
