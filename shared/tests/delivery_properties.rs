//! Property tests of the delivery machine against a simulated ingest that dedups by id.
//!
//! After any sequence of enqueue, flush, success, partial rejection, 5xx, timeout, 429, 413,
//! lost acknowledgement and clock advance:
//! - `received = delivered + rejected + dead_lettered + buffered` holds after every step;
//! - memory stays within the configured bounds;
//! - once the ingest recovers, every event ends up stored exactly once, rejected, or (past the
//!   memory bound) written to the log as a spilled dead letter; no event id is stored twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_core::delivery::{CallOutcome, Delivery, DeliveryConfig, Enqueued};
use aforo_core::event::IngestFormat;
use aforo_core::ingest::{IngestAnswer, RejectedEvent, MAX_BATCH_BYTES};
use aforo_core::time::Timestamp;
use proptest::prelude::*;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Debug)]
enum Op {
    Enqueue(u8),
    Advance(u16),
    ForceFlush,
    Succeed,
    PartialReject(u8),
    ServerError,
    Timeout,
    TooMany(u8),
    TooLarge,
    LostAck,
    Unauthorized,
    Replay,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..20).prop_map(Op::Enqueue),
        3 => (1u16..3000).prop_map(Op::Advance),
        1 => Just(Op::ForceFlush),
        4 => Just(Op::Succeed),
        1 => (0u8..8).prop_map(Op::PartialReject),
        2 => Just(Op::ServerError),
        2 => Just(Op::Timeout),
        1 => (0u8..4).prop_map(Op::TooMany),
        1 => Just(Op::TooLarge),
        1 => Just(Op::LostAck),
        1 => Just(Op::Unauthorized),
        1 => Just(Op::Replay),
    ]
}

fn cfg() -> DeliveryConfig {
    DeliveryConfig {
        batch_size: 7,
        flush_interval_ms: 1_000,
        max_buffer_events: 25,
        max_buffer_bytes: 2_000,
        max_dead_letters: 10_000,
        initial_backoff_ms: 100,
        max_backoff_ms: 2_000,
        max_retry_time_ms: 8_000,
        request_timeout_ms: 1_000,
        format: IngestFormat::Aforo,
    }
}

struct Ingest {
    stored: HashSet<String>,
    store_count: HashMap<String, u32>,
    rejected_for_good: HashSet<String>,
}

