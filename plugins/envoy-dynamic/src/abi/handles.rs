//! Safe handles over Envoy's callbacks: the one place (with `hooks`) where pointers from Envoy
//! are used. Each handle is only made by `hooks` from a pointer Envoy passed to an event hook,
//! and used while Envoy guarantees it (the hook's duration for a filter, the configuration's
//! life for a configuration).

use super::raw::*;
use std::ffi::c_char;

/// Which header map of a request.
#[derive(Clone, Copy, Debug)]
pub enum Side {
    /// The request's headers.
    Request,
    /// The response's headers.
    Response,
}

impl Side {
    fn header_type(self) -> HeaderType {
        match self {
            Side::Request => REQUEST_HEADER,
            Side::Response => RESPONSE_HEADER,
        }
    }

    fn body_type(self) -> BodyType {
        match self {
            Side::Request => RECEIVED_REQUEST_BODY,
            Side::Response => RECEIVED_RESPONSE_BODY,
        }
    }
}

/// Log severity for `log`.
#[derive(Clone, Copy, Debug)]
pub enum Level {
    /// Per-event detail.
    Debug,
    /// Lifecycle.
    Info,
    /// Degraded but handled.
    Warn,
    /// An operator must look.
    Error,
}

/// Writes a line to Envoy's log (the `dynamic_modules` logger).
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Debug => 1,
        Level::Info => 2,
        Level::Warn => 3,
        Level::Error => 4,
    };
    // SAFETY: the buffer is valid for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

/// The number of worker threads (call on the main thread only, as Envoy requires).
pub fn concurrency() -> u32 {
    // SAFETY: no arguments; `hooks` calls it from `on_http_filter_config_new` (main thread).
    unsafe { envoy_dynamic_module_callback_get_concurrency() }
}

/// Whether Envoy only validates its configuration (`--mode validate`; main thread only).
pub fn validating() -> bool {
    // SAFETY: no arguments; called from `on_http_filter_config_new` (main thread).
    unsafe { envoy_dynamic_module_callback_is_validation_mode() }
}

/// Bytes Envoy owns, copied out (null or empty reads as empty).
fn copy(ptr: *const c_char, len: usize) -> Vec<u8> {
    if ptr.is_null() || len == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy gave this pointer and length for data valid during the current hook.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec()
}

/// Copies an array of Envoy headers (as given to a callout's answer).
pub(super) fn copy_headers(headers: *const EnvoyHttpHeader, n: usize) -> Vec<(String, Vec<u8>)> {
    if headers.is_null() || n == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy passes `n` valid headers for the duration of the hook.
    let all = unsafe { std::slice::from_raw_parts(headers, n) };
    all.iter()
        .map(|h| {
            (
                String::from_utf8_lossy(&copy(h.key_ptr, h.key_length)).into_owned(),
                copy(h.value_ptr, h.value_length),
            )
        })
        .collect()
}

/// Concatenates an array of Envoy buffers (a body in chunks).
pub(super) fn copy_chunks(chunks: *const EnvoyBuffer, n: usize) -> Vec<u8> {
    if chunks.is_null() || n == 0 {
        return Vec::new();
    }
    // SAFETY: Envoy passes `n` valid buffers for the duration of the hook.
    let all = unsafe { std::slice::from_raw_parts(chunks, n) };
    let mut out = Vec::with_capacity(all.iter().map(|c| c.length).sum());
    for c in all {
        out.extend_from_slice(&copy(c.ptr, c.length));
    }
    out
}

/// Envoy bytes handed to a hook (a configuration, a name), copied.
pub(super) fn copy_buffer(b: EnvoyBuffer) -> Vec<u8> {
    copy(b.ptr, b.length)
}

fn module_headers(headers: &[(String, String)]) -> Vec<ModuleHttpHeader> {
    headers
        .iter()
        .map(|(k, v)| ModuleHttpHeader {
            key_ptr: k.as_ptr().cast(),
            key_length: k.len(),
            value_ptr: v.as_ptr().cast(),
            value_length: v.len(),
        })
        .collect()
}

/// The shape of Envoy's metric callbacks (on a filter or a configuration pointer).
type MetricFn = unsafe extern "C" fn(
    *mut std::ffi::c_void,
    usize,
    *mut ModuleBuffer,
    usize,
    u64,
) -> MetricsResult;

