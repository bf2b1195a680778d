//! The state machine of one environment's delivery pipeline (one batch in flight at a time).

use super::backoff::{backoff_delay_ms, SplitMix64};
use super::counters::Counters;
use super::dead_letter::{DeadLetter, DeadLetterReason, DeadLetterStore};
use crate::event::IngestFormat;
use crate::ingest::{IngestAnswer, MAX_BATCH_BYTES};
use crate::time::Timestamp;
use std::collections::{HashMap, VecDeque};

/// Limits and timings of a pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Events per request.
    pub batch_size: usize,
    /// Longest wait of the oldest buffered event.
    pub flush_interval_ms: u64,
    /// Events held before overflow.
    pub max_buffer_events: usize,
    /// Bytes held before overflow (also bounds the dead-letter store).
    pub max_buffer_bytes: usize,
    /// Dead letters held in memory.
    pub max_dead_letters: usize,
    /// First retry delay.
    pub initial_backoff_ms: u64,
    /// Longest retry delay.
    pub max_backoff_ms: u64,
    /// How long a batch is retried before it is dead-lettered.
    pub max_retry_time_ms: u64,
    /// The host's timeout of one request (the machine gives up waiting a second later).
    pub request_timeout_ms: u64,
    /// Wire format of the batches.
    pub format: IngestFormat,
}

impl Default for DeliveryConfig {
    /// The filter's documented defaults (its option table).
    fn default() -> Self {
        use crate::config::options as o;
        DeliveryConfig {
            batch_size: o::BATCH_SIZE.default_integer() as usize,
            flush_interval_ms: o::FLUSH_INTERVAL_MS.default_integer(),
            max_buffer_events: o::MAX_BUFFER_EVENTS.default_integer() as usize,
            max_buffer_bytes: o::MAX_BUFFER_BYTES.default_integer() as usize,
            max_dead_letters: o::MAX_DEAD_LETTERS.default_integer() as usize,
            initial_backoff_ms: o::INITIAL_BACKOFF_MS.default_integer(),
            max_backoff_ms: o::MAX_BACKOFF_MS.default_integer(),
            max_retry_time_ms: o::MAX_RETRY_TIME_MS.default_integer(),
            request_timeout_ms: o::REQUEST_TIMEOUT_MS.default_integer(),
            format: IngestFormat::Aforo,
        }
    }
}

#[derive(Debug)]
struct Queued {
    id: String,
    bytes: Vec<u8>,
    enqueued_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    InFlight { sent_at: Timestamp },
    Waiting { next_at: Timestamp },
}

#[derive(Debug)]
struct Pending {
    events: Vec<Queued>,
    first_attempt_at: Timestamp,
    attempts: u32,
    stage: Stage,
}

/// What `enqueue` did with an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// Buffered for the next batch.
    Queued,
    /// The buffer was full: dead-lettered (and maybe an older dead letter spilled to the log).
    Overflow {
        /// Dead letters pushed out of the full store, to be written to the log.
        spilled: Vec<DeadLetter>,
    },
}

/// A request body ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The encoded batch.
    pub body: Vec<u8>,
    /// Events in it.
    pub events: usize,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Ids of the events in it, in order.
    pub ids: Vec<String>,
}

/// What happened to an outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The ingest answered.
    Answered {
        /// HTTP status.
        status: u16,
        /// `Retry-After` in seconds, if sent.
        retry_after_secs: Option<u64>,
        /// Response body.
        body: Vec<u8>,
    },
    /// No answer: timeout, reset, unknown upstream.
    Failed,
}

/// What one response did, for logs and metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Events acknowledged.
    pub delivered: u64,
    /// Of those, duplicates.
    pub duplicates: u64,
    /// Events refused by the ingest: (id, code).
    pub rejected: Vec<(String, String)>,
    /// Events newly dead-lettered: (id, reason).
    pub dead_lettered: Vec<(String, DeadLetterReason)>,
    /// Dead letters pushed out of memory: the caller must write them to the log.
    pub spilled: Vec<DeadLetter>,
    /// When the batch will be retried, if it will.
    pub retry_in_ms: Option<u64>,
    /// Dead letters moved back to the buffer because the ingest works again.
    pub reoffered: u64,
}

