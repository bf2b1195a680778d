//! `GET /v1/overview`: the environment at a glance: events today by outcome, the ingest's
//! p95 from the agent's own histogram, webhook deliveries.

use super::extract::{KeysOwn, Scoped};
use super::{json, ApiError};
use crate::app::App;
use aforo_core::time::{period_of, Granularity};
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The overview of the key's environment; "today" is the UTC day.
pub async fn overview(
    State(app): State<Arc<App>>,
    scoped: Scoped<KeysOwn>,
) -> Result<Response, ApiError> {
    scoped.only(&[])?;
    let env = scoped.env;
    let (day_start, day_end) = period_of(app.now(), Granularity::Daily, 0);
    let counts = app
        .stores
        .outcome_counts(env, day_start, day_end)
        .map_err(ApiError::unavailable)?;
    let by_outcome: Map<String, Value> = counts
        .iter()
        .map(|(o, n)| (o.as_str().to_string(), json!(n)))
        .collect();
    let (ingest_requests, p95) = app.metrics.ingest_p95_ms(env);
    let webhooks = app
        .stores
        .webhook_delivery_counts(env)
        .map_err(ApiError::unavailable)?;
    Ok(json(
        200,
        &json!({
            "environment": env.as_str(),
            "day_start": day_start.to_rfc3339(),
            "events_today": counts.iter().map(|(_, n)| n).sum::<u64>(),
            "by_outcome": by_outcome,
            "ingest_requests": ingest_requests,
            "ingest_p95_ms": p95.map(|(ms, _)| ms),
            "ingest_p95_above": p95.is_some_and(|(_, above)| above),
            "webhooks": webhooks,
        }),
    ))
}