/// Calls one of Envoy's metric callbacks on `target`, with no labels.
fn metric(f: MetricFn, target: *mut std::ffi::c_void, id: usize, value: u64) {
    // SAFETY: `target` is a filter or configuration pointer valid for the call (see the
    // handles' documentation); no labels are passed, as the metrics were defined without.
    unsafe {
        f(target, id, std::ptr::null_mut(), 0, value);
    }
}

/// Moves a gauge by `delta` through its increment or decrement callback.
fn gauge_delta(inc: MetricFn, dec: MetricFn, target: *mut std::ffi::c_void, id: usize, delta: i64) {
    let f = if delta >= 0 { inc } else { dec };
    metric(f, target, id, delta.unsigned_abs());
}

/// One request's filter in Envoy; valid during the event hook it was made in.
#[derive(Clone, Copy)]
pub struct Filter(FilterEnvoyPtr);

impl Filter {
    pub(super) fn new(ptr: FilterEnvoyPtr) -> Filter {
        Filter(ptr)
    }

    /// The first value of one header of `side`.
    pub fn header(self, side: Side, name: &str) -> Option<Vec<u8>> {
        let mut value = EnvoyBuffer::NULL;
        // SAFETY: valid filter pointer, key and out-pointer for the call.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.0,
                side.header_type(),
                ModuleBuffer::of(name.as_bytes()),
                &mut value,
                0,
                std::ptr::null_mut(),
            )
        };
        (found && !value.ptr.is_null()).then(|| copy(value.ptr, value.length))
    }

    /// Sets (replaces) one header of `side`.
    pub fn set_header(self, side: Side, name: &str, value: &str) -> bool {
        // SAFETY: valid filter pointer; Envoy copies key and value.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                side.header_type(),
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        }
    }

    /// Answers the request locally.
    pub fn send_response(self, status: u16, headers: &[(String, String)], body: &[u8]) {
        let mut h = module_headers(headers);
        let details = b"aforo";
        // SAFETY: every buffer outlives the call; Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                h.as_mut_ptr(),
                h.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details),
            )
        }
    }

    /// The body data this hook received (all its chunks).
    pub fn received_body(self, side: Side) -> Vec<u8> {
        // SAFETY: valid filter pointer; the vector holds `n` slots.
        unsafe {
            let n =
                envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, side.body_type());
            if n == 0 {
                return Vec::new();
            }
            let mut chunks = vec![EnvoyBuffer::NULL; n];
            if !envoy_dynamic_module_callback_http_get_body_chunks(
                self.0,
                side.body_type(),
                chunks.as_mut_ptr(),
            ) {
                return Vec::new();
            }
            copy_chunks(chunks.as_ptr(), n)
        }
    }

    /// The size of the body data this hook received, without copying it.
    pub fn received_body_len(self, side: Side) -> usize {
        // SAFETY: valid filter pointer; the vector holds `n` slots; nothing is copied.
        unsafe {
            let n =
                envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, side.body_type());
            if n == 0 {
                return 0;
            }
            let mut chunks = vec![EnvoyBuffer::NULL; n];
            if !envoy_dynamic_module_callback_http_get_body_chunks(
                self.0,
                side.body_type(),
                chunks.as_mut_ptr(),
            ) {
                return 0;
            }
            chunks.iter().map(|c| c.length).sum()
        }
    }

    /// The index of the worker thread running this request.
    pub fn worker_index(self) -> usize {
        // SAFETY: valid filter pointer.
        unsafe { envoy_dynamic_module_callback_http_filter_get_worker_index(self.0) as usize }
    }

    /// The downstream peer (`source.address`, `ip:port`).
    pub fn source_address(self) -> Option<String> {
        let mut value = EnvoyBuffer::NULL;
        // SAFETY: valid filter pointer and out-pointer.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.0,
                ATTRIBUTE_SOURCE_ADDRESS,
                &mut value,
            )
        };
        if !ok {
            return None;
        }
        String::from_utf8(copy(value.ptr, value.length)).ok()
    }

    /// Adds to a counter defined on the configuration.
    pub fn counter_add(self, id: usize, value: u64) {
        metric(
            envoy_dynamic_module_callback_http_filter_increment_counter,
            self.0,
            id,
            value,
        );
    }

    /// Moves a gauge defined on the configuration up or down.
    pub fn gauge_add(self, id: usize, delta: i64) {
        gauge_delta(
            envoy_dynamic_module_callback_http_filter_increment_gauge,
            envoy_dynamic_module_callback_http_filter_decrement_gauge,
            self.0,
            id,
            delta,
        );
    }

    /// Sets a gauge defined on the configuration.
    pub fn gauge_set(self, id: usize, value: u64) {
        metric(
            envoy_dynamic_module_callback_http_filter_set_gauge,
            self.0,
            id,
            value,
        );
    }
}

