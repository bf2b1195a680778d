//! Consumer (partner) keys: looked up by hash, with scopes, expiry, revocation and allowlists.

use super::{hash_key, Cidr, KeyHash};
use crate::ratelimit::RateLimit;
use crate::time::Timestamp;
use std::collections::BinaryHeap;

/// Prefix of consumer keys this product issues (`ck_…`), so logs can redact them.
pub const CONSUMER_KEY_PREFIX: &str = "ck_";

/// A consumer key as a snapshot carries it: never the key itself, only its hash.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerKey {
    /// Public identifier of the key (safe to log and to put on events).
    pub key_id: String,
    /// SHA-256 of the secret.
    pub hash: KeyHash,
    /// The customer (partner) the key belongs to.
    pub customer_id: String,
    /// Features this key may use; empty means every feature of its customer.
    pub scopes: Vec<String>,
    /// First instant the key no longer works.
    pub expires_at: Option<Timestamp>,
    /// Revoked keys are refused at once.
    pub revoked: bool,
    /// Client networks allowed to use the key; empty means any.
    pub ip_allowlist: Vec<Cidr>,
    /// Requests this key may make per window, on top of the customer's quota.
    pub rate_limit: Option<RateLimit>,
}

/// Why a presented key does not authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyDenial {
    /// No key with that hash.
    Unknown,
    /// The key was revoked.
    Revoked,
    /// The key is past its expiry.
    Expired,
}

impl KeyDenial {
    /// Words for the 401 body (the same for all three on the wire would hide nothing useful).
    pub const fn message(self) -> &'static str {
        match self {
            KeyDenial::Unknown => "the API key is not valid",
            KeyDenial::Revoked => "the API key was revoked",
            KeyDenial::Expired => "the API key has expired",
        }
    }
}

impl ConsumerKey {
    /// Whether the key allows `feature`.
    pub fn allows_feature(&self, feature: &str) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| s == feature || s == "*")
    }
}

/// All consumer keys of a snapshot, indexed by the first bytes of their hash: one sorted list
/// of (bucket, position), searched by halves. A proxy VM holds a table per snapshot (10,000
/// keys and more), and a hash map of lists cost an allocation and a table slot per key.
#[derive(Clone, Debug, Default)]
pub struct ConsumerKeyTable {
    keys: Vec<ConsumerKey>,
    by_bucket: Box<[(u64, u32)]>,
}

impl ConsumerKeyTable {
    /// Indexes keys for lookup. Positions are `u32`: a snapshot holds far fewer than 2^32 keys
    /// (any beyond are not indexed, so they never authenticate rather than alias another).
    pub fn new(mut keys: Vec<ConsumerKey>) -> Self {
        // A list read from a stream grew by doubling: give back the unused half.
        keys.shrink_to_fit();
        let by_bucket: BinaryHeap<(u64, u32)> = keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| Some((k.hash.bucket(), u32::try_from(i).ok()?)))
            .collect();
        // A heap sort: a third of the code of the slice sort in the proxy-wasm module.
        let by_bucket = by_bucket.into_sorted_vec();
        ConsumerKeyTable {
            keys,
            by_bucket: by_bucket.into_boxed_slice(),
        }
    }

    /// The keys, without their index (to free them a few at a time).
    pub fn into_keys(self) -> Vec<ConsumerKey> {
        self.keys
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, for reports.
    pub fn iter(&self) -> impl Iterator<Item = &ConsumerKey> {
        self.keys.iter()
    }

    /// Authenticates a presented secret at `now`.
    pub fn authenticate(&self, secret: &str, now: Timestamp) -> Result<&ConsumerKey, KeyDenial> {
        self.authenticate_hash(&hash_key(secret), now)
    }

    /// Authenticates an already-hashed secret; the final comparison is constant-time.
    pub fn authenticate_hash(
        &self,
        hash: &KeyHash,
        now: Timestamp,
    ) -> Result<&ConsumerKey, KeyDenial> {
        let bucket = hash.bucket();
        let first = self.by_bucket.partition_point(|&(b, _)| b < bucket);
        let key = self.by_bucket[first..]
            .iter()
            .take_while(|&&(b, _)| b == bucket)
            .filter_map(|&(_, i)| self.keys.get(i as usize))
            .find(|k| k.hash.ct_eq(hash))
            .ok_or(KeyDenial::Unknown)?;
        if key.revoked {
            return Err(KeyDenial::Revoked);
        }
        if key.expires_at.is_some_and(|t| now >= t) {
            return Err(KeyDenial::Expired);
        }
        Ok(key)
    }
}

