//! `GET /v1/entitlements?environment=…&source=…`: the snapshot gateways sync, with live usage
//! of each quota's current window and the calling node's share of it.

use super::{gateway_key, json, now, ApiError, App};
use crate::catalog::with_usage;
use crate::keys;
use aforo_core::Environment;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Serves the snapshot.
pub async fn snapshot(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let t = now();
    let (key_env, _) = gateway_key(&app, &headers)?;
    let env = match q.get("environment") {
        None => key_env,
        Some(e) => Environment::from_wire(e).ok_or_else(|| {
            ApiError::new(
                400,
                "invalid_query",
                format!("environment must be sandbox or production, got {e:?}"),
            )
        })?,
    };
    if env != key_env {
        return Err(ApiError::new(
            403,
            "wrong_environment",
            format!("a {key_env} key cannot read {env} entitlements"),
        ));
    }
    let source = q.get("source").cloned();
    let partners = keys::partners(&app.stores.control).map_err(ApiError::unavailable)?;
    let extra = keys::snapshot_keys(&app.stores.control).map_err(ApiError::unavailable)?;
    let catalog = app
        .catalog
        .read()
        .map_err(|_| ApiError::unavailable("catalog"))?;
    let mut v = catalog.snapshot_value(
        &partners,
        &extra,
        app.control_version.load(Ordering::SeqCst),
    );
    if let Some(obj) = v.as_object_mut() {
        obj.insert("environment".into(), Value::from(env.as_str()));
        obj.insert("generated_at".into(), Value::from(t.to_rfc3339()));
    }
    if let Some(Value::Object(customers)) = v.get_mut("customers") {
        for (cid, c) in customers.iter_mut() {
            // A partner in sandbox mode has its usage in the sandbox.
            let customer_env = if partners.get(cid).copied().unwrap_or(false) {
                aforo_core::Environment::Sandbox
            } else {
                env
            };
            let Some(Value::Object(features)) = c.get_mut("features") else {
                continue;
            };
            for (fname, f) in features.iter_mut() {
                let Some(fo) = f.as_object_mut() else {
                    continue;
                };
                let Some(fu) = catalog
                    .features
                    .get(cid)
                    .and_then(|fs| fs.iter().find(|x| &x.feature == fname))
                else {
                    continue;
                };
                if !fu.has_quota {
                    continue;
                }
                let (start, _) = fu.window.current(t);
                let used = app.usage.used(customer_env, cid, fname, start);
                let mine = source
                    .as_ref()
                    .map(|s| app.usage.used_by_source(customer_env, cid, fname, s, start));
                with_usage(fo, used, mine, &start.to_rfc3339());
            }
        }
    }
    Ok(json(200, &v))
}
