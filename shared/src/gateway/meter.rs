//! The metering phase: when the exchange ends, build the usage event, validate it and queue it.

use super::exchange::{parse_body, Exchange};
use super::stream_quantity::{json_quantity, missing_from_stream, property_value};
use super::Gateway;
use crate::config::{BodySide, OnMissing, QuantitySource, Route, DEFAULT_PRODUCT_ID};
use crate::delivery::{DeadLetterReason, Enqueued};
use crate::entitlement::{add_usage, HostCounters, LEASED_PROPERTY};
use crate::event::{
    derive_event_id, encode_v1_raw, sequence_event_id, write_json_str, IngestFormat, Quantity,
    UsageEvent,
};
use crate::host::{Host, LogLevel};
use crate::validate::{validate_event, RejectCode};
use serde_json::{Map, Value};

/// The properties the gateway puts on every event, serialised without building a map, and
/// those the route reads from the bodies.
struct GatewayProperties<'a> {
    endpoint: &'a str,
    method: &'a str,
    status: Option<u16>,
    feature: &'a str,
    source: &'a str,
    key_id: Option<&'a str>,
    /// Features whose units came from a quota lease (`LEASED_PROPERTY`), on the first meter.
    leased: &'a [String],
    extra: &'a [(&'a str, Value)],
}

impl GatewayProperties<'_> {
    /// The properties as a JSON object, written by hand into the event's JSON (once per
    /// metered request).
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"endpoint\":");
        write_json_str(out, self.endpoint);
        out.extend_from_slice(b",\"method\":");
        write_json_str(out, self.method);
        if let Some(s) = self.status {
            out.extend_from_slice(b",\"status\":");
            Quantity::from_u64(u64::from(s)).write_text(out);
        }
        out.extend_from_slice(b",\"feature\":");
        write_json_str(out, self.feature);
        out.extend_from_slice(b",\"source\":");
        write_json_str(out, self.source);
        if let Some(k) = self.key_id {
            out.extend_from_slice(b",\"key_id\":");
            write_json_str(out, k);
        }
        if !self.leased.is_empty() {
            out.extend_from_slice(b",\"leased\":[");
            for (i, f) in self.leased.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(out, f);
            }
            out.push(b']');
        }
        for (name, v) in self.extra {
            out.push(b',');
            write_json_str(out, name);
            out.push(b':');
            match v {
                Value::String(s) => write_json_str(out, s),
                other => out.extend_from_slice(other.to_string().as_bytes()),
            }
        }
        out.push(b'}');
    }

    /// The same properties as a map (the CloudEvents encoder's `data`).
    fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("endpoint".into(), self.endpoint.into());
        m.insert("method".into(), self.method.into());
        if let Some(s) = self.status {
            m.insert("status".into(), s.into());
        }
        m.insert("feature".into(), self.feature.into());
        m.insert("source".into(), self.source.into());
        if let Some(k) = self.key_id {
            m.insert("key_id".into(), k.into());
        }
        if !self.leased.is_empty() {
            m.insert(LEASED_PROPERTY.into(), self.leased.to_vec().into());
        }
        for (name, v) in self.extra {
            m.insert((*name).to_string(), v.clone());
        }
        m
    }
}

fn encode(format: IngestFormat, event: &UsageEvent, props: &GatewayProperties<'_>) -> Vec<u8> {
    match format {
        IngestFormat::Aforo => encode_v1_raw(event, |out| props.write_json(out)),
        IngestFormat::CloudEvents => format.encode_with(event, Some(&props.to_map())),
    }
}

/// The route's properties found in the bodies (absent ones are left out).
fn body_properties<'r>(
    ex: &Exchange,
    route: &'r Route,
    response: Option<&Result<Value, String>>,
) -> Vec<(&'r str, Value)> {
    if route.properties.is_empty() {
        return Vec::new();
    }
    // Read when the request ended (the adapter says so), else now.
    let request = match &ex.request_values {
        Some(_) => None,
        None => route
            .reads_json(BodySide::Request)
            .then(|| parse_body(&ex.request_body, ex.request_body_truncated, "request body").ok())
            .flatten(),
    };
    route
        .properties
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let v = match p.from {
                BodySide::Request => match &ex.request_values {
                    Some(values) => values.get(i).cloned().flatten(),
                    None => property_value(request.as_ref()?.pointer(&p.pointer)),
                },
                BodySide::Response => match (&ex.stream, response) {
                    (Some(s), _) => s.property(i).cloned(),
                    (None, Some(Ok(body))) => property_value(body.pointer(&p.pointer)),
                    _ => None,
                },
            }?;
            Some((p.name.as_str(), v))
        })
        .collect()
}

