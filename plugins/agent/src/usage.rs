//! Live usage: the quota counters every decision reads (shared with the component through its
//! `counters` import) and each gateway node's share of them, for the snapshots it syncs.

use crate::catalog::Catalog;
use crate::store::NewEvent;
use aforo_core::entitlement::{add_usage, quota_key, read_counter, CounterBackend, MemoryCounters};
use aforo_core::event::UsageEvent;
use aforo_core::{Environment, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// The counter store behind every decision (in memory; Redis when configured).
pub type SharedCounters = Arc<Mutex<dyn CounterBackend + Send>>;

/// Usage per (environment, customer, feature, source) in a window.
#[derive(Default)]
struct BySource {
    map: HashMap<(Environment, String, String, String), (Timestamp, u64)>,
}

/// Usage accounting.
pub struct Usage {
    /// Quota counters (`aforo:q:<env>:<customer>:<feature>`).
    pub counters: SharedCounters,
    by_source: Mutex<BySource>,
    catalog: Arc<RwLock<Catalog>>,
}

impl Usage {
    /// Usage counted in memory.
    pub fn new(catalog: Arc<RwLock<Catalog>>) -> Usage {
        Usage {
            counters: Arc::new(Mutex::new(MemoryCounters::new())),
            by_source: Mutex::new(BySource::default()),
            catalog,
        }
    }

    /// Counts newly stored events against the quotas of the current windows.
    pub fn record(&self, env: Environment, events: &[&NewEvent], now: Timestamp) {
        let Ok(catalog) = self.catalog.read() else {
            return;
        };
        let Ok(mut counters) = self.counters.lock() else {
            return;
        };
        let Ok(mut by_source) = self.by_source.lock() else {
            return;
        };
        for n in events {
            record_one(&catalog, &mut *counters, &mut by_source, env, &n.event, now);
        }
    }

    /// Rebuilds the counters from stored events (at start).
    pub fn rebuild(&self, env: Environment, events: &[UsageEvent], now: Timestamp) {
        let Ok(catalog) = self.catalog.read() else {
            return;
        };
        let Ok(mut counters) = self.counters.lock() else {
            return;
        };
        let Ok(mut by_source) = self.by_source.lock() else {
            return;
        };
        for e in events {
            record_one(&catalog, &mut *counters, &mut by_source, env, e, now);
        }
    }

    /// The quota usage of a customer's feature in the window starting at `window_start`.
    pub fn used(
        &self,
        env: Environment,
        customer: &str,
        feature: &str,
        window_start: Timestamp,
    ) -> u64 {
        match self.counters.lock() {
            Ok(c) => read_counter(&*c, &quota_key(env, customer, feature), window_start),
            Err(_) => 0,
        }
    }

    /// The part of that usage reported by one gateway node.
    pub fn used_by_source(
        &self,
        env: Environment,
        customer: &str,
        feature: &str,
        source: &str,
        window_start: Timestamp,
    ) -> u64 {
        let Ok(b) = self.by_source.lock() else {
            return 0;
        };
        match b.map.get(&(
            env,
            customer.to_string(),
            feature.to_string(),
            source.to_string(),
        )) {
            Some((ws, n)) if *ws == window_start => *n,
            _ => 0,
        }
    }
}

fn record_one(
    catalog: &Catalog,
    counters: &mut dyn CounterBackend,
    by_source: &mut BySource,
    env: Environment,
    e: &UsageEvent,
    now: Timestamp,
) {
    let units = e.quantity.ceil_units();
    if units == 0 {
        return;
    }
    let source = e.properties.get("source").and_then(|v| v.as_str());
    for f in catalog.features_for(&e.customer_id, &e.metric) {
        let (start, end) = f.window.current(now);
        // Only usage of the current window counts against its quota.
        if e.timestamp < start || e.timestamp >= end {
            continue;
        }
        add_usage(
            counters,
            &(quota_key(env, &e.customer_id, &f.feature), start),
            units,
        );
        if let Some(s) = source {
            let entry = by_source
                .map
                .entry((env, e.customer_id.clone(), f.feature.clone(), s.to_string()))
                .or_insert((start, 0));
            if entry.0 != start {
                *entry = (start, 0);
            }
            entry.1 += units;
        }
    }
}
