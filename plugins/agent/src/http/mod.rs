//! The HTTP API: routes, errors and body limits. Handlers are thin: who calls and which
//! environment they read come from the extractors in `extract`, the domain steps from `app`,
//! `ingest` and `replay`.

mod access;
mod admin;
mod console;
mod dead_letters;
mod entitlements;
mod event_log;
mod events;
mod extract;
mod leases;
mod meter;
mod ops;
mod overview;
mod reports;
mod webhooks;

use crate::app::{App, OverRate};
use crate::store::StoreError;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::sync::Arc;

/// Largest body of endpoints other than `/v1/events`.
pub const SMALL_BODY: usize = 64 << 10;

/// An error answer: status, `error.code`, message, the field at fault, extra headers.
///
/// The body is `{"error": {"code", "message", "field"?, "status"}}`: the filter's error body
/// (`code`, `message`) that every gateway policy already reads, with the field and the status
/// added. Bytes that are not well-formed JSON (or a query string that does not parse) are 400;
/// a well-formed body or query whose values break a rule is 422 and names the field.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    /// A well-formed request whose `field` holds a value the rules refuse: 422.
    pub fn invalid(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let field = field.into();
        let message = format!("{field}: {}", message.into());
        ApiError {
            field: Some(field),
            ..ApiError::new(422, code, message)
        }
    }

    /// A strict reader's refusal of a parsed body (unknown field, wrong type, out of range):
    /// 422 naming the field.
    pub fn from_field(code: &'static str, e: aforo_core::strict_json::FieldError) -> Self {
        let field = (!e.path.is_empty()).then(|| e.path.clone());
        ApiError {
            field,
            ..ApiError::new(422, code, e.to_string())
        }
    }

    /// With a header.
    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A store or component failure: 503, the request may be retried.
    pub fn unavailable(what: impl std::fmt::Display) -> Self {
        ApiError::new(503, "unavailable", format!("{what}")).header("retry-after", "1".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), Value::from(self.code));
        error.insert("message".into(), Value::from(self.message));
        if let Some(f) = self.field {
            error.insert("field".into(), Value::from(f));
        }
        error.insert("status".into(), Value::from(self.status.as_u16()));
        let body = serde_json::json!({ "error": error }).to_string();
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = self.status;
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(k, v);
            }
        }
        r
    }
}

/// A JSON answer with a status.
pub fn json(status: u16, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// 429 with `Retry-After` for a key over its hourly event budget.
impl From<OverRate> for ApiError {
    fn from(x: OverRate) -> ApiError {
        ApiError::new(
            429,
            "rate_limited",
            format!(
                "over the {} limit of {} events per hour for this key",
                x.env, x.limit
            ),
        )
        .header("retry-after", x.retry_after_secs.to_string())
    }
}

/// A store failure: 503, the request may be retried.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::unavailable(e)
    }
}

/// Reads a body up to `limit` bytes (413 past it) and checks JSON nesting (400 past the limit).
pub async fn read_body(app: &App, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            413,
            "payload_too_large",
            format!("the body is over {limit} bytes"),
        )
    })?;
    let depth = json_depth(&bytes);
    if depth > app.config.max_json_depth {
        return Err(ApiError::new(
            400,
            "invalid_body",
            format!(
                "JSON nested {depth} levels deep; at most {} are accepted",
                app.config.max_json_depth
            ),
        ));
    }
    Ok(bytes.to_vec())
}

/// Parses a JSON body, or 400 with the line and column; a key given twice in one object is
/// refused by name (which copy wins differs between parsers).
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    aforo_core::strict_json::parse_unique(bytes).map_err(|e| {
        let what = e.to_string();
        let what = what
            .split(" at line ")
            .next()
            .unwrap_or("invalid JSON")
            .to_string();
        ApiError::new(
            400,
            "invalid_body",
            format!("{what} at line {} column {}", e.line(), e.column()),
        )
    })
}

/// Deepest nesting of arrays and objects, without parsing (strings are skipped).
pub fn json_depth(b: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Whether the web console is bundled in this binary.
pub const CONSOLE_BUILT: bool = console::BUILT;

/// The router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/canAccess", post(access::can_access))
        .route("/v1/meter", post(meter::meter))
        .route("/v1/events", post(events::ingest))
        .route("/v1/leases", post(leases::renew))
        .route("/v1/entitlements", get(entitlements::snapshot))
        .route("/v1/customers", get(entitlements::customers))
        .route("/v1/usage", get(reports::usage))
        .route("/v1/invoices/preview", get(reports::invoice_preview))
        .route("/v1/event-log", get(event_log::list))
        .route("/v1/event-log/{seq}", get(event_log::one))
        .route("/v1/overview", get(overview::overview))
        .route(
            "/v1/webhooks/endpoints",
            get(webhooks::list_endpoints).post(webhooks::create_endpoint),
        )
        .route(
            "/v1/webhooks/endpoints/{id}",
            axum::routing::delete(webhooks::delete_endpoint),
        )
        .route("/v1/webhooks/deliveries", get(webhooks::deliveries))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/replay", post(dead_letters::replay))
        .route("/v1/admin/partners", post(admin::create_partner_key))
        .route("/v1/admin/keys", get(admin::list_keys))
        .route("/v1/partners/{customer_id}", get(admin::get_partner))
        .route("/v1/admin/keys/{key_id}/rotate", post(admin::rotate_key))
        .route("/v1/admin/keys/{key_id}/revoke", post(admin::revoke_key))
        .route(
            "/v1/admin/partners/{customer_id}/toggle-sandbox",
            post(admin::toggle_sandbox),
        )
        .route("/console", get(console::root_redirect))
        .route("/console/", get(console::index))
        .route("/console/{*path}", get(console::file))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(app)
}

#[cfg(test)]
mod tests {
    use super::json_depth;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(json_depth(br#"{"a": [1, {"b": "[[[["}]}"#), 3);
        assert_eq!(json_depth(b"[[[[[]]]]]"), 5);
        assert_eq!(json_depth(br#""\"[""#), 0);
    }
}
