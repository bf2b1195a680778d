//! `aforo_core::host::Host` implemented with proxy-wasm host calls.

use crate::metrics::MetricIds;
use aforo_core::entitlement::LocalReply;
use aforo_core::host::{Host, LogLevel, Metric, OutboundRequest, SharedSetError};
use aforo_core::redact::redact_secrets;
use aforo_core::Timestamp;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel as PwLevel, Status};
use std::time::{Duration, UNIX_EPOCH};

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
    let level = match level {
        LogLevel::Trace => PwLevel::Trace,
        LogLevel::Debug => PwLevel::Debug,
        LogLevel::Info => PwLevel::Info,
        LogLevel::Warn => PwLevel::Warn,
        LogLevel::Error => PwLevel::Error,
    };
    let _ = hostcalls::log(level, &redact_secrets(message));
}

/// The host's clock.
pub fn now() -> Timestamp {
    match hostcalls::get_current_time() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp::from_unix_nanos(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
            Err(_) => Timestamp::EPOCH,
        },
        Err(_) => Timestamp::EPOCH,
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
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = (!request.body.is_empty()).then_some(request.body.as_slice());
        hostcalls::dispatch_http_call(
            &request.upstream,
            headers,
            body,
            Vec::new(),
            Duration::from_millis(request.timeout_ms),
        )
        .map_err(|s| match s {
            Status::BadArgument => {
                "the host refused the upstream (unknown cluster, or not host:port on Kong)"
                    .to_string()
            }
            other => format!("the host refused the call ({other:?})"),
        })
    }

    fn send_local_reply(&mut self, reply: &LocalReply) {
        self.reply = Some(reply.clone());
    }

    fn metric_add(&mut self, metric: Metric, delta: i64) {
        if let Some(id) = self.metrics.id(metric) {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }

    fn metric_set(&mut self, metric: Metric, value: u64) {
        if let Some(id) = self.metrics.id(metric) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), cas)) => Some((bytes, cas.unwrap_or(0))),
            Ok((None, Some(cas))) => Some((Vec::new(), cas)),
            _ => None,
        }
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        match hostcalls::set_shared_data(key, Some(value), (cas != 0).then_some(cas)) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SharedSetError::CasMismatch),
            Err(other) => Err(SharedSetError::Unavailable(format!("{other:?}"))),
        }
    }
}

/// Sends a collected local reply.
pub fn send_reply(reply: &LocalReply) {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if let Err(e) =
        hostcalls::send_http_response(u32::from(reply.status), headers, Some(&reply.body))
    {
        log(
            LogLevel::Error,
            &format!("aforo: could not send the local reply: {e:?}"),
        );
    }
}
