//! The tick: a thread that asks Envoy's main thread to run the engines' tick every period
//! (Envoy's HTTP filter ABI has a scheduler but no timer). At most one tick waits at a time,
//! so a busy main thread is not flooded.

use crate::abi::Scheduler;
use crate::module::{lock, EVENT_TICK};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The running tick thread.
pub struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    waiting: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Starts ticking every `period_ms` (read again before each wait: it shortens until the
    /// first snapshot arrives); `None` when the thread cannot start.
    pub fn start(scheduler: Arc<Scheduler>, period_ms: Arc<AtomicU64>) -> Option<Ticker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let waiting = Arc::new(AtomicBool::new(false));
        let (s, w) = (stop.clone(), waiting.clone());
        let thread = std::thread::Builder::new()
            .name("aforo-tick".into())
            .spawn(move || loop {
                let period = Duration::from_millis(period_ms.load(Ordering::Relaxed).max(10));
                let stopped = lock(&s.0);
                let (stopped, _) =
                    s.1.wait_timeout_while(stopped, period, |stopped| !*stopped)
                        .unwrap_or_else(|p| p.into_inner());
                if *stopped {
                    return;
                }
                drop(stopped);
                if !w.swap(true, Ordering::AcqRel) {
                    scheduler.commit(EVENT_TICK);
                }
            })
            .ok()?;
        Some(Ticker {
            stop,
            waiting,
            thread: Some(thread),
        })
    }

    /// The main thread ran a tick: the next may be posted.
    pub fn ticked(&self) {
        self.waiting.store(false, Ordering::Release);
    }

    /// Stops the thread and waits for it (so the scheduler can be deleted after).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.halt();
    }
}
