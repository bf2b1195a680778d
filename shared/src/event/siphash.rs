//! SipHash-2-4 with a 128-bit output (Aumasson & Bernstein): a fast, well-studied hash for
//! deriving event ids on the request path, where SHA-256 cost more than the rest of metering.

struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13);
        self.v1 ^= self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16);
        self.v3 ^= self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21);
        self.v3 ^= self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17);
        self.v1 ^= self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    fn compress(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }
}

fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

fn init(key: &[u8; 16], wide: bool) -> State {
    let k0 = word(&key[..8]);
    let k1 = word(&key[8..]);
    let mut s = State {
        v0: k0 ^ 0x736f_6d65_7073_6575,
        v1: k1 ^ 0x646f_7261_6e64_6f6d,
        v2: k0 ^ 0x6c79_6765_6e65_7261,
        v3: k1 ^ 0x7465_6462_7974_6573,
    };
    if wide {
        s.v1 ^= 0xee;
    }
    s
}

fn absorb(s: &mut State, data: &[u8]) {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        s.compress(word(c));
    }
    let rest = chunks.remainder();
    s.compress(word(rest) | ((data.len() as u64 & 0xff) << 56));
}

/// SipHash-2-4, 64-bit output (the variant Rust's std used to ship; kept for test vectors).
pub fn siphash64(key: &[u8; 16], data: &[u8]) -> u64 {
    let mut s = init(key, false);
    absorb(&mut s, data);
    s.v2 ^= 0xff;
    for _ in 0..4 {
        s.round();
    }
    s.v0 ^ s.v1 ^ s.v2 ^ s.v3
}

/// SipHash-2-4, 128-bit output.
pub fn siphash128(key: &[u8; 16], data: &[u8]) -> [u8; 16] {
    let mut s = init(key, true);
    absorb(&mut s, data);
    s.v2 ^= 0xee;
    for _ in 0..4 {
        s.round();
    }
    let lo = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
    s.v1 ^= 0xdd;
    for _ in 0..4 {
        s.round();
    }
    let hi = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&lo.to_le_bytes());
    out[8..].copy_from_slice(&hi.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u8; 16] {
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        k
    }

    #[test]
    #[allow(deprecated)]
    fn the_64_bit_variant_matches_std() {
        use std::hash::{Hasher, SipHasher};
        let k = key();
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut h = SipHasher::new_with_keys(
                u64::from_le_bytes(k[..8].try_into().unwrap()),
                u64::from_le_bytes(k[8..].try_into().unwrap()),
            );
            h.write(&data);
            assert_eq!(siphash64(&k, &data), h.finish(), "length {len}");
        }
    }

    #[test]
    fn the_128_bit_variant_matches_the_reference_vectors() {
        // vectors_sip128 from the reference implementation, key 00..0f, messages 00.. of length 0 and 1.
        let k = key();
        assert_eq!(
            siphash128(&k, &[]),
            [
                0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55,
                0x02, 0x93
            ]
        );
        assert_eq!(
            siphash128(&k, &[0]),
            [
                0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b, 0x22,
                0xfc, 0x45
            ]
        );
    }
}
