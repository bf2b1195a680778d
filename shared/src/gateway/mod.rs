//! The gateway engine: what a proxy filter does on each request, response, tick and call
//! answer, written once against [`Host`]. The proxy-wasm module is a thin adapter around it.
//!
//! Per worker (VM) it holds the configuration, the latest entitlement snapshot and one
//! delivery pipeline per environment; quota and rate counters live in host shared data so
//! all workers of a proxy count together (through this worker's quota slices, when set).

mod awaiting;
mod exchange;
mod handover;
#[cfg(test)]
mod key_cache_tests;
#[cfg(test)]
mod lease_tests;
mod leases;
mod logged;
mod meter;
mod outbound;
mod request;
mod snapshot_load;
#[cfg(test)]
mod snapshot_load_tests;
mod stream_quantity;
#[cfg(test)]
pub(crate) mod test_host;
#[cfg(test)]
mod tests;

pub use exchange::{Exchange, ResponseHeaders};
pub use logged::{LoggedRequest, NotMetered};
pub use request::{RequestVerdict, RequestView};
pub use snapshot_load::{
    SNAPSHOT_BYTES_PER_TICK, SNAPSHOT_MAX_BYTES_PER_REQUEST, SNAPSHOT_TICKS_WITHOUT_REQUESTS,
};

use crate::config::{Config, DispatchMode, EntitlementSource};
use crate::delivery::{Counters, Delivery};
use crate::entitlement::{freshness, Freshness, Slices, Snapshot};
use crate::environment::Environment;
use crate::host::{Host, LogLevel, Metric};
use crate::keys::KeyHashCache;
use crate::time::Timestamp;
use std::collections::HashMap;

/// What an outbound call was for, to route its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallKind {
    Flush(Environment),
    Sync,
    /// A lease given back (its answer is not needed).
    LeaseBack,
}

/// The latest snapshot and when it arrived.
#[derive(Debug, Default)]
struct SnapshotState {
    snapshot: Option<Snapshot>,
    received_at: Option<Timestamp>,
    /// `None` = never stale (inline).
    stale_after_ms: Option<u64>,
    /// A sync is in flight, or its answer is still being read.
    sync_in_flight: bool,
    last_sync_attempt: Option<Timestamp>,
    consecutive_failures: u64,
    /// A synced snapshot being read between requests.
    loading: Option<snapshot_load::Loading>,
    /// The snapshot it replaced, being freed between requests.
    retiring: Option<snapshot_load::Retiring>,
}

/// The per-request decision metrics, counted locally and published on tick.
const DECISION_METRICS: [Metric; 7] = [
    Metric::DecisionsAllowed,
    Metric::DecisionsDenied401,
    Metric::DecisionsDenied403,
    Metric::DecisionsDenied429,
    Metric::DecisionsDenied503,
    Metric::DecisionsShadowDenied,
    Metric::DecisionsFailOpen,
];

/// One worker's gateway engine.
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    snapshot: SnapshotState,
    delivery: [Delivery; 2],
    calls: HashMap<u32, CallKind>,
    nonce: u64,
    sequence: u64,
    /// Counters already reported to host metrics, to add only the difference.
    reported: Counters,
    /// Decision counts not yet pushed to host metrics (pushed on tick: a host call per request
    /// costs more than the decision itself in some proxies).
    pending_decisions: [u64; DECISION_METRICS.len()],
    overflow_logged: u64,
    /// Exchanges served before the first snapshot, waiting for their key to be resolved.
    awaiting: Vec<Exchange>,
    /// Response bytes those exchanges hold (JSON-pointer routes keep the body).
    awaiting_bytes: usize,
    /// Of those, how many could not be kept (the wait list was full).
    unattributed: u64,
    /// Whether the first request has told us what host this is.
    host_checked: bool,
    /// Counter units this worker holds before merging them into shared data.
    slices: Slices,
    /// Quota leases through the agent (`quota_leases`).
    leases: Option<leases::GatewayLeases>,
    /// Requests seen since the last tick, and in the tick period before it (a loading snapshot
    /// is read at once when both are none).
    requests_since_tick: u32,
    requests_period_before: u32,
    /// Whether this engine ever decided a request (Envoy's main-thread VM never does).
    served_requests: bool,
    /// Hashes of the consumer keys seen lately (SHA-256 once per key, not per request).
    key_hashes: KeyHashCache,
}