/// The filter configuration in Envoy: valid from `on_http_filter_config_new` until its destroy
/// hook returns. Metrics, callouts and the scheduler are used from the main thread only, except
/// `Scheduler::commit` (any thread, as Envoy documents).
#[derive(Clone, Copy)]
pub struct Config(ConfigEnvoyPtr);

// SAFETY: the pointer is only dereferenced by Envoy; the module calls through it from the main
// thread (every hook that reaches `Config` methods runs there), see the type's documentation.
unsafe impl Send for Config {}
// SAFETY: as above.
unsafe impl Sync for Config {}

/// Why Envoy did not start a callout (a message for the log).
#[derive(Debug)]
pub struct CalloutRefused(pub String);

impl Config {
    pub(super) fn new(ptr: ConfigEnvoyPtr) -> Config {
        Config(ptr)
    }

    /// Defines a counter (at configuration time); `None` when Envoy refuses.
    pub fn define_counter(self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: valid configuration pointer during `on_http_filter_config_new`; no labels.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.0,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        (r == METRICS_SUCCESS).then_some(id)
    }

    /// Defines a gauge (at configuration time); `None` when Envoy refuses.
    pub fn define_gauge(self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: as `define_counter`.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_gauge(
                self.0,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        (r == METRICS_SUCCESS).then_some(id)
    }

    /// Adds to a counter outside any request (main thread).
    pub fn counter_add(self, id: usize, value: u64) {
        metric(
            envoy_dynamic_module_callback_http_filter_config_increment_counter,
            self.0,
            id,
            value,
        );
    }

    /// Moves a gauge outside any request (main thread).
    pub fn gauge_add(self, id: usize, delta: i64) {
        gauge_delta(
            envoy_dynamic_module_callback_http_filter_config_increment_gauge,
            envoy_dynamic_module_callback_http_filter_config_decrement_gauge,
            self.0,
            id,
            delta,
        );
    }

    /// Sets a gauge outside any request (main thread).
    pub fn gauge_set(self, id: usize, value: u64) {
        metric(
            envoy_dynamic_module_callback_http_filter_config_set_gauge,
            self.0,
            id,
            value,
        );
    }

    /// Starts an HTTP call to `cluster` (main thread); the answer comes to
    /// `on_http_filter_config_http_callout_done` with the returned id.
    pub fn callout(
        self,
        cluster: &str,
        headers: &[(String, String)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, CalloutRefused> {
        let mut h = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: every buffer outlives the call; Envoy copies them.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                h.as_mut_ptr(),
                h.len(),
                ModuleBuffer::of(body),
                timeout_ms,
            )
        };
        match r {
            CALLOUT_INIT_SUCCESS => Ok(id),
            CALLOUT_INIT_CLUSTER_NOT_FOUND => Err(CalloutRefused(format!(
                "Envoy has no cluster named {cluster:?}: add it to the bootstrap's clusters"
            ))),
            CALLOUT_INIT_MISSING_HEADERS => Err(CalloutRefused(
                "Envoy refused the call: :method, :path or host missing".into(),
            )),
            other => Err(CalloutRefused(format!(
                "Envoy could not start the call to {cluster:?} (callout result {other}: no healthy host?)"
            ))),
        }
    }

    /// A scheduler that wakes `on_http_filter_config_scheduled` on the main thread.
    pub fn scheduler(self) -> Option<Scheduler> {
        // SAFETY: valid configuration pointer.
        let p = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) };
        (!p.is_null()).then_some(Scheduler(p))
    }
}

/// Posts events to the configuration's main-thread hook, from any thread.
pub struct Scheduler(ConfigSchedulerPtr);

// SAFETY: Envoy documents `scheduler_commit` as callable from any thread, including threads
// the module manages; the pointer stays valid until `Drop`, which the module runs on the main
// thread after every other user has stopped.
unsafe impl Send for Scheduler {}
// SAFETY: as above.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    /// Asks Envoy to run the scheduled hook with `event` on the main thread.
    pub fn commit(&self, event: u64) {
        // SAFETY: valid until drop (see the type's documentation).
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event) }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: created by `scheduler_new`, deleted once.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}
