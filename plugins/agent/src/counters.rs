//! The counter store decisions read and write (quota counters, rate-limit buckets), shared by
//! every handler thread: in this process (the embedded backend) or in Redis.

use aforo_core::entitlement::{CounterBackend, Leased, MemoryCounters};
use aforo_core::host::SharedSetError;
use aforo_core::Timestamp;
use std::sync::{Arc, Mutex};

/// Who answered a counter operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// The counter store itself (this process's, or Redis).
    Store,
    /// The local copy standing in for an unreachable Redis (`failure_mode = closed` refuses
    /// decisions made on it).
    Fallback,
}

/// A thread-safe counter store with the compare-and-swap contract of the component's
/// `counters` import.
pub trait SyncCounters: Send + Sync {
    /// The value under `key` and its CAS token, and who answered.
    fn read_served(&self, key: &str) -> (Option<(Vec<u8>, u32)>, Served);
    /// Writes `value` when the token still matches (0 for a key read as absent), and who
    /// answered.
    fn write_served(
        &self,
        key: &str,
        value: &[u8],
        cas: u32,
    ) -> (Result<(), SharedSetError>, Served);

    /// The value under `key` and its CAS token.
    fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.read_served(key).0
    }

    /// Writes `value` when the token still matches.
    fn write(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        self.write_served(key, value, cas).0
    }

    /// Takes a reservation's units from a quota lease (`CounterBackend::take_leased`); `None`
    /// on stores that do not lease.
    fn take_leased(
        &self,
        _key: &str,
        _window: (Timestamp, Timestamp),
        _quota: u64,
        _cost: u64,
        _now: Timestamp,
    ) -> Option<Leased> {
        None
    }

    /// Gives back units a reservation took with `take_leased` and did not use.
    fn give_leased(&self, _key: &str, _window_start: Timestamp, _units: u64) {}
}

/// The counter store every part of the agent holds.
pub type SharedCounters = Arc<dyn SyncCounters>;

/// Counters in this process (one node).
#[derive(Default)]
pub struct LocalCounters(Mutex<MemoryCounters>);

impl LocalCounters {
    /// Sets a value as seen elsewhere (the Redis backend keeps its last reads here, so a
    /// fallback during an outage starts from them).
    pub fn seed(&self, key: &str, value: &[u8]) {
        if let Ok(mut m) = self.0.lock() {
            let cas = m.read(key).map(|(_, c)| c).unwrap_or(0);
            let _ = m.write(key, value, cas);
        }
    }
}

impl LocalCounters {
    /// A compare-and-swap comparing tokens under `mask` (the Redis backend marks the local
    /// copy's tokens with a bit of its own).
    pub fn write_masked(
        &self,
        key: &str,
        value: &[u8],
        cas: u32,
        mask: u32,
    ) -> Result<(), SharedSetError> {
        let mut m = self
            .0
            .lock()
            .map_err(|_| SharedSetError::Unavailable("counter lock poisoned".into()))?;
        let current = m.read(key).map(|(_, c)| c).unwrap_or(0);
        if current & mask != cas & mask {
            return Err(SharedSetError::CasMismatch);
        }
        m.write(key, value, current)
    }
}

impl SyncCounters for LocalCounters {
    fn read_served(&self, key: &str) -> (Option<(Vec<u8>, u32)>, Served) {
        (self.0.lock().ok().and_then(|m| m.read(key)), Served::Store)
    }
    fn write_served(
        &self,
        key: &str,
        value: &[u8],
        cas: u32,
    ) -> (Result<(), SharedSetError>, Served) {
        let r = match self.0.lock() {
            Ok(mut m) => m.write(key, value, cas),
            Err(_) => Err(SharedSetError::Unavailable("counter lock poisoned".into())),
        };
        (r, Served::Store)
    }
}

/// A `SyncCounters` seen as the core's `CounterBackend` (for `add_usage`, `read_counter`).
pub struct AsBackend<'a>(pub &'a dyn SyncCounters);

impl CounterBackend for AsBackend<'_> {
    fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.read(key)
    }
    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        self.0.write(key, value, cas)
    }
    fn warn(&self, message: &str) {
        eprintln!("aforo-agent: {message}");
    }
}
