//! Per-window usage counters behind a small CAS store, updated with a read-then-CAS loop so
//! every worker of a proxy (or every request of an agent) counts into the same number. Proxies
//! back it with host shared data (portable across Envoy's and Kong's CAS rules); the agent and
//! the WASI component with their own stores.
//!
//! The value layout and key names are the counter contract (`counter_contract.rs`).
//!
//! Exactness: every update of an existing key is atomic. Creating a key is atomic on Kong
//! (`cas = 0` means "must not exist") but not on Envoy (`cas = 0` overwrites), so on Envoy the
//! very first increments of a brand-new key by several workers at the same instant can lose
//! at most `workers - 1` units, once per key (per customer, feature and process lifetime).
//!
//! Stores that can hold a key while a rule runs (the native Envoy module's) implement
//! `CounterBackend::modify`: an update is then one atomic step, with no retries to run out of
//! under contention and no creation caveat.

use super::counter_contract::CounterValue;
use crate::host::{Host, LogLevel, SharedSetError};
use crate::time::Timestamp;
use std::collections::HashMap;

/// A key-value store with compare-and-swap, where counters live.
pub trait CounterBackend {
    /// The value of `key` and its CAS token (`None` when absent).
    fn read(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the token still matches (`0` for a key read as absent).
    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError>;
    /// Reports a degraded condition (a log line on hosts).
    fn warn(&self, message: &str);
    /// The value of `key` for a check that adds nothing (a token quota's admission): stores
    /// that keep local views between merges answer with shared data's count here.
    fn read_current(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.read(key)
    }
    /// Reads and rewrites `key` in one atomic step: `f` gets the stored bytes and returns what
    /// to store (`None`: leave them). `None` when the store cannot (updates then use `read`
    /// and `write` with CAS).
    fn modify(&mut self, _key: &str, _f: &mut ModifyFn<'_>) -> Option<Result<(), SharedSetError>> {
        None
    }
    /// Takes `cost` units (at least one) of the quota counter `key` in `window` under `quota`
    /// from a lease this node holds or gets from the shared store (`lease.rs`), on stores that
    /// lease quotas across nodes; the store's count holds every node's usage, so a snapshot's
    /// `used` is not added. `None`: the store does not lease, or could not be reached with
    /// nothing held; the update then runs with `read` and `write`.
    fn take_leased(
        &mut self,
        _key: &str,
        _window: (Timestamp, Timestamp),
        _quota: u64,
        _cost: u64,
        _now: Timestamp,
    ) -> Option<Leased> {
        None
    }
    /// Gives back `units` a request took from a lease of `key` in the window starting at
    /// `window_start` and did not use (its response was not billable).
    fn give_leased(&mut self, _key: &str, _window_start: Timestamp, _units: u64) {}
}

/// What a quota lease answered for a request's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leased {
    /// Taken; `remaining` is what is left of the quota as this node last heard.
    Admitted {
        /// Units left (the lease's and the store's).
        remaining: u64,
    },
    /// Not enough is left in the window now.
    Refused {
        /// Units left (fewer than asked).
        remaining: u64,
        /// When asking again may succeed (units come back as other nodes' leases end; the
        /// window's end when none can).
        retry_at: Timestamp,
    },
}

/// A rule run under a store's lock: the stored bytes in, the bytes to store out.
pub type ModifyFn<'a> = dyn FnMut(Option<&[u8]>) -> Option<Vec<u8>> + 'a;

/// Host shared data as a counter store.
pub struct HostCounters<'a>(pub &'a mut dyn Host);

impl CounterBackend for HostCounters<'_> {
    fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.shared_get(key)
    }
    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        self.0.shared_set(key, value, cas)
    }
    fn warn(&self, message: &str) {
        self.0.log(LogLevel::Warn, message);
    }
    fn modify(&mut self, key: &str, f: &mut ModifyFn<'_>) -> Option<Result<(), SharedSetError>> {
        self.0.shared_modify(key, f)
    }
}

/// An in-process counter store with atomic creation (agents, components, tests).
#[derive(Debug, Default)]
pub struct MemoryCounters {
    map: HashMap<String, (Vec<u8>, u32)>,
    next: u32,
}

