//! The conservation counters of one delivery machine.

use serde::Serialize;

/// Where every event received is now. `buffered` and `dead_lettered` are current levels;
/// the others only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Events handed to the machine.
    pub received: u64,
    /// Acknowledged by the ingest (newly stored or already there).
    pub delivered: u64,
    /// Of `delivered`, those the ingest said it already had.
    pub duplicates: u64,
    /// Refused for good (invalid), by local validation or by the ingest.
    pub rejected: u64,
    /// Undeliverable for now: held for replay, or spilled to the log when the store was full.
    pub dead_lettered: u64,
    /// Of `dead_lettered`, those only in the log.
    pub dead_letters_spilled: u64,
    /// In the buffer, waiting for a retry, or in flight.
    pub buffered: u64,
    /// Ingest requests sent.
    pub flushes: u64,
    /// Ingest requests that failed (no answer, 5xx, 429, refused).
    pub flush_failures: u64,
}

impl Counters {
    /// `received = delivered + rejected + dead_lettered + buffered`.
    pub fn balanced(&self) -> bool {
        self.received == self.delivered + self.rejected + self.dead_lettered + self.buffered
    }

    /// Adds another machine's counters (for totals over environments or workers).
    pub fn add(&mut self, o: &Counters) {
        self.received += o.received;
        self.delivered += o.delivered;
        self.duplicates += o.duplicates;
        self.rejected += o.rejected;
        self.dead_lettered += o.dead_lettered;
        self.dead_letters_spilled += o.dead_letters_spilled;
        self.buffered += o.buffered;
        self.flushes += o.flushes;
        self.flush_failures += o.flush_failures;
    }
}
