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
    let bad = |e: aforo_core::strict_json::FieldError| ApiError::from_field("invalid_body", e);
    let r = ObjReader::new("", &v, FIELDS).map_err(bad)?;
    let customer = r.required_string("customer_id").map_err(bad)?.to_string();
    let (known, start_in_sandbox, sandbox_now, catalog_keys) = app
        .catalog
        .read()
        .map(|c| {
            (
                c.has_customer(&customer),
                c.new_partner_sandbox(&customer),
                c.sandbox_default(&customer),
                c.has_keys_for(&customer),
            )
        })
        .unwrap_or((false, true, false, false));
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
                        ApiError::invalid("invalid_body", k, "must be a list of strings")
                    })
                })
                .collect(),
        }
    };
    let scopes = list("scopes")?;
    let ips = list("ip_allowlist")?;
    for (i, ip) in ips.iter().enumerate() {
        Cidr::parse(ip)
            .map_err(|e| ApiError::invalid("invalid_body", format!("ip_allowlist[{i}]"), e.0))?;
    }
    let expires = match r.string("expires_at").map_err(bad)? {
        None => None,
        Some(t) => Some(
            parse_rfc3339(t)
                .map_err(|e| ApiError::invalid("invalid_body", "expires_at", e.to_string()))?,
        ),
    };
    // A new partner starts in sandbox. A customer already in use (keys here or in the catalog,
    // or production events) is not new: its row pins the mode it has now, so a new key never
    // moves a paying customer out of production.
    let in_use = keys::is_known_partner(&app.stores.control, &customer)
        .map_err(ApiError::unavailable)?
        || catalog_keys
        || app
            .stores
            .has_customer_events(aforo_core::Environment::Production, &customer);
    let mode = if in_use {
        sandbox_now
    } else {
        start_in_sandbox
    };
    let key = keys::create(
        &app.stores.control,
        &customer,
        Some(mode),
        &scopes,
        &ips,
        expires,
        app.now(),
    )
    .map_err(ApiError::unavailable)?;
    refresh(&app)?;
    let mut answer = serde_json::to_value(&key).unwrap_or_default();
    answer["partner"] = partner_view(&app, &customer)?;
    Ok(json(201, &answer))
}

/// Lists keys (never secrets).
pub async fn list_keys(State(app): State<Arc<App>>, _: Admin) -> Result<Response, ApiError> {
    let keys = keys::list(&app.stores.control, app.now()).map_err(ApiError::unavailable)?;
    let partners = keys::partners(&app.stores.control).map_err(ApiError::unavailable)?;
    Ok(json(200, &json!({"keys": keys, "partners": partners})))
}

/// Replaces a key by a new one; the old one keeps working for the grace period
/// (`{"grace_period_secs": n}`, default `rotation_grace_secs`; 0 revokes it at once).
pub async fn rotate_key(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(key_id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&app, body, SMALL_BODY).await?;
    let grace = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let v = parse_json(&bytes)?;
        let r = ObjReader::new("", &v, &["grace_period_secs"])
            .map_err(|e| ApiError::from_field("invalid_body", e))?;
        r.u64_in("grace_period_secs", 0, 2_592_000)
            .map_err(|e| ApiError::from_field("invalid_body", e))?
    };
    let grace = grace.unwrap_or(app.config.rotation_grace_secs);
    let (new, old_until) = keys::rotate(&app.stores.control, &key_id, grace, app.now())
        .map_err(ApiError::unavailable)?
        .ok_or_else(|| {
            ApiError::new(
                404,
                "unknown_key",
                format!("no active key {key_id:?} that has not been rotated already"),
            )
        })?;
    refresh(&app)?;
    let old = match old_until {
        None => json!({"key_id": key_id, "revoked": true}),
        Some(t) => json!({"key_id": key_id, "expires_at": t.to_rfc3339()}),
    };
    Ok(json(201, &json!({"old": old, "new": new})))
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
        let v = parse_json(&bytes)?;
        let r = ObjReader::new("", &v, &["sandbox_mode"])
            .map_err(|e| ApiError::from_field("invalid_body", e))?;
        r.bool("sandbox_mode")
            .map_err(|e| ApiError::from_field("invalid_body", e))?
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
    let catalog_default = app
        .catalog
        .read()
        .map(|c| c.sandbox_default(&customer))
        .unwrap_or(false);
    let before = keys::sandbox_mode(&app.stores.control, &customer, catalog_default)
        .map_err(ApiError::unavailable)?;
    let now_value = keys::set_sandbox(
        &app.stores.control,
        &customer,
        value,
        catalog_default,
        app.now(),
    )
    .map_err(ApiError::unavailable)?;
    refresh(&app)?;
    if before != now_value {
        tokio::task::block_in_place(|| {
            crate::webhooks::sandbox_toggled(&app, &customer, now_value, app.now())
        });
    }
    let message = if now_value {
        "Sandbox mode enabled."
    } else {
        "Sandbox mode disabled — partner is now in production."
    };
    Ok(json(
        200,
        &json!({"data": partner_view(&app, &customer)?, "message": message}),
    ))
}

/// One partner: its status, sandbox mode and active keys.
pub async fn get_partner(
    State(app): State<Arc<App>>,
    _: Admin,
    Path(customer): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json(200, &json!({"data": partner_view(&app, &customer)?})))
}

/// A partner as the partner API shows it; 404 for a customer the catalog does not know.
fn partner_view(app: &App, customer: &str) -> Result<Value, ApiError> {
    let (known, status, catalog_default) = app
        .catalog
        .read()
        .map(|c| {
            (
                c.has_customer(customer),
                c.status(customer),
                c.sandbox_default(customer),
            )
        })
        .map_err(|_| ApiError::unavailable("the catalog lock was poisoned"))?;
    if !known {
        return Err(ApiError::new(
            404,
            "unknown_customer",
            format!("customer {customer:?} is not in the catalog"),
        ));
    }
    let sandbox = keys::sandbox_mode(&app.stores.control, customer, catalog_default)
        .map_err(ApiError::unavailable)?;
    let now = app.now();
    let active = keys::list(&app.stores.control, now)
        .map_err(ApiError::unavailable)?
        .into_iter()
        .filter(|k| k.customer_id == customer && matches!(k.status, "active" | "rotating"))
        .count();
    Ok(json!({
        "customer_id": customer,
        "status": status,
        "sandbox_mode": sandbox,
        "active_keys": active,
    }))
}
