//! The floor: a proxy-wasm HTTP filter that does nothing but let every request through.
//! Benchmarks compare aforo_metering.wasm against it, in the same host, in the same run.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

struct Root;
struct Pass;

impl Context for Root {}
impl RootContext for Root {
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Pass {}
impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        Action::Continue
    }
}

#[allow(missing_docs)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(super::Root) });
    }}
}
