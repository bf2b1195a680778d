//! The agent's own counters, rendered as Prometheus text at `/metrics`.

use aforo_core::Environment;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (µs) of the canAccess latency histogram.
const BUCKETS_US: [u64; 8] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000];

/// Counters.
#[derive(Default)]
pub struct Metrics {
    accepted: [AtomicU64; 2],
    duplicates: [AtomicU64; 2],
    rejected: Mutex<BTreeMap<(usize, String), u64>>,
    decisions: Mutex<BTreeMap<String, u64>>,
    latency: [AtomicU64; 9],
    latency_sum_us: AtomicU64,
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

impl Metrics {
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
        let us = took.as_micros() as u64;
        let i = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS_US.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
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
        let mut cumulative = 0;
        for (i, b) in BUCKETS_US.iter().enumerate() {
            cumulative += self.latency[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "aforo_agent_can_access_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        cumulative += self.latency[BUCKETS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "aforo_agent_can_access_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "aforo_agent_can_access_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "aforo_agent_can_access_seconds_count {cumulative}");
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
