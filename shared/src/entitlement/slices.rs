//! Quota slices: a worker counts up to `slice` units of a counter in its own memory and merges
//! them into shared data (one read and one CAS) when the slice would be spent and on every tick,
//! so a request usually reserves without any host call.
//!
//! The price is stated, not hidden: a worker holds fewer than `slice` units of a counter that
//! the other workers have not seen, so a window's count can pass its quota by less than
//! `workers × slice` units. A change of `slice` units or more, and the change that would spend
//! a slice, is checked against a fresh read of shared data and written by CAS, as in the exact
//! mode (`slice` 0: every change is a CAS on shared data). A check that adds nothing (a token
//! quota's admission) reads shared data. A local view counts this worker's units and what
//! shared data held when it was read, so it refuses only what shared data would refuse too,
//! except units another worker refunded since (until the next tick, when every view is read
//! again).

use super::counter_contract::CounterValue;
use super::counters::{CounterBackend, ModifyFn};
use crate::host::SharedSetError;
use crate::time::Timestamp;
use std::collections::HashMap;

/// The warning when shared data refuses to take a worker's held units.
const MERGE_REFUSED: &str =
    "aforo: shared data refused the merge of a quota slice; its units stay counted in this worker";

/// Most CAS attempts of one merge (then the units stay local until the next tick).
const MAX_MERGE_ATTEMPTS: u32 = 64;

/// One counter as this worker sees it.
#[derive(Clone, Copy, Debug)]
struct Local {
    window_start: Timestamp,
    /// The shared count when last read or merged.
    seen: u64,
    /// Units counted here and not merged yet (negative for refunds).
    pending: i64,
    /// The CAS token handed to `counters::update` for this view.
    version: u32,
    /// Shared data's own CAS token, while the view is a fresh read with nothing counted since.
    token: Option<u32>,
}

impl Local {
    fn count(&self) -> u64 {
        apply(self.seen, self.pending)
    }
}

fn apply(count: u64, delta: i64) -> u64 {
    if delta >= 0 {
        count.saturating_add(delta as u64)
    } else {
        count.saturating_sub(delta.unsigned_abs())
    }
}

/// The counters a worker holds between merges.
#[derive(Debug, Default)]
pub struct Slices {
    slice: u64,
    local: HashMap<String, Local>,
    next_version: u32,
}

impl Slices {
    /// Slices of `slice` units per counter (0: exact, nothing held locally).
    pub fn new(slice: u64) -> Self {
        Slices {
            slice,
            ..Slices::default()
        }
    }

    /// Units a worker may count before merging.
    pub fn slice(&self) -> u64 {
        self.slice
    }

    /// Counters held with units not merged yet.
    pub fn unmerged(&self) -> usize {
        self.local.values().filter(|l| l.pending != 0).count()
    }

    /// Merges every counter's local units into `shared` and forgets the local views, so the
    /// next request of each counter reads a fresh count (the tick's work). Counters whose merge
    /// failed (shared data unavailable or contended) keep their units for the next tick.
    pub fn merge_all(&mut self, shared: &mut dyn CounterBackend) {
        let mut failed = 0;
        self.local.retain(|key, l| {
            if l.pending == 0 || merge(shared, key, l.window_start, l.pending).is_some() {
                return false;
            }
            failed += 1;
            true
        });
        if failed > 0 {
            shared.warn(&format!(
                "aforo: shared data refused the merge of {failed} quota slices; their units stay counted in this worker and are merged on a later tick"
            ));
        }
    }

    /// The counter backend the admission uses: `shared` behind this worker's slices.
    pub fn over<'a>(&'a mut self, shared: &'a mut dyn CounterBackend) -> Sliced<'a> {
        Sliced {
            slices: self,
            shared,
        }
    }

    fn version(&mut self) -> u32 {
        self.next_version = self.next_version.wrapping_add(1).max(1);
        self.next_version
    }
}

/// Adds `pending` to the shared count of `key` in `window_start`'s window by CAS; the new
/// shared count, or `None` when shared data refused every attempt. A stored count of another
/// window is replaced only when this one is newer (an ended window's units are dropped).
fn merge(
    shared: &mut dyn CounterBackend,
    key: &str,
    window_start: Timestamp,
    pending: i64,
) -> Option<u64> {
    for _ in 0..MAX_MERGE_ATTEMPTS {
        let (current, cas) = match shared.read(key) {
            None => (0, 0),
            Some((bytes, cas)) if bytes.is_empty() => (0, cas),
            Some((bytes, cas)) => match CounterValue::decode(key, &bytes) {
                Some(v) if v.window_start == window_start => (v.count, cas),
                Some(v) if v.window_start > window_start => return Some(0),
                Some(_) => (0, cas),
                None => return None,
            },
        };
        let next = apply(current, pending);
        let bytes = CounterValue {
            window_start,
            count: next,
        }
        .encode(key);
        match shared.write(key, &bytes, cas) {
            Ok(()) => return Some(next),
            Err(SharedSetError::CasMismatch) => continue,
            Err(SharedSetError::Unavailable(_)) => return None,
        }
    }
    None
}

