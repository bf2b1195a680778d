//! Storing events: every path that accepts events (`/v1/events`, `/v1/meter`, a dead-letter
//! replay) goes through here, so "committed to the store, then claimed in Redis" is written
//! once. The forwarders are woken for what is new.

use crate::app::App;
use crate::reconcile;
use crate::store::{NewEvent, StoreError};
use crate::webhooks;
use aforo_core::event::UsageEvent;
use aforo_core::{Environment, Timestamp};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;

/// Stores events durably and, with the Redis backend, claims them (shared dedup and
/// counters). `true` for each event new to the deployment; `false` for a duplicate, here or on
/// another agent. An event whose claim cannot be made now is kept and claimed later.
pub async fn store_events(
    app: &App,
    env: Environment,
    events: Vec<NewEvent>,
    t: Timestamp,
) -> Result<Vec<bool>, StoreError> {
    let shared: Vec<UsageEvent> = match app.usage.redis() {
        Some(_) => events.iter().map(|n| n.event.clone()).collect(),
        None => Vec::new(),
    };
    let offered: Vec<(String, String)> = events
        .iter()
        .map(|n| (n.event.customer_id.clone(), n.event.metric.clone()))
        .collect();
    let mut flags = app.stores.insert(env, events, t).await?;
    if !shared.is_empty() {
        // Stored now, at `t` (the time in the claim's token).
        let fresh: Vec<(UsageEvent, Timestamp)> = shared
            .into_iter()
            .zip(&flags)
            .filter(|(_, new)| **new)
            .map(|(e, _)| (e, t))
            .collect();
        app.metrics.stored[env.index()].fetch_add(fresh.len() as u64, Ordering::Relaxed);
        let settled = tokio::task::block_in_place(|| reconcile::settle(app, env, &fresh, t));
        if settled.deferred {
            app.usage
                .record_unclaimed(env, fresh.iter().map(|(e, _)| e), t);
        } else if !settled.deferred_ids.is_empty() {
            let later: HashSet<&str> = settled.deferred_ids.iter().map(String::as_str).collect();
            let waiting = fresh
                .iter()
                .map(|(e, _)| e)
                .filter(|e| later.contains(e.id.as_str()));
            app.usage.record_unclaimed(env, waiting, t);
        }
        if !settled.elsewhere.is_empty() {
            let elsewhere: HashSet<&str> = settled.elsewhere.iter().map(String::as_str).collect();
            // Flags follow the input order; `fresh` kept the new ones in that order.
            let mut new_ids = fresh.iter().map(|(e, _)| e.id.as_str());
            for f in flags.iter_mut().filter(|f| **f) {
                if new_ids.next().is_some_and(|id| elsewhere.contains(id)) {
                    *f = false;
                }
            }
        }
    }
    if flags.iter().any(|new| *new) {
        app.wake_forwarders();
        let stored: BTreeSet<(String, String)> = offered
            .into_iter()
            .zip(&flags)
            .filter(|(_, new)| **new)
            .map(|(k, _)| k)
            .collect();
        // Reads counters (Redis with that backend) and may write a notice: off the async workers.
        tokio::task::block_in_place(|| webhooks::after_store(app, env, &stored, t));
    }
    Ok(flags)
}
