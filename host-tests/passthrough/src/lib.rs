//! The floor: a proxy-wasm HTTP filter that does nothing but let every request through.
//! Benchmarks compare aforo_metering.wasm against it, in the same host, in the same run.
//!
//! For calibration only, a configuration `{"header_reads": N}` makes it read the `:path`
//! header N times per request, which measures what one host call costs in a given proxy.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

#[derive(Default)]
struct Root {
    header_reads: usize,
}
struct Pass {
    header_reads: usize,
}

impl Context for Root {}
impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        if let Some(config) = self.get_plugin_configuration() {
            let text = String::from_utf8_lossy(&config);
            // A deliberately tiny parser: this module must stay a floor (no serde).
            if let Some(rest) = text.split("\"header_reads\"").nth(1) {
                let digits: String = rest
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(char::is_ascii_digit)
                    .collect();
                self.header_reads = digits.parse().unwrap_or(0);
            }
        }
        true
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass {
            header_reads: self.header_reads,
        }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Pass {}
impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        for _ in 0..self.header_reads {
            let _ = self.get_http_request_header(":path");
        }
        Action::Continue
    }
}

#[allow(missing_docs)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(super::Root::default()) });
    }}
}
