//! The admin API (behind the admin key): partner keys created, rotated, revoked, and the
//! partner's sandbox toggle. Keys keep working across a toggle; only where usage goes changes.

use super::extract::Admin;
use super::{json, parse_json, read_body, ApiError, SMALL_BODY};
use crate::app::App;
use crate::keys;
use aforo_core::keys::Cidr;
use aforo_core::strict_json::ObjReader;
use aforo_core::time::parse_rfc3339;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

const FIELDS: &[&str] = &["customer_id", "scopes", "ip_allowlist", "expires_at"];

fn refresh(app: &App) -> Result<(), ApiError> {
    app.refresh_policy_snapshot().map_err(ApiError::unavailable)
}

/// Creates a consumer key for a customer of the catalog; the secret is in this answer only.
pub async fn create_partner_key(
    State(app): State<Arc<App>>,
    _: Admin,
    body: Body,
) -> Result<Response, ApiError> {
    let v = parse_json(&read_body(&app, body, SMALL_BODY).await?)?;
    let bad =
        |e: aforo_core::strict_json::FieldError| ApiError::new(400, "invalid_body", e.to_string());
    let r = ObjReader::new("", &v, FIELDS).map_err(bad)?;
    let customer = r.required_string("customer_id").map_err(bad)?.to_string();
    let known = app
        .catalog
        .read()
        .map(|c| c.has_customer(&customer))
        .unwrap_or(false);
    if !known {
        return Err(ApiError::new(
            404,
            "unknown_customer",
            format!("customer {customer:?} is not in the catalog"),
        ));
    }
    let list = |k: &str| -> Result<Vec<String>, ApiError> {
        match r.array(k).map_err(bad)? {
            None => Ok(Vec::new()),
            Some(a) => a
                .iter()
                .map(|x| {
                    x.as_str().map(str::to_string).ok_or_else(|| {
                        ApiError::new(
                            400,
                            "invalid_body",
                            format!("{k}: must be a list of strings"),
                        )
                    })
                })
                .collect(),
        }
    };
    let scopes = list("scopes")?;
    let ips = list("ip_allowlist")?;
    for (i, ip) in ips.iter().enumerate() {
        Cidr::parse(ip).map_err(|e| {
            ApiError::new(400, "invalid_body", format!("ip_allowlist[{i}]: {}", e.0))
        })?;
    }
    let expires = match r.string("expires_at").map_err(bad)? {
        None => None,
        Some(t) => Some(
            parse_rfc3339(t)
                .map_err(|e| ApiError::new(400, "invalid_body", format!("expires_at: {e}")))?,
        ),
    };
    let key = keys::create(
        &app.stores.control,
        &customer,
        &scopes,
        &ips,
        expires,
        app.now(),
    )
    .map_err(ApiError::unavailable)?;
    refresh(&app)?;
    Ok(json(201, &serde_json::to_value(&key).unwrap_or_default()))
}

/// Lists keys (never secrets).
pub async fn list_keys(State(app): State<Arc<App>>, _: Admin) -> Result<Response, ApiError> {
    let keys = keys::list(&app.stores.control).map_err(ApiError::unavailable)?;
    let partners = keys::partners(&app.stores.control).map_err(ApiError::unavailable)?;
    Ok(json(200, &json!({"keys": keys, "partners": partners})))
}

/// Replaces a key by a new one (the old one is revoked).
pub async fn rotate_key(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(key_id): Path<String>,
) -> Result<Response, ApiError> {
    let new = keys::rotate(&app.stores.control, &key_id, app.now())
        .map_err(ApiError::unavailable)?
        .ok_or_else(|| ApiError::new(404, "unknown_key", format!("no active key {key_id:?}")))?;
    refresh(&app)?;
    Ok(json(201, &json!({"revoked": key_id, "new": new})))
}

/// Revokes a key.
pub async fn revoke_key(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(key_id): Path<String>,
) -> Result<Response, ApiError> {
    if !keys::revoke(&app.stores.control, &key_id).map_err(ApiError::unavailable)? {
        return Err(ApiError::new(
            404,
            "unknown_key",
            format!("no key {key_id:?}"),
        ));
    }
    refresh(&app)?;
    Ok(json(200, &json!({"revoked": key_id})))
}

/// Flips (or sets, with `{"sandbox_mode": true}`) a partner's sandbox mode.
pub async fn toggle_sandbox(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(customer): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&app, body, SMALL_BODY).await?;
    let value = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match parse_json(&bytes)?.get("sandbox_mode") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(ApiError::new(
                    400,
                    "invalid_body",
                    "sandbox_mode: must be true or false",
                ))
            }
        }
    };
    let known = app
        .catalog
        .read()
        .map(|c| c.has_customer(&customer))
        .unwrap_or(false);
    if !known {
        return Err(ApiError::new(
            404,
            "unknown_customer",
            format!("customer {customer:?} is not in the catalog"),
        ));
    }
    let now_value = keys::set_sandbox(&app.stores.control, &customer, value, app.now())
        .map_err(ApiError::unavailable)?;
    refresh(&app)?;
    Ok(json(
        200,
        &json!({"customer_id": customer, "sandbox_mode": now_value}),
    ))
}
