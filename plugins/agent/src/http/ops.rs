//! `/healthz`, Prometheus `/metrics`, and the answer to unknown paths.

use super::{json, ApiError, App};
use aforo_core::Environment;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Liveness and what is served.
pub async fn healthz(State(app): State<Arc<App>>) -> Response {
    let counts: Vec<_> = Environment::ALL
        .iter()
        .map(|e| json!({"environment": e.as_str(), "served": app.config.serves(*e), "events": app.stores.count(*e).ok()}))
        .collect();
    json(
        200,
        &json!({"status": "ok", "forwarding": app.config.upstream.is_some(), "console": super::CONSOLE_BUILT, "stores": counts}),
    )
}

/// Prometheus text. With the Redis backend the pending-claims gauge is counted in the store at
/// each scrape, so the conservation equation holds against the store itself; with quota
/// leases, the units this agent holds unspent.
pub async fn metrics(State(app): State<Arc<App>>) -> Response {
    if app.usage.redis().is_some() {
        for env in app.config.environments.iter() {
            if let Ok(n) = app.stores.count_unclaimed(*env) {
                app.metrics.claims_pending[env.index()].store(n.max(0) as u64, Ordering::Relaxed);
            }
        }
    }
    let mut text = app.metrics.render();
    if let Some(l) = app.usage.leases() {
        use std::fmt::Write;
        let _ = write!(
            text,
            "# TYPE aforo_agent_lease_units_held gauge\naforo_agent_lease_units_held {}\n",
            l.held()
        );
    }
    let mut r = Response::new(text.into());
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// 404 with the list of endpoints.
pub async fn not_found() -> Response {
    ApiError::new(404, "not_found", "see /v1/canAccess, /v1/meter, /v1/events, /v1/entitlements, /v1/usage, /v1/invoices/preview, /v1/dead-letters, /v1/admin/…, /healthz, /metrics").into_response()
}

/// 405 in the same error body as every other refusal (axum's own has none).
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ApiError::new(
        405,
        "method_not_allowed",
        format!("{method} is not served at {}", uri.path()),
    )
    .into_response()
}
