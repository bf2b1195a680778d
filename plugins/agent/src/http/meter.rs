//! `POST /v1/meter`: one usage event from a gateway policy (Apigee, APIM, Kong Lua), built and
//! validated by the component, stored like any ingested event.

use super::extract::Gateway;
use super::{json, parse_json, read_body, ApiError, SMALL_BODY};
use crate::app::App;
use crate::component::MeterRequest;
use crate::ingest;
use crate::keys;
use crate::store::{DeadLetter, DeadLetterOrigin, NewEvent};
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
];

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
    let metric = match (
        r.string("metricKey").map_err(bad)?,
        r.string("featureKey").map_err(bad)?,
    ) {
        (Some(m), _) => m.to_string(),
        // Gateway policies know the feature; the catalog knows which metric it counts.
        (None, Some(f)) => metric_of_feature(&app, &tenant, f),
        (None, None) => {
            return Err(ApiError::invalid(
                "invalid_body",
                "metricKey",
                "required (or featureKey, to meter the metric the catalog gives that feature)",
            ))
        }
    };
    let quantity = match r.get("quantity") {
        None => "1".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_body",
                "quantity",
                format!("must be a decimal >= 0, got {other}"),
            ))
        }
    };
    let properties = r.get("properties").map(Value::to_string);
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
    app.take_rate(key_env, key, 1, t)?;
    let request_id = headers
        .get("x-request-id")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    let id = match (r.string("id").map_err(bad)?, &request_id) {
        (Some(id), _) => Some(id.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(format!(
            "evt_{}",
            aforo_core::event::to_hex(&keys::random_bytes().map_err(ApiError::unavailable)?[..16])
        )),
    };
    let req = MeterRequest {
        tenant_id: tenant,
        metric_key: metric,
        quantity,
        properties_json: properties,
        id,
        request_id,
        timestamp: r.string("timestamp").map_err(bad)?.map(str::to_string),
        product_id: r
            .string("productId")
            .map_err(bad)?
            .unwrap_or(&app.config.product_id)
            .to_string(),
        environment: env.as_str().to_string(),
        now_ns: t.unix_nanos(),
    };
    let built = app
        .policy
        .build_event(&req)
        .map_err(ApiError::unavailable)?;
    let body = match built {
        Ok(b) => b,
        Err(rej) => {
            let detail = format!("{}: {}", rej.field.clone().unwrap_or_default(), rej.message);
            // Kept whole (as the component rendered it), with the id it would have had, so a
            // replay stores it once the reason has cleared, and counts it once.
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
            return Ok(json(
                202,
                &json!({"accepted": 0, "duplicates": 0, "rejected": [{"id": (!rej.event_id.is_empty()).then_some(&rej.event_id), "code": rej.code, "field": rej.field, "message": rej.message}], "flagged": []}),
            ));
        }
    };
    let raw =
        serde_json::value::RawValue::from_string(body.clone()).map_err(ApiError::unavailable)?;
    let event = parse_wire_event(&raw).map_err(|e| ApiError::unavailable(e.rejection))?;
    let id = event.id.clone();
    let flags = ingest::store_events(
        &app,
        env,
        vec![NewEvent {
            event,
            body,
            late: false,
        }],
        t,
    )
    .await?;
    let new = flags.first().copied().unwrap_or(false);
    app.metrics
        .events_stored(env, u64::from(new), u64::from(!new));
    app.metrics.ingest(env, started.elapsed());
    Ok(json(
        202,
        &json!({"id": id, "environment": env.as_str(), "accepted": u64::from(new), "duplicates": u64::from(!new), "rejected": [], "flagged": []}),
    ))
}
