//! Live usage: the quota counters every decision reads (shared with the component through its
//! `counters` import) and each gateway node's share of them, for the snapshots it syncs. With
//! the embedded backend they are counted here as events are stored; with Redis, by the claims
//! (`redis/claims.rs`), and here only while Redis is unreachable.

use crate::catalog::Catalog;
use crate::counters::{AsBackend, LocalCounters, SharedCounters, SyncCounters};
use crate::redis_state::claims::{source_key, ClaimRequest};
use crate::redis_state::counters::RedisCounters;
use crate::redis_state::{RedisLink, StateError};
use crate::store::NewEvent;
use aforo_core::entitlement::{
    add_usage, counters_of, quota_key, read_counter, stored_count, CounterBackend, CounterTarget,
};
use aforo_core::event::UsageEvent;
use aforo_core::{Environment, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

/// Where the counters live.
pub enum Backend {
    /// In this process (one node).
    Embedded(Arc<LocalCounters>),
    /// In Redis, shared with every agent of the deployment.
    Redis {
        /// The connection.
        link: Arc<RedisLink>,
        /// The counters (with their local fallback).
        counters: Arc<RedisCounters>,
    },
}

/// One quota's usage to report in a snapshot.
pub struct UsageQuery<'a> {
    /// Environment of the customer's usage.
    pub env: Environment,
    /// Customer.
    pub customer: &'a str,
    /// Feature.
    pub feature: &'a str,
    /// The window's start.
    pub window_start: Timestamp,
}

/// Usage per (environment, customer, feature, source) in a window.
#[derive(Default)]
struct BySource {
    map: HashMap<(Environment, String, String, String), (Timestamp, u64)>,
}

/// Usage accounting.
pub struct Usage {
    /// Quota counters and rate-limit buckets (`aforo:q:…`, `aforo:r:…`).
    pub counters: SharedCounters,
    backend: Backend,
    by_source: Mutex<BySource>,
    catalog: Arc<RwLock<Catalog>>,
}

impl Usage {
    /// Usage counted in `backend`.
    pub fn new(catalog: Arc<RwLock<Catalog>>, backend: Backend) -> Usage {
        let counters: SharedCounters = match &backend {
            Backend::Embedded(c) => c.clone(),
            Backend::Redis { counters, .. } => counters.clone(),
        };
        Usage {
            counters,
            backend,
            by_source: Mutex::new(BySource::default()),
            catalog,
        }
    }

    /// The quota leases reservations are taken from, when configured (`max_overshoot`).
    pub fn leases(&self) -> Option<&crate::redis_state::leases::RedisLeases> {
        match &self.backend {
            Backend::Redis { counters, .. } => counters.leases(),
            Backend::Embedded(_) => None,
        }
    }

    /// The Redis link, when usage is shared.
    pub fn redis(&self) -> Option<&Arc<RedisLink>> {
        match &self.backend {
            Backend::Redis { link, .. } => Some(link),
            Backend::Embedded(_) => None,
        }
    }

    /// Counts newly stored events against the quotas of the current windows (embedded
    /// backend; with Redis the claims count them).
    pub fn record(&self, env: Environment, events: &[&NewEvent], now: Timestamp) {
        let Backend::Embedded(local) = &self.backend else {
            return;
        };
        self.count_into(&**local, env, events.iter().map(|n| &n.event), now);
    }

