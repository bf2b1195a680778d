//! CloudEvents 1.0 structured JSON, so OpenMeter and other CloudEvents ingests can be targets.

use super::UsageEvent;
use serde::Serialize;
#[cfg(test)]
use serde_json::Value;

/// `Content-Type` of a CloudEvents batch.
pub const CLOUDEVENTS_BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

#[derive(Serialize)]
struct Data<'a, P: Serialize + ?Sized> {
    quantity: String,
    product_id: &'a str,
    environment: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    properties: Option<&'a P>,
}

#[derive(Serialize)]
struct CloudEvent<'a, P: Serialize + ?Sized> {
    specversion: &'static str,
    id: &'a str,
    source: String,
    #[serde(rename = "type")]
    kind: &'a str,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    data: Data<'a, P>,
}

/// One event as a CloudEvent: `type` = metric, `subject` = customer, `source` = `aforo/<environment>`
/// (so a consumer that dedups on `(source, id)` keeps environments apart).
pub fn encode_cloudevent(e: &UsageEvent) -> Vec<u8> {
    let props = (!e.properties.is_empty()).then_some(&e.properties);
    encode_cloudevent_with(e, props)
}

/// As `encode_cloudevent`, with properties from any serializable value.
pub fn encode_cloudevent_with<P: Serialize + ?Sized>(
    e: &UsageEvent,
    properties: Option<&P>,
) -> Vec<u8> {
    let ce = CloudEvent {
        specversion: "1.0",
        id: &e.id,
        source: format!("aforo/{}", e.environment.as_str()),
        kind: &e.metric,
        subject: &e.customer_id,
        time: e.timestamp.to_rfc3339(),
        datacontenttype: "application/json",
        data: Data {
            quantity: e.quantity.to_text(),
            product_id: &e.product_id,
            environment: e.environment.as_str(),
            properties,
        },
    };
    serde_json::to_vec(&ce).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::test_support::sample_event;

    #[test]
    fn maps_the_seven_fields_onto_cloudevents_attributes() {
        let v: Value = serde_json::from_slice(&encode_cloudevent(&sample_event())).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["source"], "aforo/sandbox");
        assert_eq!(v["type"], "api_calls");
        assert_eq!(v["subject"], "cust_abc");
        assert_eq!(v["time"], "2026-03-15T12:00:00Z");
        assert_eq!(v["data"]["quantity"], "1");
        assert_eq!(v["data"]["product_id"], "prod_search");
        assert_eq!(v["data"]["properties"]["status"], 200);
    }
}
