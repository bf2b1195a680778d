//! Quota counters shared by every worker of the Envoy process: a map split into shards, each
//! behind its own lock, with a version per value for the core's compare-and-swap. Unlike
//! proxy-wasm shared data, creating a key is atomic too (token 0 means "must be absent"), so
//! two workers cannot both create a counter and lose one's count.

use aforo_core::entitlement::ModifyFn;
use aforo_core::host::SharedSetError;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};

const SHARDS: usize = 64;

/// The process-wide store (counters outlive configuration reloads, as shared data does).
pub fn global() -> &'static CounterStore {
    static STORE: OnceLock<CounterStore> = OnceLock::new();
    STORE.get_or_init(CounterStore::new)
}

/// One shard: key to value and version.
type Shard = Mutex<HashMap<String, (Vec<u8>, u32)>>;

/// Values with versions, in shards.
pub struct CounterStore {
    shards: Vec<Shard>,
}

impl CounterStore {
    /// An empty store.
    pub fn new() -> CounterStore {
        CounterStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> &Shard {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % self.shards.len()]
    }

    /// The value of `key` and its version (never 0).
    pub fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        shard.get(key).cloned()
    }

    /// Runs `f` on `key`'s value under the shard's lock and stores what it returns (with a new
    /// version): one atomic step, whatever the contention.
    pub fn modify(&self, key: &str, f: &mut ModifyFn<'_>) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let next = f(shard.get(key).map(|(v, _)| v.as_slice()));
        let Some(bytes) = next else { return };
        match shard.get_mut(key) {
            Some((stored, v)) => {
                *stored = bytes;
                *v = v.checked_add(1).unwrap_or(1);
            }
            None => {
                shard.insert(key.to_string(), (bytes, 1));
            }
        }
    }

    /// Writes `value` if `key`'s version is still `version` (0: only if absent).
    pub fn set(&self, key: &str, value: &[u8], version: u32) -> Result<(), SharedSetError> {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        match shard.get_mut(key) {
            Some((stored, v)) if *v == version => {
                stored.clear();
                stored.extend_from_slice(value);
                *v = v.checked_add(1).unwrap_or(1);
                Ok(())
            }
            Some(_) => Err(SharedSetError::CasMismatch),
            None if version == 0 => {
                shard.insert(key.to_string(), (value.to_vec(), 1));
                Ok(())
            }
            None => Err(SharedSetError::CasMismatch),
        }
    }
}

impl Default for CounterStore {
    fn default() -> Self {
        CounterStore::new()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aforo_core::entitlement::{read_counter, update_counter as update, CounterBackend, Update};
    use aforo_core::Timestamp;

    struct Backend<'a>(&'a CounterStore);

    impl CounterBackend for Backend<'_> {
        fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.0.get(key)
        }
        fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
            self.0.set(key, value, cas)
        }
        fn warn(&self, message: &str) {
            panic!("unexpected warning: {message}");
        }
        fn modify(
            &mut self,
            key: &str,
            f: &mut ModifyFn<'_>,
        ) -> Option<Result<(), SharedSetError>> {
            self.0.modify(key, f);
            Some(Ok(()))
        }
    }

    #[test]
    fn creation_is_atomic_and_a_stale_version_is_refused() {
        let s = CounterStore::new();
        assert_eq!(s.set("k", b"a", 0), Ok(()));
        assert_eq!(s.set("k", b"b", 0), Err(SharedSetError::CasMismatch));
        let (v, version) = s.get("k").unwrap();
        assert_eq!(v, b"a");
        assert_eq!(s.set("k", b"c", version), Ok(()));
        assert_eq!(s.set("k", b"d", version), Err(SharedSetError::CasMismatch));
        assert_eq!(s.get("k").unwrap().0, b"c");
        assert_eq!(s.set("absent", b"x", 7), Err(SharedSetError::CasMismatch));
    }

    #[test]
    fn eight_threads_reserving_one_quota_admit_exactly_the_quota() {
        // 4,000 reservations at once on one counter: the read-then-CAS loop runs out of
        // attempts here (and would decide without the count); one step under the lock cannot.
        let store = CounterStore::new();
        let window = Timestamp::from_unix_nanos(1_700_000_000_000_000_000);
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..500 {
                        let mut b = Backend(&store);
                        let r = update(&mut b, "cust/search", window, 1, |count| {
                            if count < 1000 {
                                Ok(())
                            } else {
                                Err(())
                            }
                        });
                        if let Update::Done(()) = r {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.into_inner(), 1000);
        let b = Backend(&store);
        assert_eq!(read_counter(&b, "cust/search", window), 1000);
    }
}
