//! `POST /v1/meter`: usage events from a gateway policy (Apigee, APIM, Kong Lua): one metric
//! (`metricKey`/`featureKey` and `quantity`), or several of one request at once (`quantities`,
//! an LLM call's input and output tokens), each built and validated by the component and stored
//! like any ingested event, in one transaction.

use super::extract::Gateway;
use super::{json, parse_json, read_body, ApiError, SMALL_BODY};
use crate::app::App;
use crate::component::MeterRequest;
use crate::ingest;
use crate::keys;
use crate::store::{DeadLetter, DeadLetterOrigin, NewEvent};
use aforo_core::entitlement::LEASED_PROPERTY;
use aforo_core::event::parse_wire_event;
use aforo_core::strict_json::ObjReader;
use aforo_core::Environment;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

const FIELDS: &[&str] = &[
    "tenantId",
    "metricKey",
    "featureKey",
    "quantity",
    "properties",
    "id",
    "timestamp",
    "productId",
    "quantities",
];

/// Most metrics one `/v1/meter` call may carry (a route's meters in the filter: the same).
const MAX_QUANTITIES: usize = aforo_core::config::MAX_METERS;

/// The metric a customer's feature counts, per the catalog (the feature's own name otherwise).
fn metric_of_feature(app: &App, tenant: &str, feature: &str) -> String {
    app.catalog
        .read()
        .ok()
        .and_then(|c| {
            c.features.get(tenant).and_then(|fs| {
                fs.iter()
                    .find(|f| f.feature == feature)
                    .map(|f| f.metric.clone())
            })
        })
        .unwrap_or_else(|| feature.to_string())
}

/// Stores one metered event.
pub async fn meter(
    State(app): State<Arc<App>>,
    Gateway { env: key_env, key }: Gateway,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let t = app.now();
    let v = parse_json(&read_body(&app, body, SMALL_BODY).await?)?;
    let bad = |e: aforo_core::strict_json::FieldError| ApiError::from_field("invalid_body", e);
    let r = ObjReader::new("", &v, FIELDS).map_err(bad)?;
    let tenant = r.required_string("tenantId").map_err(bad)?.to_string();
    let items = match r.get("quantities") {
        Some(q) => quantities(&r, q)?,
        None => vec![(
            metric_and_feature(&app, &r, &tenant)?,
            quantity_text(r.get("quantity"), "quantity")?,
        )],
    };
    // `leased` is the filters' mark of units counted by a quota lease (its claim then counts
    // them from the filter's prepaid units): never a policy's, whose properties may carry what
    // callers sent. Dropped, not refused, so the event is kept.
    let properties = r.get("properties").map(|p| match p {
        Value::Object(m) if m.contains_key(LEASED_PROPERTY) => {
            let mut m = m.clone();
            m.remove(LEASED_PROPERTY);
            Value::Object(m).to_string()
        }
        other => other.to_string(),
    });
    // A partner in sandbox mode is tracked in the sandbox, never billed.
    let catalog_default = app
        .catalog
        .read()
        .map(|c| c.sandbox_default(&tenant))
        .unwrap_or(false);
    let sandbox_partner = keys::sandbox_mode(&app.stores.control, &tenant, catalog_default)
        .unwrap_or(catalog_default);
    let env = if sandbox_partner {
        Environment::Sandbox
    } else {
        key_env
    };
    app.take_rate(key_env, key, items.len() as u64, t)?;
    let header_request_id = headers
        .get("x-request-id")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let given_id = r.string("id").map_err(bad)?.map(str::to_string);
    // One metric: the given id, else one derived from X-Request-Id, else a random one. Several:
    // each id derived from the request's (the given id, X-Request-Id, or a random one) and its
    // metric, so a retry of the call counts each once and no two collide.
    let (id, request_id) = match (items.len(), given_id, header_request_id) {
        (1, Some(id), rid) => (Some(id), rid),
        (1, None, Some(rid)) => (None, Some(rid)),
        (_, Some(id), _) => (None, Some(id)),
        (_, None, Some(rid)) => (None, Some(rid)),
        (n, None, None) => {
            let fresh = format!(
                "evt_{}",
                aforo_core::event::to_hex(
                    &keys::random_bytes().map_err(ApiError::unavailable)?[..16]
                )
            );
            if n == 1 {
                (Some(fresh), None)
            } else {
                (None, Some(fresh))
            }
        }
    };
    let product_id = r
        .string("productId")
        .map_err(bad)?
        .unwrap_or(&app.config.product_id)
        .to_string();
    let timestamp = r.string("timestamp").map_err(bad)?.map(str::to_string);
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (metric, quantity) in items {
        let req = MeterRequest {
            tenant_id: tenant.clone(),
            metric_key: metric,
            quantity,
            properties_json: properties.clone(),
            id: id.clone(),
            request_id: request_id.clone(),
            timestamp: timestamp.clone(),
            product_id: product_id.clone(),
            environment: env.as_str().to_string(),
            now_ns: t.unix_nanos(),
        };
        let built = app
            .policy
            .build_event(&req)
            .map_err(ApiError::unavailable)?;
        match built {
            Ok(body) => {
                let raw = serde_json::value::RawValue::from_string(body.clone())
                    .map_err(ApiError::unavailable)?;
                let event =
                    parse_wire_event(&raw).map_err(|e| ApiError::unavailable(e.rejection))?;
                events.push(NewEvent {
                    event,
                    body,
                    late: false,
                });
            }
            Err(rej) => {
                let detail = format!("{}: {}", rej.field.clone().unwrap_or_default(), rej.message);
                // Kept whole (as the component rendered it), with the id it would have had, so
                // a replay stores it once the reason has cleared, and counts it once.
                let reason = format!("rejected:{}", rej.code);
                app.stores
                    .dead_letter(
                        env,
                        &DeadLetter {
                            event_id: &rej.event_id,
                            origin: DeadLetterOrigin::Refused,
                            reason: &reason,
                            detail: &detail,
                            body: &rej.event_json,
                        },
                        t,
                    )
                    .map_err(ApiError::unavailable)?;
                app.metrics.event_rejected(env, &rej.code);
                rejected.push(json!({"id": (!rej.event_id.is_empty()).then_some(&rej.event_id), "code": rej.code, "field": rej.field, "message": rej.message}));
            }
        }
    }
    let ids: Vec<String> = events.iter().map(|e| e.event.id.clone()).collect();
    let flags = if events.is_empty() {
        Vec::new()
    } else {
        ingest::store_events(&app, env, events, t).await?
    };
    let accepted = flags.iter().filter(|f| **f).count() as u64;
    let duplicates = flags.len() as u64 - accepted;
    app.metrics.events_stored(env, accepted, duplicates);
    app.metrics.ingest(env, started.elapsed());
    let mut answer = json!({"environment": env.as_str(), "accepted": accepted, "duplicates": duplicates, "rejected": rejected, "flagged": []});
    if r.get("quantities").is_some() {
        answer["ids"] = json!(ids);
    } else if let Some(id) = ids.first() {
        answer["id"] = json!(id);
    }
    Ok(json(202, &answer))
}