impl MemoryCounters {
    /// An empty store.
    pub fn new() -> Self {
        MemoryCounters::default()
    }

    /// Number of counters.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl CounterBackend for MemoryCounters {
    fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.get(key).cloned()
    }
    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        let current = self.map.get(key).map(|(_, c)| *c).unwrap_or(0);
        if cas != current {
            return Err(SharedSetError::CasMismatch);
        }
        self.next = self.next.wrapping_add(1).max(1);
        self.map
            .insert(key.to_string(), (value.to_vec(), self.next));
        Ok(())
    }
    fn warn(&self, _message: &str) {}
}

/// Most CAS attempts before giving up (then the request is decided without the shared count).
const MAX_ATTEMPTS: u32 = 64;

fn decode(key: &str, bytes: &[u8]) -> Option<CounterValue> {
    CounterValue::decode(key, bytes)
}

/// What an update attempt concluded.
#[derive(Debug, PartialEq, Eq)]
pub enum Update<T, E> {
    /// Written: the check passed with this count.
    Done(T),
    /// The check refused; nothing written.
    Refused(E),
    /// Shared data is unusable; the check's verdict on a count of 0 is returned unwritten.
    Unshared(Result<T, E>),
}

/// Reads the count of `key` for `window_start`, runs `check(count)`, and when it passes adds
/// `delta` (which may be negative, for refunds) atomically. A stored count from an older window
/// reads as 0 and is replaced; one from a newer window is left alone (a late refund of an ended
/// window must not reset the current one), and the check runs on 0 without writing.
pub fn update<T, E>(
    host: &mut dyn CounterBackend,
    key: &str,
    window_start: Timestamp,
    delta: i64,
    mut check: impl FnMut(u64) -> Result<T, E>,
) -> Update<T, E> {
    if delta != 0 {
        if let Some(done) = update_in_place(host, key, window_start, delta, &mut check) {
            return done;
        }
    }
    for _ in 0..MAX_ATTEMPTS {
        let stored = if delta == 0 {
            host.read_current(key)
        } else {
            host.read(key)
        };
        let (current, cas) = match stored {
            Some((bytes, cas)) if bytes.is_empty() => (0, cas),
            Some((bytes, cas)) => match decode(key, &bytes) {
                Some(s) if s.window_start == window_start => (s.count, cas),
                Some(s) if s.window_start > window_start => {
                    return match check(0) {
                        Ok(v) => Update::Done(v),
                        Err(e) => Update::Refused(e),
                    }
                }
                Some(_) => (0, cas),
                None => {
                    host.warn(&format!(
                        "aforo: shared counter {key:?} holds another key's value (host key aliasing); counting locally"
                    ));
                    return Update::Unshared(check(0));
                }
            },
            None => (0, 0),
        };
        let verdict = check(current);
        let value = match verdict {
            Err(e) => return Update::Refused(e),
            Ok(v) => v,
        };
        if delta == 0 {
            return Update::Done(value);
        }
        let bytes = CounterValue {
            window_start,
            count: add(current, delta),
        }
        .encode(key);
        match host.write(key, &bytes, cas) {
            Ok(()) => return Update::Done(value),
            Err(SharedSetError::CasMismatch) => continue,
            Err(SharedSetError::Unavailable(why)) => {
                host.warn(&format!(
                    "aforo: shared data unavailable ({why}); quotas are counted per worker"
                ));
                return Update::Unshared(Ok(value));
            }
        }
    }
    host.warn(&format!(
        "aforo: shared counter {key:?} stayed contended; decided without it"
    ));
    Update::Unshared(check(0))
}

/// `count + delta`, within `0..=u64::MAX`.
fn add(count: u64, delta: i64) -> u64 {
    if delta >= 0 {
        count.saturating_add(delta as u64)
    } else {
        count.saturating_sub(delta.unsigned_abs())
    }
}

