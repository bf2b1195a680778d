//! libaforo_passthrough_native.so: an Envoy dynamic-module HTTP filter that does nothing, the
//! floor of the native module's benchmark (what Envoy's dynamic-module plumbing costs per
//! request). It exports the hooks Envoy 1.40 requires and answers every one with "continue".
#![allow(unsafe_code, missing_docs)]

use std::ffi::{c_char, c_void};

/// `envoy_dynamic_module_type_envoy_buffer`.
#[repr(C)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

/// A non-null pointer for Envoy to hold as the configuration and as each filter.
static TOKEN: u8 = 0;

fn token() -> *const c_void {
    std::ptr::addr_of!(TOKEN).cast()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    c"v0.2.0".as_ptr()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config: *mut c_void,
    _name: EnvoyBuffer,
    _value: EnvoyBuffer,
) -> *const c_void {
    token()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    _config: *const c_void,
    _filter: *mut c_void,
) -> *const c_void {
    token()
}

/// Hooks answered with `Continue` (0).
macro_rules! status_hooks {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $( #[no_mangle] extern "C" fn $name($($arg: $ty),*) -> u32 { 0 } )*
    };
}

/// Hooks with nothing to do.
macro_rules! unit_hooks {
    ($($name:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $( #[no_mangle] extern "C" fn $name($($arg: $ty),*) {} )*
    };
}

status_hooks!(
    envoy_dynamic_module_on_http_filter_request_headers(_e: *mut c_void, _f: *const c_void, _end: bool),
    envoy_dynamic_module_on_http_filter_request_body(_e: *mut c_void, _f: *const c_void, _end: bool),
    envoy_dynamic_module_on_http_filter_request_trailers(_e: *mut c_void, _f: *const c_void),
    envoy_dynamic_module_on_http_filter_response_headers(_e: *mut c_void, _f: *const c_void, _end: bool),
    envoy_dynamic_module_on_http_filter_response_body(_e: *mut c_void, _f: *const c_void, _end: bool),
    envoy_dynamic_module_on_http_filter_response_trailers(_e: *mut c_void, _f: *const c_void),
);

unit_hooks!(
    envoy_dynamic_module_on_http_filter_config_destroy(_c: *const c_void),
    envoy_dynamic_module_on_http_filter_stream_complete(_e: *mut c_void, _f: *const c_void),
    envoy_dynamic_module_on_http_filter_destroy(_f: *const c_void),
    envoy_dynamic_module_on_http_filter_http_callout_done(
        _e: *mut c_void, _f: *const c_void, _id: u64, _r: u32,
        _h: *mut c_void, _hn: usize, _b: *mut c_void, _bn: usize
    ),
    envoy_dynamic_module_on_http_filter_http_stream_headers(
        _e: *mut c_void, _f: *const c_void, _id: u64, _h: *mut c_void, _hn: usize, _end: bool
    ),
    envoy_dynamic_module_on_http_filter_http_stream_data(
        _e: *mut c_void, _f: *const c_void, _id: u64, _d: *const c_void, _dn: usize, _end: bool
    ),
    envoy_dynamic_module_on_http_filter_http_stream_trailers(
        _e: *mut c_void, _f: *const c_void, _id: u64, _t: *mut c_void, _tn: usize
    ),
    envoy_dynamic_module_on_http_filter_http_stream_complete(_e: *mut c_void, _f: *const c_void, _id: u64),
    envoy_dynamic_module_on_http_filter_http_stream_reset(_e: *mut c_void, _f: *const c_void, _id: u64, _r: u32),
    envoy_dynamic_module_on_http_filter_scheduled(_e: *mut c_void, _f: *const c_void, _id: u64),
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(_e: *mut c_void, _f: *const c_void),
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(_e: *mut c_void, _f: *const c_void),
);
