//! Ingest v1 JSON for one event: writing it (filters) and reading it strictly (ingests).

use super::{Quantity, UsageEvent};
use crate::environment::Environment;
use crate::time::parse_rfc3339;
use crate::validate::{RejectCode, Rejection};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// `Content-Type` of an ingest v1 batch.
pub const INGEST_V1_CONTENT_TYPE: &str = "application/json";

#[derive(Serialize)]
struct WireOut<'a, P: Serialize + ?Sized> {
    id: &'a str,
    customer_id: &'a str,
    metric: &'a str,
    quantity: String,
    timestamp: String,
    product_id: &'a str,
    environment: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<&'a P>,
}

/// One event as ingest v1 JSON; the quantity is a decimal string so no digit is lost.
pub fn encode_v1(e: &UsageEvent) -> Vec<u8> {
    let props = (!e.properties.is_empty()).then_some(&e.properties);
    encode_v1_with(e, props)
}

/// Appends `s` as a JSON string literal (quotes and escapes).
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    loop {
        let at = next_escape(bytes, start);
        out.extend_from_slice(&bytes[start..at]);
        let Some(&b) = bytes.get(at) else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
        }
        start = at + 1;
    }
    out.push(b'"');
}

/// Whether JSON must escape `b` inside a string: a quote, a backslash or a control byte.
fn must_escape(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The index of the first byte at or after `from` that JSON must escape, or `bytes.len()`.
/// Looks at eight bytes at a time (ids, names and paths rarely need escaping, and this is on
/// every metered request's path): a word is skipped when none of its bytes is below 0x20, a
/// quote or a backslash (bytes of 0x80 and up, UTF-8, never match).
fn next_escape(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `x` is zero (`x - ONES` borrows into its high bit, which `!x` keeps) or, with
    // `n * ONES` instead of `ONES`, below n (n <= 0x80): exact as to whether any byte is.
    fn any_below(x: u64, n: u64) -> bool {
        x.wrapping_sub(ONES * n) & !x & HIGH != 0
    }
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let w = u64::from_le_bytes(w);
        if any_below(w, 0x20)
            || any_below(w ^ (ONES * u64::from(b'"')), 1)
            || any_below(w ^ (ONES * u64::from(b'\\')), 1)
        {
            break;
        }
        at += 8;
    }
    while bytes.get(at).is_some_and(|&b| !must_escape(b)) {
        at += 1;
    }
    at
}

/// Writes the seven fields of an ingest v1 event by hand, and its properties as
/// `write_properties` writes them (a JSON object): the gateway's per-request path, with no
/// serializer, no map and no text of its own for any field.
pub fn encode_v1_raw(e: &UsageEvent, write_properties: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(384);
    out.extend_from_slice(b"{\"id\":");
    write_json_str(&mut out, &e.id);
    out.extend_from_slice(b",\"customer_id\":");
    write_json_str(&mut out, &e.customer_id);
    out.extend_from_slice(b",\"metric\":");
    write_json_str(&mut out, &e.metric);
    out.extend_from_slice(b",\"quantity\":\"");
    e.quantity.write_text(&mut out);
    out.extend_from_slice(b"\",\"timestamp\":\"");
    e.timestamp.write_rfc3339(&mut out);
    out.extend_from_slice(b"\",\"product_id\":");
    write_json_str(&mut out, &e.product_id);
    out.extend_from_slice(b",\"environment\":\"");
    out.extend_from_slice(e.environment.as_str().as_bytes());
    out.push(b'"');
    out.extend_from_slice(b",\"properties\":");
    write_properties(&mut out);
    out.push(b'}');
    out
}

/// As `encode_v1`, with properties from any serializable value instead of `e.properties`
/// (the gateway writes its fixed properties without building a map per request).
pub fn encode_v1_with<P: Serialize + ?Sized>(e: &UsageEvent, properties: Option<&P>) -> Vec<u8> {
    let wire = WireOut {
        id: &e.id,
        customer_id: &e.customer_id,
        metric: &e.metric,
        quantity: e.quantity.to_text(),
        timestamp: e.timestamp.to_rfc3339(),
        product_id: &e.product_id,
        environment: e.environment.as_str(),
        properties,
    };
    let mut out = Vec::with_capacity(320);
    match serde_json::to_writer(&mut out, &wire) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// A refused wire event: its id when one could be read, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct WireEventError {
    /// The event's id, if it had a readable one.
    pub id: Option<String>,
    /// What was wrong.
    pub rejection: Rejection,
}

