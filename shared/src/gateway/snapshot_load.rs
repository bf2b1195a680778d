//! A synced snapshot read a little at a time, between requests. Read at once, a 10,000-customer
//! snapshot (2.5 MB) kept an Envoy Wasm worker from serving for tens of milliseconds on every
//! sync (every 5 s by default): the requests that came meanwhile waited. Now every request reads
//! a share of it, sized so the whole is read within half the sync interval at the traffic of the
//! last tick period; a tick reads a little more; and the new snapshot replaces the old in one
//! step once it is whole. The old one decides until then.
//!
//! - A first snapshot is read at once: requests wait for it. So is one arriving when the
//!   snapshot in use is already stale (requests are under `failure_mode`). A load has a
//!   deadline, half the time left before the one in use goes stale (and at most half the sync
//!   interval): ticks read faster when requests do not keep pace, and past it the next tick or
//!   request reads the rest before anything is decided.
//! - A worker that served requests but none lately reads it at once: nothing waits behind it.
//! - A VM that never served a request reads it on ticks, a twentieth at least on each, and syncs
//!   only every half of `max_snapshot_age_ms` (at most 30 s; at the usual interval after a
//!   failed sync). Envoy runs one such VM on its main thread for
//!   every Wasm filter configuration (it never gets a request), and that thread shares a core
//!   with a worker: its read, at once every 5 s, took that core from the worker for as long. A worker whose first
//!   request comes later has a snapshot within the staleness bound, and syncs at the usual
//!   interval from then on.

use super::Gateway;
use crate::entitlement::{Customer, Progress, Snapshot, SnapshotReader};
use crate::host::Host;
use crate::keys::ConsumerKey;
use crate::time::Timestamp;
use std::collections::hash_map;

/// Bytes of a loading snapshot a tick (or the sync's answer) reads while requests flow.
pub const SNAPSHOT_BYTES_PER_TICK: usize = 16 * 1024;
/// A VM that never served a request reads a loading snapshot in this many ticks at most.
pub const SNAPSHOT_TICKS_WITHOUT_REQUESTS: usize = 20;
/// The longest a VM that never served a request waits between syncs (half
/// `max_snapshot_age_ms` if shorter): a worker whose first request comes late decides on a
/// snapshot at most this old.
pub const SNAPSHOT_MAX_SYNC_WITHOUT_REQUESTS_MS: u64 = 30_000;
/// The most one request reads (about 500 customers or keys; a few milliseconds in V8), however
/// few requests there are to share the document.
pub const SNAPSHOT_MAX_BYTES_PER_REQUEST: usize = 64 * 1024;

/// A snapshot document arrived and not yet read to its end.
#[derive(Debug)]
pub(super) struct Loading {
    body: Vec<u8>,
    reader: SnapshotReader,
    /// When the answer arrived: the snapshot's age counts from then.
    received_at: Timestamp,
    /// What each request reads.
    per_request: usize,
    /// When it must be read: after it, the next request or tick reads the rest at once.
    deadline: Timestamp,
}

/// A replaced snapshot, freed a few customers and keys at a time: freeing 10,000 of each at
/// once took several milliseconds of a Wasm worker (the step that installs the new one went
/// from 7–11 ms to 4–7 ms in wasmtime when it stopped freeing the old one).
#[derive(Debug)]
pub(super) struct Retiring {
    customers: hash_map::IntoIter<String, Customer>,
    keys: std::vec::IntoIter<ConsumerKey>,
    /// Entries each request frees.
    per_request: usize,
}

/// JSON bytes a customer or key is counted as when its freeing is shared out like a load (an
/// entry is 100 to 200 bytes of JSON, and freeing one is cheaper than reading one).
const BYTES_PER_FREED_ENTRY: usize = 64;

impl Retiring {
    fn left(&self) -> usize {
        self.customers.len() + self.keys.len()
    }

    /// Frees up to `n` entries; `true` once none is left.
    fn free(&mut self, n: usize) -> bool {
        for _ in 0..n {
            if self.customers.next().is_none() && self.keys.next().is_none() {
                return true;
            }
        }
        self.left() == 0
    }
}

