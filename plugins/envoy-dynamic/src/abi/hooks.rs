//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`): each turns Envoy's pointers into
//! the safe handles and the module's own objects, and catches a panic so that a bug in the
//! module answers one request as if the filter were absent instead of aborting Envoy.

use super::handles::{copy_buffer, copy_chunks, copy_headers, log, Config, Filter, Level};
use super::raw::*;
use crate::filter::{Next, RequestFilter};
use crate::module::Module;
use aforo_core::host::CallResponse;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// The ABI version this module was written against (Envoy 1.40.0 reports it as matched).
static ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

/// Runs `f`, or logs its panic and returns `fallback`.
fn guard<T>(hook: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            log(
                Level::Error,
                &format!("aforo: internal error in {hook}; the request goes on without the filter (please report it)"),
            );
            fallback
        }
    }
}

/// The module behind a configuration pointer this module returned.
///
/// # Safety
/// `ptr` must come from `on_http_filter_config_new` and not be destroyed yet.
unsafe fn module<'a>(ptr: ConfigModulePtr) -> Option<&'a Arc<Module>> {
    unsafe { ptr.cast::<Arc<Module>>().as_ref() }
}

/// The request filter behind a filter pointer this module returned.
///
/// # Safety
/// `ptr` must come from `on_http_filter_new` and not be destroyed yet; Envoy calls a filter's
/// hooks one at a time, on its worker.
unsafe fn request<'a>(ptr: FilterModulePtr) -> Option<&'a mut RequestFilter> {
    unsafe { (ptr as *mut RequestFilter).as_mut() }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    guard("on_http_filter_config_new", std::ptr::null(), || {
        let name = copy_buffer(name);
        let bytes = copy_buffer(config);
        let (workers, validating) = (super::handles::concurrency(), super::handles::validating());
        match crate::configure(
            Config::new(config_envoy),
            &name,
            &bytes,
            workers as usize,
            validating,
        ) {
            Some(m) => Box::into_raw(Box::new(m)) as ConfigModulePtr,
            None => std::ptr::null(),
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(ptr: ConfigModulePtr) {
    guard("on_http_filter_config_destroy", (), || {
        if ptr.is_null() {
            return;
        }
        // SAFETY: made by `Box::into_raw` in `config_new`; Envoy destroys it once.
        let m = unsafe { Box::from_raw(ptr as *mut Arc<Module>) };
        m.shutdown();
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> PerRouteConfigModulePtr {
    log(
        Level::Error,
        "aforo: per-route configuration is not supported: configure routes in the filter's \"routes\" (docs/configuration.md)",
    );
    std::ptr::null()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _ptr: PerRouteConfigModulePtr,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ConfigModulePtr,
    _filter_envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    guard("on_http_filter_new", std::ptr::null(), || {
        // SAFETY: Envoy passes the pointer `config_new` returned, alive while filters exist.
        match unsafe { module(config) } {
            Some(m) => Box::into_raw(Box::new(RequestFilter::new(m.clone()))) as FilterModulePtr,
            None => std::ptr::null(),
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    _end_of_stream: bool,
) -> FilterStatus {
    guard("on_http_filter_request_headers", CONTINUE, || {
        let envoy = Filter::new(filter_envoy);
        // SAFETY: see `request`. The borrow ends before the reply is sent: sending it can end
        // the stream and destroy this filter inside the call.
        let next = match unsafe { request(filter) } {
            Some(f) => f.on_request_headers(envoy),
            None => return CONTINUE,
        };
        match next {
            Next::Continue => CONTINUE,
            Next::Stop => STOP_ITERATION,
            Next::Reply(r) => {
                envoy.send_response(r.status, &r.headers, &r.body);
                STOP_ITERATION
            }
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    end_of_stream: bool,
) -> FilterStatus {
    guard("on_http_filter_request_body", CONTINUE, || {
        // SAFETY: see `request`.
        if let Some(f) = unsafe { request(filter) } {
            f.on_request_body(Filter::new(filter_envoy), end_of_stream);
        }
        CONTINUE
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) -> FilterStatus {
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    end_of_stream: bool,
) -> FilterStatus {
    guard("on_http_filter_response_headers", CONTINUE, || {
        // SAFETY: see `request`.
        if let Some(f) = unsafe { request(filter) } {
            f.on_response_headers(Filter::new(filter_envoy), end_of_stream);
        }
        CONTINUE
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
    end_of_stream: bool,
) -> FilterStatus {
    guard("on_http_filter_response_body", CONTINUE, || {
        // SAFETY: see `request`.
        if let Some(f) = unsafe { request(filter) } {
            f.on_response_body(Filter::new(filter_envoy), end_of_stream);
        }
        CONTINUE
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) -> FilterStatus {
    CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    filter_envoy: FilterEnvoyPtr,
    filter: FilterModulePtr,
) {
    guard("on_http_filter_stream_complete", (), || {
        // SAFETY: see `request`.
        if let Some(f) = unsafe { request(filter) } {
            f.on_stream_complete(Filter::new(filter_envoy));
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: FilterModulePtr) {
    guard("on_http_filter_destroy", (), || {
        if !filter.is_null() {
            // SAFETY: made by `Box::into_raw` in `filter_new`; Envoy destroys it once.
            drop(unsafe { Box::from_raw(filter as *mut RequestFilter) });
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: ConfigEnvoyPtr,
    config: ConfigModulePtr,
    event_id: u64,
) {
    guard("on_http_filter_config_scheduled", (), || {
        // SAFETY: see `module`.
        if let Some(m) = unsafe { module(config) } {
            m.on_scheduled(event_id);
        }
    })
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: ConfigEnvoyPtr,
    config: ConfigModulePtr,
    callout_id: u64,
    result: CalloutResult,
    headers: *mut EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *mut EnvoyBuffer,
    body_chunks_size: usize,
) {
    guard("on_http_filter_config_http_callout_done", (), || {
        // SAFETY: see `module`.
        let Some(m) = (unsafe { module(config) }) else {
            return;
        };
        let response = if result == CALLOUT_SUCCESS {
            let headers: Vec<(String, String)> = copy_headers(headers, headers_size)
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                .collect();
            let status = headers
                .iter()
                .find(|(k, _)| k == ":status")
                .and_then(|(_, v)| v.parse::<u16>().ok());
            CallResponse {
                status,
                headers,
                body: copy_chunks(body_chunks, body_chunks_size),
            }
        } else {
            CallResponse::failed()
        };
        m.on_callout_done(callout_id, response);
    })
}

// Hooks Envoy resolves that this filter has no use for.

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _callout_id: u64,
    _result: CalloutResult,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *mut EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _config_envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream_id: u64,
    _headers: *mut EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _config_envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _config_envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream_id: u64,
    _trailers: *mut EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _config_envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _config_envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy: FilterEnvoyPtr,
    _filter: FilterModulePtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    // Continue: let the local reply be sent.
    0
}