const FIELDS: [&str; 8] = [
    "id",
    "customer_id",
    "metric",
    "quantity",
    "timestamp",
    "product_id",
    "environment",
    "properties",
];

/// Most properties one event may carry.
pub const MAX_PROPERTIES: usize = 64;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Fast<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    customer_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    metric: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    quantity: &'a RawValue,
    #[serde(borrow)]
    timestamp: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    product_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    environment: std::borrow::Cow<'a, str>,
    #[serde(default)]
    properties: Option<Map<String, Value>>,
}

fn quantity_of(raw: &RawValue) -> Result<Quantity, Rejection> {
    let t = raw.get().trim();
    let inner = if t.starts_with('"') {
        serde_json::from_str::<String>(t).ok()
    } else if t == "null" {
        return Err(Rejection::new(
            RejectCode::MissingField,
            Some("quantity"),
            "is required",
        ));
    } else if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Some(t.to_string())
    } else {
        None
    };
    let inner = inner.ok_or_else(|| {
        Rejection::new(
            RejectCode::InvalidQuantity,
            Some("quantity"),
            "must be a JSON number or a decimal string",
        )
    })?;
    Quantity::parse(&inner)
        .map_err(|e| Rejection::new(RejectCode::InvalidQuantity, Some("quantity"), e.to_string()))
}

struct Parts<'a> {
    id: String,
    customer_id: String,
    metric: String,
    quantity: &'a RawValue,
    timestamp: &'a str,
    product_id: String,
    environment: &'a str,
    properties: Map<String, Value>,
}

fn build(p: Parts<'_>) -> Result<UsageEvent, Rejection> {
    let environment = Environment::from_wire(p.environment).ok_or_else(|| {
        Rejection::new(
            RejectCode::InvalidField,
            Some("environment"),
            format!("must be sandbox or production, got {:?}", p.environment),
        )
    })?;
    let timestamp = parse_rfc3339(p.timestamp).map_err(|e| {
        Rejection::new(
            RejectCode::InvalidTimestamp,
            Some("timestamp"),
            e.to_string(),
        )
    })?;
    let quantity = quantity_of(p.quantity)?;
    if p.properties.len() > MAX_PROPERTIES {
        return Err(Rejection::new(
            RejectCode::InvalidField,
            Some("properties"),
            format!("must have at most {MAX_PROPERTIES} entries"),
        ));
    }
    let event = UsageEvent {
        id: p.id,
        customer_id: p.customer_id,
        metric: p.metric,
        quantity,
        timestamp,
        product_id: p.product_id,
        environment,
        properties: p.properties,
    };
    crate::validate::check_fields(&event)?;
    Ok(event)
}

/// An event read by the fast path, checked as `parse_wire_event` checks it.
fn from_fast(f: Fast<'_>) -> Result<UsageEvent, WireEventError> {
    let id = f.id.into_owned();
    build(Parts {
        id: id.clone(),
        customer_id: f.customer_id.into_owned(),
        metric: f.metric.into_owned(),
        quantity: f.quantity,
        timestamp: &f.timestamp,
        product_id: f.product_id.into_owned(),
        environment: &f.environment,
        properties: f.properties.unwrap_or_default(),
    })
    .map_err(|rejection| WireEventError {
        id: Some(id),
        rejection,
    })
}

/// The events of `{"events": [...]}` read in one pass, each as `parse_wire_event` reads it;
/// `None` when the body or any entry is not of the well-formed shape (the caller then reads
/// each entry on its own, so one bad entry fails only itself). Bodies from gateways are
/// well-formed: this skips a first pass that only finds where each entry ends.
/// More than `max_events` entries is `None` too, before any is checked (the caller refuses the
/// body).
pub fn parse_well_formed_events(
    body: &str,
    max_events: usize,
) -> Option<Vec<Result<UsageEvent, WireEventError>>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch<'a> {
        #[serde(borrow)]
        events: Vec<Fast<'a>>,
    }
    let batch: Batch<'_> = serde_json::from_str(body).ok()?;
    if batch.events.len() > max_events {
        return None;
    }
    Some(batch.events.into_iter().map(from_fast).collect())
}

