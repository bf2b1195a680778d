//! The HTTP API: routes, the shared application state, authentication, body limits and errors.

mod access;
mod admin;
mod dead_letters;
mod entitlements;
mod events;
mod meter;
mod ops;
mod reports;

use crate::catalog::Catalog;
use crate::component::PolicyHost;
use crate::config::AgentConfig;
use crate::keys;
use crate::metrics::Metrics;
use crate::reconcile;
use crate::store::{NewEvent, Stores};
use crate::usage::Usage;
use aforo_core::entitlement::error_body;
use aforo_core::environment::environment_of_key;
use aforo_core::event::UsageEvent;
use aforo_core::keys::{hash_key, KeyHash};
use aforo_core::ratelimit::{RateLimit, WindowCounter};
use aforo_core::{Environment, Timestamp};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Largest body of endpoints other than `/v1/events`.
pub const SMALL_BODY: usize = 64 << 10;

/// Everything the handlers share.
pub struct App {
    /// Configuration.
    pub config: AgentConfig,
    /// Durable stores.
    pub stores: Stores,
    /// Live usage and counters.
    pub usage: Arc<Usage>,
    /// The catalog.
    pub catalog: Arc<RwLock<Catalog>>,
    /// The component.
    pub policy: PolicyHost,
    /// Counters for /metrics.
    pub metrics: Metrics,
    /// Ingest rate-limit windows per key.
    pub limits: Mutex<HashMap<KeyHash, WindowCounter>>,
    /// Version of catalog + partners + keys, bumped on every admin change.
    pub control_version: AtomicU64,
    /// Wakes the forwarders when events are stored.
    pub forward_wake: Option<Arc<(Mutex<bool>, std::sync::Condvar)>>,
}

/// The current time.
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix_nanos(d.as_nanos() as i64)
}

/// An error answer: status, `error.code`, message, extra headers.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// An error.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            headers: Vec::new(),
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
        let mut r = Response::new(Body::from(error_body(self.code, &self.message)));
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// A gateway's key: its environment and hash. 401 without a known key, 403 for an environment
/// this agent does not serve (a live key at a sandbox agent and the reverse).
pub fn gateway_key(app: &App, headers: &HeaderMap) -> Result<(Environment, KeyHash), ApiError> {
    let key = bearer(headers).ok_or_else(|| {
        ApiError::new(
            401,
            "invalid_key",
            "Authorization: Bearer sk_test_… or sk_live_… is required",
        )
    })?;
    let env = environment_of_key(key)
        .map_err(|e| ApiError::new(401, "invalid_key", format!("the key is not valid: {e}")))?;
    let hash = hash_key(key);
    if !app.config.api_keys.is_empty() {
        // Compare against every configured key in constant time, without an early exit.
        let mut found = false;
        for (h, _) in &app.config.api_keys {
            found |= h.ct_eq(&hash);
        }
        if !found {
            return Err(ApiError::new(
                401,
                "invalid_key",
                "the key is not one this agent accepts",
            ));
        }
    }
    if !app.config.serves(env) {
        return Err(ApiError::new(
            403,
            "wrong_environment",
            format!(
                "this agent serves {} only; a {env} key cannot read or write here",
                served(app)
            ),
        ));
    }
    Ok((env, hash))
}