/// Shared data seen through a worker's slices (a [`CounterBackend`] for `counters::update`).
pub struct Sliced<'a> {
    slices: &'a mut Slices,
    shared: &'a mut dyn CounterBackend,
}

impl Sliced<'_> {
    /// A fresh local view of `key` in `window_start`'s window, after merging what was held
    /// for it. When shared data refuses that merge, the held units stay (counted locally, as
    /// before) unless they belong to an ended window.
    fn refresh(&mut self, key: &str, window_start: Timestamp) {
        if let Some(l) = self.slices.local.remove(key) {
            let merged =
                l.pending == 0 || merge(self.shared, key, l.window_start, l.pending).is_some();
            if !merged && l.window_start >= window_start {
                self.shared.warn(MERGE_REFUSED);
                self.slices
                    .local
                    .insert(key.to_string(), Local { token: None, ..l });
                return;
            }
        }
        let (seen, token) = match self.shared.read(key) {
            Some((bytes, cas)) => match CounterValue::decode(key, &bytes) {
                Some(v) if v.window_start == window_start => (v.count, Some(cas)),
                Some(v) if v.window_start > window_start => (0, None),
                _ => (0, Some(cas)),
            },
            None => (0, Some(0)),
        };
        let version = self.slices.version();
        self.slices.local.insert(
            key.to_string(),
            Local {
                window_start,
                seen,
                pending: 0,
                version,
                token,
            },
        );
    }

    /// Holds `pending` units for `key` in the view `l` (no longer a fresh read).
    fn keep(&mut self, key: &str, l: Local, pending: i64) {
        self.hold(
            key,
            Local {
                pending,
                token: None,
                ..l
            },
        );
    }

    fn hold(&mut self, key: &str, l: Local) {
        let version = self.slices.version();
        self.slices
            .local
            .insert(key.to_string(), Local { version, ..l });
    }
}

fn encode(key: &str, l: &Local) -> Vec<u8> {
    CounterValue {
        window_start: l.window_start,
        count: l.count(),
    }
    .encode(key)
}

