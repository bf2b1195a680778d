//! `aforo_core::host::Host` implemented with proxy-wasm host calls.

use crate::abi::{self, Status};
use crate::metrics::MetricIds;
use aforo_core::entitlement::LocalReply;
use aforo_core::host::{Host, LogLevel, Metric, OutboundRequest, SharedSetError};
use aforo_core::redact::redact_secrets;
use aforo_core::Timestamp;

/// The host as seen from one callback. Local replies are collected and sent by the caller
/// after the engine is released, so a host that answers synchronously cannot re-enter it.
pub struct ProxyHost<'a> {
    metrics: &'a MetricIds,
    /// The reply the engine asked for, if any.
    pub reply: Option<LocalReply>,
}

impl<'a> ProxyHost<'a> {
    /// A host view using the VM's metric ids.
    pub fn new(metrics: &'a MetricIds) -> Self {
        ProxyHost {
            metrics,
            reply: None,
        }
    }
}

/// Writes a log line through the host, secrets redacted.
pub fn log(level: LogLevel, message: &str) {
    // proxy-wasm's levels: trace 0 … error 4.
    let level = match level {
        LogLevel::Trace => 0,
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        LogLevel::Error => 4,
    };
    abi::log(level, &redact_secrets(message));
}

/// The host's clock (the epoch if the host has none).
pub fn now() -> Timestamp {
    match abi::now_nanos() {
        Some(t) => Timestamp::from_unix_nanos(i64::try_from(t).unwrap_or(i64::MAX)),
        None => Timestamp::EPOCH,
    }
}

impl Host for ProxyHost<'_> {
    fn now(&self) -> Timestamp {
        now()
    }

    fn log(&self, level: LogLevel, message: &str) {
        log(level, message);
    }

    fn http_call(&mut self, request: &OutboundRequest) -> Result<u32, String> {
        abi::http_call(
            &request.upstream,
            &request.headers,
            &request.body,
            request.timeout_ms,
        )
        .map_err(|s| match s {
            Status::BAD_ARGUMENT => {
                "the host refused the upstream (unknown cluster, or not host:port on Kong)"
                    .to_string()
            }
            other => format!("the host refused the call ({})", other.name()),
        })
    }

    fn send_local_reply(&mut self, reply: &LocalReply) {
        self.reply = Some(reply.clone());
    }

    fn metric_add(&mut self, metric: Metric, delta: i64) {
        if let Some(id) = self.metrics.id(metric) {
            abi::increment_metric(id, delta);
        }
    }

    fn metric_set(&mut self, metric: Metric, value: u64) {
        if let Some(id) = self.metrics.id(metric) {
            abi::record_metric(id, value);
        }
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        abi::shared_get(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        match abi::shared_set(key, value, cas) {
            Ok(()) => Ok(()),
            Err(Status::CAS_MISMATCH) => Err(SharedSetError::CasMismatch),
            Err(other) => Err(SharedSetError::Unavailable(other.name().to_string())),
        }
    }
}

/// Sends a collected local reply.
pub fn send_reply(reply: &LocalReply) {
    if let Err(e) = abi::send_local_response(reply.status, &reply.headers, &reply.body) {
        log(
            LogLevel::Error,
            &format!("aforo: could not send the local reply: {}", e.name()),
        );
    }
}
