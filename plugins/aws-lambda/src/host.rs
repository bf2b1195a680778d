//! The core's `Host` inside a Node.js Lambda: the clock is the invocation's, outbound calls are
//! queued for JavaScript to make with `fetch`, counters and metrics live in the instance's
//! memory (one Lambda instance is one "worker"), log lines are handed to `console`.

use aforo_core::entitlement::LocalReply;
use aforo_core::host::{Host, LogLevel, Metric, OutboundRequest, SharedSetError};
use aforo_core::Timestamp;
use std::cell::RefCell;
use std::collections::HashMap;

/// Host state of one engine.
#[derive(Default)]
pub struct LambdaHost {
    /// The invocation's clock.
    pub now: Timestamp,
    /// Calls the engine started, for JavaScript to make.
    pub calls: Vec<(u32, OutboundRequest)>,
    next_token: u32,
    /// The last local reply (a refusal).
    pub reply: Option<LocalReply>,
    /// Metric values by name.
    pub metrics: HashMap<&'static str, i64>,
    shared: HashMap<String, (Vec<u8>, u32)>,
    /// Log lines not yet handed to JavaScript: (level, message).
    pub logs: RefCell<Vec<(LogLevel, String)>>,
}

impl Host for LambdaHost {
    fn now(&self) -> Timestamp {
        self.now
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn http_call(&mut self, request: &OutboundRequest) -> Result<u32, String> {
        self.next_token = self.next_token.wrapping_add(1).max(1);
        self.calls.push((self.next_token, request.clone()));
        Ok(self.next_token)
    }

    fn send_local_reply(&mut self, reply: &LocalReply) {
        self.reply = Some(reply.clone());
    }

    fn metric_add(&mut self, metric: Metric, delta: i64) {
        *self.metrics.entry(metric.name()).or_default() += delta;
    }

    fn metric_set(&mut self, metric: Metric, value: u64) {
        self.metrics
            .insert(metric.name(), i64::try_from(value).unwrap_or(i64::MAX));
    }

    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.get(key).cloned()
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        let current = self.shared.get(key).map_or(0, |(_, c)| *c);
        if cas != 0 && cas != current {
            return Err(SharedSetError::CasMismatch);
        }
        self.shared.insert(
            key.to_string(),
            (value.to_vec(), current.wrapping_add(1).max(1)),
        );
        Ok(())
    }
}
