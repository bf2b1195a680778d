//! The agent's own counters, rendered as Prometheus text at `/metrics`.

use crate::histogram::Histogram;
use aforo_core::Environment;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (µs) of the canAccess latency histogram.
const BUCKETS_US: &[u64] = &[100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000];

/// Upper bounds (µs) of the ingest latency histogram (a request answers after its fsync).
const INGEST_BUCKETS_US: &[u64] = &[
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Counters.
pub struct Metrics {
    accepted: [AtomicU64; 2],
    duplicates: [AtomicU64; 2],
    rejected: Mutex<BTreeMap<(usize, String), u64>>,
    decisions: Mutex<BTreeMap<String, u64>>,
    latency: Histogram,
    /// Ingest requests (`/v1/events`, `/v1/meter`) answered, per environment.
    ingest: [Histogram; 2],
    /// Forwarding counters per environment: delivered, dead-lettered, buffered.
    pub forwarded: [AtomicU64; 2],
    /// Events dead-lettered by forwarding.
    pub forward_dead: [AtomicU64; 2],
    /// Events held by the forwarder.
    pub forward_buffered: [AtomicU64; 2],
    /// Redis backend: events committed to this agent's store, before their claim.
    pub stored: [AtomicU64; 2],
    /// Claims settled: counted now, found made earlier by this node, made by another agent.
    claims: [[AtomicU64; 3]; 2],
    /// Unsettled events found at start.
    pub claims_resumed: [AtomicU64; 2],
    /// Events waiting for their claim (counted in the store at each scrape).
    pub claims_pending: [AtomicU64; 2],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            accepted: Default::default(),
            duplicates: Default::default(),
            rejected: Default::default(),
            decisions: Default::default(),
            latency: Histogram::new(BUCKETS_US),
            ingest: [
                Histogram::new(INGEST_BUCKETS_US),
                Histogram::new(INGEST_BUCKETS_US),
            ],
            forwarded: Default::default(),
            forward_dead: Default::default(),
            forward_buffered: Default::default(),
            stored: Default::default(),
            claims: Default::default(),
            claims_resumed: Default::default(),
            claims_pending: Default::default(),
        }
    }
}

impl Metrics {
    /// An ingest request answered in `took`.
    pub fn ingest(&self, env: Environment, took: Duration) {
        self.ingest[env.index()].observe(took);
    }

    /// Ingest requests of `env` answered so far, and the bound of their p95 (ms) with whether
    /// it is past the last bucket (at least that much).
    pub fn ingest_p95_ms(&self, env: Environment) -> (u64, Option<(f64, bool)>) {
        let h = &self.ingest[env.index()];
        (h.count(), h.quantile_ms(0.95))
    }

    /// Events stored and duplicates seen.
    pub fn events_stored(&self, env: Environment, accepted: u64, duplicates: u64) {
        self.accepted[env.index()].fetch_add(accepted, Ordering::Relaxed);
        self.duplicates[env.index()].fetch_add(duplicates, Ordering::Relaxed);
    }

    /// Claims settled in Redis.
    pub fn claims_settled(&self, env: Environment, counted: u64, replayed: u64, elsewhere: u64) {
        let c = &self.claims[env.index()];
        c[0].fetch_add(counted, Ordering::Relaxed);
        c[1].fetch_add(replayed, Ordering::Relaxed);
        c[2].fetch_add(elsewhere, Ordering::Relaxed);
    }

    /// An event refused.
    pub fn event_rejected(&self, env: Environment, code: &str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry((env.index(), code.to_string())).or_default() += 1;
        }
    }

    /// A decision and its latency.
    pub fn decision(&self, code: &str, took: Duration) {
        if let Ok(mut m) = self.decisions.lock() {
            *m.entry(code.to_string()).or_default() += 1;
        }
        self.latency.observe(took);
    }

    /// Prometheus exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        per_env(
            &mut out,
            "aforo_agent_events_accepted_total",
            "counter",
            &self.accepted,
        );
        per_env(
            &mut out,
            "aforo_agent_events_duplicate_total",
            "counter",
            &self.duplicates,
        );
        let _ = writeln!(out, "# TYPE aforo_agent_events_rejected_total counter");
        if let Ok(m) = self.rejected.lock() {
            for ((env, code), n) in m.iter() {
                let env = Environment::ALL[*env];
                let _ = writeln!(out, "aforo_agent_events_rejected_total{{environment=\"{env}\",code=\"{code}\"}} {n}");
            }
        }
        per_env(
            &mut out,
            "aforo_agent_forwarded_total",
            "counter",
            &self.forwarded,
        );
        per_env(
            &mut out,
            "aforo_agent_forward_dead_lettered_total",
            "counter",
            &self.forward_dead,
        );
        per_env(
            &mut out,
            "aforo_agent_forward_buffered",
            "gauge",
            &self.forward_buffered,
        );
        // Redis backend: stored + resumed = counted + replayed + duplicate + pending.
        per_env(
            &mut out,
            "aforo_agent_events_stored_total",
            "counter",
            &self.stored,
        );
        let _ = writeln!(out, "# TYPE aforo_agent_claims_total counter");
        for env in Environment::ALL {
            for (k, result) in ["counted", "replayed", "duplicate"].iter().enumerate() {
                let _ = writeln!(
                    out,
                    "aforo_agent_claims_total{{environment=\"{env}\",result=\"{result}\"}} {}",
                    self.claims[env.index()][k].load(Ordering::Relaxed)
                );
            }
        }
        per_env(
            &mut out,
            "aforo_agent_claims_resumed_total",
            "counter",
            &self.claims_resumed,
        );
        per_env(
            &mut out,
            "aforo_agent_claims_pending",
            "gauge",
            &self.claims_pending,
        );
        let _ = writeln!(out, "# TYPE aforo_agent_decisions_total counter");
        if let Ok(m) = self.decisions.lock() {
            for (code, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "aforo_agent_decisions_total{{decision=\"{code}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# TYPE aforo_agent_can_access_seconds histogram");
        self.latency
            .render(&mut out, "aforo_agent_can_access_seconds", "");
        let _ = writeln!(out, "# TYPE aforo_agent_ingest_seconds histogram");
        for env in Environment::ALL {
            self.ingest[env.index()].render(
                &mut out,
                "aforo_agent_ingest_seconds",
                &format!("environment=\"{env}\""),
            );
        }
        out
    }
}

/// One metric per environment, with its TYPE line.
fn per_env(out: &mut String, name: &str, kind: &str, values: &[AtomicU64; 2]) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for env in Environment::ALL {
        let _ = writeln!(
            out,
            "{name}{{environment=\"{env}\"}} {}",
            values[env.index()].load(Ordering::Relaxed)
        );
    }
}