impl Ingest {
    fn ids(body: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Stores what is new, rejects `reject_every`-th event, answers as the contract says.
    fn accept(&mut self, body: &[u8], reject_every: u8) -> IngestAnswer {
        let mut a = IngestAnswer::default();
        for (i, id) in Self::ids(body).into_iter().enumerate() {
            if self.stored.contains(&id) {
                a.duplicates += 1;
            } else if self.rejected_for_good.contains(&id)
                || (reject_every > 0 && i % reject_every as usize == 0)
            {
                self.rejected_for_good.insert(id.clone());
                a.rejected.push(RejectedEvent {
                    id,
                    code: "invalid_field".into(),
                    field: None,
                    message: None,
                });
            } else {
                self.stored.insert(id.clone());
                *self.store_count.entry(id).or_default() += 1;
                a.accepted += 1;
            }
        }
        a
    }
}

fn answered(status: u16, body: Vec<u8>, retry: Option<u64>) -> CallOutcome {
    CallOutcome::Answered {
        status,
        retry_after_secs: retry,
        body,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn conservation_exactly_once_and_bounded_memory(ops in proptest::collection::vec(op(), 1..120), seed in any::<u64>()) {
        let c = cfg();
        let bound = c.max_buffer_bytes * 2 + MAX_BATCH_BYTES;
        let mut d = Delivery::new(c, seed);
        let mut ingest = Ingest { stored: HashSet::new(), store_count: HashMap::new(), rejected_for_good: HashSet::new() };
        let mut now = Timestamp::from_unix_secs(1_800_000_000);
        let mut next_id = 0u32;
        let mut in_flight: Option<Vec<u8>> = None;
        let mut spilled: HashSet<String> = HashSet::new();
        for op in ops {
            if in_flight.is_none() {
                in_flight = d.poll(now, false).map(|b| b.body);
            }
            match op {
                Op::Enqueue(n) => {
                    for _ in 0..n {
                        next_id += 1;
                        let id = format!("e{next_id}");
                        let bytes = format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}", "x".repeat((next_id % 40) as usize)).into_bytes();
                        if let Enqueued::Overflow { spilled: s } = d.enqueue(id, bytes, now) {
                            spilled.extend(s.into_iter().filter(|x| !x.reason.is_rejection()).map(|x| x.id));
                        }
                    }
                }
                Op::Advance(ms) => now = now.plus_millis(ms as i64),
                Op::ForceFlush => {
                    if in_flight.is_none() {
                        in_flight = d.poll(now, true).map(|b| b.body);
                    }
                }
                Op::Replay => { d.replay_dead_letters(5, now); }
                respond => {
                    if let Some(body) = in_flight.take() {
                        let outcome = match respond {
                            Op::Succeed => answered(202, ingest.accept(&body, 0).to_json(), None),
                            Op::PartialReject(k) => answered(202, ingest.accept(&body, k).to_json(), None),
                            Op::ServerError => answered(503, vec![], None),
                            Op::Timeout => CallOutcome::Failed,
                            Op::TooMany(s) => answered(429, vec![], Some(s as u64)),
                            // A real ingest only refuses size for a batch, never for one small event.
                            Op::TooLarge if Ingest::ids(&body).len() > 1 => answered(413, vec![], None),
                            Op::TooLarge => answered(202, ingest.accept(&body, 0).to_json(), None),
                            Op::LostAck => { ingest.accept(&body, 0); CallOutcome::Failed }
                            _ => answered(401, vec![], None),
                        };
                        spilled.extend(d.on_response(outcome, now).spilled.into_iter().filter(|x| !x.reason.is_rejection()).map(|x| x.id));
                    }
                }
            }
            let counters = d.counters();
            prop_assert!(counters.balanced(), "{:?}", counters);
            prop_assert!(d.held_bytes() <= bound, "held {} > bound {}", d.held_bytes(), bound);
        }
        // The ingest recovers: drain everything with successes.
        for _ in 0..10_000 {
            if in_flight.is_none() {
                d.replay_dead_letters(usize::MAX, now);
                in_flight = d.poll(now, true).map(|b| b.body);
            }
            match in_flight.take() {
                Some(body) => { d.on_response(answered(202, ingest.accept(&body, 0).to_json(), None), now); }
                None if d.is_idle() && d.counters().dead_lettered == 0 => break,
                None => now = now.plus_millis(1_000),
            }
        }
        let counters = d.counters();
        prop_assert!(counters.balanced());
        prop_assert_eq!(counters.buffered, 0);
        // What remains dead-lettered is only what was spilled to the log (memory bound reached).
        prop_assert_eq!(counters.dead_lettered, counters.dead_letters_spilled, "{:?}", counters);
        prop_assert_eq!(counters.received, next_id as u64);
        prop_assert_eq!(spilled.len() as u64, counters.dead_letters_spilled);
        // Every event is stored, rejected for good, or spilled to the log (a spilled event may
        // also be stored, when its acknowledgement was lost); none is stored twice.
        for i in 1..=next_id {
            let id = format!("e{i}");
            prop_assert!(ingest.stored.contains(&id) || ingest.rejected_for_good.contains(&id) || spilled.contains(&id), "{} lost", id);
        }
        prop_assert!(ingest.store_count.values().all(|&n| n == 1));
        prop_assert_eq!(counters.delivered, ingest.stored.iter().filter(|id| !spilled.contains(*id)).count() as u64);
        prop_assert_eq!(counters.rejected, ingest.rejected_for_good.len() as u64);
    }
}