    /// Counts events whose claim could not be made (Redis unreachable) into the local copy
    /// decisions fall back to; Redis counts them when the claim settles.
    pub fn record_unclaimed<'a>(
        &self,
        env: Environment,
        events: impl Iterator<Item = &'a UsageEvent>,
        now: Timestamp,
    ) {
        if let Backend::Redis { counters, .. } = &self.backend {
            self.count_into(counters.local(), env, events, now);
        }
    }

    /// Rebuilds the counters from stored events (at start; Redis keeps its own).
    pub fn rebuild(&self, env: Environment, events: &[UsageEvent], now: Timestamp) {
        if let Backend::Embedded(local) = &self.backend {
            self.count_into(&**local, env, events.iter(), now);
        }
    }

    fn count_into<'a>(
        &self,
        counters: &dyn SyncCounters,
        env: Environment,
        events: impl Iterator<Item = &'a UsageEvent>,
        now: Timestamp,
    ) {
        let Ok(catalog) = self.catalog.read() else {
            return;
        };
        let Ok(mut by_source) = self.by_source.lock() else {
            return;
        };
        let mut backend = AsBackend(counters);
        for e in events {
            record_one(&catalog, &mut backend, &mut by_source, env, e, now);
        }
    }

    /// What an event adds to the quotas of the current windows, for its claim.
    pub fn claim_request(
        &self,
        env: Environment,
        e: &UsageEvent,
        received: Timestamp,
        now: Timestamp,
    ) -> ClaimRequest {
        let counters = match self.catalog.read() {
            Ok(catalog) => counted_in(&catalog, env, e, now).map(|(t, _)| t).collect(),
            Err(_) => Vec::new(),
        };
        ClaimRequest {
            env,
            id: e.id.clone(),
            customer: e.customer_id.clone(),
            received_ns: received.unix_nanos(),
            source: e
                .properties
                .get("source")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            counters,
        }
    }

    /// The usage of many quotas, and the calling node's share of each, in one round trip.
    pub fn used_many(
        &self,
        queries: &[UsageQuery<'_>],
        source: Option<&str>,
    ) -> Result<Vec<(u64, Option<u64>)>, StateError> {
        match &self.backend {
            Backend::Embedded(_) => Ok(queries
                .iter()
                .map(|q| {
                    let used = self.used(q.env, q.customer, q.feature, q.window_start);
                    let mine = source.map(|s| {
                        self.used_by_source(q.env, q.customer, q.feature, s, q.window_start)
                    });
                    (used, mine)
                })
                .collect()),
            Backend::Redis { link, .. } => {
                let keys: Vec<String> = queries
                    .iter()
                    .map(|q| quota_key(q.env, q.customer, q.feature))
                    .collect();
                let redis_keys: Vec<String> = keys
                    .iter()
                    .map(|k| crate::redis_state::counters::redis_key(link, k))
                    .collect();
                let (values, shares) = link.with(|c, _| {
                    let mut cmds = Vec::with_capacity(2 * keys.len());
                    for k in &redis_keys {
                        let mut cmd = redis::cmd("HGET");
                        cmd.arg(k).arg("v");
                        cmds.push(cmd);
                    }
                    if let Some(s) = source {
                        for (k, q) in keys.iter().zip(queries) {
                            let mut cmd = redis::cmd("HGET");
                            cmd.arg(source_key(link, k, q.window_start)).arg(s);
                            cmds.push(cmd);
                        }
                    }
                    let mut all = c.pipeline(cmds)?.into_iter();
                    let values: Vec<Option<Vec<u8>>> = (&mut all)
                        .take(keys.len())
                        .map(redis::from_redis_value)
                        .collect::<Result<_, _>>()?;
                    let shares: Vec<Option<u64>> =
                        all.map(redis::from_redis_value).collect::<Result<_, _>>()?;
                    Ok((values, shares))
                })?;
                Ok(keys
                    .iter()
                    .zip(queries)
                    .enumerate()
                    .map(|(i, (k, q))| {
                        let used = values
                            .get(i)
                            .and_then(|v| v.as_deref())
                            .map(|b| stored_count(k, b, q.window_start))
                            .unwrap_or(0);
                        let mine = source.map(|_| shares.get(i).copied().flatten().unwrap_or(0));
                        (used, mine)
                    })
                    .collect())
            }
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
        read_counter(
            &AsBackend(&*self.counters),
            &quota_key(env, customer, feature),
            window_start,
        )
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

/// The quota counters an event adds to: the core's rule (`counters_of`) over the catalog's
/// features of the event's customer that count its metric.
fn counted_in<'a>(
    catalog: &'a Catalog,
    env: Environment,
    e: &'a UsageEvent,
    now: Timestamp,
) -> impl Iterator<Item = (CounterTarget, &'a str)> + 'a {
    let features = catalog
        .features_for(&e.customer_id, &e.metric)
        .map(|f| (f.feature.as_str(), f.window));
    counters_of(env, e, features, now)
}

fn record_one(
    catalog: &Catalog,
    counters: &mut dyn CounterBackend,
    by_source: &mut BySource,
    env: Environment,
    e: &UsageEvent,
    now: Timestamp,
) {
    let source = e.properties.get("source").and_then(|v| v.as_str());
    for (t, feature) in counted_in(catalog, env, e, now) {
        add_usage(counters, &(t.key, t.window_start), t.units);
        if let Some(s) = source {
            let entry = by_source
                .map
                .entry((
                    env,
                    e.customer_id.clone(),
                    feature.to_string(),
                    s.to_string(),
                ))
                .or_insert((t.window_start, 0));
            if entry.0 != t.window_start {
                *entry = (t.window_start, 0);
            }
            entry.1 = entry.1.saturating_add(t.units);
        }
    }
}