fn served(app: &App) -> String {
    app.config
        .environments
        .iter()
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The admin key, or 401; 403 when the admin API is off.
pub fn admin(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &app.config.admin_key else {
        return Err(ApiError::new(
            403,
            "admin_disabled",
            "the admin API is off: set admin_key (AFORO_AGENT_ADMIN_KEY)",
        ));
    };
    let given = bearer(headers).map(hash_key).ok_or_else(|| {
        ApiError::new(
            401,
            "invalid_key",
            "Authorization: Bearer adm_… is required",
        )
    })?;
    if !given.ct_eq(expected) {
        return Err(ApiError::new(
            401,
            "invalid_key",
            "the admin key is not valid",
        ));
    }
    Ok(())
}

/// Takes `n` events from the key's hourly budget, or 429 with `Retry-After`.
pub fn take_rate(
    app: &App,
    env: Environment,
    key: KeyHash,
    n: u64,
    now: Timestamp,
) -> Result<(), ApiError> {
    let limit = RateLimit {
        limit: app.config.events_per_hour[env.index()],
        per: aforo_core::ratelimit::Per::Hour,
    };
    let mut limits = app
        .limits
        .lock()
        .map_err(|_| ApiError::unavailable("rate limiter"))?;
    limits
        .entry(key)
        .or_default()
        .try_take(&limit, now, n)
        .map(|_| ())
        .map_err(|x| {
            ApiError::new(
                429,
                "rate_limited",
                format!(
                    "over the {env} limit of {} events per hour for this key",
                    limit.limit
                ),
            )
            .header("retry-after", x.retry_after_secs.to_string())
        })
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

impl App {
    /// The snapshot without usage, for the component; pushed when the control data changes.
    pub fn refresh_policy_snapshot(&self) -> Result<(), String> {
        let version = self.control_version.fetch_add(1, Ordering::SeqCst) + 1;
        let partners = keys::partners(&self.stores.control)?;
        let extra = keys::snapshot_keys(&self.stores.control)?;
        let catalog = self
            .catalog
            .read()
            .map_err(|_| "catalog lock poisoned".to_string())?;
        let v = catalog.snapshot_value(&partners, &extra, version);
        self.policy.set_snapshot(version, v.to_string());
        Ok(())
    }

    /// Stores events durably and, with the Redis backend, claims them (shared dedup and
    /// counters). `true` for each event new to the deployment; `false` for a duplicate, here
    /// or on another agent. An event whose claim cannot be made now is kept and claimed later.
    pub async fn store_events(
        &self,
        env: Environment,
        events: Vec<NewEvent>,
        t: Timestamp,
    ) -> Result<Vec<bool>, ApiError> {
        let shared: Vec<UsageEvent> = match self.usage.redis() {
            Some(_) => events.iter().map(|n| n.event.clone()).collect(),
            None => Vec::new(),
        };
        let mut flags = self
            .stores
            .insert(env, events, t)
            .await
            .map_err(ApiError::unavailable)?;
        if shared.is_empty() {
            return Ok(flags);
        }
        // Stored now, at `t` (the time in the claim's token).
        let fresh: Vec<(UsageEvent, Timestamp)> = shared
            .into_iter()
            .zip(&flags)
            .filter(|(_, new)| **new)
            .map(|(e, _)| (e, t))
            .collect();
        self.metrics.stored[env.index()].fetch_add(fresh.len() as u64, Ordering::Relaxed);
        let settled = tokio::task::block_in_place(|| reconcile::settle(self, env, &fresh, t));
        if settled.deferred {
            self.usage
                .record_unclaimed(env, fresh.iter().map(|(e, _)| e), t);
        }
        if !settled.elsewhere.is_empty() {
            let elsewhere: HashSet<&str> = settled.elsewhere.iter().map(String::as_str).collect();
            // Flags follow the input order; `fresh` kept the new ones in that order.
            let mut new_ids = fresh.iter().map(|(e, _)| e.id.as_str());
            for f in flags.iter_mut().filter(|f| **f) {
                if new_ids.next().is_some_and(|id| elsewhere.contains(id)) {
                    *f = false;
                }
            }
        }
        Ok(flags)
    }

    /// Wakes the forwarders.
    pub fn wake_forwarders(&self) {
        if let Some(w) = &self.forward_wake {
            if let Ok(mut flag) = w.0.lock() {
                *flag = true;
                w.1.notify_all();
            }
        }
    }
}

/// The router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/canAccess", post(access::can_access))
        .route("/v1/meter", post(meter::meter))
        .route("/v1/events", post(events::ingest))
        .route("/v1/entitlements", get(entitlements::snapshot))
        .route("/v1/usage", get(reports::usage))
        .route("/v1/invoices/preview", get(reports::invoice_preview))
        .route("/v1/dead-letters", get(dead_letters::list))
        .route("/v1/dead-letters/replay", post(dead_letters::replay))
        .route("/v1/admin/partners", post(admin::create_partner_key))
        .route("/v1/admin/keys", get(admin::list_keys))
        .route("/v1/admin/keys/{key_id}/rotate", post(admin::rotate_key))
        .route("/v1/admin/keys/{key_id}/revoke", post(admin::revoke_key))
        .route(
            "/v1/admin/partners/{customer_id}/toggle-sandbox",
            post(admin::toggle_sandbox),
        )
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
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
