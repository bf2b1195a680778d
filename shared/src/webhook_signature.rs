//! Webhook signatures in the style of Stripe's: `Aforo-Signature: t=<unix seconds>,v1=<hex>`,
//! where the hex is HMAC-SHA256 (RFC 2104) keyed with the endpoint's `whsec_` secret over
//! `"<t>.<body>"`. Signing and verifying live here once, so a receiver written in Rust checks
//! exactly what the agent signs; any HMAC-SHA256 library verifies it too.

use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// HMAC-SHA256 of `msg` under `key` (RFC 2104; keys longer than a block are hashed first).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The header value for a body sent at `t_unix`.
pub fn signature_header(secret: &str, t_unix: i64, body: &[u8]) -> String {
    let mut msg = format!("{t_unix}.").into_bytes();
    msg.extend_from_slice(body);
    format!(
        "t={t_unix},v1={}",
        hex(&hmac_sha256(secret.as_bytes(), &msg))
    )
}

/// Why a signature was not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureError {
    /// The header is not `t=…,v1=…`.
    Malformed,
    /// Signed longer ago (or further ahead) than the tolerance: a replay.
    Stale,
    /// No `v1` matches the body and secret.
    Mismatch,
}

/// Checks a header against the body and secret, refusing signatures older than
/// `tolerance_secs` (replays); any one of several `v1` values may match (secret rotation).
pub fn verify(
    header: &str,
    secret: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if now_unix.abs_diff(t) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = signature_header(secret, t, body);
    let want = expected.rsplit('=').next().unwrap_or_default().as_bytes();
    // Constant time over each candidate of the right length.
    let matches = sigs.iter().any(|s| {
        s.len() == want.len() && s.bytes().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 4231 test cases 1, 2, 4, 6 and 7 (short, text, 25-byte, and over-block keys).
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 5] = [
            (vec![0x0b; 20], b"Hi There".to_vec(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
            (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            (unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"), vec![0xcd; 50], "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
            (vec![0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
            (vec![0xaa; 131], b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
        ];
        for (key, msg, want) in cases {
            assert_eq!(hex(&hmac_sha256(&key, &msg)), want);
        }
    }

    #[test]
    fn a_signature_verifies_and_a_changed_body_secret_or_old_one_does_not() {
        let h = signature_header("whsec_abc", 1_700_000_000, b"{\"id\":\"whevt_1\"}");
        assert!(h.starts_with("t=1700000000,v1="), "{h}");
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        let ok = |hdr: &str, secret: &str, body: &[u8], now| verify(hdr, secret, body, now, 300);
        assert_eq!(
            ok(&h, "whsec_abc", b"{\"id\":\"whevt_1\"}", 1_700_000_100),
            Ok(())
        );
        assert_eq!(
            ok(&h, "whsec_abc", b"{\"id\":\"whevt_2\"}", 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ok(&h, "whsec_abd", b"{\"id\":\"whevt_1\"}", 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ok(&h, "whsec_abc", b"{\"id\":\"whevt_1\"}", 1_700_000_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            ok("v1=00", "whsec_abc", b"", 0),
            Err(SignatureError::Malformed)
        );
        let rotated = format!("{h},v1={}", "0".repeat(64));
        assert_eq!(
            ok(
                &rotated,
                "whsec_abc",
                b"{\"id\":\"whevt_1\"}",
                1_700_000_000
            ),
            Ok(())
        );
    }
}
