//! The webhook sender's wake-up and the notice marks this process already knows are made (so a
//! hot customer past 80% does not cost a store write per request). Owned by the application;
//! knows nothing of it.

use std::collections::HashSet;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// The sender's wake-up and the marks (per environment) this process already knows are made (so a hot
/// customer past 80% does not cost a write per request).
#[derive(Default)]
pub struct Notifier {
    wake: (Mutex<bool>, Condvar),
    known_marks: Mutex<HashSet<String>>,
}

impl Notifier {
    /// Wakes the sender: a notice was recorded.
    pub fn wake(&self) {
        if let Ok(mut w) = self.wake.0.lock() {
            *w = true;
            self.wake.1.notify_all();
        }
    }

    /// Waits for a wake-up, at most `at_most`.
    pub fn wait(&self, at_most: Duration) {
        if let Ok(w) = self.wake.0.lock() {
            if let Ok((mut w, _)) = self.wake.1.wait_timeout_while(w, at_most, |w| !*w) {
                *w = false;
            }
        }
    }

    /// Whether this process already knows `mark` is made.
    pub fn knows(&self, mark: &str) -> bool {
        self.known_marks
            .lock()
            .map(|m| m.contains(mark))
            .unwrap_or(false)
    }

    /// Remembers that `mark` is made.
    pub fn learn(&self, mark: String) {
        if let Ok(mut m) = self.known_marks.lock() {
            // Marks of past windows are never asked for again; keep the set small.
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(mark);
        }
    }
}