impl Gateway {
    /// An engine for `config`; `seed` feeds retry jitter and ids of requests without a request id.
    pub fn new(config: Config, seed: u64) -> Self {
        let mut snapshot = SnapshotState::default();
        match &config.entitlements {
            EntitlementSource::Inline(s) => {
                snapshot.snapshot = Some((**s).clone());
                snapshot.received_at = Some(Timestamp::EPOCH);
            }
            EntitlementSource::Sync(_) => {
                snapshot.stale_after_ms = Some(config.max_snapshot_age_ms)
            }
            EntitlementSource::None => {}
        }
        let quota_slice = config.quota_slice;
        let leases = config.quota_leases.clone().map(leases::GatewayLeases::new);
        let delivery = [
            Delivery::new(config.delivery.clone(), seed ^ 0x5A5A),
            Delivery::new(config.delivery.clone(), seed ^ 0xA5A5),
        ];
        Gateway {
            config,
            snapshot,
            delivery,
            calls: HashMap::new(),
            nonce: seed,
            sequence: 0,
            reported: Counters::default(),
            pending_decisions: [0; DECISION_METRICS.len()],
            overflow_logged: 0,
            awaiting: Vec::new(),
            awaiting_bytes: 0,
            unattributed: 0,
            host_checked: false,
            slices: Slices::new(quota_slice),
            leases,
            requests_since_tick: 0,
            requests_period_before: 0,
            served_requests: false,
            key_hashes: KeyHashCache::new(seed ^ 0x6B65_7973),
        }
    }

