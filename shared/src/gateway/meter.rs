//! The metering phase: when the exchange ends, build the usage event, validate it and queue it.

use super::exchange::Exchange;
use super::stream_quantity::{json_quantity, StreamQuantity};
use super::Gateway;
use crate::config::{QuantitySource, DEFAULT_PRODUCT_ID};
use crate::delivery::{DeadLetterReason, Enqueued};
use crate::entitlement::{add_usage, HostCounters};
use crate::event::{
    derive_event_id, encode_v1_raw, sequence_event_id, write_json_str, IngestFormat, Quantity,
    UsageEvent,
};
use crate::host::{Host, LogLevel};
use crate::validate::{validate_event, RejectCode};
use serde::Serialize;
use serde_json::{Map, Value};

/// The properties the gateway puts on every event, serialised without building a map.
#[derive(Serialize)]
struct GatewayProperties<'a> {
    endpoint: &'a str,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    feature: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
}

impl GatewayProperties<'_> {
    /// The properties as a JSON object, written by hand (once per metered request).
    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"{\"endpoint\":");
        write_json_str(&mut out, self.endpoint);
        out.extend_from_slice(b",\"method\":");
        write_json_str(&mut out, self.method);
        if let Some(s) = self.status {
            out.extend_from_slice(b",\"status\":");
            out.extend_from_slice(
                crate::event::Quantity::from_u64(s as u64)
                    .to_text()
                    .as_bytes(),
            );
        }
        out.extend_from_slice(b",\"feature\":");
        write_json_str(&mut out, self.feature);
        out.extend_from_slice(b",\"source\":");
        write_json_str(&mut out, self.source);
        if let Some(k) = self.key_id {
            out.extend_from_slice(b",\"key_id\":");
            write_json_str(&mut out, k);
        }
        out.push(b'}');
        out
    }
}

fn encode(format: IngestFormat, event: &UsageEvent, props: &GatewayProperties<'_>) -> Vec<u8> {
    match format {
        IngestFormat::Aforo => encode_v1_raw(event, Some(&props.to_json())),
        IngestFormat::CloudEvents => format.encode_with(event, Some(props)),
    }
}

/// Why the quantity could not be measured.
/// Meter `i`'s quantity (its `source`) as the exchange observed it.
fn quantity_of(ex: &Exchange, i: usize, source: &QuantitySource) -> Result<Quantity, String> {
    if let Some(Some(why)) = ex.unmeasured.get(i) {
        return Err(why.clone());
    }
    match source {
        QuantitySource::Constant(q) => Ok(*q),
        QuantitySource::RequestBytes => Ok(Quantity::from_u64(ex.request_bytes)),
        QuantitySource::ResponseBytes => Ok(Quantity::from_u64(ex.response_bytes)),
        QuantitySource::ResponseHeader(name) => {
            match ex.quantity_headers.get(i).and_then(Option::as_ref) {
                None => Err(format!("response header {name:?} is missing")),
                Some(v) => Quantity::parse(v).map_err(|e| format!("response header {name:?}: {e}")),
            }
        }
        QuantitySource::ResponseJson(pointer) if ex.event_stream => match &ex.stream {
            Some(s) => s.quantity(i, pointer, ex.response_complete),
            None => StreamQuantity::new(0, 0).quantity(i, pointer, ex.response_complete),
        },
        QuantitySource::ResponseJson(pointer) => {
            if ex.body_truncated {
                return Err(format!(
                    "response body is larger than max_body_bytes; {pointer} not read"
                ));
            }
            let v: Value = serde_json::from_slice(&ex.body)
                .map_err(|e| format!("response body is not JSON ({e}); {pointer} not read"))?;
            json_quantity(pointer, v.pointer(pointer))
        }
    }
}

