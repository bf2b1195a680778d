//! `/healthz`, Prometheus `/metrics`, and the answer to unknown paths.

use super::{json, App};
use aforo_core::Environment;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

/// Liveness and what is served.
pub async fn healthz(State(app): State<Arc<App>>) -> Response {
    let counts: Vec<_> = Environment::ALL
        .iter()
        .map(|e| json!({"environment": e.as_str(), "served": app.config.serves(*e), "events": app.stores.count(*e).ok()}))
        .collect();
    json(
        200,
        &json!({"status": "ok", "forwarding": app.config.upstream.is_some(), "stores": counts}),
    )
}

/// Prometheus text.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut r = Response::new(app.metrics.render().into());
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// 404 with the list of endpoints.
pub async fn not_found() -> Response {
    json(
        404,
        &json!({"error": {"code": "not_found", "message": "see /v1/canAccess, /v1/meter, /v1/events, /v1/entitlements, /v1/usage, /v1/invoices/preview, /v1/dead-letters, /v1/admin/…, /healthz, /metrics"}}),
    )
}