    /// On the first request: in nginx (Kong), calls go to `host:port` of their URL, because
    /// cluster names do not resolve there and every event would be dead-lettered. An explicit
    /// `"dispatch": "cluster"` is overridden too (nothing can work with it), with an error in
    /// the log naming the fix.
    fn check_host(&mut self, host: &mut dyn Host, req: &dyn request::RequestView) {
        self.host_checked = true;
        if self.config.dispatch == DispatchMode::Authority || !req.runs_in_nginx() {
            return;
        }
        let explicit = self.config.dispatch_explicit;
        self.config.dispatch_by_address();
        // A sync sent before (to a cluster name nginx cannot resolve) fails: without a snapshot
        // yet, the next tick syncs again by host:port instead of a whole sync interval later.
        if self.snapshot.snapshot.is_none() {
            self.snapshot.last_sync_attempt = None;
        }
        if explicit {
            host.log(
                LogLevel::Error,
                "aforo: \"dispatch\": \"cluster\" names Envoy clusters, which nginx (Kong's ngx_wasm_module) does not have: every ingest and sync call would fail. Calling host:port of ingest_url and entitlements_url instead; set \"dispatch\": \"authority\" in the filter's configuration",
            );
        } else {
            host.log(
                LogLevel::Info,
                "aforo: running in nginx (Kong's ngx_wasm_module): calls go to host:port of ingest_url and entitlements_url (dispatch: authority)",
            );
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How often the host should call [`Gateway::on_tick`]; hosts read it again after each tick.
    /// Until the first sync has started it is the shortest period, so it starts at once: before
    /// the first snapshot, requests are served under `failure_mode` without a decision. A host
    /// that can set its period only once (Kong) uses [`Gateway::usual_tick_period_ms`].
    pub fn tick_period_ms(&self) -> u64 {
        if matches!(self.config.entitlements, EntitlementSource::Sync(_))
            && self.snapshot.snapshot.is_none()
            && self.snapshot.last_sync_attempt.is_none()
        {
            return 20;
        }
        self.usual_tick_period_ms()
    }

    /// The tick period once the first sync has started: half the shortest of the flush and
    /// sync intervals (and a second), between 20 and 500 ms.
    pub fn usual_tick_period_ms(&self) -> u64 {
        let mut p = self.config.delivery.flush_interval_ms.min(1_000);
        if matches!(self.config.entitlements, EntitlementSource::Sync(_)) {
            p = p.min(self.config.sync_interval_ms);
        }
        (p / 2).clamp(20, 500)
    }

    /// Conservation counters of both environments together.
    pub fn counters(&self) -> Counters {
        let mut c = self.delivery[0].counters();
        c.add(&self.delivery[1].counters());
        c
    }

    /// Conservation counters of one environment.
    pub fn counters_for(&self, env: Environment) -> Counters {
        self.delivery[env.index()].counters()
    }

    /// Bytes held by both pipelines (their memory bound is `max_buffer_bytes` each, plus a batch).
    pub fn held_bytes(&self) -> usize {
        self.delivery.iter().map(Delivery::held_bytes).sum()
    }

    /// The snapshot in use, if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.snapshot.as_ref()
    }

    /// Installs a snapshot received now (used by sync answers, and by tests).
    pub fn install_snapshot(&mut self, snapshot: Snapshot, now: Timestamp) {
        let old = self.snapshot.snapshot.replace(snapshot);
        self.snapshot.received_at = Some(now);
        if let Some(old) = old {
            self.retire_snapshot(old, now);
        }
        self.snapshot.consecutive_failures = 0;
    }

    fn snapshot_freshness(&self, now: Timestamp) -> Freshness {
        match self.snapshot.stale_after_ms {
            None if self.snapshot.snapshot.is_some() => Freshness::Fresh,
            None => Freshness::Stale,
            Some(max) => freshness(self.snapshot.received_at, now, max),
        }
    }

    /// Counts one decision; the host metric is updated on the next tick.
    pub(crate) fn count_decision(&mut self, metric: Metric) {
        if let Some(i) = DECISION_METRICS.iter().position(|m| *m == metric) {
            self.pending_decisions[i] += 1;
        }
    }

    /// Pushes counter differences and gauges to host metrics.
    fn publish_metrics(&mut self, host: &mut dyn Host) {
        for (i, m) in DECISION_METRICS.iter().enumerate() {
            let n = std::mem::take(&mut self.pending_decisions[i]);
            if n > 0 {
                host.metric_add(*m, n as i64);
            }
        }
        let c = self.counters();
        let r = self.reported;
        let pairs = [
            (Metric::EventsReceived, c.received, r.received),
            (Metric::EventsDelivered, c.delivered, r.delivered),
            (Metric::EventsDuplicate, c.duplicates, r.duplicates),
            (Metric::EventsRejected, c.rejected, r.rejected),
            (
                Metric::DeadLettersSpilled,
                c.dead_letters_spilled,
                r.dead_letters_spilled,
            ),
            (Metric::Flushes, c.flushes, r.flushes),
            (Metric::FlushFailures, c.flush_failures, r.flush_failures),
        ];
        for (m, now, before) in pairs {
            if now > before {
                host.metric_add(m, (now - before) as i64);
            }
        }
        // Gauges move by differences too, so the host's value is the sum over all workers.
        for (m, now, before) in [
            (Metric::EventsBuffered, c.buffered, r.buffered),
            (Metric::EventsDeadLettered, c.dead_lettered, r.dead_lettered),
        ] {
            if now != before {
                host.metric_add(m, now as i64 - before as i64);
            }
        }
        self.reported = c;
    }

    fn log_spilled(&self, host: &dyn Host, spilled: Vec<crate::delivery::DeadLetter>) {
        for d in spilled {
            host.log(
                LogLevel::Error,
                &format!(
                    "aforo dead letter spilled from memory (store full): id={} reason={} event={}",
                    d.id,
                    d.reason,
                    String::from_utf8_lossy(&d.bytes)
                ),
            );
        }
    }
}
