//! A stateful fake host for native tests: records what the core did, asserts nothing itself.

use crate::entitlement::LocalReply;
use crate::host::{Host, LogLevel, Metric, OutboundRequest, SharedSetError};
use crate::redact::redact_secrets;
use crate::time::Timestamp;
use std::cell::RefCell;
use std::collections::HashMap;

/// A host with a settable clock, recorded calls and replies, and Envoy-style shared data.
pub struct TestHost {
    pub now: Timestamp,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    pub calls: Vec<(u32, OutboundRequest)>,
    pub replies: Vec<LocalReply>,
    pub metrics: HashMap<Metric, i64>,
    pub shared: HashMap<String, (Vec<u8>, u32)>,
    pub next_cas: u32,
    pub next_token: u32,
    /// Fail this many shared writes with a CAS mismatch first.
    pub cas_conflicts: u32,
    /// Refuse outbound calls (unknown cluster).
    pub refuse_calls: bool,
}

impl TestHost {
    pub fn new() -> Self {
        TestHost {
            now: Timestamp::from_unix_secs(1_773_576_000), // 2026-03-15T12:00:00Z
            logs: RefCell::new(Vec::new()),
            calls: Vec::new(),
            replies: Vec::new(),
            metrics: HashMap::new(),
            shared: HashMap::new(),
            next_cas: 1,
            next_token: 1,
            cas_conflicts: 0,
            refuse_calls: false,
        }
    }

    pub fn advance_ms(&mut self, ms: i64) {
        self.now = self.now.plus_millis(ms);
    }

    pub fn metric(&self, m: Metric) -> i64 {
        self.metrics.get(&m).copied().unwrap_or(0)
    }

    pub fn take_calls(&mut self) -> Vec<(u32, OutboundRequest)> {
        std::mem::take(&mut self.calls)
    }
}

impl Host for TestHost {
    fn now(&self) -> Timestamp {
        self.now
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.logs
            .borrow_mut()
            .push((level, redact_secrets(message).into_owned()));
    }
    fn http_call(&mut self, request: &OutboundRequest) -> Result<u32, String> {
        if self.refuse_calls {
            return Err("unknown cluster".into());
        }
        let t = self.next_token;
        self.next_token += 1;
        self.calls.push((t, request.clone()));
        Ok(t)
    }
    fn send_local_reply(&mut self, reply: &LocalReply) {
        self.replies.push(reply.clone());
    }
    fn metric_add(&mut self, metric: Metric, delta: i64) {
        *self.metrics.entry(metric).or_default() += delta;
    }
    fn metric_set(&mut self, metric: Metric, value: u64) {
        self.metrics.insert(metric, value as i64);
    }
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.get(key).cloned()
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        if self.cas_conflicts > 0 {
            self.cas_conflicts -= 1;
            return Err(SharedSetError::CasMismatch);
        }
        if let Some((_, current)) = self.shared.get(key) {
            if cas != 0 && cas != *current {
                return Err(SharedSetError::CasMismatch);
            }
        }
        self.next_cas += 1;
        self.shared
            .insert(key.to_string(), (value.to_vec(), self.next_cas));
        Ok(())
    }
}
