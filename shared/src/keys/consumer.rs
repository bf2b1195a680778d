//! Consumer (partner) keys: looked up by hash, with scopes, expiry, revocation and allowlists.

use super::{hash_key, Cidr, KeyHash};
use crate::ratelimit::RateLimit;
use crate::time::Timestamp;
use std::collections::HashMap;

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

/// All consumer keys of a snapshot, indexed by the first bytes of their hash.
#[derive(Clone, Debug, Default)]
pub struct ConsumerKeyTable {
    keys: Vec<ConsumerKey>,
    by_bucket: HashMap<u64, Vec<usize>>,
}

impl ConsumerKeyTable {
    /// Indexes keys for lookup.
    pub fn new(keys: Vec<ConsumerKey>) -> Self {
        let mut by_bucket: HashMap<u64, Vec<usize>> = HashMap::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            by_bucket.entry(k.hash.bucket()).or_default().push(i);
        }
        ConsumerKeyTable { keys, by_bucket }
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
        let candidates = self
            .by_bucket
            .get(&hash.bucket())
            .ok_or(KeyDenial::Unknown)?;
        let key = candidates
            .iter()
            .filter_map(|&i| self.keys.get(i))
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
