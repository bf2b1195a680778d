//! Replaying dead letters: each entry is parsed and validated again. One that passes is stored
//! (or found already stored) and leaves the list; an upstream refusal of an event this agent
//! holds goes upstream again; any other entry stays, with the reason it is still refused.

use crate::app::App;
use crate::ingest;
use crate::store::{DeadLetterOrigin, NewEvent, ReplayOutcome, StoreError};
use aforo_core::event::{encode_v1, parse_wire_event};
use aforo_core::validate::validate_event;
use aforo_core::Environment;
use serde::Serialize;

/// An entry a replay left in place.
#[derive(Clone, Debug, Serialize)]
pub struct StillRefused {
    /// Row number.
    pub seq: i64,
    /// Event id.
    pub id: String,
    /// Why, now (`timestamp_in_future`, `invalid_event`…).
    pub code: String,
}

/// What a replay did; `replayed = stored + duplicates + still_refused`.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    /// Entries taken up.
    pub replayed: usize,
    /// Events now in the store waiting to be forwarded (the re-queued ones included).
    pub stored: u64,
    /// Of those, events this agent already held, sent upstream again.
    pub requeued: u64,
    /// Events found already stored (nothing to do).
    pub duplicates: u64,
    /// Entries that stay.
    pub still_refused: Vec<StillRefused>,
}

/// Replays the dead letters of `env` (all, or the given row numbers). Events are stored first,
/// then the entries removed: a crash in between leaves entries that the next replay finds
/// already stored (duplicates), never an entry gone without its event.
pub async fn replay(
    app: &App,
    env: Environment,
    seqs: Option<&[i64]>,
) -> Result<ReplayReport, StoreError> {
    let t = app.now();
    let taken = app.stores.dead_letters_to_replay(env, seqs)?;
    let mut outcomes: Vec<(i64, ReplayOutcome)> = Vec::with_capacity(taken.len());
    let mut still_refused = Vec::new();
    let (mut fresh, mut fresh_seqs) = (Vec::new(), Vec::new());
    let mut requeued = 0u64;
    for d in &taken {
        // Held here and refused (or never taken) upstream: the stored copy goes upstream again,
        // and the upstream judges it. The body may be in the upstream's format (CloudEvents).
        if d.origin == DeadLetterOrigin::Upstream && app.stores.has_event(env, &d.event_id)? {
            requeued += 1;
            outcomes.push((d.seq, ReplayOutcome::Requeued(d.event_id.clone())));
            continue;
        }
        let event = serde_json::value::RawValue::from_string(d.body.clone())
            .map_err(|e| e.to_string())
            .and_then(|raw| parse_wire_event(&raw).map_err(|e| e.rejection.to_string()));
        let checked = match event {
            Err(why) => Err(("invalid_event".to_string(), why)),
            Ok(e) => match validate_event(&e, t, env) {
                Err(r) => Err((r.code.as_str().to_string(), r.message.clone())),
                Ok(_) => Ok(e),
            },
        };
        match checked {
            Err((code, detail)) => {
                outcomes.push((
                    d.seq,
                    ReplayOutcome::Refused(format!("rejected:{code}"), detail),
                ));
                still_refused.push(StillRefused {
                    seq: d.seq,
                    id: d.event_id.clone(),
                    code,
                });
            }
            Ok(e) => {
                fresh_seqs.push(d.seq);
                fresh.push(NewEvent {
                    body: String::from_utf8_lossy(&encode_v1(&e)).into_owned(),
                    event: e,
                    late: false,
                });
            }
        }
    }
    let flags = ingest::store_events(app, env, fresh, t).await?;
    let stored_now = flags.iter().filter(|n| **n).count() as u64;
    let duplicates = flags.len() as u64 - stored_now;
    outcomes.extend(fresh_seqs.into_iter().map(|s| (s, ReplayOutcome::Stored)));
    app.stores.settle_replay(env, &outcomes)?;
    app.metrics.events_stored(env, stored_now, duplicates);
    if requeued > 0 {
        app.wake_forwarders();
    }
    Ok(ReplayReport {
        replayed: taken.len(),
        stored: stored_now + requeued,
        requeued,
        duplicates,
        still_refused,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::clock::test_clock::FixedClock;
    use crate::clock::SharedClock;
    use crate::component::PolicyHost;
    use crate::counters::LocalCounters;
    use crate::store::{DeadLetter, Stores};
    use crate::usage::{Backend, Usage};
    use aforo_core::Timestamp;
    use std::sync::{Arc, RwLock};

    /// An agent's application on a temporary directory, with a clock the test moves.
    fn app(clock: Arc<FixedClock>) -> (App, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "aforo-replay-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let config = crate::config::parse(
            None,
            &|_| None,
            &[("--data-dir".into(), dir.display().to_string())],
        )
        .unwrap();
        let catalog = Arc::new(RwLock::new(Catalog::empty()));
        let counters = Arc::new(LocalCounters::default());
        let usage = Arc::new(Usage::new(catalog.clone(), Backend::Embedded(counters)));
        let u = usage.clone();
        let c: SharedClock = clock.clone();
        let stores = Stores::open(
            &dir,
            &Environment::ALL,
            false,
            Arc::new(move |env, events| u.record(env, events, c.now())),
        )
        .unwrap();
        let policy = PolicyHost::load(
            &aforo_host_tests::artifacts::policy_component().unwrap(),
            1,
            100_000_000,
            100,
            usage.counters.clone(),
        )
        .unwrap();
        let app = App::new(config, stores, usage, catalog, policy, clock, None);
        (app, dir)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_event_refused_for_its_timestamp_is_stored_once_its_time_has_come() {
        let t0 = Timestamp::from_unix_secs(1_773_576_000); // 2026-03-15T12:00:00Z
        let clock = Arc::new(FixedClock::at(t0));
        let (app, dir) = app(clock.clone());
        // An hour ahead of the agent's clock: refused on arrival, kept whole.
        let event = format!(
            r#"{{"id":"later","customer_id":"acme","metric":"api_calls","quantity":"2","timestamp":"{}","product_id":"p","environment":"sandbox"}}"#,
            t0.plus_millis(3_600_000).to_rfc3339()
        );
        app.stores
            .dead_letter(
                Environment::Sandbox,
                &DeadLetter {
                    event_id: "later",
                    origin: crate::store::DeadLetterOrigin::Refused,
                    reason: "rejected:timestamp_in_future",
                    detail: "",
                    body: &event,
                },
                t0,
            )
            .unwrap();
        let r = replay(&app, Environment::Sandbox, None).await.unwrap();
        assert_eq!((r.replayed, r.stored, r.still_refused.len()), (1, 0, 1));
        assert_eq!(r.still_refused[0].code, "timestamp_in_future");
        // 56 minutes later it is less than 5 minutes ahead: stored, once.
        clock.advance_ms(56 * 60_000);
        let r = replay(&app, Environment::Sandbox, None).await.unwrap();
        assert_eq!((r.replayed, r.stored, r.duplicates), (1, 1, 0), "{r:?}");
        assert_eq!(app.stores.count(Environment::Sandbox).unwrap(), 1);
        let r = replay(&app, Environment::Sandbox, None).await.unwrap();
        assert_eq!(r.replayed, 0, "the entry left the list");
        drop(app);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