/// One environment's pipeline.
#[derive(Debug)]
pub struct Delivery {
    cfg: DeliveryConfig,
    buffer: VecDeque<Queued>,
    buffer_bytes: usize,
    pending: Option<Pending>,
    dead: DeadLetterStore,
    counters: Counters,
    rng: SplitMix64,
}

impl Delivery {
    /// A pipeline with its limits and a seed for retry jitter.
    pub fn new(cfg: DeliveryConfig, seed: u64) -> Self {
        let dead = DeadLetterStore::with_limits(cfg.max_dead_letters, cfg.max_buffer_bytes);
        Delivery {
            cfg,
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            pending: None,
            dead,
            counters: Counters::default(),
            rng: SplitMix64::new(seed),
        }
    }

    /// The conservation counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Dead letters held in memory, oldest first.
    pub fn dead_letters(&self) -> impl Iterator<Item = &DeadLetter> {
        self.dead.iter()
    }

    /// Bytes this pipeline holds (buffer, batch in flight, dead letters): its memory bound.
    pub fn held_bytes(&self) -> usize {
        self.buffer_bytes
            + self
                .pending
                .as_ref()
                .map(|p| p.events.iter().map(|e| e.bytes.len()).sum())
                .unwrap_or(0)
            + self.dead.bytes()
    }

    /// Whether nothing is buffered or in flight.
    pub fn is_idle(&self) -> bool {
        self.buffer.is_empty() && self.pending.is_none()
    }

    /// Buffers an encoded event; a full buffer dead-letters it instead (never silently).
    pub fn enqueue(&mut self, id: String, bytes: Vec<u8>, now: Timestamp) -> Enqueued {
        self.counters.received += 1;
        let fits_batch = bytes.len() + self.cfg.format.envelope_bytes() <= MAX_BATCH_BYTES;
        if !fits_batch {
            self.counters.dead_lettered += 1;
            let spilled = self.push_dead(id, bytes, DeadLetterReason::TooLarge, now);
            return Enqueued::Overflow { spilled };
        }
        if self.buffer.len() >= self.cfg.max_buffer_events
            || self.buffer_bytes + bytes.len() > self.cfg.max_buffer_bytes
        {
            self.counters.dead_lettered += 1;
            let spilled = self.push_dead(id, bytes, DeadLetterReason::BufferOverflow, now);
            return Enqueued::Overflow { spilled };
        }
        self.buffer_bytes += bytes.len();
        self.buffer.push_back(Queued {
            id,
            bytes,
            enqueued_at: now,
        });
        self.counters.buffered += 1;
        Enqueued::Queued
    }

    /// Records an event refused before queueing (local validation); kept as a dead letter.
    pub fn reject(
        &mut self,
        id: String,
        bytes: Vec<u8>,
        code: &str,
        now: Timestamp,
    ) -> Vec<DeadLetter> {
        self.counters.received += 1;
        self.counters.rejected += 1;
        self.push_dead(id, bytes, DeadLetterReason::Rejected(code.to_string()), now)
    }

    /// Records an event that cannot be sent at all (no key for its environment).
    pub fn dead_letter(
        &mut self,
        id: String,
        bytes: Vec<u8>,
        reason: DeadLetterReason,
        now: Timestamp,
    ) -> Vec<DeadLetter> {
        self.counters.received += 1;
        if reason.is_rejection() {
            self.counters.rejected += 1;
        } else {
            self.counters.dead_lettered += 1;
        }
        self.push_dead(id, bytes, reason, now)
    }

    fn push_dead(
        &mut self,
        id: String,
        bytes: Vec<u8>,
        reason: DeadLetterReason,
        now: Timestamp,
    ) -> Vec<DeadLetter> {
        let spilled = self.dead.push(DeadLetter {
            id,
            bytes,
            reason,
            at: now,
        });
        let held = spilled.iter().filter(|s| !s.reason.is_rejection()).count();
        self.counters.dead_letters_spilled += held as u64;
        spilled
    }