impl Gateway {
    /// The answer to a sync: reads what a tick may read now, the rest with requests and ticks.
    /// No other sync starts until it is read.
    pub(super) fn start_snapshot_load(
        &mut self,
        host: &mut dyn Host,
        body: Vec<u8>,
        now: Timestamp,
    ) {
        let len = body.len();
        let per_request = self.snapshot_share_per_request(len, now);
        let window = self.snapshot_load_window_ms(now).unwrap_or(0);
        self.snapshot.loading = Some(Loading {
            body,
            reader: SnapshotReader::default(),
            received_at: now,
            per_request,
            deadline: now.plus_nanos((window.min(i64::MAX as u64 / 1_000_000) as i64) * 1_000_000),
        });
        let budget = self.snapshot_budget_off_requests(len, now);
        self.load_snapshot(host, budget);
    }

    /// How long a load may take from `now`: half the time left before the snapshot in use goes
    /// stale and, in a worker that serves requests, half the sync interval at most; `None` when
    /// there is none or it is stale already (requests are under `failure_mode`: read at once).
    fn snapshot_load_window_ms(&self, now: Timestamp) -> Option<u64> {
        self.snapshot.snapshot.as_ref()?;
        let mut window = u64::MAX;
        if let (Some(max), Some(received)) =
            (self.snapshot.stale_after_ms, self.snapshot.received_at)
        {
            let left = (max as i64).saturating_sub(now.millis_since(received));
            if left <= 0 {
                return None;
            }
            window = left as u64 / 2;
        }
        if self.served_requests {
            window = window.min(self.config.sync_interval_ms / 2);
        }
        Some(window)
    }

    /// A request's share of a `len`-byte document: the whole within the load's window, at the
    /// requests per tick period seen lately.
    fn snapshot_share_per_request(&self, len: usize, now: Timestamp) -> usize {
        let Some(window) = self.snapshot_load_window_ms(now) else {
            return usize::MAX;
        };
        let tick = self.usual_tick_period_ms().max(1);
        let per_tick = self.requests_period_before.max(self.requests_since_tick) as u64;
        let requests = (per_tick.saturating_mul(window) / tick).max(1);
        let share = (len as u64).div_ceil(requests);
        share.min(SNAPSHOT_MAX_BYTES_PER_REQUEST as u64) as usize
    }

    /// What a tick or an answer may read of a `len`-byte document (see the module's notes).
    fn snapshot_budget_off_requests(&self, len: usize, now: Timestamp) -> usize {
        let Some(window) = self.snapshot_load_window_ms(now) else {
            return usize::MAX;
        };
        if !self.served_requests {
            let tick = self.usual_tick_period_ms().max(1);
            let ticks = (window / tick).clamp(1, SNAPSHOT_TICKS_WITHOUT_REQUESTS as u64);
            (len / ticks as usize).max(SNAPSHOT_MAX_BYTES_PER_REQUEST)
        } else if self.requests_since_tick == 0 && self.requests_period_before == 0 {
            usize::MAX
        } else {
            SNAPSHOT_BYTES_PER_TICK
        }
    }

    /// What a tick reads of a loading snapshot: its usual budget, or more if that would not
    /// end the load by its deadline without requests; everything once the deadline has passed.
    /// And what it frees of a replaced one.
    pub(super) fn load_snapshot_on_tick(&mut self, host: &mut dyn Host) {
        let now = host.now();
        if let Some(l) = self.snapshot.loading.as_ref() {
            let (len, left, deadline) = (
                l.body.len(),
                l.body.len().saturating_sub(l.reader.position()),
                l.deadline,
            );
            let until = deadline.millis_since(now);
            let budget = if until <= 0 {
                usize::MAX
            } else {
                let tick = self.usual_tick_period_ms().max(1);
                let paced = (left as u64).saturating_mul(tick).div_ceil(until as u64);
                let paced = usize::try_from(paced).unwrap_or(usize::MAX);
                self.snapshot_budget_off_requests(len, now).max(paced)
            };
            self.load_snapshot(host, budget);
        }
        self.free_retiring_on_tick(now);
    }