/// Reads one ingest v1 event with exact quantities; checks shape and field syntax only
/// (timestamp windows and the environment of the key are checked by `validate`).
pub fn parse_wire_event(raw: &RawValue) -> Result<UsageEvent, WireEventError> {
    // Fast path: a well-formed event in one pass, strings borrowed where possible.
    if let Ok(f) = serde_json::from_str::<Fast<'_>>(raw.get()) {
        return from_fast(f);
    }
    // Slow path: find exactly what is wrong.
    let fields: HashMap<String, &RawValue> =
        serde_json::from_str(raw.get()).map_err(|_| WireEventError {
            id: None,
            rejection: Rejection::new(
                RejectCode::InvalidField,
                None,
                "an event must be a JSON object",
            ),
        })?;
    let id = fields
        .get("id")
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
    let fail = |r: Rejection| WireEventError {
        id: id.clone(),
        rejection: r,
    };
    // The first unknown name in sorted order: the same answer for the same event every time
    // (a hash map's order differs between runs, and the answer to a retried batch must not).
    if let Some(unknown) = fields
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .min()
    {
        return Err(fail(Rejection::new(
            RejectCode::InvalidField,
            None,
            format!("unknown field {unknown:?}; allowed: {}", FIELDS.join(", ")),
        )));
    }
    let text = |name: &'static str| -> Result<String, WireEventError> {
        let v = fields.get(name).ok_or_else(|| {
            fail(Rejection::new(
                RejectCode::MissingField,
                Some(name),
                "is required",
            ))
        })?;
        match serde_json::from_str::<Value>(v.get()) {
            Ok(Value::String(s)) => Ok(s),
            Ok(Value::Null) => Err(fail(Rejection::new(
                RejectCode::MissingField,
                Some(name),
                "is required",
            ))),
            _ => Err(fail(Rejection::new(
                RejectCode::InvalidField,
                Some(name),
                "must be a string",
            ))),
        }
    };
    let event_id = text("id")?;
    let customer_id = text("customer_id")?;
    let metric = text("metric")?;
    let product_id = text("product_id")?;
    let environment = text("environment")?;
    let timestamp = text("timestamp")?;
    let quantity = fields.get("quantity").copied().ok_or_else(|| {
        fail(Rejection::new(
            RejectCode::MissingField,
            Some("quantity"),
            "is required",
        ))
    })?;
    let properties = match fields.get("properties") {
        None => Map::new(),
        Some(p) => match serde_json::from_str::<Value>(p.get()) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) => Map::new(),
            _ => {
                return Err(fail(Rejection::new(
                    RejectCode::InvalidField,
                    Some("properties"),
                    "must be an object",
                )))
            }
        },
    };
    build(Parts {
        id: event_id,
        customer_id,
        metric,
        quantity,
        timestamp: &timestamp,
        product_id,
        environment: &environment,
        properties,
    })
    .map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::sample_event;
    use crate::time::Timestamp;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    /// The escaping `write_json_str` does, byte by byte (what it did before it read eight
    /// bytes at a time), as the reference the fast path must agree with.
    fn escaped_byte_by_byte(s: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out.push(b'"');
        out
    }

    #[test]
    fn json_strings_escape_every_quote_backslash_and_control_byte_at_any_offset() {
        // Each special byte at every position of strings longer and shorter than a word, next
        // to multi-byte UTF-8 and DEL (0x7f, not escaped), so a word-at-a-time scan that
        // skipped one would show here.
        let specials = [
            '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é', '€', ' ',
        ];
        for len in 0..20 {
            for at in 0..len.max(1) {
                for &c in &specials {
                    let mut s: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
                    if len > 0 {
                        s.replace_range(at..at + 1, c.encode_utf8(&mut [0; 4]));
                    } else {
                        s.push(c);
                    }
                    let mut out = Vec::new();
                    write_json_str(&mut out, &s);
                    assert_eq!(out, escaped_byte_by_byte(&s), "{s:?}");
                    let back: String = serde_json::from_slice(&out).unwrap();
                    assert_eq!(back, s);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn json_strings_read_back_as_written(s in "\\PC*|[\\x00-\\x7f]{0,40}") {
            let mut out = b"x".to_vec();
            write_json_str(&mut out, &s);
            proptest::prop_assert_eq!(&out[1..], &escaped_byte_by_byte(&s)[..]);
            let back: String = serde_json::from_slice(&out[1..]).unwrap();
            proptest::prop_assert_eq!(back, s);
        }
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let e = sample_event();
        let bytes = encode_v1(&e);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"quantity\":\"1\""), "{text}");
        assert!(
            text.contains("\"timestamp\":\"2026-03-15T12:00:00Z\""),
            "{text}"
        );
        let back = parse_wire_event(&raw(&text)).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn the_hand_written_encoding_is_the_serde_encoding() {
        let mut e = sample_event();
        e.customer_id = "quote\" back\\ nl\n tab\t bell\u{7} é".into();
        // Text written straight into the JSON: a fraction with leading zeros, nanoseconds.
        e.quantity = Quantity::parse("0.015").unwrap();
        e.timestamp = Timestamp::from_unix_nanos(1_773_576_000_000_000_123);
        let props = serde_json::to_vec(&e.properties).unwrap();
        let a: Value =
            serde_json::from_slice(&encode_v1_raw(&e, |out| out.extend_from_slice(&props)))
                .unwrap();
        assert_eq!(a["quantity"], "0.015");
        assert_eq!(a["timestamp"], "2026-03-15T12:00:00.000000123Z");
        let b: Value = serde_json::from_slice(&encode_v1(&e)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a["customer_id"], "quote\" back\\ nl\n tab\t bell\u{7} é");
    }

    #[test]
    fn numbers_keep_every_digit() {
        let r = raw(
            r#"{"id":"e1","customer_id":"c","metric":"m","quantity":0.12345678901234567890123,
            "timestamp":"2026-03-15T12:00:00Z","product_id":"p","environment":"production"}"#,
        );
        let e = parse_wire_event(&r).unwrap();
        assert_eq!(e.quantity.to_string(), "0.12345678901234567890123");
        let r = raw(
            r#"{"id":"e1","customer_id":"c","metric":"m","quantity":"42.50",
            "timestamp":"2026-03-15T12:00:00Z","product_id":"p","environment":"sandbox"}"#,
        );
        assert_eq!(parse_wire_event(&r).unwrap().quantity.to_string(), "42.5");
    }

    #[test]
    fn each_defect_has_its_code_and_field() {
        let base = r#""customer_id":"c","metric":"m","quantity":"1","timestamp":"2026-03-15T12:00:00Z","product_id":"p","environment":"sandbox""#;
        let cases: Vec<(String, RejectCode, Option<&str>)> = vec![
            (format!("{{{base}}}"), RejectCode::MissingField, Some("id")),
            (
                format!(r#"{{"id":"e",{}}}"#, base.replace(r#""metric":"m","#, "")),
                RejectCode::MissingField,
                Some("metric"),
            ),
            (
                format!(
                    r#"{{"id":"e",{}}}"#,
                    base.replace(r#""quantity":"1""#, r#""quantity":"-1""#)
                ),
                RejectCode::InvalidQuantity,
                Some("quantity"),
            ),
            (
                format!(
                    r#"{{"id":"e",{}}}"#,
                    base.replace(r#""quantity":"1""#, r#""quantity":true"#)
                ),
                RejectCode::InvalidQuantity,
                Some("quantity"),
            ),
            (
                format!(
                    r#"{{"id":"e",{}}}"#,
                    base.replace(r#""quantity":"1""#, r#""quantity":"NaN""#)
                ),
                RejectCode::InvalidQuantity,
                Some("quantity"),
            ),
            (
                format!(
                    r#"{{"id":"e",{}}}"#,
                    base.replace("2026-03-15T12:00:00Z", "yesterday")
                ),
                RejectCode::InvalidTimestamp,
                Some("timestamp"),
            ),
            (
                format!(
                    r#"{{"id":"e",{}}}"#,
                    base.replace(r#""sandbox""#, r#""staging""#)
                ),
                RejectCode::InvalidField,
                Some("environment"),
            ),
            (
                format!(r#"{{"id":"e","extra":1,{base}}}"#),
                RejectCode::InvalidField,
                None,
            ),
            (
                format!(r#"{{"id":"e","properties":[1],{base}}}"#),
                RejectCode::InvalidField,
                Some("properties"),
            ),
            (
                format!(r#"{{"id":7,{base}}}"#),
                RejectCode::InvalidField,
                Some("id"),
            ),
            (
                format!(r#"{{"id":"has space",{base}}}"#),
                RejectCode::InvalidField,
                Some("id"),
            ),
            ("[1,2]".to_string(), RejectCode::InvalidField, None),
        ];
        for (text, code, field) in cases {
            let err = parse_wire_event(&raw(&text)).unwrap_err();
            assert_eq!(err.rejection.code, code, "{text}: {:?}", err.rejection);
            assert_eq!(err.rejection.field, field, "{text}");
        }
    }

    #[test]
    fn the_id_of_a_bad_event_is_reported_when_readable() {
        let r = raw(
            r#"{"id":"evt_9","customer_id":"c","metric":"m","quantity":"-3","timestamp":"2026-03-15T12:00:00Z","product_id":"p","environment":"sandbox"}"#,
        );
        assert_eq!(
            parse_wire_event(&r).unwrap_err().id.as_deref(),
            Some("evt_9")
        );
    }
}