impl CounterBackend for Sliced<'_> {
    fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        if self.slices.slice == 0 {
            return self.shared.read(key);
        }
        match self.slices.local.get(key) {
            Some(l) => Some((encode(key, l), l.version)),
            // Not held: the first write takes a view (see `write`).
            None => self.shared.read(key).map(|(bytes, _)| (bytes, 0)),
        }
    }

    fn read_current(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let stored = self.shared.read(key);
        if self.slices.slice == 0 {
            return stored;
        }
        let Some(l) = self.slices.local.get(key).filter(|l| l.pending != 0) else {
            return stored;
        };
        // Shared data's count, plus what this worker holds for the same window.
        let count = match stored.as_ref().map(|(b, _)| CounterValue::decode(key, b)) {
            Some(Some(v)) if v.window_start == l.window_start => v.count,
            Some(Some(v)) if v.window_start > l.window_start => return stored,
            Some(None) => return stored,
            _ => 0,
        };
        let value = CounterValue {
            window_start: l.window_start,
            count: apply(count, l.pending),
        };
        Some((value.encode(key), 0))
    }

    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        if self.slices.slice == 0 {
            return self.shared.write(key, value, cas);
        }
        let Some(next) = CounterValue::decode(key, value) else {
            return Err(SharedSetError::Unavailable(
                "a counter value that is not this key's".into(),
            ));
        };
        let held = self.slices.local.get(key).copied();
        let Some(l) = held.filter(|l| l.version == cas && l.window_start == next.window_start)
        else {
            // Not held yet (or held for another window): take a fresh view, and let
            // `counters::update` check again against it.
            self.refresh(key, next.window_start);
            return Err(SharedSetError::CasMismatch);
        };
        // Counts stay far below 2^63 (MAX_UNITS), so the difference fits.
        let delta = next.count.wrapping_sub(l.count()) as i64;
        let pending = l.pending.saturating_add(delta);
        if pending.unsigned_abs() < self.slices.slice {
            self.keep(key, l, pending);
            return Ok(());
        }
        // The slice would be spent. On a fresh view (checked against shared data as it is,
        // with its CAS token), write through exactly; else merge what is held, read again, and
        // let `counters::update` check against that.
        let Some(token) = l.token.filter(|_| l.pending == 0) else {
            if l.pending != 0 && merge(self.shared, key, l.window_start, l.pending).is_none() {
                self.shared.warn(MERGE_REFUSED);
                self.keep(key, l, pending);
                return Ok(());
            }
            self.slices.local.remove(key);
            self.refresh(key, next.window_start);
            return Err(SharedSetError::CasMismatch);
        };
        match self.shared.write(key, value, token) {
            Ok(()) => {
                let seen = next.count;
                self.hold(
                    key,
                    Local {
                        seen,
                        pending: 0,
                        token: None,
                        ..l
                    },
                );
                Ok(())
            }
            Err(SharedSetError::CasMismatch) => {
                self.refresh(key, next.window_start);
                Err(SharedSetError::CasMismatch)
            }
            Err(SharedSetError::Unavailable(why)) => {
                // Shared data refuses: the units stay held here and are merged on a later
                // tick (until then this worker counts alone, as the exact mode does).
                self.shared.warn(&format!(
                    "aforo: shared data unavailable ({why}); quota units are held in this worker until it works again"
                ));
                self.keep(key, l, pending);
                Ok(())
            }
        }
    }

    fn warn(&self, message: &str) {
        self.shared.warn(message);
    }

    fn modify(&mut self, key: &str, f: &mut ModifyFn<'_>) -> Option<Result<(), SharedSetError>> {
        // Exact mode passes straight through; slices keep their own read-then-write path.
        if self.slices.slice == 0 {
            self.shared.modify(key, f)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::counters::{read, update, MemoryCounters, Update};
    use proptest::prelude::*;

    const KEY: &str = "aforo:q:production:acme:search";

    /// One reservation of `units` against `quota` by a worker; whether it was admitted.
    fn reserve(
        slices: &mut Slices,
        shared: &mut MemoryCounters,
        window: Timestamp,
        units: u64,
        quota: u64,
    ) -> bool {
        let check = |used: u64| {
            if used + units <= quota {
                Ok(())
            } else {
                Err(())
            }
        };
        matches!(
            update(&mut slices.over(shared), KEY, window, units as i64, check),
            Update::Done(()) | Update::Unshared(Ok(()))
        )
    }

    /// Shared data as a test sees it: counts reads and writes (what slices save), and can
    /// refuse every write (shared data down).
    struct Observed<'a> {
        inner: &'a mut MemoryCounters,
        calls: std::cell::Cell<u64>,
        down: bool,
    }

    impl<'a> Observed<'a> {
        fn new(inner: &'a mut MemoryCounters, down: bool) -> Self {
            Observed {
                inner,
                calls: std::cell::Cell::new(0),
                down,
            }
        }
    }

    impl CounterBackend for Observed<'_> {
        fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.calls.set(self.calls.get() + 1);
            self.inner.read(key)
        }
        fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
            self.calls.set(self.calls.get() + 1);
            if self.down {
                return Err(SharedSetError::Unavailable("down".into()));
            }
            self.inner.write(key, value, cas)
        }
        fn warn(&self, _message: &str) {}
    }

    proptest! {
        /// Workers interleaved at random, with ticks at random: the count never passes the
        /// quota by more than workers × slice, every quota unit can be used, and once merged
        /// the shared count is exactly what was admitted (nothing lost, nothing twice).
        #[test]
        fn over_admission_stays_within_workers_times_slice(
            workers in 1usize..6,
            slice in 0u64..20,
            quota in 0u64..200,
            steps in proptest::collection::vec((0usize..6, 0u8..10), 50..600),
        ) {
            let window = Timestamp::from_unix_secs(1_000);
            let mut shared = MemoryCounters::new();
            let mut slices: Vec<Slices> = (0..workers).map(|_| Slices::new(slice)).collect();
            let mut admitted = 0u64;
            for (w, action) in steps {
                let w = w % workers;
                if action == 0 {
                    slices[w].merge_all(&mut shared);
                } else if reserve(&mut slices[w], &mut shared, window, 1, quota) {
                    admitted += 1;
                }
                prop_assert!(admitted <= quota + workers as u64 * slice,
                    "admitted {admitted} of a quota of {quota} with {workers} workers and slices of {slice}");
            }
            // Enough further requests: the whole quota becomes usable.
            for i in 0..(quota as usize + workers * slice as usize + 2 * workers) {
                if reserve(&mut slices[i % workers], &mut shared, window, 1, quota) {
                    admitted += 1;
                }
            }
            prop_assert!(admitted >= quota, "only {admitted} of a quota of {quota} admitted");
            prop_assert!(admitted <= quota + workers as u64 * slice);
            if slice == 0 {
                prop_assert_eq!(admitted, quota, "slice 0 is exact");
            }
            for s in &mut slices {
                s.merge_all(&mut shared);
                prop_assert_eq!(s.unmerged(), 0);
            }
            prop_assert_eq!(read(&shared, KEY, window), admitted);
        }

        /// Reservations of several units (some larger than a slice) and refunds of earlier
        /// ones, workers and ticks interleaved at random: the net count never passes the quota
        /// by workers × slice or more, and once merged shared data holds exactly the net count.
        #[test]
        fn multi_unit_reservations_and_refunds_stay_within_the_bound(
            workers in 1usize..5,
            slice in 1u64..12,
            quota in 0u64..150,
            steps in proptest::collection::vec((0usize..5, 0u8..10, 1u64..16), 50..500),
        ) {
            let window = Timestamp::from_unix_secs(1_000);
            let mut shared = MemoryCounters::new();
            let mut slices: Vec<Slices> = (0..workers).map(|_| Slices::new(slice)).collect();
            // A refund comes from the worker that reserved (an exchange lives in one VM).
            let mut held: Vec<(usize, u64)> = Vec::new();
            let mut net = 0u64;
            for (w, action, units) in steps {
                let w = w % workers;
                match action {
                    0 => slices[w].merge_all(&mut shared),
                    8 | 9 => {
                        if let Some((by, u)) = held.pop() {
                            let back = update(&mut slices[by].over(&mut shared), KEY, window, -(u as i64), |_| Ok::<(), ()>(()));
                            prop_assert!(matches!(back, Update::Done(())));
                            net -= u;
                        }
                    }
                    _ => {
                        if reserve(&mut slices[w], &mut shared, window, units, quota) {
                            held.push((w, units));
                            net += units;
                        }
                    }
                }
                prop_assert!(net < quota + (workers as u64) * slice || net <= quota,
                    "net {net} of a quota of {quota} with {workers} workers and slices of {slice}");
            }
            for s in &mut slices {
                s.merge_all(&mut shared);
            }
            prop_assert_eq!(read(&shared, KEY, window), net);
        }
    }

    #[test]
    fn a_slice_saves_shared_data_calls_per_request() {
        let window = Timestamp::from_unix_secs(1_000);
        for (slice, most_calls) in [(0u64, 200u64), (10, 40)] {
            let mut shared = MemoryCounters::new();
            let mut slices = Slices::new(slice);
            let mut counting = Observed::new(&mut shared, false);
            for _ in 0..100 {
                let check = |used: u64| if used < 1_000 { Ok(()) } else { Err(()) };
                let done = update(&mut slices.over(&mut counting), KEY, window, 1, check);
                assert!(matches!(done, Update::Done(())));
            }
            slices.merge_all(&mut counting);
            let calls = counting.calls.get();
            assert!(
                calls <= most_calls,
                "slice {slice}: {calls} shared-data calls for 100 reservations"
            );
            assert_eq!(read(&shared, KEY, window), 100);
        }
    }

    #[test]
    fn refunds_and_a_new_window_are_counted_where_they_belong() {
        let w1 = Timestamp::from_unix_secs(1_000);
        let w2 = Timestamp::from_unix_secs(2_000);
        let mut shared = MemoryCounters::new();
        let mut slices = Slices::new(50);
        for _ in 0..5 {
            assert!(reserve(&mut slices, &mut shared, w1, 2, 100));
        }
        // A refund (a response that was not billable) while units are held.
        let refund = update(&mut slices.over(&mut shared), KEY, w1, -2, |_| {
            Ok::<(), ()>(())
        });
        assert!(matches!(refund, Update::Done(())));
        // The next window starts: the held units of the first are merged into it, not the new one.
        assert!(reserve(&mut slices, &mut shared, w2, 3, 100));
        assert_eq!(read(&shared, KEY, w1), 8);
        slices.merge_all(&mut shared);
        assert_eq!(read(&shared, KEY, w2), 3);
    }

    /// Shared data that refuses every write: units stay counted locally (as the exact mode
    /// counts per worker then) and nothing is lost once it works again.
    #[test]
    fn units_held_while_shared_data_refuses_are_merged_later() {
        let window = Timestamp::from_unix_secs(1_000);
        let mut shared = MemoryCounters::new();
        let mut slices = Slices::new(4);
        let mut admitted = 0;
        for _ in 0..10 {
            let check = |used: u64| if used < 100 { Ok(()) } else { Err(()) };
            let mut down = Observed::new(&mut shared, true);
            match update(&mut slices.over(&mut down), KEY, window, 1, check) {
                Update::Done(()) | Update::Unshared(Ok(())) => admitted += 1,
                other => panic!("refused while shared data is down: {other:?}"),
            }
            slices.merge_all(&mut down);
        }
        assert_eq!(admitted, 10);
        assert_eq!(read(&shared, KEY, window), 0);
        slices.merge_all(&mut Observed::new(&mut shared, false));
        assert_eq!(slices.unmerged(), 0);
        assert_eq!(
            read(&shared, KEY, window),
            10,
            "every held unit was merged, once"
        );
    }
}
