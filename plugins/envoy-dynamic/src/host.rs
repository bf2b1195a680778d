//! `aforo_core::host::Host` for the native module: the system clock, Envoy's log and stats, the
//! process-wide counter store, and calls queued for Envoy's main thread.

use crate::abi::{log, Filter, Level};
use crate::counter_store;
use crate::module::Module;
use aforo_core::entitlement::{LocalReply, ModifyFn};
use aforo_core::host::{Host, LogLevel, Metric, OutboundRequest, SharedSetError};
use aforo_core::redact::redact_secrets;
use aforo_core::Timestamp;

/// Where the engine is being called from.
#[derive(Clone, Copy)]
pub enum Site {
    /// A request on a worker thread: stats go through the request's filter.
    Worker(Filter),
    /// Envoy's main thread (ticks, answers to calls): stats go through the configuration.
    Main,
    /// The main thread, for an engine adopted from a replaced configuration: as `Main`, but
    /// its per-worker gauge (snapshot age) is not set over the live engines'.
    Adopted,
}

/// The host as seen from one hook. Local replies are collected and sent by the caller after
/// the engine's lock is released.
pub struct NativeHost<'a> {
    module: &'a Module,
    engine: usize,
    site: Site,
    /// The engine's part of the process-wide counter store (an adopted engine keeps its own).
    namespace: &'a str,
    /// The reply the engine asked for, if any.
    pub reply: Option<LocalReply>,
    /// Whether a call was queued (a worker must wake the main thread).
    pub queued_call: bool,
}

impl<'a> NativeHost<'a> {
    /// A host for engine `engine` of `module` (a worker's, or one adopted), counting in
    /// `namespace`.
    pub fn new(module: &'a Module, engine: usize, site: Site, namespace: &'a str) -> Self {
        NativeHost {
            module,
            engine,
            site,
            namespace,
            reply: None,
            queued_call: false,
        }
    }
}

impl NativeHost<'_> {
    /// `key` in this engine's part of the process-wide counter store.
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }
}

/// Writes a log line, secrets redacted.
pub fn write_log(level: LogLevel, message: &str) {
    let level = match level {
        LogLevel::Trace | LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warn,
        LogLevel::Error => Level::Error,
    };
    log(level, &redact_secrets(message));
}

impl Host for NativeHost<'_> {
    fn now(&self) -> Timestamp {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp::from_unix_nanos(nanos)
    }

    fn log(&self, level: LogLevel, message: &str) {
        write_log(level, message);
    }

    fn http_call(&mut self, request: &OutboundRequest) -> Result<u32, String> {
        // Envoy starts calls from the main thread only: queue it; a worker wakes the main
        // thread once its hook is done, the main thread starts it when its own work is.
        let token = self.module.queue_call(self.engine, request)?;
        self.queued_call = true;
        Ok(token)
    }

    fn send_local_reply(&mut self, reply: &LocalReply) {
        self.reply = Some(reply.clone());
    }

    fn metric_add(&mut self, metric: Metric, delta: i64) {
        let Some(id) = self.module.metrics.id(metric) else {
            return;
        };
        match (self.site, metric.is_gauge()) {
            (Site::Worker(f), true) => f.gauge_add(id, delta),
            (Site::Worker(f), false) => f.counter_add(id, delta.max(0).unsigned_abs()),
            (Site::Main | Site::Adopted, true) => self.module.config().gauge_add(id, delta),
            (Site::Main | Site::Adopted, false) => self
                .module
                .config()
                .counter_add(id, delta.max(0).unsigned_abs()),
        }
    }

    fn metric_set(&mut self, metric: Metric, value: u64) {
        let Some(id) = self.module.metrics.id(metric) else {
            return;
        };
        match self.site {
            Site::Worker(f) => f.gauge_set(id, value),
            Site::Main => self.module.config().gauge_set(id, value),
            Site::Adopted => {}
        }
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        counter_store::global().get(&self.key(key))
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        counter_store::global().set(&self.key(key), value, cas)
    }

    fn shared_modify(
        &mut self,
        key: &str,
        f: &mut ModifyFn<'_>,
    ) -> Option<Result<(), SharedSetError>> {
        counter_store::global().modify(&self.key(key), f);
        Some(Ok(()))
    }
}
