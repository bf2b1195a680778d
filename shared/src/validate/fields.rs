//! Syntax of the identifying fields: bounded, printable, and safe to use as storage keys.

use super::{RejectCode, Rejection};
use crate::event::UsageEvent;

/// Longest `id`, `metric` and `product_id`.
pub const MAX_NAME_LEN: usize = 128;
/// Longest `customer_id`.
pub const MAX_CUSTOMER_LEN: usize = 256;

/// Bytes allowed in ids, metrics and product ids: letters, digits and `_ - . :`.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.' || c == b':';
        b += 1;
    }
    t
};

fn is_token(s: &str) -> bool {
    s.bytes().all(|b| TOKEN[b as usize])
}

/// An identifier-like name (ids, metrics, features, products): letters, digits, `_ - . :`,
/// 1..=128 bytes, so it is safe as a storage key and in a header.
pub fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && is_token(s)
}

fn token(field: &'static str, value: &str) -> Result<(), Rejection> {
    if value.is_empty() {
        return Err(Rejection::new(
            RejectCode::MissingField,
            Some(field),
            "must not be empty",
        ));
    }
    if value.len() > MAX_NAME_LEN || !is_token(value) {
        return Err(Rejection::new(
            RejectCode::InvalidField,
            Some(field),
            format!("must be 1..={MAX_NAME_LEN} letters, digits or _-.: characters"),
        ));
    }
    Ok(())
}

/// Checks the syntax of `id`, `customer_id`, `metric` and `product_id`.
pub fn check_fields(e: &UsageEvent) -> Result<(), Rejection> {
    token("id", &e.id)?;
    if e.customer_id.is_empty() {
        return Err(Rejection::new(
            RejectCode::MissingField,
            Some("customer_id"),
            "must not be empty",
        ));
    }
    if e.customer_id.len() > MAX_CUSTOMER_LEN || e.customer_id.chars().any(char::is_control) {
        return Err(Rejection::new(
            RejectCode::InvalidField,
            Some("customer_id"),
            format!("must be 1..={MAX_CUSTOMER_LEN} bytes without control characters"),
        ));
    }
    token("metric", &e.metric)?;
    token("product_id", &e.product_id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::sample_event;

    #[test]
    fn field_syntax_is_bounded() {
        let mut e = sample_event();
        assert!(check_fields(&e).is_ok());
        e.id = "x".repeat(129);
        assert_eq!(check_fields(&e).unwrap_err().field, Some("id"));
        e.id = "x".repeat(128);
        assert!(check_fields(&e).is_ok());
        e.customer_id = "tab\there".into();
        assert_eq!(check_fields(&e).unwrap_err().field, Some("customer_id"));
        e.customer_id = "alice@example.com".into();
        assert!(check_fields(&e).is_ok());
        e.metric = String::new();
        assert_eq!(check_fields(&e).unwrap_err().code, RejectCode::MissingField);
    }
}
