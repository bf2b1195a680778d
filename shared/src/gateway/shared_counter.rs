//! Per-window counters in host shared data, updated with a read-then-CAS loop so every worker
//! of a proxy counts into the same number (portable across Envoy's and Kong's CAS rules).
//!
//! Value layout: window start (i64 LE nanos) · count (u64 LE) · the key itself. Storing the
//! key lets a reader notice Kong's CRC32-only key identity aliasing two keys.
//!
//! Exactness: every update of an existing key is atomic. Creating a key is atomic on Kong
//! (`cas = 0` means "must not exist") but not on Envoy (`cas = 0` overwrites), so on Envoy the
//! very first increments of a brand-new key by several workers at the same instant can lose
//! at most `workers - 1` units, once per key (per customer, feature and process lifetime).

use crate::host::{Host, LogLevel, SharedSetError};
use crate::time::Timestamp;

/// Most CAS attempts before giving up (then the request is decided without the shared count).
const MAX_ATTEMPTS: u32 = 64;

/// A counter's decoded value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stored {
    window_start: Timestamp,
    count: u64,
}

fn decode(key: &str, bytes: &[u8]) -> Option<Stored> {
    if bytes.len() < 16 || &bytes[16..] != key.as_bytes() {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[..8]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[8..16]);
    Some(Stored {
        window_start: Timestamp::from_unix_nanos(i64::from_le_bytes(a)),
        count: u64::from_le_bytes(b),
    })
}

fn encode(key: &str, s: Stored) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + key.len());
    v.extend_from_slice(&s.window_start.unix_nanos().to_le_bytes());
    v.extend_from_slice(&s.count.to_le_bytes());
    v.extend_from_slice(key.as_bytes());
    v
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
/// `delta` (which may be negative, for refunds) atomically. A stored count from another window
/// reads as 0 and is replaced.
pub fn update<T, E>(
    host: &mut dyn Host,
    key: &str,
    window_start: Timestamp,
    delta: i64,
    mut check: impl FnMut(u64) -> Result<T, E>,
) -> Update<T, E> {
    for _ in 0..MAX_ATTEMPTS {
        let (current, cas) = match host.shared_get(key) {
            Some((bytes, cas)) if bytes.is_empty() => (0, cas),
            Some((bytes, cas)) => match decode(key, &bytes) {
                Some(s) if s.window_start == window_start => (s.count, cas),
                Some(_) => (0, cas),
                None => {
                    host.log(
                        LogLevel::Warn,
                        &format!("aforo: shared counter {key:?} holds another key's value (host key aliasing); counting locally"),
                    );
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
        let next = if delta >= 0 {
            current.saturating_add(delta as u64)
        } else {
            current.saturating_sub(delta.unsigned_abs())
        };
        let bytes = encode(
            key,
            Stored {
                window_start,
                count: next,
            },
        );
        match host.shared_set(key, &bytes, cas) {
            Ok(()) => return Update::Done(value),
            Err(SharedSetError::CasMismatch) => continue,
            Err(SharedSetError::Unavailable(why)) => {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "aforo: shared data unavailable ({why}); quotas are counted per worker"
                    ),
                );
                return Update::Unshared(Ok(value));
            }
        }
    }
    host.log(
        LogLevel::Warn,
        &format!("aforo: shared counter {key:?} stayed contended; decided without it"),
    );
    Update::Unshared(check(0))
}

/// The current count of `key` in `window_start`'s window (0 when absent or from another window).
pub fn read(host: &dyn Host, key: &str, window_start: Timestamp) -> u64 {
    match host.shared_get(key) {
        Some((bytes, _)) => match decode(key, &bytes) {
            Some(s) if s.window_start == window_start => s.count,
            _ => 0,
        },
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::test_host::TestHost;

    #[test]
    fn counts_add_and_refuse_atomically() {
        let mut h = TestHost::new();
        let w = Timestamp::from_unix_secs(100);
        let limit = 3;
        let mut admitted = 0;
        for _ in 0..5 {
            match update(
                &mut h,
                "q|a",
                w,
                1,
                |c| if c < limit { Ok(c) } else { Err(c) },
            ) {
                Update::Done(_) => admitted += 1,
                Update::Refused(c) => assert_eq!(c, 3),
                Update::Unshared(_) => panic!("shared data is available"),
            }
        }
        assert_eq!(admitted, 3);
        assert_eq!(read(&h, "q|a", w), 3);
        // A new window starts from zero.
        assert_eq!(read(&h, "q|a", Timestamp::from_unix_secs(200)), 0);
        // Refunds subtract.
        assert!(matches!(
            update(&mut h, "q|a", w, -1, Ok::<u64, ()>),
            Update::Done(3)
        ));
        assert_eq!(read(&h, "q|a", w), 2);
    }

    #[test]
    fn cas_conflicts_are_retried() {
        let mut h = TestHost::new();
        h.cas_conflicts = 3;
        let w = Timestamp::from_unix_secs(1);
        assert!(matches!(
            update(&mut h, "k", w, 1, Ok::<u64, ()>),
            Update::Done(0)
        ));
        assert_eq!(read(&h, "k", w), 1);
    }

    #[test]
    fn aliased_keys_are_detected() {
        let mut h = TestHost::new();
        let w = Timestamp::from_unix_secs(1);
        h.shared.insert(
            "k1".into(),
            (
                encode(
                    "other",
                    Stored {
                        window_start: w,
                        count: 9,
                    },
                ),
                1,
            ),
        );
        assert!(matches!(
            update(&mut h, "k1", w, 1, Ok::<u64, ()>),
            Update::Unshared(Ok(0))
        ));
    }
}
