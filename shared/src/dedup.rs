//! A bounded idempotency window, in memory.
//!
//! Guarantee: an id is reported as a duplicate when its first sighting is still inside the
//! window, that is, not older than `retention` **and** among the last `capacity` distinct ids
//! seen. Past either bound the oldest ids are forgotten first; `evicted()` counts them and
//! `horizon()` tells from which instant the guarantee currently holds, so a report can say
//! "exact since …". Ids are kept as 128-bit SHA-256 fingerprints (16 bytes each).
//! Durable stores (the agent's SQLite) give the same answer over the full retention period.

use crate::time::Timestamp;
use sha2::{Digest, Sha256};
use std::collections::{HashSet, VecDeque};

/// Whether an id was new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// First sighting in the window: count it.
    New,
    /// Already counted: report `duplicate`, do not count again.
    Duplicate,
}

/// A bounded, exact-within-bounds set of recently seen ids.
#[derive(Debug)]
pub struct DedupWindow {
    capacity: usize,
    retention_nanos: i64,
    seen: HashSet<u128>,
    order: VecDeque<(Timestamp, u128)>,
    evicted: u64,
    horizon: Timestamp,
}

fn fingerprint(id: &str) -> u128 {
    let d = Sha256::digest(id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    u128::from_le_bytes(b)
}

impl DedupWindow {
    /// A window of at most `capacity` ids, each remembered for `retention_nanos`.
    pub fn new(capacity: usize, retention_nanos: i64) -> Self {
        DedupWindow {
            capacity: capacity.max(1),
            retention_nanos,
            seen: HashSet::new(),
            order: VecDeque::new(),
            evicted: 0,
            horizon: Timestamp::from_unix_nanos(i64::MIN),
        }
    }

    /// Records `id` as seen at `now` and says whether it is new.
    pub fn check_and_insert(&mut self, id: &str, now: Timestamp) -> Seen {
        self.expire(now);
        let fp = fingerprint(id);
        if self.seen.contains(&fp) {
            return Seen::Duplicate;
        }
        if self.order.len() >= self.capacity {
            self.evict_oldest();
        }
        self.seen.insert(fp);
        self.order.push_back((now, fp));
        Seen::New
    }

    /// Whether `id` is in the window, without recording it.
    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(&fingerprint(id))
    }

    /// Forgets ids older than the retention period.
    pub fn expire(&mut self, now: Timestamp) {
        let cutoff = now.plus_nanos(-self.retention_nanos);
        while let Some(&(t, _)) = self.order.front() {
            if t >= cutoff {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((t, fp)) = self.order.pop_front() {
            self.seen.remove(&fp);
            self.evicted += 1;
            self.horizon = t;
        }
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Ids forgotten so far because of the bounds.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Duplicates of ids first seen after this instant are always detected.
    pub fn horizon(&self) -> Timestamp {
        self.horizon
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::NANOS_PER_SEC;

    #[test]
    fn duplicates_inside_the_window_are_detected() {
        let t = Timestamp::from_unix_secs(100);
        let mut w = DedupWindow::new(10, 60 * NANOS_PER_SEC);
        assert_eq!(w.check_and_insert("a", t), Seen::New);
        assert_eq!(w.check_and_insert("a", t), Seen::Duplicate);
        assert_eq!(w.check_and_insert("b", t), Seen::New);
        // Exactly at the retention boundary the id is still remembered.
        assert_eq!(
            w.check_and_insert("a", t.plus_nanos(60 * NANOS_PER_SEC)),
            Seen::Duplicate
        );
        // One nanosecond later it is forgotten, and the horizon says so.
        assert_eq!(
            w.check_and_insert("a", t.plus_nanos(60 * NANOS_PER_SEC + 1)),
            Seen::New
        );
        assert_eq!(w.horizon(), t);
        assert_eq!(w.evicted(), 2);
    }

    #[test]
    fn capacity_evicts_the_oldest_first() {
        let t = Timestamp::from_unix_secs(0);
        let mut w = DedupWindow::new(3, i64::MAX);
        for id in ["a", "b", "c", "d"] {
            assert_eq!(w.check_and_insert(id, t), Seen::New);
        }
        assert_eq!(w.len(), 3);
        assert!(!w.contains("a"));
        assert!(w.contains("b") && w.contains("d"));
        assert_eq!(w.evicted(), 1);
    }
}
