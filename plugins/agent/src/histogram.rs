//! A fixed-bucket latency histogram, lock-free, rendered as a Prometheus histogram and read
//! back as a percentile (the console's ingest p95).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts of observations per bucket of upper bounds (µs), plus one past the last bound.
pub struct Histogram {
    bounds_us: &'static [u64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds_us` (ascending).
    pub fn new(bounds_us: &'static [u64]) -> Self {
        Histogram {
            bounds_us,
            counts: (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = self
            .bounds_us
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(self.bounds_us.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The upper bound (ms) of the bucket holding the `q` quantile, as Prometheus's
    /// `histogram_quantile` would bound it, and whether the quantile is past the last bound
    /// (then the value is at least that bound). `None` before any observation.
    pub fn quantile_ms(&self, q: f64) -> Option<(f64, bool)> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let last = *self.bounds_us.last()? as f64 / 1000.0;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(match self.bounds_us.get(i) {
                    Some(b) => (*b as f64 / 1000.0, false),
                    None => (last, true),
                });
            }
        }
        Some((last, true))
    }

    /// Prometheus text for `name` (in seconds) with `labels` (`environment="sandbox"` or empty).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in self.bounds_us.iter().enumerate() {
            cumulative += self.counts.get(i).map_or(0, |c| c.load(Ordering::Relaxed));
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        cumulative += self
            .counts
            .last()
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &[u64] = &[1_000, 2_000, 5_000];

    #[test]
    fn the_p95_is_the_bound_of_the_bucket_that_holds_it() {
        let h = Histogram::new(B);
        assert_eq!(h.quantile_ms(0.95), None);
        for _ in 0..95 {
            h.observe(Duration::from_micros(500));
        }
        for _ in 0..5 {
            h.observe(Duration::from_micros(4_000));
        }
        assert_eq!(h.quantile_ms(0.95), Some((1.0, false)));
        h.observe(Duration::from_micros(4_000));
        assert_eq!(h.quantile_ms(0.95), Some((5.0, false)));
        h.observe(Duration::from_secs(3));
        for _ in 0..200 {
            h.observe(Duration::from_secs(1));
        }
        assert_eq!(
            h.quantile_ms(0.95),
            Some((5.0, true)),
            "past the last bound: at least it"
        );
        assert_eq!(h.count(), 302);
    }

    #[test]
    fn it_renders_cumulative_buckets() {
        let h = Histogram::new(B);
        h.observe(Duration::from_micros(1_500));
        h.observe(Duration::from_micros(9_000));
        let mut s = String::new();
        h.render(&mut s, "x_seconds", "environment=\"sandbox\"");
        assert!(
            s.contains("x_seconds_bucket{environment=\"sandbox\",le=\"0.002\"} 1"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{environment=\"sandbox\",le=\"+Inf\"} 2"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_count{environment=\"sandbox\"} 2"),
            "{s}"
        );
    }
}
