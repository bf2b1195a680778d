//! Accepting a parsed batch: validation relative to the receiver's clock and key, then dedup.

use super::request::ParsedBatch;
use super::response::{FlaggedEvent, IngestAnswer, RejectedEvent};
use crate::dedup::{DedupWindow, Seen};
use crate::environment::Environment;
use crate::event::UsageEvent;
use crate::time::Timestamp;
use crate::validate::{validate_event, TimestampFlag};

/// Where a receiver remembers ids (memory window, SQLite, Redis…), per environment.
pub trait IdStore {
    /// Records the id in `env`'s namespace and says whether it was new.
    fn check_and_insert(&mut self, env: Environment, id: &str, now: Timestamp) -> Seen;
}

/// Two in-memory windows, one per environment, so ids never collide across environments.
impl IdStore for [DedupWindow; 2] {
    fn check_and_insert(&mut self, env: Environment, id: &str, now: Timestamp) -> Seen {
        self[env.index()].check_and_insert(id, now)
    }
}

/// The result of accepting a batch: the answer to send and the events to store.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// What the sender is told.
    pub answer: IngestAnswer,
    /// New events, in order, with their `late` flag.
    pub accepted: Vec<(UsageEvent, Option<TimestampFlag>)>,
}

/// Validates every event against `now` and the key's environment, dedups the valid ones in
/// `store`, and builds the per-event answer. Invalid events are never recorded as seen, so a
/// corrected event with the same id can be re-sent.
pub fn accept_batch(
    parsed: ParsedBatch,
    key_environment: Environment,
    now: Timestamp,
    store: &mut dyn IdStore,
) -> BatchOutcome {
    let mut out = BatchOutcome::default();
    for item in parsed {
        let event = match item {
            Ok(e) => e,
            Err(err) => {
                out.answer.rejected.push(RejectedEvent {
                    id: err.id.unwrap_or_default(),
                    code: err.rejection.code.as_str().to_string(),
                    field: err.rejection.field.map(str::to_string),
                    message: Some(err.rejection.message),
                });
                continue;
            }
        };
        match validate_event(&event, now, key_environment) {
            Err(r) => out.answer.rejected.push(RejectedEvent {
                id: event.id,
                code: r.code.as_str().to_string(),
                field: r.field.map(str::to_string),
                message: Some(r.message),
            }),
            Ok(flag) => match store.check_and_insert(event.environment, &event.id, now) {
                Seen::Duplicate => out.answer.duplicates += 1,
                Seen::New => {
                    out.answer.accepted += 1;
                    if let Some(f) = flag {
                        out.answer.flagged.push(FlaggedEvent {
                            id: event.id.clone(),
                            flag: f.as_str().to_string(),
                        });
                    }
                    out.accepted.push((event, flag));
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse_batch;
    use crate::time::{parse_rfc3339, NANOS_PER_DAY};

    fn windows() -> [DedupWindow; 2] {
        [
            DedupWindow::new(1000, 90 * NANOS_PER_DAY),
            DedupWindow::new(1000, 90 * NANOS_PER_DAY),
        ]
    }

    fn ev(id: &str, ts: &str, env: &str) -> String {
        format!(
            r#"{{"id":"{id}","customer_id":"c","metric":"m","quantity":"1","timestamp":"{ts}","product_id":"p","environment":"{env}"}}"#
        )
    }

    #[test]
    fn per_event_outcomes_as_the_contract_shows() {
        let now = parse_rfc3339("2026-03-15T12:00:00Z").unwrap();
        let body = format!(
            r#"{{"events":[{},{},{},{},{}]}}"#,
            ev("a", "2026-03-15T11:59:00Z", "sandbox"),
            ev("a", "2026-03-15T11:59:00Z", "sandbox"),
            ev("f", "2026-03-15T12:06:00Z", "sandbox"),
            ev("l", "2026-03-13T12:00:00Z", "sandbox"),
            ev("x", "2026-03-15T12:00:00Z", "production"),
        );
        let mut store = windows();
        let out = accept_batch(
            parse_batch(body.as_bytes()).unwrap(),
            Environment::Sandbox,
            now,
            &mut store,
        );
        assert_eq!(out.answer.accepted, 2);
        assert_eq!(out.answer.duplicates, 1);
        let codes: Vec<(&str, &str)> = out
            .answer
            .rejected
            .iter()
            .map(|r| (r.id.as_str(), r.code.as_str()))
            .collect();
        assert_eq!(
            codes,
            vec![("f", "timestamp_in_future"), ("x", "environment_mismatch")]
        );
        assert_eq!(
            out.answer.flagged,
            vec![FlaggedEvent {
                id: "l".into(),
                flag: "late".into()
            }]
        );
        assert_eq!(out.accepted.len(), 2);

        // The same batch again: everything valid is now a duplicate.
        let again = accept_batch(
            parse_batch(body.as_bytes()).unwrap(),
            Environment::Sandbox,
            now,
            &mut store,
        );
        assert_eq!((again.answer.accepted, again.answer.duplicates), (0, 3));
    }

    #[test]
    fn environments_have_separate_namespaces() {
        let now = parse_rfc3339("2026-03-15T12:00:00Z").unwrap();
        let mut store = windows();
        let s = format!(
            r#"{{"events":[{}]}}"#,
            ev("same", "2026-03-15T12:00:00Z", "sandbox")
        );
        let p = format!(
            r#"{{"events":[{}]}}"#,
            ev("same", "2026-03-15T12:00:00Z", "production")
        );
        assert_eq!(
            accept_batch(
                parse_batch(s.as_bytes()).unwrap(),
                Environment::Sandbox,
                now,
                &mut store
            )
            .answer
            .accepted,
            1
        );
        assert_eq!(
            accept_batch(
                parse_batch(p.as_bytes()).unwrap(),
                Environment::Production,
                now,
                &mut store
            )
            .answer
            .accepted,
            1
        );
    }
}