impl Gateway {
    /// Ends an exchange: meters it when billable, gives reserved quota back when not.
    pub fn finish(&mut self, host: &mut dyn Host, ex: Exchange) {
        let now = host.now();
        let billable = ex
            .status
            .is_some_and(|s| self.config.billable_status.contains(s));
        if !billable {
            self.refund(host, &ex.reservations);
            return;
        }
        let Some(customer_id) = ex.customer_id.clone() else {
            if ex.pending_key.is_some() {
                self.await_identity(host, ex);
            }
            return;
        };
        let Some(route) = self.config.routes.get(ex.route) else {
            return;
        };
        let env = ex.environment;
        let product_id = route
            .product_id
            .as_deref()
            .or(self.config.product_id.as_deref())
            .or(self
                .snapshot
                .snapshot
                .as_ref()
                .and_then(|s| s.product_id.as_deref()))
            .unwrap_or(DEFAULT_PRODUCT_ID);
        // One event per meter; a retry of the request (same request id) gives each the same id.
        for (i, meter) in route.meters.iter().enumerate() {
            let id = match &ex.request_id {
                Some(rid) => derive_event_id(env, &customer_id, &meter.metric, rid),
                None => {
                    self.sequence += 1;
                    sequence_event_id(self.nonce, self.sequence)
                }
            };
            let props = GatewayProperties {
                endpoint: &ex.endpoint,
                method: &ex.method,
                status: ex.status,
                feature: &route.feature,
                source: &self.config.source,
                key_id: ex.key_id.as_deref(),
            };
            let quantity = quantity_of(&ex, i, &meter.quantity);
            let mut event = UsageEvent {
                id,
                customer_id: customer_id.clone(),
                metric: meter.metric.clone(),
                quantity: Quantity::ZERO,
                timestamp: ex.started_at,
                product_id: product_id.to_string(),
                environment: env,
                properties: Map::new(),
            };
            let format = self.config.delivery.format;
            let pipeline = &mut self.delivery[env.index()];
            let quantity = match quantity {
                Ok(q) => q,
                Err(why) => {
                    let bytes = encode(format, &event, &props);
                    host.log(
                        LogLevel::Warn,
                        &format!(
                            "aforo: event {} rejected: {}: {why}",
                            event.id,
                            RejectCode::QuantityUnavailable
                        ),
                    );
                    let spilled = pipeline.reject(
                        event.id,
                        bytes,
                        RejectCode::QuantityUnavailable.as_str(),
                        now,
                    );
                    self.log_spilled(host, spilled);
                    continue;
                }
            };
            event.quantity = quantity;
            let bytes = encode(format, &event, &props);
            if let Err(r) = validate_event(&event, now, env) {
                host.log(
                    LogLevel::Warn,
                    &format!("aforo: event {} rejected: {r}", event.id),
                );
                let spilled = pipeline.reject(event.id, bytes, r.code.as_str(), now);
                self.log_spilled(host, spilled);
                continue;
            }
            if self.config.key_for(env).is_none() {
                host.log(
                LogLevel::Error,
                &format!("aforo: event {} for a {env} partner but no {env} key is configured (set sandbox_api_key); dead-lettered", event.id),
            );
                let spilled = pipeline.dead_letter(
                    event.id,
                    bytes,
                    DeadLetterReason::NoKeyForEnvironment,
                    now,
                );
                self.log_spilled(host, spilled);
                continue;
            }
            if self.config.debug {
                host.log(
                    LogLevel::Info,
                    &format!(
                        "aforo debug: queued event {}",
                        String::from_utf8_lossy(&bytes)
                    ),
                );
            }
            // The feature's quota counts the first meter.
            if i == 0 && ex.counts_after_response {
                let units = quantity.ceil_units();
                for counter in &ex.usage_counters {
                    add_usage(&mut HostCounters(host), counter, units);
                }
            }
            match pipeline.enqueue(event.id, bytes, now) {
                Enqueued::Queued => {}
                Enqueued::Overflow { spilled } => {
                    self.overflow_logged += 1;
                    if self.overflow_logged.is_power_of_two() {
                        host.log(
                        LogLevel::Warn,
                        &format!(
                            "aforo: {env} buffer full (max_buffer_events={}, max_buffer_bytes={}); {} events dead-lettered so far, they are re-offered when the ingest recovers",
                            self.config.delivery.max_buffer_events, self.config.delivery.max_buffer_bytes, self.overflow_logged
                        ),
                    );
                    }
                    self.log_spilled(host, spilled);
                }
            }
        }
    }
}