/// The metric of a one-metric call: `metricKey`, or the catalog's metric of `featureKey`.
fn metric_and_feature(app: &App, r: &ObjReader<'_>, tenant: &str) -> Result<String, ApiError> {
    let bad = |e: aforo_core::strict_json::FieldError| ApiError::from_field("invalid_body", e);
    match (
        r.string("metricKey").map_err(bad)?,
        r.string("featureKey").map_err(bad)?,
    ) {
        (Some(m), _) => Ok(m.to_string()),
        // Gateway policies know the feature; the catalog knows which metric it counts.
        (None, Some(f)) => Ok(metric_of_feature(app, tenant, f)),
        (None, None) => Err(ApiError::invalid(
            "invalid_body",
            "metricKey",
            "required (or featureKey, to meter the metric the catalog gives that feature, or quantities for several)",
        )),
    }
}

/// A quantity as the decimal text the component validates (absent: one).
fn quantity_text(v: Option<&Value>, field: &str) -> Result<String, ApiError> {
    match v {
        None => Ok("1".to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(other) => Err(ApiError::invalid(
            "invalid_body",
            field,
            format!("must be a decimal >= 0, got {other}"),
        )),
    }
}

/// `quantities`: metric → quantity, 1..=8 of them, instead of one metric and quantity.
fn quantities(r: &ObjReader<'_>, v: &Value) -> Result<Vec<(String, String)>, ApiError> {
    for k in ["metricKey", "featureKey", "quantity"] {
        if r.get(k).is_some() {
            return Err(ApiError::invalid(
                "invalid_body",
                k,
                "set either quantities (several metrics) or metricKey/featureKey and quantity, not both",
            ));
        }
    }
    let map = v.as_object().filter(|m| !m.is_empty() && m.len() <= MAX_QUANTITIES).ok_or_else(|| {
        ApiError::invalid(
            "invalid_body",
            "quantities",
            format!("must be an object of 1..={MAX_QUANTITIES} metric → quantity, such as {{\"input_tokens\": 25, \"output_tokens\": 15}}"),
        )
    })?;
    map.iter()
        .map(|(m, q)| {
            Ok((
                m.clone(),
                quantity_text(Some(q), &format!("quantities.{m}"))?,
            ))
        })
        .collect()
}
