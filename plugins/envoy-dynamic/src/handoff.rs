//! Engines of a replaced configuration, waiting for the next one: Envoy drops a filter
//! configuration (and cancels its calls) when a listener is updated, and the events its engines
//! still hold would go with it. The next configuration adopts them and delivers them on its
//! tick; the ingest stores an event sent twice once (events carry their ids).

use crate::abi::{log, Level};
use crate::module::lock;
use aforo_core::gateway::Gateway;
use std::sync::Mutex;

/// At most this many engines wait (configurations replaced faster than they deliver, with the
/// ingest down); beyond it the oldest are dropped, with their count of events in the log.
const MAX_WAITING: usize = 64;

static WAITING: Mutex<Vec<Gateway>> = Mutex::new(Vec::new());

/// Leaves `engines` for the next configuration (those holding nothing are dropped).
pub fn hand_over(engines: Vec<Gateway>) {
    let mut waiting = lock(&WAITING);
    waiting.extend(engines.into_iter().filter(|g| g.counters().buffered > 0));
    if waiting.len() > MAX_WAITING {
        let excess = waiting.len() - MAX_WAITING;
        let dropped: Vec<Gateway> = waiting.drain(..excess).collect();
        let lost: u64 = dropped.iter().map(|g| g.counters().buffered).sum();
        log(
            Level::Error,
            &format!(
                "aforo: {lost} events of {} replaced configurations dropped: more than {MAX_WAITING} wait for delivery (is the ingest down while the configuration changes?)",
                dropped.len()
            ),
        );
    }
}

/// Takes every waiting engine.
pub fn adopt() -> Vec<Gateway> {
    std::mem::take(&mut *lock(&WAITING))
}
