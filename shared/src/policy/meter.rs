//! Builds and validates one usage event from what a non-proxy host knows about a request.

use crate::event::{derive_event_id, parse_properties, Quantity, UsageEvent};
use crate::time::parse_rfc3339;
use crate::validate::validate_event;
use crate::{Environment, Timestamp};

/// What a host knows about one unit of usage.
#[derive(Clone, Debug, Default)]
pub struct MeterQuery<'a> {
    /// The customer billed.
    pub tenant_id: &'a str,
    /// The metric.
    pub metric_key: &'a str,
    /// A decimal >= 0, as text.
    pub quantity: &'a str,
    /// A JSON object of properties.
    pub properties_json: Option<&'a str>,
    /// The idempotency key, when the caller has one.
    pub id: Option<&'a str>,
    /// Or a request id to derive a stable id from (a retry gives the same id).
    pub request_id: Option<&'a str>,
    /// RFC 3339; defaults to `now`.
    pub timestamp: Option<&'a str>,
    /// Stamped on the event.
    pub product_id: &'a str,
    /// `sandbox` or `production`.
    pub environment: &'a str,
    /// The host's clock, for the timestamp windows.
    pub now: Timestamp,
}

/// Why an event was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// `timestamp_in_future`, `invalid_quantity`…
    pub code: String,
    /// The field at fault.
    pub field: Option<String>,
    /// What a person reads.
    pub message: String,
}

fn reject(code: &str, field: Option<&str>, message: impl Into<String>) -> Rejection {
    Rejection {
        code: code.to_string(),
        field: field.map(str::to_string),
        message: message.into(),
    }
}

/// The given id, or one derived from the request id (the same for a retry).
fn event_id(q: &MeterQuery<'_>, environment: Environment) -> Option<String> {
    match (q.id, q.request_id) {
        (Some(id), _) if !id.is_empty() => Some(id.to_string()),
        (_, Some(rid)) if !rid.is_empty() => {
            Some(derive_event_id(environment, q.tenant_id, q.metric_key, rid))
        }
        _ => None,
    }
}

/// The event as it was asked for, unvalidated, in ingest v1 form: what a dead letter keeps of a
/// refused call, so that a replay can store it once the reason has cleared (a timestamp no
/// longer in the future). Fields that are not valid stay as given, as text. Returns the id
/// (empty when the call gave none) and the JSON.
pub fn event_as_given(q: &MeterQuery<'_>) -> (String, String) {
    let environment = Environment::from_wire(q.environment).unwrap_or(Environment::Sandbox);
    let id = event_id(q, environment).unwrap_or_default();
    let mut v = serde_json::Map::new();
    let mut put = |k: &str, val: serde_json::Value| {
        v.insert(k.to_string(), val);
    };
    put("id", id.clone().into());
    put("customer_id", q.tenant_id.into());
    put("metric", q.metric_key.into());
    put("quantity", q.quantity.into());
    put(
        "timestamp",
        q.timestamp
            .map_or_else(|| q.now.to_rfc3339(), str::to_string)
            .into(),
    );
    put("product_id", q.product_id.into());
    put("environment", q.environment.into());
    if let Some(p) = q.properties_json {
        put(
            "properties",
            serde_json::from_str(p).unwrap_or_else(|_| p.into()),
        );
    }
    (id, serde_json::Value::Object(v).to_string())
}

/// The event, validated exactly as the ingest will validate it.
pub fn build_event(q: &MeterQuery<'_>) -> Result<UsageEvent, Rejection> {
    let environment = Environment::from_wire(q.environment).ok_or_else(|| {
        reject(
            "invalid_field",
            Some("environment"),
            "must be sandbox or production",
        )
    })?;
    let id = event_id(q, environment).ok_or_else(|| {
        reject(
            "missing_field",
            Some("id"),
            "an id or a request id is required, so retries count once",
        )
    })?;
    let quantity = Quantity::parse(q.quantity)
        .map_err(|e| reject("invalid_quantity", Some("quantity"), e.to_string()))?;
    let timestamp = match q.timestamp {
        None => q.now,
        Some(t) => parse_rfc3339(t)
            .map_err(|e| reject("invalid_timestamp", Some("timestamp"), e.to_string()))?,
    };
    let properties = match q.properties_json {
        None => Default::default(),
        Some(p) => parse_properties(p)
            .ok_or_else(|| reject("invalid_field", Some("properties"), "must be a JSON object"))?,
    };
    let event = UsageEvent {
        id,
        customer_id: q.tenant_id.to_string(),
        metric: q.metric_key.to_string(),
        quantity,
        timestamp,
        product_id: q.product_id.to_string(),
        environment,
        properties,
    };
    validate_event(&event, q.now, environment)
        .map_err(|r| reject(r.code.as_str(), r.field, r.message))?;
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q<'a>() -> MeterQuery<'a> {
        MeterQuery {
            tenant_id: "acme",
            metric_key: "api_calls",
            quantity: "1",
            request_id: Some("req-1"),
            product_id: "p",
            environment: "sandbox",
            now: Timestamp::from_unix_nanos(1_773_576_000_000_000_000),
            ..MeterQuery::default()
        }
    }

    #[test]
    fn ids_derive_from_the_request_id_so_retries_count_once() {
        let a = build_event(&q()).unwrap();
        let b = build_event(&q()).unwrap();
        assert_eq!(a.id, b.id);
        let mut other = q();
        other.request_id = Some("req-2");
        assert_ne!(build_event(&other).unwrap().id, a.id);
    }

    #[test]
    fn a_refused_event_is_kept_as_given_and_parses_once_valid() {
        let mut future = q();
        future.timestamp = Some("2026-03-15T12:06:00Z");
        let refused = build_event(&future).unwrap_err();
        assert_eq!(refused.code, "timestamp_in_future");
        let (id, kept) = event_as_given(&future);
        let raw = serde_json::value::RawValue::from_string(kept).unwrap();
        let e = crate::event::parse_wire_event(&raw).unwrap();
        assert_eq!(
            e.id,
            build_event(&q()).unwrap().id,
            "the same id as if it had passed"
        );
        assert_eq!(e.id, id);
        assert_eq!(
            (e.customer_id.as_str(), e.metric.as_str()),
            ("acme", "api_calls")
        );
        // Seven minutes later the same event is valid.
        let later = Timestamp::from_unix_nanos(1_773_576_420_000_000_000);
        assert!(crate::validate::validate_event(&e, later, Environment::Sandbox).is_ok());
        // What cannot be an event stays text, whole.
        let mut bad = q();
        bad.quantity = "lots";
        let kept: serde_json::Value = serde_json::from_str(&event_as_given(&bad).1).unwrap();
        assert_eq!(kept["quantity"], "lots");
    }

    #[test]
    fn refusals_name_the_field() {
        let mut bad = q();
        bad.quantity = "-1";
        assert_eq!(
            build_event(&bad).unwrap_err().field.as_deref(),
            Some("quantity")
        );
        let mut future = q();
        future.timestamp = Some("2026-03-15T12:06:00Z");
        assert_eq!(
            build_event(&future).unwrap_err().code,
            "timestamp_in_future"
        );
        let mut none = q();
        none.request_id = None;
        assert_eq!(build_event(&none).unwrap_err().code, "missing_field");
    }
}
