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
        ct_eq_bytes(&self.0, &other.0)
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

/// Whether `a` and `b` are the same bytes, in a time that depends on their length only: the
/// differences of all their 8-byte words are OR-ed together with no branch, and the result is
/// compared once through `subtle` (which compares byte by byte, with a call per byte that
/// the optimiser cannot see through: in Wasm, 2% of a metered request).
pub(crate) fn ct_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(w)
    };
    let diff = a
        .chunks(8)
        .zip(b.chunks(8))
        .fold(0u64, |d, (x, y)| d | (word(x) ^ word(y)));
    diff.ct_eq(&0).into()
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
        // Every single-bit difference at every byte, in slices of every length around a word.
        for len in 0..20 {
            let a: Vec<u8> = (0..len as u8).collect();
            assert!(ct_eq_bytes(&a, &a.clone()));
            for i in 0..len {
                for bit in 0..8 {
                    let mut b = a.clone();
                    b[i] ^= 1 << bit;
                    assert!(!ct_eq_bytes(&a, &b), "len {len}, byte {i}, bit {bit}");
                }
            }
            if len > 0 {
                assert!(!ct_eq_bytes(&a, &a[..len - 1]), "a shorter slice differs");
            }
        }
        let mut other = h;
        other.0[31] ^= 0x80;
        assert!(!h.ct_eq(&other));
        assert_eq!(KeyHash::parse("sha256:zz"), None);
        assert_eq!(KeyHash::parse("md5:00"), None);
        // Known vector: SHA-256("abc").
        assert_eq!(
            hash_key("abc").to_text(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