/// `update` as one atomic step, on stores that implement `modify`; `None` on others. The same
/// rules as the CAS loop: an older window reads as 0, a newer one is left alone, another key's
/// value is counted locally. Only this wrapper is generic (it is instantiated per caller);
/// the step itself is not, to keep the Wasm filter, which never takes this path, small.
fn update_in_place<T, E>(
    host: &mut dyn CounterBackend,
    key: &str,
    window_start: Timestamp,
    delta: i64,
    check: &mut impl FnMut(u64) -> Result<T, E>,
) -> Option<Update<T, E>> {
    let mut verdict: Option<Result<T, E>> = None;
    let step = in_place(host, key, window_start, delta, &mut |count| {
        let v = check(count);
        let passed = v.is_ok();
        verdict = Some(v);
        passed
    })?;
    Some(match (step, verdict) {
        (InPlace::Written, Some(Ok(v))) => Update::Done(v),
        (InPlace::Left, Some(Ok(v))) => Update::Done(v),
        (_, Some(Err(e))) => Update::Refused(e),
        (InPlace::Unshared, Some(Ok(v))) => Update::Unshared(Ok(v)),
        (InPlace::Aliased, _) | (_, None) => Update::Unshared(check(0)),
    })
}

/// What one in-place step did.
enum InPlace {
    /// The check passed and the new count was stored.
    Written,
    /// The check ran on 0 for a newer window's counter, which was left alone.
    Left,
    /// The store holds another key's value: nothing was checked or written.
    Aliased,
    /// The store refused: the check's verdict stands, unwritten.
    Unshared,
}

/// The step of `update_in_place`: `check` gets the count and says whether it passes.
fn in_place(
    host: &mut dyn CounterBackend,
    key: &str,
    window_start: Timestamp,
    delta: i64,
    check: &mut dyn FnMut(u64) -> bool,
) -> Option<InPlace> {
    let mut step = InPlace::Aliased;
    let written = host.modify(key, &mut |stored: Option<&[u8]>| {
        let current = match stored.filter(|b| !b.is_empty()).map(|b| decode(key, b)) {
            None => 0,
            Some(Some(v)) if v.window_start == window_start => v.count,
            Some(Some(v)) if v.window_start > window_start => {
                check(0);
                step = InPlace::Left;
                return None;
            }
            Some(Some(_)) => 0,
            Some(None) => {
                step = InPlace::Aliased;
                return None;
            }
        };
        step = InPlace::Written;
        check(current).then(|| {
            CounterValue {
                window_start,
                count: add(current, delta),
            }
            .encode(key)
        })
    })?;
    match (written, step) {
        (_, InPlace::Aliased) => {
            host.warn(&format!(
                "aforo: shared counter {key:?} holds another key's value (host key aliasing); counting locally"
            ));
            Some(InPlace::Aliased)
        }
        (Ok(()), step) => Some(step),
        (Err(SharedSetError::Unavailable(why)), _) => {
            host.warn(&format!(
                "aforo: shared data unavailable ({why}); quotas are counted per worker"
            ));
            Some(InPlace::Unshared)
        }
        // A store that holds the key cannot lose a race: use the CAS loop if it says so.
        (Err(SharedSetError::CasMismatch), _) => None,
    }
}

/// The window a stored counter value belongs to (hosts that expire counters, such as the
/// agent's Redis store, set the expiry from it).
pub fn stored_window_start(key: &str, bytes: &[u8]) -> Option<Timestamp> {
    decode(key, bytes).map(|s| s.window_start)
}

/// The current count of `key` in `window_start`'s window (0 when absent or from another window).
pub fn read(host: &dyn CounterBackend, key: &str, window_start: Timestamp) -> u64 {
    match host.read(key) {
        Some((bytes, _)) => stored_count(key, &bytes, window_start),
        None => 0,
    }
}

