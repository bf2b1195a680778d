//! The SHA-256 of recently presented consumer keys, so a client calling again with the same key
//! is not hashed again: in Wasm, where SHA-256 has no CPU instructions to use, it was a sixth of
//! the filter's own work per request (BENCHMARKS.md, "The replay harness").
//!
//! The cache holds only `key → SHA-256(key)`, a fixed function: it decides nothing. Whether a
//! hash names a live key is looked up in the snapshot in force on every request, so a revoked,
//! expired or moved key is refused exactly as without the cache. A hit needs the whole key,
//! compared in constant time, so the time of a lookup tells nothing about a cached key's
//! bytes; keys an attacker makes up only evict others, which then cost one hash again.

use super::hash::ct_eq_bytes;
use super::{hash_key, KeyHash};

/// Slots of a cache: clients using more keys than this at once share slots and hash more.
const SLOTS: usize = 128;

/// Longer keys are hashed every time (not kept), so a slot holds at most this many bytes.
const MAX_KEY_BYTES: usize = 128;

/// A direct-mapped cache of key hashes, one per engine (per proxy worker): at most 128 recent
/// keys, two keys of one slot evicting each other.
pub struct KeyHashCache {
    slots: Vec<Option<(Box<[u8]>, KeyHash)>>,
    seed: u64,
}

/// Says how many keys are held, never which: the keys are secrets.
impl std::fmt::Debug for KeyHashCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.slots.iter().flatten().count();
        write!(f, "KeyHashCache {{ {held} keys held }}")
    }
}

impl KeyHashCache {
    /// An empty cache whose slot choice is mixed with `seed`, so which keys share a slot
    /// differs between engines.
    pub fn new(seed: u64) -> Self {
        KeyHashCache {
            slots: Vec::new(),
            seed,
        }
    }

    /// `hash_key(secret)`, from the cache when `secret` was seen last in its slot.
    pub fn hash(&mut self, secret: &str) -> KeyHash {
        let bytes = secret.as_bytes();
        if bytes.len() > MAX_KEY_BYTES {
            return hash_key(secret);
        }
        if self.slots.is_empty() {
            self.slots.resize_with(SLOTS, || None);
        }
        let index = self.slot(bytes);
        if let Some(Some((key, hash))) = self.slots.get(index) {
            // Lengths are compared first (public: keys have a documented format); the
            // bytes in constant time.
            if ct_eq_bytes(key, bytes) {
                return *hash;
            }
        }
        let hash = hash_key(secret);
        if let Some(slot) = self.slots.get_mut(index) {
            // The evicted key's bytes are overwritten before its memory is given back.
            if let Some((old, _)) = slot.as_mut() {
                old.fill(0);
            }
            *slot = Some((bytes.into(), hash));
        }
        hash
    }

    /// The slot of `bytes`: FNV-1a from the seed, its high bits folded in.
    fn slot(&self, bytes: &[u8]) -> usize {
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ self.seed;
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h ^ (h >> 32)) as usize % SLOTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_is_the_keys_own_hash_hit_or_miss() {
        let mut cache = KeyHashCache::new(7);
        // Three times as many keys of one length as slots (so same-length keys share slots:
        // a match on length alone would answer another key's hash), keys of every length up to
        // past the longest kept, each asked three times in turns.
        let keys: Vec<String> = (0..3 * SLOTS)
            .map(|i| format!("ck_{i:04}"))
            .chain((0..MAX_KEY_BYTES + 8).map(|n| format!("ck_{}", "x".repeat(n))))
            .chain(["ck_a".into(), "ck_b".into(), String::new()])
            .collect();
        for _ in 0..3 {
            for k in &keys {
                assert!(cache.hash(k).ct_eq(&hash_key(k)), "{k}");
            }
        }
    }

    #[test]
    fn a_key_asked_again_is_answered_from_its_slot_and_long_keys_are_never_kept() {
        let mut cache = KeyHashCache::new(1);
        let k = "ck_0123456789abcdef0123456789abcdef0123456789abcdef";
        let h = cache.hash(k);
        let i = cache.slot(k.as_bytes());
        assert!(
            matches!(&cache.slots[i], Some((key, hash)) if &key[..] == k.as_bytes() && hash.ct_eq(&h))
        );
        // A key whose first bytes match is still another key.
        let near = &k[..k.len() - 1];
        assert!(!cache.hash(near).ct_eq(&h));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        cache.hash(&long);
        assert!(cache
            .slots
            .iter()
            .flatten()
            .all(|(key, _)| key.len() <= MAX_KEY_BYTES));
    }

    #[test]
    fn debug_output_names_no_key() {
        let mut cache = KeyHashCache::new(1);
        cache.hash("ck_secret_0123456789");
        let shown = format!("{cache:?}");
        assert_eq!(shown, "KeyHashCache { 1 keys held }");
    }

    #[test]
    fn engines_seeded_differently_spread_keys_differently() {
        let (a, b) = (KeyHashCache::new(1), KeyHashCache::new(2));
        let differ = (0..64)
            .filter(|i| {
                let k = format!("ck_{i}");
                a.slot(k.as_bytes()) != b.slot(k.as_bytes())
            })
            .count();
        assert!(differ > 32, "{differ} of 64 keys changed slot");
    }
}
