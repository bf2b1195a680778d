//! The small trait every host implements: clock, outbound call, local reply, metrics, shared
//! state and logs. The core calls only this, so every rule runs natively in tests.

use crate::entitlement::LocalReply;
use crate::time::Timestamp;

/// Log severity, as proxy-wasm numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Very chatty.
    Trace,
    /// Per-event detail (AFORO_DEBUG).
    Debug,
    /// Lifecycle.
    Info,
    /// Something degraded but handled.
    Warn,
    /// Something an operator must look at.
    Error,
}

/// An HTTP request the core wants sent, fire-and-forget; the answer comes back by token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRequest {
    /// Envoy cluster name, or `host:port` on Kong.
    pub upstream: String,
    /// Headers including `:method`, `:path`, `:authority`.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Timeout the host enforces.
    pub timeout_ms: u64,
}

/// The answer to an outbound request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallResponse {
    /// HTTP status; `None` when the call failed (timeout, reset, no upstream).
    pub status: Option<u16>,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl CallResponse {
    /// A failed call (no response at all).
    pub fn failed() -> Self {
        CallResponse {
            status: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A header value by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a shared-data write did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedSetError {
    /// Someone else wrote first: read again and retry.
    CasMismatch,
    /// The host refused (no shared memory configured, full…).
    Unavailable(String),
}

/// Product metrics, exported by hosts under their own prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Events built (counter).
    EventsReceived,
    /// Events the ingest acknowledged (counter).
    EventsDelivered,
    /// Of those, already present at the ingest (counter).
    EventsDuplicate,
    /// Events refused by validation or by the ingest (counter).
    EventsRejected,
    /// Events currently dead-lettered (gauge).
    EventsDeadLettered,
    /// Events currently buffered or in flight (gauge).
    EventsBuffered,
    /// Dead letters written to the log because the in-memory store was full (counter).
    DeadLettersSpilled,
    /// Ingest requests sent (counter).
    Flushes,
    /// Ingest requests that failed or were refused (counter).
    FlushFailures,
    /// Requests allowed (counter).
    DecisionsAllowed,
    /// Requests refused with 401 (counter).
    DecisionsDenied401,
    /// Requests refused with 403 (counter).
    DecisionsDenied403,
    /// Requests refused with 429 (counter).
    DecisionsDenied429,
    /// Requests refused with 503 by the closed failure mode (counter).
    DecisionsDenied503,
    /// Denials not enforced because of shadow mode (counter).
    DecisionsShadowDenied,
    /// Requests allowed by the open failure mode without a fresh snapshot (counter).
    DecisionsFailOpen,
    /// Successful snapshot syncs (counter).
    SnapshotSyncs,
    /// Failed snapshot syncs (counter).
    SnapshotSyncFailures,
    /// Age of the snapshot in seconds (gauge).
    SnapshotAgeSeconds,
}

impl Metric {
    /// Every metric, for hosts that define them up front.
    pub const ALL: [Metric; 19] = [
        Metric::EventsReceived,
        Metric::EventsDelivered,
        Metric::EventsDuplicate,
        Metric::EventsRejected,
        Metric::EventsDeadLettered,
        Metric::EventsBuffered,
        Metric::DeadLettersSpilled,
        Metric::Flushes,
        Metric::FlushFailures,
        Metric::DecisionsAllowed,
        Metric::DecisionsDenied401,
        Metric::DecisionsDenied403,
        Metric::DecisionsDenied429,
        Metric::DecisionsDenied503,
        Metric::DecisionsShadowDenied,
        Metric::DecisionsFailOpen,
        Metric::SnapshotSyncs,
        Metric::SnapshotSyncFailures,
        Metric::SnapshotAgeSeconds,
    ];

    /// The exported name.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::EventsReceived => "aforo_events_received_total",
            Metric::EventsDelivered => "aforo_events_delivered_total",
            Metric::EventsDuplicate => "aforo_events_duplicate_total",
            Metric::EventsRejected => "aforo_events_rejected_total",
            Metric::EventsDeadLettered => "aforo_events_dead_lettered",
            Metric::EventsBuffered => "aforo_events_buffered",
            Metric::DeadLettersSpilled => "aforo_dead_letters_spilled_total",
            Metric::Flushes => "aforo_flushes_total",
            Metric::FlushFailures => "aforo_flush_failures_total",
            Metric::DecisionsAllowed => "aforo_decisions_allowed_total",
            Metric::DecisionsDenied401 => "aforo_decisions_denied_401_total",
            Metric::DecisionsDenied403 => "aforo_decisions_denied_403_total",
            Metric::DecisionsDenied429 => "aforo_decisions_denied_429_total",
            Metric::DecisionsDenied503 => "aforo_decisions_denied_503_total",
            Metric::DecisionsShadowDenied => "aforo_decisions_shadow_denied_total",
            Metric::DecisionsFailOpen => "aforo_decisions_fail_open_total",
            Metric::SnapshotSyncs => "aforo_snapshot_syncs_total",
            Metric::SnapshotSyncFailures => "aforo_snapshot_sync_failures_total",
            Metric::SnapshotAgeSeconds => "aforo_snapshot_age_seconds",
        }
    }

    /// Whether the host should define it as a gauge rather than a counter.
    pub const fn is_gauge(self) -> bool {
        matches!(
            self,
            Metric::EventsDeadLettered | Metric::EventsBuffered | Metric::SnapshotAgeSeconds
        )
    }
}

/// What a gateway host provides to the core.
pub trait Host {
    /// Current time (virtual in the replay harness).
    fn now(&self) -> Timestamp;
    /// Writes a log line; hosts must pass it through `redact_secrets`.
    fn log(&self, level: LogLevel, message: &str);
    /// Starts an outbound HTTP call; the answer is delivered later with the returned token.
    fn http_call(&mut self, request: &OutboundRequest) -> Result<u32, String>;
    /// Answers the current request locally instead of forwarding it.
    fn send_local_reply(&mut self, reply: &LocalReply);
    /// Adds to a metric; gauges take negative deltas, so values from several workers sum up.
    fn metric_add(&mut self, metric: Metric, delta: i64);
    /// Sets a gauge that only makes sense per worker (snapshot age).
    fn metric_set(&mut self, metric: Metric, value: u64);
    /// Reads a shared value and its CAS token (shared by every worker of the process).
    fn shared_get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes a shared value if its CAS token still matches (`0` for a key read as absent).
    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError>;
    /// Reads and rewrites a shared value in one atomic step, on hosts whose store can hold a
    /// key while `f` runs; `None` (the default) where only `shared_get`/`shared_set` exist.
    fn shared_modify(
        &mut self,
        _key: &str,
        _f: &mut crate::entitlement::ModifyFn<'_>,
    ) -> Option<Result<(), SharedSetError>> {
        None
    }
}
