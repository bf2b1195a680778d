//! Webhook endpoints per environment (`?environment=`; changes need the admin key) and their
//! delivery log (readable with the environment's key).

use super::extract::{Admin, KeysOwn, Scoped};
use super::{json, parse_json, read_body, ApiError, SMALL_BODY};
use crate::app::App;
use crate::keys;
use crate::store::EVENT_TYPES;
use aforo_core::event::to_hex;
use aforo_core::strict_json::ObjReader;
use aforo_core::Environment;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The environment an admin call is about: `?environment=` (required), one this agent serves.
fn admin_env(app: &App, q: &HashMap<String, String>) -> Result<Environment, ApiError> {
    if let Some(k) = q.keys().find(|k| k.as_str() != "environment") {
        return Err(ApiError::invalid(
            "invalid_query",
            k.clone(),
            "is not a parameter of this endpoint; it takes environment",
        ));
    }
    let e = q.get("environment").ok_or_else(|| {
        ApiError::invalid(
            "invalid_query",
            "environment",
            "is required: sandbox or production (each has its own endpoints)",
        )
    })?;
    let env = Environment::from_wire(e).ok_or_else(|| {
        ApiError::invalid(
            "invalid_query",
            "environment",
            format!("must be sandbox or production, got {e:?}"),
        )
    })?;
    if !app.config.serves(env) {
        return Err(ApiError::invalid(
            "invalid_query",
            "environment",
            format!("this agent does not serve {env}"),
        ));
    }
    Ok(env)
}

/// Lists the endpoints of an environment (never their secrets).
pub async fn list_endpoints(
    State(app): State<Arc<App>>,
    _: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let env = admin_env(&app, &q)?;
    let list = app.stores.endpoints(env).map_err(ApiError::unavailable)?;
    Ok(json(
        200,
        &json!({"environment": env.as_str(), "data": list}),
    ))
}

/// Adds an endpoint: `{"url": "https://…", "events": [...]}` (all notices when `events` is
/// absent); the signing secret is in this answer only.
pub async fn create_endpoint(
    State(app): State<Arc<App>>,
    _: Admin,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response, ApiError> {
    let env = admin_env(&app, &q)?;
    let v = parse_json(&read_body(&app, body, SMALL_BODY).await?)?;
    let bad = |e: aforo_core::strict_json::FieldError| ApiError::from_field("invalid_body", e);
    let r = ObjReader::new("", &v, &["url", "events"]).map_err(bad)?;
    let url = r.required_string("url").map_err(bad)?.to_string();
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok || url.contains(char::is_whitespace) || url.len() > 2048 {
        return Err(ApiError::invalid(
            "invalid_body",
            "url",
            "must be an http:// or https:// URL without spaces, at most 2048 characters",
        ));
    }
    let events: Vec<String> = match r.array("events").map_err(bad)? {
        None => EVENT_TYPES.iter().map(|s| s.to_string()).collect(),
        Some(list) => {
            let mut out = Vec::new();
            for (i, e) in list.iter().enumerate() {
                match e.as_str() {
                    Some(s) if EVENT_TYPES.contains(&s) => out.push(s.to_string()),
                    _ => {
                        return Err(ApiError::invalid(
                            "invalid_body",
                            format!("events[{i}]"),
                            format!("must be one of {}", EVENT_TYPES.join(", ")),
                        ))
                    }
                }
            }
            if out.is_empty() {
                return Err(ApiError::invalid(
                    "invalid_body",
                    "events",
                    "must name at least one notice (leave it out for all)",
                ));
            }
            out
        }
    };
    let random = keys::random_bytes().map_err(ApiError::unavailable)?;
    let id = format!("we_{}", to_hex(&random[..8]));
    let secret = format!("whsec_{}", to_hex(&random[8..]));
    let endpoint = app
        .stores
        .add_endpoint(env, &id, &url, &secret, &events, app.now())
        .map_err(ApiError::unavailable)?;
    let mut data = serde_json::to_value(&endpoint).unwrap_or_default();
    data["secret"] = Value::from(secret);
    Ok(json(
        201,
        &json!({"environment": env.as_str(), "data": data}),
    ))
}

/// Removes an endpoint; its pending deliveries are not sent.
pub async fn delete_endpoint(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let env = admin_env(&app, &q)?;
    if !app
        .stores
        .delete_endpoint(env, &id)
        .map_err(ApiError::unavailable)?
    {
        return Err(ApiError::new(
            404,
            "not_found",
            format!("no webhook endpoint {id:?} in {env}"),
        ));
    }
    Ok(json(200, &json!({"data": {"id": id, "deleted": true}})))
}

/// The delivery log of the key's environment, newest first (`?cursor=` for older pages).
pub async fn deliveries(
    State(app): State<Arc<App>>,
    scoped: Scoped<KeysOwn>,
) -> Result<Response, ApiError> {
    scoped.only(&["limit", "cursor"])?;
    let limit = scoped.number("limit", 50, 1, 500)? as usize;
    let cursor = match scoped.query.get("cursor") {
        None => None,
        Some(_) => Some(scoped.number("cursor", 0, 0, i64::MAX as u64)? as i64),
    };
    let mut rows = app
        .stores
        .deliveries(scoped.env, cursor, limit + 1)
        .map_err(ApiError::unavailable)?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = has_more
        .then(|| rows.last().map(|d| d.seq.to_string()))
        .flatten();
    Ok(json(
        200,
        &json!({"environment": scoped.env.as_str(), "data": rows, "next_cursor": next_cursor}),
    ))
}
