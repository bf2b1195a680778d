//! Keys are stored and compared as SHA-256 hashes, compared in constant time.

use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// The SHA-256 of a secret key; what snapshots and stores hold instead of the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

/// Hashes a presented key. Keys are 128+ bits of randomness, so an unsalted SHA-256 is a
/// one-way, non-reversible identifier (as GitHub and Stripe tokens are stored).
pub fn hash_key(secret: &str) -> KeyHash {
    KeyHash(Sha256::digest(secret.as_bytes()).into())
}

impl KeyHash {
    /// Constant-time equality, so timing never tells how many bytes of a hash matched.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The first 8 bytes, used to find candidates before the constant-time comparison.
    pub fn bucket(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }

    /// `sha256:<64 hex>` as written in snapshots.
    pub fn to_text(&self) -> String {
        format!("sha256:{}", crate::event::to_hex(&self.0))
    }

    /// Parses `sha256:<64 hex>`.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.strip_prefix("sha256:")?;
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let hi = (chunk[0] as char).to_digit(16)?;
            let lo = (chunk[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(KeyHash(out))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip_through_text() {
        let h = hash_key("ck_example");
        assert_eq!(KeyHash::parse(&h.to_text()), Some(h));
        assert!(h.ct_eq(&hash_key("ck_example")));
        assert!(!h.ct_eq(&hash_key("ck_example2")));
        assert_eq!(KeyHash::parse("sha256:zz"), None);
        assert_eq!(KeyHash::parse("md5:00"), None);
        // Known vector: SHA-256("abc").
        assert_eq!(
            hash_key("abc").to_text(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
