//! The usage event: 7 required fields, optional properties, and its two wire encodings.

mod cloudevents;
mod id;
mod ingest_v1;
mod quantity;
mod siphash;

pub use cloudevents::{encode_cloudevent, encode_cloudevent_with, CLOUDEVENTS_BATCH_CONTENT_TYPE};
pub use id::{derive_event_id, sequence_event_id, to_hex, EVENT_ID_PREFIX};
pub use ingest_v1::{
    encode_v1, encode_v1_raw, encode_v1_with, parse_well_formed_events, parse_wire_event,
    write_json_str, WireEventError, INGEST_V1_CONTENT_TYPE,
};
pub use quantity::{Quantity, QuantityError};
pub use siphash::{siphash128, siphash64};

use crate::environment::Environment;
use crate::time::Timestamp;
use serde_json::{Map, Value};

/// Event properties: free-form dimensions.
pub type Properties = Map<String, Value>;

/// Parses a JSON object of properties (at most `MAX_PROPERTIES` entries); `None` otherwise.
pub fn parse_properties(text: &str) -> Option<Properties> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) if m.len() <= ingest_v1::MAX_PROPERTIES => Some(m),
        _ => None,
    }
}

/// One billable usage record, as validated before it is queued.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageEvent {
    /// Idempotency key: created once, stable across retries.
    pub id: String,
    /// Who is billed.
    pub customer_id: String,
    /// What is metered (`api_calls`, `tokens`).
    pub metric: String,
    /// How much, exact.
    pub quantity: Quantity,
    /// When the usage happened (UTC).
    pub timestamp: Timestamp,
    /// The product the usage belongs to.
    pub product_id: String,
    /// Sandbox or production; must match the key that sends it.
    pub environment: Environment,
    /// Free-form dimensions (endpoint, method, status, model…).
    pub properties: Map<String, Value>,
}

/// How batches are written to the ingest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestFormat {
    /// Aforo ingest v1: `{"events": [...]}`.
    Aforo,
    /// CloudEvents 1.0 batch (`application/cloudevents-batch+json`), as OpenMeter ingests.
    CloudEvents,
}

impl IngestFormat {
    /// Encodes one event for this format.
    pub fn encode(self, event: &UsageEvent) -> Vec<u8> {
        match self {
            IngestFormat::Aforo => encode_v1(event),
            IngestFormat::CloudEvents => encode_cloudevent(event),
        }
    }

    /// Encodes one event with properties from a serializable value (ignoring `event.properties`).
    pub fn encode_with<P: serde::Serialize + ?Sized>(
        self,
        event: &UsageEvent,
        properties: Option<&P>,
    ) -> Vec<u8> {
        match self {
            IngestFormat::Aforo => encode_v1_with(event, properties),
            IngestFormat::CloudEvents => encode_cloudevent_with(event, properties),
        }
    }

    /// The request body for already-encoded events.
    pub fn batch_body<'a>(self, events: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
        let (open, close): (&[u8], &[u8]) = match self {
            IngestFormat::Aforo => (b"{\"events\":[", b"]}"),
            IngestFormat::CloudEvents => (b"[", b"]"),
        };
        let mut body = Vec::with_capacity(4096);
        body.extend_from_slice(open);
        for (i, e) in events.enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e);
        }
        body.extend_from_slice(close);
        body
    }

    /// Bytes a batch adds around its events (for size accounting).
    pub const fn envelope_bytes(self) -> usize {
        match self {
            IngestFormat::Aforo => 13,
            IngestFormat::CloudEvents => 2,
        }
    }

    /// The `Content-Type` of a batch.
    pub const fn content_type(self) -> &'static str {
        match self {
            IngestFormat::Aforo => INGEST_V1_CONTENT_TYPE,
            IngestFormat::CloudEvents => CLOUDEVENTS_BATCH_CONTENT_TYPE,
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::time::parse_rfc3339;

    pub fn sample_event() -> UsageEvent {
        let mut properties = Map::new();
        properties.insert("endpoint".into(), Value::from("/v1/search"));
        properties.insert("method".into(), Value::from("GET"));
        properties.insert("status".into(), Value::from(200));
        UsageEvent {
            id: "evt_1".into(),
            customer_id: "cust_abc".into(),
            metric: "api_calls".into(),
            quantity: Quantity::parse("1").unwrap(),
            timestamp: parse_rfc3339("2026-03-15T12:00:00Z").unwrap(),
            product_id: "prod_search".into(),
            environment: Environment::Sandbox,
            properties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::sample_event;
    use super::*;

    #[test]
    fn batches_wrap_encoded_events_once() {
        let e = sample_event();
        let one = IngestFormat::Aforo.encode(&e);
        let body = IngestFormat::Aforo.batch_body([one.as_slice(), one.as_slice()].into_iter());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["events"].as_array().unwrap().len(), 2);
        assert_eq!(
            body.len(),
            2 * one.len() + 1 + IngestFormat::Aforo.envelope_bytes()
        );

        let ce = IngestFormat::CloudEvents.encode(&e);
        let body = IngestFormat::CloudEvents.batch_body([ce.as_slice()].into_iter());
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v[0]["type"], "api_calls");
        assert_eq!(
            body.len(),
            ce.len() + IngestFormat::CloudEvents.envelope_bytes()
        );
    }
}
