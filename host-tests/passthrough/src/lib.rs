//! The floor: a proxy-wasm HTTP filter that does nothing but let every request through.
//! Benchmarks compare aforo_metering.wasm against it, in the same host, in the same run.
//!
//! For calibration only:
//! - `{"header_reads": N}` makes it read the `:path` header N times per request, which
//!   measures what one host call costs in a given proxy;
//! - `{"calls": "aforo"}` makes it make, on each request, the host calls the full filter makes
//!   with a consumer key, a quota and the default options (and nothing else): what those calls
//!   alone cost, the floor under any build of the full filter (`scripts/bench-envoy.sh`,
//!   variant f). `{"calls": "headers clock quota status ratelimit clock"}` names the same calls
//!   in groups (a subset makes only those): `headers` the request headers in one call, `clock`
//!   the clock (the first on the request, a second at its end), `quota` a shared-data read and
//!   compare-and-set, `status` the response's `:status`, `ratelimit` three response headers.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType, Status};

#[allow(unsafe_code, clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    // The SDK's own reader parses every pair into Strings, work the full filter does not do:
    // the probe takes the bytes as they come. The status is a plain integer (as the full
    // filter takes it), so a code the SDK's enum lacks is not undefined behaviour.
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
}

/// The request headers' serialized pairs, read and dropped as the full filter reads them: one
/// host call (and the host's call back into the module's allocator), no parsing.
#[allow(unsafe_code)]
fn read_request_header_pairs() -> usize {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size = 0usize;
    // SAFETY: out-pointers valid for the call; the host fills them with a buffer it allocated
    // through the SDK's `proxy_on_memory_allocate` (a boxed slice of `size` bytes), freed here.
    unsafe {
        let code =
            proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size);
        if code == Status::Ok as u32 && !data.is_null() {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                data, size,
            )));
        }
    }
    size
}

/// The quota counter key and value, as long as the full filter's for the bench's customer.
const COUNTER_KEY: &str = "aforo:q:production:bench:search";
const COUNTER_VALUE: &[u8] = b"0123456789abcdefaforo:q:production:bench:search";

#[derive(Clone, Copy, Default)]
struct Probe {
    header_reads: usize,
    headers: bool,
    clocks: u8,
    quota: bool,
    status: bool,
    ratelimit: bool,
}

#[derive(Default)]
struct Root {
    probe: Probe,
}
struct Pass {
    probe: Probe,
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
                self.probe.header_reads = digits.parse().unwrap_or(0);
            }
            if let Some(rest) = text.split("\"calls\"").nth(1) {
                let list = rest.split('"').nth(1).unwrap_or("");
                let all = list == "aforo";
                let has = |group: &str| all || list.split(' ').any(|g| g == group);
                self.probe.headers = has("headers");
                self.probe.clocks = if all {
                    2
                } else {
                    list.split(' ').filter(|g| *g == "clock").count().min(2) as u8
                };
                self.probe.quota = has("quota");
                self.probe.status = has("status");
                self.probe.ratelimit = has("ratelimit");
            }
        }
        true
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pass { probe: self.probe }))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Context for Pass {}
impl HttpContext for Pass {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        for _ in 0..self.probe.header_reads {
            let _ = self.get_http_request_header(":path");
        }
        // The request headers in one call, the clock, the quota's read and compare-and-set.
        if self.probe.headers {
            std::hint::black_box(read_request_header_pairs());
        }
        if self.probe.clocks > 0 {
            let _ = self.get_current_time();
        }
        if self.probe.quota {
            let (_, cas) = self.get_shared_data(COUNTER_KEY);
            let _ = self.set_shared_data(COUNTER_KEY, Some(COUNTER_VALUE), cas);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.probe.status {
            let _ = self.get_http_response_header_bytes(":status");
        }
        if self.probe.ratelimit {
            self.set_http_response_header("ratelimit-limit", Some("1000000000000"));
            self.set_http_response_header("ratelimit-remaining", Some("999999876543"));
            self.set_http_response_header("ratelimit-reset", Some("2419200"));
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.probe.clocks > 1 {
            // The clock read again when the event is metered.
            let _ = self.get_current_time();
        }
    }
}

#[allow(missing_docs)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> { Box::new(super::Root::default()) });
    }}
}