    /// The next batch to send, if one is due at `now` (or, with `force`, if anything is waiting).
    pub fn poll(&mut self, now: Timestamp, force: bool) -> Option<Batch> {
        if let Some(p) = &mut self.pending {
            match p.stage {
                Stage::InFlight { .. } => return None,
                Stage::Waiting { next_at } if now < next_at && !force => return None,
                Stage::Waiting { .. } => {
                    p.attempts += 1;
                    p.stage = Stage::InFlight { sent_at: now };
                    self.counters.flushes += 1;
                    return Some(Batch {
                        body: self
                            .cfg
                            .format
                            .batch_body(p.events.iter().map(|e| e.bytes.as_slice())),
                        events: p.events.len(),
                        attempt: p.attempts,
                        ids: p.events.iter().map(|e| e.id.clone()).collect(),
                    });
                }
            }
        }
        let oldest = self.buffer.front()?.enqueued_at;
        let due = force
            || self.buffer.len() >= self.cfg.batch_size
            || now.millis_since(oldest) >= self.cfg.flush_interval_ms as i64;
        if !due {
            return None;
        }
        let mut events = Vec::with_capacity(self.cfg.batch_size.min(self.buffer.len()));
        let mut size = self.cfg.format.envelope_bytes();
        while events.len() < self.cfg.batch_size {
            let Some(next) = self.buffer.front() else {
                break;
            };
            let add = next.bytes.len() + usize::from(!events.is_empty());
            if size + add > MAX_BATCH_BYTES && !events.is_empty() {
                break;
            }
            let Some(e) = self.buffer.pop_front() else {
                break;
            };
            self.buffer_bytes -= e.bytes.len();
            size += add;
            events.push(e);
        }
        let body = self
            .cfg
            .format
            .batch_body(events.iter().map(|e| e.bytes.as_slice()));
        let n = events.len();
        let ids = events.iter().map(|e| e.id.clone()).collect();
        self.pending = Some(Pending {
            events,
            first_attempt_at: now,
            attempts: 1,
            stage: Stage::InFlight { sent_at: now },
        });
        self.counters.flushes += 1;
        Some(Batch {
            body,
            events: n,
            attempt: 1,
            ids,
        })
    }

