//! `POST /v1/canAccess`: the check before serving, answered from memory by the component.
//! The status is the decision's (200, 401, 403, 429, 503) so gateway policies can branch on it.

use super::extract::Gateway;
use super::{parse_json, read_body, ApiError, SMALL_BODY};
use crate::app::App;
use crate::component::AccessRequest;
use aforo_core::keys::KeyHash;
use aforo_core::strict_json::ObjReader;
use aforo_core::Timestamp;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

const FIELDS: &[&str] = &["tenantId", "apiKey", "featureKey", "clientIp", "quantity"];

/// Who the caller is: its consumer key, or else a customer id; never an empty key.
/// Only gateway keys in `tenant_keys` may name a customer: for every other gateway, a value it
/// pasted from a request (a header) must not choose whose quota is used and who is billed.
fn credential(
    app: &App,
    gateway: &KeyHash,
    api_key: Option<&str>,
    tenant_id: Option<&str>,
) -> Result<(Option<String>, Option<String>), ApiError> {
    if let Some(t) = tenant_id {
        if !app.config.tenant_keys.iter().any(|k| k.ct_eq(gateway)) {
            return Err(ApiError::new(
                403,
                "tenant_not_allowed",
                "this gateway key may not name the customer (tenantId): pass the caller's consumer key as apiKey, or add the gateway key to tenant_keys if this gateway authenticates callers itself",
            ));
        }
        if t.is_empty() && api_key.is_none() {
            return Err(ApiError::new(401, "invalid_key", "tenantId is empty"));
        }
    }
    match api_key {
        Some("") => Err(ApiError::new(
            401,
            "invalid_key",
            "apiKey is empty: the caller sent no consumer key",
        )),
        // A consumer key wins over a customer id, as in the filter.
        Some(k) => Ok((Some(k.to_string()), None)),
        None => Ok((None, tenant_id.map(str::to_string))),
    }
}

/// Decides one request.
pub async fn can_access(
    State(app): State<Arc<App>>,
    Gateway { env, key }: Gateway,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let t = app.now();
    let v = parse_json(&read_body(&app, body, SMALL_BODY).await?)?;
    let bad = |e: aforo_core::strict_json::FieldError| ApiError::from_field("invalid_body", e);
    let r = ObjReader::new("", &v, FIELDS).map_err(bad)?;
    let nonempty = |s: Option<&str>| s.filter(|x| !x.is_empty()).map(str::to_string);
    let (api_key, tenant_id) = credential(
        &app,
        &key,
        r.string("apiKey").map_err(bad)?,
        r.string("tenantId").map_err(bad)?,
    )
    .inspect_err(|e| app.metrics.decision(e.code, started.elapsed()))?;
    let presented = api_key.as_deref().map(aforo_core::keys::hash_key);
    let req = AccessRequest {
        tenant_id,
        api_key,
        feature_key: r.required_string("featureKey").map_err(bad)?.to_string(),
        client_ip: nonempty(r.string("clientIp").map_err(bad)?),
        cost: r.u64_in("quantity", 0, 1 << 53).map_err(bad)?,
        environment: env.as_str().to_string(),
        now_ns: t.unix_nanos(),
    };
    // failure_mode closed: no decision made on this agent's local copy of the shared counters
    // (while Redis is down, calls fall back at once; when a retry is due, the call tries Redis,
    // which is how the agent notices it is back).
    let shared = app.usage.redis();
    let decided = tokio::task::block_in_place(|| app.policy.can_access(&req))
        .map_err(ApiError::unavailable)?;
    let d = decided.decision;
    if let Some(h) = presented.filter(|_| d.status != 401) {
        tokio::task::block_in_place(|| app.key_use.touch(&app.stores.control, h, t));
    }
    if app.config.fail_closed && shared.is_some() && decided.on_fallback {
        app.metrics.decision("state_unavailable", started.elapsed());
        return Err(ApiError::new(
            503,
            "state_unavailable",
            "the shared quota state (Redis) is unreachable and failure_mode is closed",
        )
        .header("retry-after", "1".into()));
    }
    let resets_at = d
        .resets_at_ns
        .map(|n| Timestamp::from_unix_nanos(n).to_rfc3339());
    let mut body = json!({
        "allowed": d.allowed,
        "quota": d.quota,
        "remaining": d.remaining,
        "resets_at": resets_at,
        "customer_id": d.customer_id,
        "environment": d.environment,
    });
    if let (Some(code), Some(obj)) = (&d.code, body.as_object_mut()) {
        obj.insert("error".into(), json!({"code": code, "message": d.message}));
    }
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(d.status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    let mut put = |k: &'static str, v: Option<String>| {
        if let Some(v) = v.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(k, v);
        }
    };
    put("ratelimit-limit", d.quota.map(|x| x.to_string()));
    put("ratelimit-remaining", d.remaining.map(|x| x.to_string()));
    put(
        "ratelimit-reset",
        d.resets_at_ns.map(|n| {
            aforo_core::ratelimit::retry_after_secs(t, Timestamp::from_unix_nanos(n)).to_string()
        }),
    );
    put("retry-after", d.retry_after_secs.map(|s| s.to_string()));
    app.metrics
        .decision(d.code.as_deref().unwrap_or("allowed"), started.elapsed());
    Ok(resp)
}
