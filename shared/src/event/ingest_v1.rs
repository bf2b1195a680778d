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
struct WireOut<'a> {
    id: &'a str,
    customer_id: &'a str,
    metric: &'a str,
    quantity: String,
    timestamp: String,
    product_id: &'a str,
    environment: &'a str,
    #[serde(skip_serializing_if = "Map::is_empty")]
    properties: &'a Map<String, Value>,
}

/// One event as ingest v1 JSON; the quantity is a decimal string so no digit is lost.
pub fn encode_v1(e: &UsageEvent) -> Vec<u8> {
    let wire = WireOut {
        id: &e.id,
        customer_id: &e.customer_id,
        metric: &e.metric,
        quantity: e.quantity.to_string(),
        timestamp: e.timestamp.to_rfc3339(),
        product_id: &e.product_id,
        environment: e.environment.as_str(),
        properties: &e.properties,
    };
    serde_json::to_vec(&wire).unwrap_or_default()
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

/// Reads one ingest v1 event with exact quantities; checks shape and field syntax only
/// (timestamp windows and the environment of the key are checked by `validate`).
pub fn parse_wire_event(raw: &RawValue) -> Result<UsageEvent, WireEventError> {
    let fields: HashMap<String, &RawValue> =
        serde_json::from_str(raw.get()).map_err(|_| WireEventError {
            id: None,
            rejection: Rejection::new(
                RejectCode::InvalidField,
                None,
                "an event must be a JSON object",
            ),
        })?;
    let id = match fields.get("id") {
        None => None,
        Some(v) => serde_json::from_str::<String>(v.get()).ok(),
    };
    let fail = |r: Rejection| WireEventError {
        id: id.clone(),
        rejection: r,
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
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
    let env_text = text("environment")?;
    let environment = Environment::from_wire(&env_text).ok_or_else(|| {
        fail(Rejection::new(
            RejectCode::InvalidField,
            Some("environment"),
            format!("must be sandbox or production, got {env_text:?}"),
        ))
    })?;
    let ts_text = text("timestamp")?;
    let timestamp = parse_rfc3339(&ts_text).map_err(|e| {
        fail(Rejection::new(
            RejectCode::InvalidTimestamp,
            Some("timestamp"),
            e.to_string(),
        ))
    })?;
    let quantity = match fields.get("quantity") {
        None => {
            return Err(fail(Rejection::new(
                RejectCode::MissingField,
                Some("quantity"),
                "is required",
            )))
        }
        Some(raw_q) => {
            let t = raw_q.get().trim();
            let inner = if let Some(s) = t.strip_prefix('"') {
                serde_json::from_str::<String>(t)
                    .ok()
                    .or_else(|| s.strip_suffix('"').map(str::to_string))
            } else if t == "null" {
                return Err(fail(Rejection::new(
                    RejectCode::MissingField,
                    Some("quantity"),
                    "is required",
                )));
            } else if t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
                Some(t.to_string())
            } else {
                None
            };
            let inner = inner.ok_or_else(|| {
                fail(Rejection::new(
                    RejectCode::InvalidQuantity,
                    Some("quantity"),
                    "must be a JSON number or a decimal string",
                ))
            })?;
            Quantity::parse(&inner).map_err(|e| {
                fail(Rejection::new(
                    RejectCode::InvalidQuantity,
                    Some("quantity"),
                    e.to_string(),
                ))
            })?
        }
    };
    let properties = match fields.get("properties") {
        None => Map::new(),
        Some(p) => match serde_json::from_str::<Value>(p.get()) {
            Ok(Value::Object(m)) if m.len() <= MAX_PROPERTIES => m,
            Ok(Value::Object(_)) => {
                return Err(fail(Rejection::new(
                    RejectCode::InvalidField,
                    Some("properties"),
                    format!("must have at most {MAX_PROPERTIES} entries"),
                )))
            }
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
    let event = UsageEvent {
        id: event_id,
        customer_id,
        metric,
        quantity,
        timestamp,
        product_id,
        environment,
        properties,
    };
    crate::validate::check_fields(&event).map_err(fail)?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::sample_event;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
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
