//! libaforo_passthrough_native.so: an Envoy dynamic-module HTTP filter that does nothing, the
//! floor of the native module's benchmark (what Envoy's dynamic-module plumbing costs per
//! request). It exports the hooks Envoy 1.40 requires and answers every one with "continue".
//!
//! For calibration only, the filter configuration `calls` makes it make, on each request, the
//! Envoy calls the native aforo module makes with a consumer key and the default options (and
//! nothing else): what those calls alone cost (`scripts/bench-envoy.sh`, variant k).
//! `calls:headers status ratelimit` names them in groups (a subset makes only those; `clock` and
//! `quota` are not Envoy calls in the native module and are ignored):
//! `worker` the worker's index, `headers` three request headers, `status` the response's
//! `:status`, `ratelimit` three response headers set.
#![allow(unsafe_code, missing_docs)]

use std::ffi::{c_char, c_void};

/// `envoy_dynamic_module_type_envoy_buffer`.
#[repr(C)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

/// `envoy_dynamic_module_type_module_buffer`.
#[repr(C)]
pub struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }
}

// The callbacks the `calls` probe makes, as `plugins/envoy-dynamic/src/abi/raw.rs` declares them.
extern "C" {
    fn envoy_dynamic_module_callback_http_filter_get_worker_index(filter: *mut c_void) -> u32;
    fn envoy_dynamic_module_callback_http_get_header(
        filter: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
}

const REQUEST_HEADER: u32 = 0;
const RESPONSE_HEADER: u32 = 2;

/// Which groups of calls a configuration's filters make (bits: 1 headers, 2 status,
/// 4 ratelimit, 8 worker); Envoy holds a pointer to one of these as the configuration and as
/// each filter.
static GROUPS: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

fn groups_of(config: &[u8]) -> &'static u8 {
    let bits = match config {
        b"calls" | b"calls:aforo" => 15,
        _ => match config.strip_prefix(b"calls:") {
            Some(list) => list
                .split(|b| *b == b' ')
                .map(|g| match g {
                    b"headers" => 1,
                    b"status" => 2,
                    b"ratelimit" => 4,
                    b"worker" => 8,
                    _ => 0,
                })
                .fold(0, |a, b| a | b),
            None => 0,
        },
    };
    &GROUPS[bits]
}

/// The groups of calls of a filter (the pointer Envoy was given for it).
fn groups(filter: *const c_void) -> u8 {
    // SAFETY: every configuration and filter pointer given to Envoy points into GROUPS.
    unsafe { *filter.cast::<u8>() }
}

/// One header's first value, read as the native module reads it (copied out of Envoy).
unsafe fn read_header(filter: *mut c_void, header_type: u32, name: &str) -> Option<Vec<u8>> {
    let mut value = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
    let found = envoy_dynamic_module_callback_http_get_header(
        filter,
        header_type,
        ModuleBuffer::of(name.as_bytes()),
        &mut value,
        0,
        std::ptr::null_mut(),
    );
    (found && !value.ptr.is_null())
        .then(|| std::slice::from_raw_parts(value.ptr.cast::<u8>(), value.length).to_vec())
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    c"v0.2.0".as_ptr()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config: *mut c_void,
    _name: EnvoyBuffer,
    value: EnvoyBuffer,
) -> *const c_void {
    // SAFETY: Envoy's configuration bytes, valid during this call.
    let text = unsafe {
        if value.ptr.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(value.ptr.cast::<u8>(), value.length)
        }
    };
    std::ptr::from_ref(groups_of(text)).cast()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter: *mut c_void,
) -> *const c_void {
    config
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: *mut c_void,
    filter: *const c_void,
    _end: bool,
) -> u32 {
    let groups = groups(filter);
    if groups & 8 != 0 {
        // SAFETY: Envoy's filter pointer, during its hook.
        std::hint::black_box(unsafe {
            envoy_dynamic_module_callback_http_filter_get_worker_index(envoy)
        });
    }
    if groups & 1 != 0 {
        // SAFETY: Envoy's filter pointer, during its hook.
        unsafe {
            // The method and path (the route), the consumer key.
            for name in [":method", ":path", "x-api-key"] {
                std::hint::black_box(read_header(envoy, REQUEST_HEADER, name));
            }
        }
    }
    0
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: *mut c_void,
    filter: *const c_void,
    _end: bool,
) -> u32 {
    let groups = groups(filter);
    if groups & 2 != 0 {
        // SAFETY: Envoy's filter pointer, during its hook.
        std::hint::black_box(unsafe { read_header(envoy, RESPONSE_HEADER, ":status") });
    }
    if groups & 4 != 0 {
        // SAFETY: Envoy's filter pointer, during its hook; Envoy copies what it is given.
        unsafe {
            for (k, v) in [
                ("ratelimit-limit", "1000000000000"),
                ("ratelimit-remaining", "999999876543"),
                ("ratelimit-reset", "2419200"),
            ] {
                envoy_dynamic_module_callback_http_set_header(
                    envoy,
                    RESPONSE_HEADER,
                    ModuleBuffer::of(k.as_bytes()),
                    ModuleBuffer::of(v.as_bytes()),
                );
            }
        }
    }
    0
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
    envoy_dynamic_module_on_http_filter_request_body(_e: *mut c_void, _f: *const c_void, _end: bool),
    envoy_dynamic_module_on_http_filter_request_trailers(_e: *mut c_void, _f: *const c_void),
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

#[cfg(test)]
mod tests {
    use super::groups_of;

    #[test]
    fn a_configuration_names_the_calls_its_filters_make() {
        assert_eq!(*groups_of(b"{}"), 0, "the floor makes no call");
        assert_eq!(*groups_of(b"calls"), 15);
        assert_eq!(*groups_of(b"calls:aforo"), 15);
        assert_eq!(*groups_of(b"calls:headers status"), 3);
        assert_eq!(*groups_of(b"calls:worker ratelimit"), 12);
        // The Wasm filter's groups that are no Envoy call here are ignored.
        assert_eq!(*groups_of(b"calls:headers clock quota"), 1);
    }
}