/// Meter `i`'s quantity (its `source`) as the exchange observed it.
fn quantity_of(
    ex: &Exchange,
    i: usize,
    source: &QuantitySource,
    body: Option<&Result<Value, String>>,
) -> Result<Quantity, String> {
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
            None => Err(missing_from_stream(
                pointer,
                ex.response_complete,
                "no body",
            )),
        },
        QuantitySource::ResponseJson(pointer) => match body {
            Some(Ok(v)) => json_quantity(pointer, v.pointer(pointer)),
            Some(Err(why)) => Err(format!("{why}; {pointer} not read")),
            None => Err(format!("response body not read; {pointer} not read")),
        },
    }
}

impl Gateway {
    /// Ends an exchange: meters it when billable, gives reserved quota back when not; then
    /// reads its share of a snapshot being loaded (its response is sent by now).
    pub fn finish(&mut self, host: &mut dyn Host, ex: Exchange) {
        self.finish_exchange(host, ex);
        self.load_snapshot_share(host);
    }

    fn finish_exchange(&mut self, host: &mut dyn Host, ex: Exchange) {
        let now = host.now();
        let billable = ex
            .status
            .is_some_and(|s| self.config.billable_status.contains(s));
        if !billable {
            self.refund(host, &ex.reservations);
            return;
        }
        let Some(mut customer_id) = ex.customer_id.clone() else {
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
        // The response body, parsed once for every meter and property that reads it.
        let body = (!ex.event_stream && route.reads_json(BodySide::Response))
            .then(|| parse_body(&ex.body, ex.body_truncated, "response body"));
        let extra = body_properties(&ex, route, body.as_ref());
        // One event per meter; a retry of the request (same request id) gives each the same id.
        for (i, meter) in route.meters.iter().enumerate() {
            let id = match &ex.request_id {
                Some(rid) => derive_event_id(env, &customer_id, &meter.metric, rid),
                None => {
                    self.sequence += 1;
                    sequence_event_id(self.nonce, self.sequence)
                }
            };
            let mut props = GatewayProperties {
                endpoint: &ex.endpoint,
                method: &ex.method,
                status: ex.status,
                feature: &route.feature,
                source: &self.config.source,
                key_id: ex.key_id.as_deref(),
                leased: if i == 0 { &ex.leased } else { &[] },
                extra: &extra,
            };
            let quantity = quantity_of(&ex, i, &meter.quantity, body.as_ref());
            // A JSON quantity that never arrived, on a route that asks for an estimate.
            let mut with_estimate = Vec::new();
            let quantity = match (quantity, &meter.quantity, route.on_missing) {
                (Err(why), QuantitySource::ResponseJson(_), OnMissing::EstimateRequestBytes) => {
                    host.log(
                        LogLevel::Info,
                        &format!(
                            "aforo: {} estimated from the request's {} bytes: {why}",
                            meter.metric, ex.request_bytes
                        ),
                    );
                    with_estimate.extend(extra.iter().cloned());
                    with_estimate.push(("estimated", Value::from("request_bytes")));
                    props.extra = &with_estimate;
                    Ok(Quantity::from_u64(ex.request_bytes))
                }
                (q, _, _) => q,
            };
            let mut event = UsageEvent {
                id,
                // The last meter takes the id (one route, one meter: no copy).
                customer_id: if i + 1 == route.meters.len() {
                    std::mem::take(&mut customer_id)
                } else {
                    customer_id.clone()
                },
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
                    // The quota still counts something: the response's bytes (more than its
                    // tokens), so a client that cuts streams off before their usage cannot
                    // escape a token quota.
                    if i == 0 && ex.counts_after_response {
                        let units = ex.response_bytes.max(1);
                        for counter in &ex.usage_counters {
                            add_usage(
                                &mut self.slices.over(&mut HostCounters(host)),
                                counter,
                                units,
                            );
                        }
                    }
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
                    add_usage(
                        &mut self.slices.over(&mut HostCounters(host)),
                        counter,
                        units,
                    );
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
