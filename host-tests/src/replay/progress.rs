//! A progress bar on stderr, only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Progress of a long run.
pub struct Progress {
    total: u64,
    started: Instant,
    last: Instant,
    enabled: bool,
}

impl Progress {
    /// A bar for `total` items; silent when stderr is not a terminal or `quiet` is set.
    pub fn new(total: u64, quiet: bool) -> Self {
        let now = Instant::now();
        Progress {
            total,
            started: now,
            last: now,
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// Shows `done` of `total`, at most 4 times a second.
    pub fn update(&mut self, done: u64) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(250) {
            return;
        }
        self.last = Instant::now();
        let pct = done * 100 / self.total.max(1);
        let width = 30usize;
        let filled = (pct as usize * width / 100).min(width);
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r[{}{}] {pct:>3}% {done}/{} requests, {rate:.0}/s ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            self.total
        );
        let _ = std::io::stderr().flush();
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if self.enabled {
            eprint!("\r{}\r", " ".repeat(80));
            let _ = std::io::stderr().flush();
        }
    }
}