/// A new consumer key from 24 random bytes: `ck_` + 48 hex digits (192 bits).
pub fn generate_consumer_key(random: [u8; 24]) -> String {
    format!("{CONSUMER_KEY_PREFIX}{}", crate::event::to_hex(&random))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339;

    fn key(id: &str, secret: &str) -> ConsumerKey {
        ConsumerKey {
            key_id: id.into(),
            hash: hash_key(secret),
            customer_id: "cust_a".into(),
            scopes: vec![],
            expires_at: None,
            revoked: false,
            ip_allowlist: vec![],
            rate_limit: None,
        }
    }

    #[test]
    fn keys_authenticate_by_hash_and_respect_state() {
        let now = parse_rfc3339("2026-03-15T12:00:00Z").unwrap();
        let mut revoked = key("k2", "ck_revoked");
        revoked.revoked = true;
        let mut expiring = key("k3", "ck_expiring");
        expiring.expires_at = Some(now);
        let table = ConsumerKeyTable::new(vec![key("k1", "ck_good"), revoked, expiring.clone()]);
        assert_eq!(table.authenticate("ck_good", now).unwrap().key_id, "k1");
        assert_eq!(table.authenticate("ck_bad", now), Err(KeyDenial::Unknown));
        assert_eq!(
            table.authenticate("ck_revoked", now),
            Err(KeyDenial::Revoked)
        );
        // expires_at is the first instant the key no longer works.
        assert_eq!(
            table.authenticate("ck_expiring", now),
            Err(KeyDenial::Expired)
        );
        assert!(table
            .authenticate("ck_expiring", now.plus_nanos(-1))
            .is_ok());
    }

    #[test]
    fn keys_sharing_a_bucket_are_each_found_by_their_whole_hash() {
        let now = parse_rfc3339("2026-03-15T12:00:00Z").unwrap();
        // Three hashes with the same first eight bytes (the bucket), one more elsewhere.
        // The other key first: the index must sort, not rely on the order given.
        let mut other = key("k3", "unused");
        other.hash = KeyHash([9u8; 32]);
        let mut keys = vec![other];
        for (i, last) in [3u8, 1, 2].into_iter().enumerate() {
            let mut k = key(&format!("k{i}"), "unused");
            k.hash = KeyHash([[7u8; 31].as_slice(), &[last]].concat().try_into().unwrap());
            keys.push(k);
        }
        let table = ConsumerKeyTable::new(keys);
        for (id, last) in [("k0", 3u8), ("k1", 1), ("k2", 2)] {
            let h = KeyHash([[7u8; 31].as_slice(), &[last]].concat().try_into().unwrap());
            assert_eq!(table.authenticate_hash(&h, now).unwrap().key_id, id);
        }
        assert_eq!(
            table
                .authenticate_hash(&KeyHash([9u8; 32]), now)
                .unwrap()
                .key_id,
            "k3"
        );
        let absent = KeyHash([[7u8; 31].as_slice(), &[4]].concat().try_into().unwrap());
        assert_eq!(
            table.authenticate_hash(&absent, now),
            Err(KeyDenial::Unknown)
        );
        assert_eq!(
            table.authenticate_hash(&KeyHash([0u8; 32]), now),
            Err(KeyDenial::Unknown)
        );
        assert_eq!(
            table.authenticate_hash(&KeyHash([255u8; 32]), now),
            Err(KeyDenial::Unknown)
        );
        let ids: Vec<&str> = table.iter().map(|k| k.key_id.as_str()).collect();
        assert_eq!(
            ids,
            ["k3", "k0", "k1", "k2"],
            "reports keep the snapshot's order"
        );
    }

    #[test]
    fn scopes_limit_features() {
        let mut k = key("k", "s");
        assert!(k.allows_feature("anything"));
        k.scopes = vec!["search".into()];
        assert!(k.allows_feature("search") && !k.allows_feature("export"));
    }

    #[test]
    fn generated_keys_are_prefixed_and_long() {
        let k = generate_consumer_key([7; 24]);
        assert!(k.starts_with("ck_") && k.len() == 3 + 48);
    }
}
