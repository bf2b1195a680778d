//! Settling events' claims in Redis. Every event is first committed to this agent's store
//! (unclaimed), then claimed; an event whose claim could not be made (Redis unreachable, the
//! agent killed in between) stays in the store and is claimed here when Redis answers again,
//! oldest first. Nothing is lost (the store holds it), nothing is counted twice (the claim is
//! idempotent per id and remembers which agent made it).

use crate::app::App;
use crate::redis_state::claims::{claim, Claim};
use aforo_core::event::{parse_wire_event, UsageEvent};
use aforo_core::{Environment, Timestamp};
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Events settled per round trip.
const BATCH: usize = 500;

/// Age of an unclaimed event before the reconciler takes it over from the request that
/// stored it.
const GRACE_MS: u64 = 2_000;

/// What settling a batch found.
#[derive(Debug, Default)]
pub struct Settled {
    /// Ids found claimed by another agent (duplicates, dropped here).
    pub elsewhere: Vec<String>,
    /// Whether the claims were left for later (Redis unreachable).
    pub deferred: bool,
    /// Ids left for later when the others were settled (a cluster's node unreachable).
    pub deferred_ids: Vec<String>,
}

/// Claims freshly stored events (or replays unsettled ones) and settles them in the store.
/// `events` are (event, when this agent stored it).
pub fn settle(
    app: &App,
    env: Environment,
    events: &[(UsageEvent, Timestamp)],
    t: Timestamp,
) -> Settled {
    let Some(link) = app.usage.redis() else {
        return Settled::default();
    };
    if events.is_empty() {
        return Settled::default();
    }
    let requests: Vec<_> = events
        .iter()
        .map(|(e, received)| app.usage.claim_request(env, e, *received, t))
        .collect();
    let days = app.config.redis_dedup_days();
    let dedup_ms = [
        days.min(Environment::Sandbox.retention_days() as u64) * 86_400_000,
        days * 86_400_000,
    ];
    match claim(link, &requests, dedup_ms) {
        Ok(claims) => {
            let ids: Vec<(&str, bool)> = events
                .iter()
                .zip(&claims)
                .filter(|(_, c)| **c != Claim::Deferred)
                .map(|((e, _), c)| (e.id.as_str(), *c != Claim::Elsewhere))
                .collect();
            let deferred_ids: Vec<String> = events
                .iter()
                .zip(&claims)
                .filter(|(_, c)| **c == Claim::Deferred)
                .map(|((e, _), _)| e.id.clone())
                .collect();
            let changed = match app.stores.settle_claims(env, &ids) {
                Ok(c) => c,
                Err(e) => {
                    // The claims stand in Redis; the rows stay unclaimed and are settled again
                    // (found as this node's) on the next round.
                    eprintln!("aforo-agent: settling claims: {e}");
                    return Settled {
                        elsewhere: Vec::new(),
                        deferred: true,
                        deferred_ids: Vec::new(),
                    };
                }
            };
            // Metrics count the rows this call settled, so a row settled by both the ingest
            // path and the reconciler is counted once.
            let mut n = [0u64; 3];
            let mut elsewhere = Vec::new();
            let settled = events
                .iter()
                .zip(&claims)
                .filter(|(_, c)| **c != Claim::Deferred);
            for (((e, _), c), changed) in settled.zip(changed) {
                if *c == Claim::Elsewhere {
                    elsewhere.push(e.id.clone());
                }
                if changed {
                    n[*c as usize] += 1;
                }
            }
            app.metrics.claims_settled(env, n[0], n[1], n[2]);
            if n[0] + n[1] > 0 {
                app.wake_forwarders();
            }
            Settled {
                elsewhere,
                deferred: false,
                deferred_ids,
            }
        }
        Err(e) => {
            if !link.is_down() && log_due(app) {
                eprintln!("aforo-agent: claiming events: {e}; they stay stored and are claimed later (logged at most once a minute)");
            }
            Settled {
                elsewhere: Vec::new(),
                deferred: true,
                deferred_ids: Vec::new(),
            }
        }
    }
}

/// Whether a failed claim may be logged now (once a minute: a Redis refusing every claim, such
/// as an ACL that does not cover the key prefix, must not flood the log).
fn log_due(app: &App) -> bool {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let t = app.now().unix_nanos();
    let last = LAST.load(Ordering::Relaxed);
    t - last >= 60_000_000_000
        && LAST
            .compare_exchange(last, t, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Stored rows back to (event, when it was stored); their bodies are the canonical encoding
/// the store wrote, so a row that does not parse is a damaged store, and is logged.
fn parse_rows(rows: Vec<(i64, Timestamp, String)>) -> Vec<(UsageEvent, Timestamp)> {
    rows.into_iter()
        .filter_map(|(seq, received, body)| {
            let parsed = RawValue::from_string(body)
                .ok()
                .and_then(|raw| parse_wire_event(&raw).ok());
            if parsed.is_none() {
                eprintln!("aforo-agent: stored event row {seq} does not parse; left unclaimed");
            }
            parsed.map(|e| (e, received))
        })
        .collect()
}

/// Settles everything left unclaimed in `env`, oldest first.
fn drain(app: &App, env: Environment) {
    // Rows younger than the grace period are being settled by the request that stored them.
    let before = app.now().plus_nanos(-(GRACE_MS as i64) * 1_000_000);
    let mut after = 0;
    loop {
        let rows = match app.stores.unclaimed(env, before, after, BATCH) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("aforo-agent: reconciling {env}: {e}");
                return;
            }
        };
        let Some((last, _, _)) = rows.last() else {
            break;
        };
        after = *last;
        let n = rows.len();
        let events = parse_rows(rows);
        let deferred = settle(app, env, &events, app.now()).deferred;
        // One primary down: nothing can be claimed now. In a cluster a page can be all of one
        // failing slot's customers while the others' events wait behind it: keep paging.
        let blocked = app
            .usage
            .redis()
            .is_none_or(|l| !l.is_cluster() || l.is_down());
        if (deferred && blocked) || n < BATCH {
            break;
        }
    }
}

/// Starts the reconciler (Redis backend only): it settles unclaimed events every 500 ms, and
/// counts what a previous run left unsettled into the local fallback at start.
pub fn start(app: Arc<App>) {
    if app.usage.redis().is_none() {
        return;
    }
    let t = app.now();
    for env in app.config.environments.clone() {
        let left = app.stores.count_unclaimed(env).unwrap_or(0);
        if left > 0 {
            eprintln!("aforo-agent: {left} {env} events from an earlier run wait for their claim in Redis");
            app.metrics.claims_resumed[env.index()].fetch_add(left as u64, Ordering::Relaxed);
            // Counted into the local fallback, a page at a time (an outage can leave many).
            let mut after = 0;
            while let Ok(rows) = app.stores.unclaimed(env, t, after, BATCH) {
                let Some((last, _, _)) = rows.last() else {
                    break;
                };
                after = *last;
                let events = parse_rows(rows);
                app.usage
                    .record_unclaimed(env, events.iter().map(|(e, _)| e), t);
            }
        }
    }
    let spawned = std::thread::Builder::new()
        .name("aforo-reconcile".into())
        .spawn(move || loop {
            for env in app.config.environments.clone() {
                drain(&app, env);
            }
            std::thread::sleep(Duration::from_millis(500));
        });
    if let Err(e) = spawned {
        eprintln!("aforo-agent: cannot start the reconciler: {e}");
    }
}
