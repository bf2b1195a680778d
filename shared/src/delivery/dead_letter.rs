//! Dead letters: events that could not be delivered (or were refused), with their reason.
//! Bounded: when full, the oldest is handed back to be written to the log, never dropped silently.

use crate::time::Timestamp;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt;

/// Why an event is in the dead-letter store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", content = "detail", rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// The buffer was full (events or bytes).
    BufferOverflow,
    /// Retried for longer than `max_retry_time_ms`.
    RetriesExhausted,
    /// The ingest refused the key (401) or the environment (403).
    Unauthorized(u16),
    /// The ingest refused the request for another 4xx (such as 400).
    ClientError(u16),
    /// One event alone is over the ingest's request size limit.
    TooLarge,
    /// There is no key for the event's environment.
    NoKeyForEnvironment,
    /// The event is invalid (code from validation or the ingest); never replayed automatically.
    Rejected(String),
}

impl DeadLetterReason {
    /// Whether the event can be re-offered once the ingest works again.
    pub fn replayable(&self) -> bool {
        matches!(
            self,
            DeadLetterReason::BufferOverflow
                | DeadLetterReason::RetriesExhausted
                | DeadLetterReason::Unauthorized(_)
        )
    }

    /// Whether this entry is counted as `rejected` rather than `dead_lettered`.
    pub fn is_rejection(&self) -> bool {
        matches!(self, DeadLetterReason::Rejected(_))
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeadLetterReason::BufferOverflow => f.write_str("buffer_overflow"),
            DeadLetterReason::RetriesExhausted => f.write_str("retries_exhausted"),
            DeadLetterReason::Unauthorized(s) => write!(f, "unauthorized_{s}"),
            DeadLetterReason::ClientError(s) => write!(f, "client_error_{s}"),
            DeadLetterReason::TooLarge => f.write_str("too_large"),
            DeadLetterReason::NoKeyForEnvironment => f.write_str("no_key_for_environment"),
            DeadLetterReason::Rejected(c) => write!(f, "rejected_{c}"),
        }
    }
}

/// One dead-lettered event, with the exact bytes that would have been sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Event id.
    pub id: String,
    /// The encoded event.
    pub bytes: Vec<u8>,
    /// Why.
    pub reason: DeadLetterReason,
    /// When it was dead-lettered.
    pub at: Timestamp,
}

/// A FIFO of dead letters bounded in entries and in bytes.
#[derive(Debug, Default)]
pub struct DeadLetterStore {
    max_entries: usize,
    max_bytes: usize,
    items: VecDeque<DeadLetter>,
    bytes: usize,
}

impl DeadLetterStore {
    /// A store holding at most `max_entries` entries and `max_bytes` bytes of events.
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        DeadLetterStore {
            max_entries,
            max_bytes,
            items: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Adds an entry; returns the oldest entries pushed out to stay within bounds, for the log.
    pub fn push(&mut self, d: DeadLetter) -> Vec<DeadLetter> {
        self.bytes += d.bytes.len();
        self.items.push_back(d);
        let mut out = Vec::new();
        while self.items.len() > self.max_entries || self.bytes > self.max_bytes {
            let Some(old) = self.items.pop_front() else {
                break;
            };
            self.bytes -= old.bytes.len();
            out.push(old);
        }
        out
    }

    /// Removes up to `max` replayable entries (oldest first), within `max_bytes`.
    pub fn take_replayable(&mut self, max: usize, max_bytes: usize) -> Vec<DeadLetter> {
        let mut out = Vec::new();
        let mut taken_bytes = 0;
        let mut kept = VecDeque::with_capacity(self.items.len());
        while let Some(d) = self.items.pop_front() {
            if out.len() < max && d.reason.replayable() && taken_bytes + d.bytes.len() <= max_bytes
            {
                taken_bytes += d.bytes.len();
                self.bytes -= d.bytes.len();
                out.push(d);
            } else {
                kept.push_back(d);
            }
        }
        self.items = kept;
        out
    }

    /// Removes and returns every entry.
    pub fn take_all(&mut self) -> Vec<DeadLetter> {
        self.bytes = 0;
        self.items.drain(..).collect()
    }

    /// Whether any entry could be replayed.
    pub fn has_replayable(&self) -> bool {
        self.items.iter().any(|d| d.reason.replayable())
    }

    /// Entries held, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &DeadLetter> {
        self.items.iter()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
