//! Engines of a replaced configuration, waiting for the next one: Envoy drops a filter
//! configuration (and cancels its calls) when a listener is updated, and the events its engines
//! still hold would go with it. The next configuration adopts them and delivers them on its
//! tick; the ingest stores an event sent twice once (events carry their ids).

use crate::abi::{log, Level};
use crate::module::lock;
use aforo_core::gateway::Gateway;
use std::sync::Mutex;

/// At most this many bytes of events wait (configurations replaced faster than they deliver,
/// with the ingest down); beyond it the oldest engines are dropped, their events counted in
/// the log.
const MAX_WAITING_BYTES: usize = 1 << 30;

/// An engine of a replaced configuration.
pub struct Retired {
    /// Its part of the counter store (its configuration's API key's).
    pub namespace: String,
    /// The engine, with what it holds.
    pub gateway: Gateway,
    /// Its calls Envoy cancelled: the adopter answers them as failed, so they are sent again.
    pub cancelled: Vec<u32>,
}

static WAITING: Mutex<Vec<Retired>> = Mutex::new(Vec::new());

/// Leaves `engines` for the next configuration.
pub fn hand_over(engines: Vec<Retired>) {
    let mut waiting = lock(&WAITING);
    waiting.extend(engines);
    let mut total: usize = waiting.iter().map(|r| r.gateway.held_bytes()).sum();
    let mut dropped = (0usize, 0u64);
    while total > MAX_WAITING_BYTES && !waiting.is_empty() {
        let r = waiting.remove(0);
        total -= r.gateway.held_bytes();
        dropped.0 += 1;
        dropped.1 += r.gateway.counters().buffered;
    }
    if dropped.0 > 0 {
        log(
            Level::Error,
            &format!(
                "aforo: {} events of {} replaced engines dropped: more than {MAX_WAITING_BYTES} bytes wait for delivery (is the ingest down while the configuration changes?)",
                dropped.1, dropped.0
            ),
        );
    }
}

/// Takes every waiting engine.
pub fn adopt() -> Vec<Retired> {
    std::mem::take(&mut *lock(&WAITING))
}