/// The count a stored value holds for `window_start`'s window (0 when it is another window's),
/// for hosts that read many values in one round trip.
pub fn stored_count(key: &str, bytes: &[u8], window_start: Timestamp) -> u64 {
    match decode(key, bytes) {
        Some(s) if s.window_start == window_start => s.count,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::test_host::TestHost;

    fn store(h: &mut TestHost) -> HostCounters<'_> {
        HostCounters(h)
    }

    #[test]
    fn counts_add_and_refuse_atomically() {
        let mut h = TestHost::new();
        let w = Timestamp::from_unix_secs(100);
        let limit = 3;
        let mut admitted = 0;
        for _ in 0..5 {
            match update(&mut store(&mut h), "q|a", w, 1, |c| {
                if c < limit {
                    Ok(c)
                } else {
                    Err(c)
                }
            }) {
                Update::Done(_) => admitted += 1,
                Update::Refused(c) => assert_eq!(c, 3),
                Update::Unshared(_) => panic!("shared data is available"),
            }
        }
        assert_eq!(admitted, 3);
        assert_eq!(read(&store(&mut h), "q|a", w), 3);
        // A new window starts from zero.
        assert_eq!(
            read(&store(&mut h), "q|a", Timestamp::from_unix_secs(200)),
            0
        );
        // Refunds subtract.
        assert!(matches!(
            update(&mut store(&mut h), "q|a", w, -1, Ok::<u64, ()>),
            Update::Done(3)
        ));
        assert_eq!(read(&store(&mut h), "q|a", w), 2);
    }

    #[test]
    fn a_late_refund_of_an_ended_window_leaves_the_current_window_alone() {
        let mut h = TestHost::new();
        let (w1, w2) = (
            Timestamp::from_unix_secs(60),
            Timestamp::from_unix_secs(120),
        );
        assert!(matches!(
            update(&mut store(&mut h), "r", w2, 7, Ok::<u64, ()>),
            Update::Done(0)
        ));
        // A request admitted in w1 answered after w2 began: its refund must not reset w2.
        let _ = update(&mut store(&mut h), "r", w1, -1, Ok::<u64, ()>);
        assert_eq!(read(&store(&mut h), "r", w2), 7);
    }

    #[test]
    fn cas_conflicts_are_retried() {
        let mut h = TestHost::new();
        h.cas_conflicts = 3;
        let w = Timestamp::from_unix_secs(1);
        assert!(matches!(
            update(&mut store(&mut h), "k", w, 1, Ok::<u64, ()>),
            Update::Done(0)
        ));
        assert_eq!(read(&store(&mut h), "k", w), 1);
    }

    #[test]
    fn aliased_keys_are_detected() {
        let mut h = TestHost::new();
        let w = Timestamp::from_unix_secs(1);
        h.shared.insert(
            "k1".into(),
            (
                CounterValue {
                    window_start: w,
                    count: 9,
                }
                .encode("other"),
                1,
            ),
        );
        assert!(matches!(
            update(&mut store(&mut h), "k1", w, 1, Ok::<u64, ()>),
            Update::Unshared(Ok(0))
        ));
    }
}

#[cfg(test)]
mod memory_tests {
    use super::*;

    #[test]
    fn memory_counters_create_atomically() {
        let mut m = MemoryCounters::new();
        assert!(m.write("k", b"a", 0).is_ok());
        assert_eq!(
            m.write("k", b"b", 0),
            Err(SharedSetError::CasMismatch),
            "cas 0 means must not exist"
        );
        let (_, cas) = m.read("k").unwrap();
        assert!(m.write("k", b"c", cas).is_ok());
        let w = Timestamp::from_unix_secs(5);
        assert!(matches!(
            update(&mut m, "q", w, 2, Ok::<u64, ()>),
            Update::Done(0)
        ));
        assert_eq!(read(&m, "q", w), 2);
    }
}

#[cfg(test)]
mod in_place_tests {
    use super::*;
    use std::cell::Cell;

    /// A store that holds a key while a rule runs (as the native Envoy module's does), and
    /// counts how it was used.
    #[derive(Default)]
    struct Locked {
        inner: MemoryCounters,
        modifies: Cell<u32>,
        writes: Cell<u32>,
    }