    /// Before a decision: a load past its deadline is read to its end, so no request is decided
    /// on a snapshot left to go stale while a newer one waited.
    pub(super) fn finish_overdue_snapshot(&mut self, host: &mut dyn Host) {
        let Some(deadline) = self.snapshot.loading.as_ref().map(|l| l.deadline) else {
            return;
        };
        if host.now() >= deadline {
            self.load_snapshot(host, usize::MAX);
        }
    }

    /// How long after a sync attempt the next one is due: the sync interval; in a VM that never
    /// served a request and whose last sync did not fail, half the staleness bound (at most
    /// 30 s), if longer.
    pub(super) fn sync_interval_now_ms(&self) -> u64 {
        if self.served_requests
            || self.snapshot.snapshot.is_none()
            || self.snapshot.consecutive_failures > 0
        {
            self.config.sync_interval_ms
        } else {
            (self.config.max_snapshot_age_ms / 2)
                .min(SNAPSHOT_MAX_SYNC_WITHOUT_REQUESTS_MS)
                .max(self.config.sync_interval_ms)
        }
    }

    /// Frees `old` a share at a time, shared out as a load is (a snapshot still being freed
    /// from before goes at once).
    pub(super) fn retire_snapshot(&mut self, old: Snapshot, now: Timestamp) {
        let Snapshot {
            customers, keys, ..
        } = old;
        let entries = customers.len() + keys.len();
        let bytes = entries.saturating_mul(BYTES_PER_FREED_ENTRY);
        self.snapshot.retiring = Some(Retiring {
            customers: customers.into_iter(),
            keys: keys.into_keys().into_iter(),
            per_request: self.snapshot_share_per_request(bytes, now) / BYTES_PER_FREED_ENTRY + 1,
        });
    }

    /// A request's share of a loading snapshot, or of freeing the one it replaced (after the
    /// request's response, or after its refusal).
    pub(super) fn load_snapshot_share(&mut self, host: &mut dyn Host) {
        if let Some(share) = self.snapshot.loading.as_ref().map(|l| l.per_request) {
            self.load_snapshot(host, share);
        }
        if let Some(n) = self.snapshot.retiring.as_ref().map(|r| r.per_request) {
            self.free_retiring(n);
        }
    }

    /// What a tick frees of a replaced snapshot.
    fn free_retiring_on_tick(&mut self, now: Timestamp) {
        if let Some(left) = self.snapshot.retiring.as_ref().map(Retiring::left) {
            let bytes = left.saturating_mul(BYTES_PER_FREED_ENTRY);
            let budget = self.snapshot_budget_off_requests(bytes, now);
            self.free_retiring(budget / BYTES_PER_FREED_ENTRY + 1);
        }
    }

    /// Frees `n` entries of a replaced snapshot.
    fn free_retiring(&mut self, n: usize) {
        if let Some(r) = self.snapshot.retiring.as_mut() {
            if r.free(n) {
                self.snapshot.retiring = None;
            }
        }
    }

    /// Reads `budget` more bytes of a loading snapshot; installs it (or counts a failed sync)
    /// once it is read.
    pub(super) fn load_snapshot(&mut self, host: &mut dyn Host, budget: usize) {
        let Some(loading) = self.snapshot.loading.as_mut() else {
            return;
        };
        let Progress::Done(read) = loading.reader.step(&loading.body, budget) else {
            return;
        };
        let received_at = loading.received_at;
        self.snapshot.loading = None;
        self.snapshot.sync_in_flight = false;
        match read {
            Ok(s) => self.accept_snapshot(host, s, received_at),
            Err(e) => self.sync_failed(host, &format!("invalid snapshot: {e}")),
        }
    }

    /// Whether a synced snapshot is being read, and how much of it (bytes read, bytes in all).
    pub fn snapshot_loading(&self) -> Option<(usize, usize)> {
        self.snapshot
            .loading
            .as_ref()
            .map(|l| (l.reader.position(), l.body.len()))
    }

    /// Customers and keys of a replaced snapshot not yet freed.
    #[cfg(test)]
    pub(super) fn retiring_left(&self) -> Option<usize> {
        self.snapshot.retiring.as_ref().map(Retiring::left)
    }
}
