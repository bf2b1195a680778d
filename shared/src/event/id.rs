//! Event ids: derived once, stable across retries, replays and restarts.

use super::siphash::siphash128;
use crate::environment::Environment;

/// Prefix of every event id the gateway creates.
pub const EVENT_ID_PREFIX: &str = "evt_";

/// Appends the lower-case hex of `bytes` (an event id is built in one allocation).
fn push_hex(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
}

/// Key of the event-id hash: fixed, so ids are a pure function of their inputs everywhere
/// (the harness and a real proxy derive the same ids for the same traffic).
const ID_KEY: [u8; 16] = *b"aforo-event-id-1";

/// The id of the usage event for one request, derived from the host's request id.
///
/// The same request always yields the same id (so a replayed or re-sent request is counted once),
/// while two customers or two metrics never share one: 128 bits of SipHash-2-4 over the
/// length-prefixed fields, hex. (Request ids that clients choose are a separate matter: see the
/// `request_id_header` in docs/security.md.)
pub fn derive_event_id(
    environment: Environment,
    customer_id: &str,
    metric: &str,
    request_id: &str,
) -> String {
    let mut buf = Vec::with_capacity(64 + customer_id.len() + metric.len() + request_id.len());
    for part in [environment.as_str(), customer_id, metric, request_id] {
        buf.extend_from_slice(&(part.len() as u32).to_le_bytes());
        buf.extend_from_slice(part.as_bytes());
    }
    prefixed_id(&siphash128(&ID_KEY, &buf))
}

/// The id of an event whose request had no request id: a per-VM random nonce and a sequence.
pub fn sequence_event_id(nonce: u64, sequence: u64) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&nonce.to_be_bytes());
    b[8..].copy_from_slice(&sequence.to_be_bytes());
    prefixed_id(&b)
}

/// `evt_` and the hex of 128 bits, in one allocation.
fn prefixed_id(bits: &[u8; 16]) -> String {
    let mut id = String::with_capacity(EVENT_ID_PREFIX.len() + 32);
    id.push_str(EVENT_ID_PREFIX);
    push_hex(&mut id, bits);
    id
}

/// Lower-case hex of bytes, for hashes shown to users.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = derive_event_id(Environment::Sandbox, "cust_a", "api_calls", "req-1");
        assert_eq!(
            a,
            derive_event_id(Environment::Sandbox, "cust_a", "api_calls", "req-1")
        );
        assert_eq!(a.len(), 4 + 32);
        assert_ne!(
            a,
            derive_event_id(Environment::Production, "cust_a", "api_calls", "req-1")
        );
        assert_ne!(
            a,
            derive_event_id(Environment::Sandbox, "cust_b", "api_calls", "req-1")
        );
        assert_ne!(
            a,
            derive_event_id(Environment::Sandbox, "cust_a", "tokens", "req-1")
        );
        // Length prefixes keep field boundaries: ("ab","c") differs from ("a","bc").
        assert_ne!(
            derive_event_id(Environment::Sandbox, "ab", "c", "r"),
            derive_event_id(Environment::Sandbox, "a", "bc", "r")
        );
    }

    #[test]
    fn ids_are_hex_whatever_the_request_id_holds_and_do_not_change_across_versions() {
        // A client's request id never reaches the id as text: quotes, a forged JSON field,
        // CR/LF and non-ASCII all give `evt_` and 32 lower-case hex digits.
        for rid in ["\",\"key\":\"x", "a\r\nb", "\u{fffd}\u{0}", ""] {
            let id = derive_event_id(Environment::Production, "cust_a", "api_calls", rid);
            let hex = id.strip_prefix(EVENT_ID_PREFIX).unwrap_or_default();
            assert_eq!(hex.len(), 32, "{id}");
            assert!(
                hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
        }
        // Pinned: an id that changed between versions would bill a retried request twice.
        assert_eq!(
            derive_event_id(Environment::Sandbox, "cust_a", "api_calls", "req-1"),
            "evt_5d8a4dc3770aa801cba99e38e3334682"
        );
        assert_eq!(
            sequence_event_id(1, 0xab),
            "evt_000000000000000100000000000000ab"
        );
    }

    #[test]
    fn sequence_ids_differ_per_sequence() {
        assert_ne!(sequence_event_id(7, 1), sequence_event_id(7, 2));
        assert_ne!(sequence_event_id(7, 1), sequence_event_id(8, 1));
    }
}