    impl CounterBackend for Locked {
        fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.inner.read(key)
        }
        fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
            self.writes.set(self.writes.get() + 1);
            self.inner.write(key, value, cas)
        }
        fn warn(&self, _message: &str) {}
        fn modify(
            &mut self,
            key: &str,
            f: &mut ModifyFn<'_>,
        ) -> Option<Result<(), SharedSetError>> {
            self.modifies.set(self.modifies.get() + 1);
            let next = f(self.inner.map.get(key).map(|(v, _)| v.as_slice()));
            if let Some(bytes) = next {
                self.inner.next = self.inner.next.wrapping_add(1).max(1);
                self.inner
                    .map
                    .insert(key.to_string(), (bytes, self.inner.next));
            }
            Some(Ok(()))
        }
    }

    fn limit(n: u64) -> impl FnMut(u64) -> Result<u64, u64> {
        move |c| if c < n { Ok(c) } else { Err(c) }
    }

    #[test]
    fn an_update_is_one_step_with_the_same_rules_as_the_cas_loop() {
        let mut s = Locked::default();
        let (w1, w2) = (
            Timestamp::from_unix_secs(60),
            Timestamp::from_unix_secs(120),
        );
        let mut admitted = 0;
        for _ in 0..5 {
            match update(&mut s, "q", w1, 1, limit(3)) {
                Update::Done(_) => admitted += 1,
                Update::Refused(c) => assert_eq!(c, 3),
                Update::Unshared(_) => panic!("the store is available"),
            }
        }
        assert_eq!((admitted, read(&s, "q", w1)), (3, 3));
        assert_eq!((s.modifies.get(), s.writes.get()), (5, 0), "no CAS writes");
        // A refund subtracts; a new window starts from zero.
        assert!(matches!(
            update(&mut s, "q", w1, -1, limit(10)),
            Update::Done(3)
        ));
        assert_eq!(read(&s, "q", w1), 2);
        assert!(matches!(
            update(&mut s, "q", w2, 4, limit(10)),
            Update::Done(0)
        ));
        assert_eq!(read(&s, "q", w2), 4);
        // A late refund of the ended window leaves the current one alone.
        assert!(matches!(
            update(&mut s, "q", w1, -1, limit(10)),
            Update::Done(0)
        ));
        assert_eq!(read(&s, "q", w2), 4);
        // Another key's value: counted locally, never overwritten.
        let other = CounterValue {
            window_start: w2,
            count: 9,
        }
        .encode("other");
        s.inner.map.insert("k".into(), (other.clone(), 1));
        assert!(matches!(
            update(&mut s, "k", w2, 1, limit(10)),
            Update::Unshared(Ok(0))
        ));
        assert_eq!(s.inner.map.get("k").map(|(v, _)| v.clone()), Some(other));
    }
}

#[cfg(test)]
mod in_place_fallback_tests {
    use super::*;

    /// A store whose in-place step answers `answer` (and counts its CAS writes).
    struct Answering {
        inner: MemoryCounters,
        answer: SharedSetError,
        writes: u32,
    }

    impl CounterBackend for Answering {
        fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.inner.read(key)
        }
        fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
            self.writes += 1;
            self.inner.write(key, value, cas)
        }
        fn warn(&self, _message: &str) {}
        fn modify(
            &mut self,
            _key: &str,
            f: &mut ModifyFn<'_>,
        ) -> Option<Result<(), SharedSetError>> {
            let _ = f(None);
            Some(Err(self.answer.clone()))
        }
    }

    #[test]
    fn a_store_that_cannot_write_in_place_is_unshared_and_a_lost_race_falls_back_to_cas() {
        let w = Timestamp::from_unix_secs(60);
        let mut down = Answering {
            inner: MemoryCounters::new(),
            answer: SharedSetError::Unavailable("down".into()),
            writes: 0,
        };
        assert!(matches!(
            update(&mut down, "k", w, 1, Ok::<u64, ()>),
            Update::Unshared(Ok(0))
        ));
        // A refusal stays a refusal when the store is down.
        assert!(matches!(
            update(&mut down, "k", w, 1, |_| Err::<u64, u8>(7)),
            Update::Refused(7)
        ));
        let mut racing = Answering {
            inner: MemoryCounters::new(),
            answer: SharedSetError::CasMismatch,
            writes: 0,
        };
        assert!(matches!(
            update(&mut racing, "k", w, 1, Ok::<u64, ()>),
            Update::Done(0)
        ));
        assert_eq!(
            (racing.writes, read(&racing, "k", w)),
            (1, 1),
            "counted by the CAS loop"
        );
    }
}