    /// When the machine next needs attention (a flush deadline or a retry), if ever.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match &self.pending {
            Some(Pending {
                stage: Stage::Waiting { next_at },
                ..
            }) => Some(*next_at),
            Some(Pending {
                stage: Stage::InFlight { sent_at },
                ..
            }) => Some(sent_at.plus_millis(self.cfg.request_timeout_ms as i64 + 1_000)),
            None => {
                let oldest = self.buffer.front()?.enqueued_at;
                if self.buffer.len() >= self.cfg.batch_size {
                    Some(oldest)
                } else {
                    Some(oldest.plus_millis(self.cfg.flush_interval_ms as i64))
                }
            }
        }
    }

    /// Gives up on a request whose answer never came (host lost it): counts as a failure.
    pub fn expire_in_flight(&mut self, now: Timestamp) -> Option<Report> {
        let sent_at = match &self.pending {
            Some(Pending {
                stage: Stage::InFlight { sent_at },
                ..
            }) => *sent_at,
            _ => return None,
        };
        if now.millis_since(sent_at) > self.cfg.request_timeout_ms as i64 + 1_000 {
            Some(self.on_response(CallOutcome::Failed, now))
        } else {
            None
        }
    }

    /// Applies the answer to the batch in flight.
    pub fn on_response(&mut self, outcome: CallOutcome, now: Timestamp) -> Report {
        let mut report = Report::default();
        let Some(mut p) = self.pending.take() else {
            return report;
        };
        if !matches!(p.stage, Stage::InFlight { .. }) {
            self.pending = Some(p);
            return report;
        }
        let (status, retry_after, body) = match outcome {
            CallOutcome::Answered {
                status,
                retry_after_secs,
                body,
            } => (Some(status), retry_after_secs, body),
            CallOutcome::Failed => (None, None, Vec::new()),
        };
        match status {
            Some(s) if (200..300).contains(&s) => {
                self.settle(p, IngestAnswer::parse(&body), now, &mut report);
                self.reoffer(now, &mut report);
            }
            Some(413) if p.events.len() > 1 => {
                // Split: the second half goes back to the front of the buffer, the first is retried now.
                let half = p.events.split_off(p.events.len() / 2);
                for e in half.into_iter().rev() {
                    self.buffer_bytes += e.bytes.len();
                    self.buffer.push_front(e);
                }
                p.stage = Stage::Waiting { next_at: now };
                self.pending = Some(p);
                report.retry_in_ms = Some(0);
            }
            Some(413) => self.dead_letter_pending(p, DeadLetterReason::TooLarge, now, &mut report),
            Some(s @ (401 | 403)) => {
                self.counters.flush_failures += 1;
                self.dead_letter_pending(p, DeadLetterReason::Unauthorized(s), now, &mut report)
            }
            Some(s) if (400..500).contains(&s) && s != 408 && s != 429 => {
                self.counters.flush_failures += 1;
                self.dead_letter_pending(p, DeadLetterReason::ClientError(s), now, &mut report)
            }
            other => {
                // No answer, 408, 429, 5xx or anything unexpected: retry with backoff.
                self.counters.flush_failures += 1;
                let delay = match (other, retry_after) {
                    (Some(429), Some(secs)) => secs.saturating_mul(1_000),
                    _ => backoff_delay_ms(
                        p.attempts,
                        self.cfg.initial_backoff_ms,
                        self.cfg.max_backoff_ms,
                        &mut self.rng,
                    ),
                };
                let elapsed = now.millis_since(p.first_attempt_at).max(0) as u64;
                if elapsed.saturating_add(delay) > self.cfg.max_retry_time_ms {
                    self.dead_letter_pending(
                        p,
                        DeadLetterReason::RetriesExhausted,
                        now,
                        &mut report,
                    );
                } else {
                    p.stage = Stage::Waiting {
                        next_at: now.plus_millis(delay as i64),
                    };
                    self.pending = Some(p);
                    report.retry_in_ms = Some(delay);
                }
            }
        }
        report
    }

    fn settle(
        &mut self,
        p: Pending,
        answer: Option<IngestAnswer>,
        now: Timestamp,
        report: &mut Report,
    ) {
        let n = p.events.len() as u64;
        self.counters.buffered -= n;
        let mut rejected: HashMap<String, String> = HashMap::new();
        let mut duplicates = 0;
        if let Some(a) = answer {
            duplicates = a.duplicates;
            for r in a.rejected {
                rejected.insert(r.id, r.code);
            }
        }
        let mut delivered = 0;
        for e in p.events {
            match rejected.get(&e.id) {
                Some(code) => {
                    self.counters.rejected += 1;
                    report.rejected.push((e.id.clone(), code.clone()));
                    let reason = DeadLetterReason::Rejected(code.clone());
                    report
                        .spilled
                        .extend(self.push_dead(e.id, e.bytes, reason, now));
                }
                None => delivered += 1,
            }
        }
        self.counters.delivered += delivered;
        let duplicates = duplicates.min(delivered);
        self.counters.duplicates += duplicates;
        report.delivered += delivered;
        report.duplicates += duplicates;
    }

    fn dead_letter_pending(
        &mut self,
        p: Pending,
        reason: DeadLetterReason,
        now: Timestamp,
        report: &mut Report,
    ) {
        let n = p.events.len() as u64;
        self.counters.buffered -= n;
        self.counters.dead_lettered += n;
        for e in p.events {
            report.dead_lettered.push((e.id.clone(), reason.clone()));
            report
                .spilled
                .extend(self.push_dead(e.id, e.bytes, reason.clone(), now));
        }
    }

    fn reoffer(&mut self, now: Timestamp, report: &mut Report) {
        if !self.dead.has_replayable() {
            return;
        }
        let room_events = self.cfg.max_buffer_events.saturating_sub(self.buffer.len());
        let room_bytes = self.cfg.max_buffer_bytes.saturating_sub(self.buffer_bytes);
        let n = room_events.min(self.cfg.batch_size);
        let taken = self.dead.take_replayable(n, room_bytes);
        report.reoffered += self.requeue(taken, now);
    }

    /// Hands every dead letter held in memory to the caller (who keeps them durably); they stay
    /// counted as dead-lettered, like entries spilled to a log.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        let taken = self.dead.take_all();
        let undeliverable = taken.iter().filter(|d| !d.reason.is_rejection()).count() as u64;
        self.counters.dead_letters_spilled += undeliverable;
        taken
    }

    /// Moves up to `max` replayable dead letters back into the buffer (operator replay).
    pub fn replay_dead_letters(&mut self, max: usize, now: Timestamp) -> u64 {
        let room_events = self.cfg.max_buffer_events.saturating_sub(self.buffer.len());
        let room_bytes = self.cfg.max_buffer_bytes.saturating_sub(self.buffer_bytes);
        let taken = self.dead.take_replayable(max.min(room_events), room_bytes);
        self.requeue(taken, now)
    }

    fn requeue(&mut self, items: Vec<DeadLetter>, now: Timestamp) -> u64 {
        let n = items.len() as u64;
        for d in items.into_iter().rev() {
            self.buffer_bytes += d.bytes.len();
            self.buffer.push_front(Queued {
                id: d.id,
                bytes: d.bytes,
                enqueued_at: now,
            });
        }
        self.counters.dead_lettered -= n;
        self.counters.buffered += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::RejectedEvent;

    fn cfg() -> DeliveryConfig {
        DeliveryConfig {
            batch_size: 3,
            flush_interval_ms: 1_000,
            max_buffer_events: 5,
            max_buffer_bytes: 1_000,
            max_dead_letters: 4,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            max_retry_time_ms: 5_000,
            request_timeout_ms: 500,
            format: IngestFormat::Aforo,
        }
    }

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000 + ms)
    }

    fn ev(i: u32) -> (String, Vec<u8>) {
        let id = format!("e{i}");
        (id.clone(), format!("{{\"id\":\"{id}\"}}").into_bytes())
    }

    fn ok(body: &IngestAnswer) -> CallOutcome {
        CallOutcome::Answered {
            status: 202,
            retry_after_secs: None,
            body: body.to_json(),
        }
    }

    #[test]
    fn flushes_on_batch_size_or_on_the_oldest_events_deadline() {
        let mut d = Delivery::new(cfg(), 1);
        let (id, b) = ev(1);
        d.enqueue(id, b, t(0));
        assert_eq!(d.poll(t(999), false), None, "not due before the deadline");
        assert_eq!(d.next_deadline(), Some(t(1_000)));
        let batch = d.poll(t(1_000), false).unwrap();
        assert_eq!(batch.events, 1);
        let v: serde_json::Value = serde_json::from_slice(&batch.body).unwrap();
        assert_eq!(v["events"][0]["id"], "e1");
        // A full batch goes at once.
        let mut d = Delivery::new(cfg(), 1);
        for i in 0..3 {
            let (id, b) = ev(i);
            d.enqueue(id, b, t(0));
        }
        assert_eq!(d.poll(t(0), false).unwrap().events, 3);
    }

    #[test]
    fn answers_settle_events_one_by_one() {
        let mut d = Delivery::new(cfg(), 1);
        for i in 0..3 {
            let (id, b) = ev(i);
            d.enqueue(id, b, t(0));
        }
        d.poll(t(0), false).unwrap();
        let answer = IngestAnswer {
            accepted: 1,
            duplicates: 1,
            rejected: vec![RejectedEvent {
                id: "e2".into(),
                code: "timestamp_in_future".into(),
                field: None,
                message: None,
            }],
            flagged: vec![],
        };
        let r = d.on_response(ok(&answer), t(10));
        assert_eq!(r.delivered, 2);
        assert_eq!(r.duplicates, 1);
        assert_eq!(
            r.rejected,
            vec![("e2".to_string(), "timestamp_in_future".to_string())]
        );
        let c = d.counters();
        assert_eq!(
            (c.received, c.delivered, c.rejected, c.buffered),
            (3, 2, 1, 0)
        );
        assert!(c.balanced());
        assert_eq!(
            d.dead_letters().next().unwrap().reason,
            DeadLetterReason::Rejected("timestamp_in_future".into())
        );
    }

    #[test]
    fn failures_retry_the_same_bytes_with_backoff_then_dead_letter() {
        let mut d = Delivery::new(cfg(), 9);
        let (id, b) = ev(1);
        d.enqueue(id, b, t(0));
        let first = d.poll(t(0), true).unwrap();
        let r = d.on_response(
            CallOutcome::Answered {
                status: 503,
                retry_after_secs: None,
                body: vec![],
            },
            t(5),
        );
        let wait = r.retry_in_ms.unwrap();
        assert!((50..=100).contains(&wait), "{wait}");
        assert_eq!(d.poll(t(5 + wait as i64 - 1), false), None);
        let second = d.poll(t(5 + wait as i64), false).unwrap();
        assert_eq!(
            second.body, first.body,
            "a retry resends the same ids and bytes"
        );
        assert_eq!(second.attempt, 2);
        // Keep failing until the retry time is used up.
        let mut now = 5 + wait as i64;
        loop {
            let r = d.on_response(CallOutcome::Failed, t(now));
            if !r.dead_lettered.is_empty() {
                assert_eq!(r.dead_lettered[0].1, DeadLetterReason::RetriesExhausted);
                break;
            }
            now += r.retry_in_ms.unwrap() as i64;
            assert!(now <= 5_000, "retried past max_retry_time");
            d.poll(t(now), false).unwrap();
        }
        let c = d.counters();
        assert_eq!((c.dead_lettered, c.buffered), (1, 0));
        assert!(c.balanced());
    }

    #[test]
    fn retry_after_of_a_429_is_honoured_exactly() {
        let mut d = Delivery::new(cfg(), 1);
        let (id, b) = ev(1);
        d.enqueue(id, b, t(0));
        d.poll(t(0), true).unwrap();
        let r = d.on_response(
            CallOutcome::Answered {
                status: 429,
                retry_after_secs: Some(2),
                body: vec![],
            },
            t(0),
        );
        assert_eq!(r.retry_in_ms, Some(2_000));
        assert_eq!(d.poll(t(1_999), false), None);
        assert!(d.poll(t(2_000), false).is_some());
    }

    #[test]
    fn dead_letters_are_reoffered_when_the_ingest_recovers() {
        let mut d = Delivery::new(cfg(), 1);
        for i in 0..7 {
            let (id, b) = ev(i);
            d.enqueue(id, b, t(0));
        }
        // 5 buffered, 2 overflowed.
        let c = d.counters();
        assert_eq!((c.buffered, c.dead_lettered), (5, 2));
        d.poll(t(0), false).unwrap();
        let r = d.on_response(
            ok(&IngestAnswer {
                accepted: 3,
                ..Default::default()
            }),
            t(1),
        );
        assert_eq!(r.reoffered, 2);
        let mut now = 1;
        while !d.is_idle() {
            now += 1;
            d.poll(t(now), true).unwrap();
            d.on_response(ok(&IngestAnswer::default()), t(now));
        }
        let c = d.counters();
        assert_eq!((c.received, c.delivered, c.dead_lettered), (7, 7, 0));
    }

    #[test]
    fn too_large_batches_are_split() {
        let mut d = Delivery::new(cfg(), 1);
        for i in 0..3 {
            let (id, b) = ev(i);
            d.enqueue(id, b, t(0));
        }
        assert_eq!(d.poll(t(0), false).unwrap().events, 3);
        d.on_response(
            CallOutcome::Answered {
                status: 413,
                retry_after_secs: None,
                body: vec![],
            },
            t(1),
        );
        let again = d.poll(t(1), false).unwrap();
        assert_eq!(again.events, 1);
        d.on_response(ok(&IngestAnswer::default()), t(2));
        assert_eq!(d.poll(t(2), true).unwrap().events, 2);
        d.on_response(ok(&IngestAnswer::default()), t(3));
        assert_eq!(d.counters().delivered, 3);
    }

    #[test]
    fn unauthorized_dead_letters_and_lost_answers_expire() {
        let mut d = Delivery::new(cfg(), 1);
        let (id, b) = ev(1);
        d.enqueue(id, b, t(0));
        d.poll(t(0), true).unwrap();
        let r = d.on_response(
            CallOutcome::Answered {
                status: 401,
                retry_after_secs: None,
                body: vec![],
            },
            t(1),
        );
        assert_eq!(r.dead_lettered[0].1, DeadLetterReason::Unauthorized(401));

        let (id, b) = ev(2);
        d.enqueue(id, b, t(0));
        d.poll(t(0), true).unwrap();
        assert!(d.expire_in_flight(t(1_500)).is_none());
        let r = d.expire_in_flight(t(1_501)).unwrap();
        assert!(r.retry_in_ms.is_some());
    }

    #[test]
    fn a_full_dead_letter_store_spills_the_oldest_to_the_caller() {
        let mut c = cfg();
        c.max_buffer_events = 0;
        let mut d = Delivery::new(c, 1);
        let mut spilled = vec![];
        for i in 0..6 {
            let (id, b) = ev(i);
            if let Enqueued::Overflow { spilled: s } = d.enqueue(id, b, t(0)) {
                spilled.extend(s.into_iter().map(|x| x.id));
            }
        }
        assert_eq!(spilled, vec!["e0", "e1"]);
        let c = d.counters();
        assert_eq!((c.dead_lettered, c.dead_letters_spilled), (6, 2));
        assert!(c.balanced());
    }
}
