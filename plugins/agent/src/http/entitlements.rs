//! `GET /v1/entitlements?environment=…&source=…`: the snapshot gateways sync, with live usage
//! of each quota's current window and the calling node's share of it.

use super::extract::{KeysOwn, Scoped};
use super::{json, ApiError};
use crate::app::App;
use crate::catalog::with_usage;
use crate::keys;
use crate::usage::UsageQuery;
use aforo_core::entitlement::{Period, QuotaWindow, DAILY_CREDITS};
use aforo_core::{Environment, Timestamp};
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether the warning about the default `source` was logged.
static DEFAULT_SOURCE_WARNED: AtomicBool = AtomicBool::new(false);

/// The header a filter sends to say which optional snapshot fields it reads: a filter from
/// before a field existed refuses a snapshot carrying it (its reader is strict), so the agent
/// adds a field only when asked, and agents and filters can be upgraded in either order.
pub const SNAPSHOT_FIELDS_HEADER: &str = "aforo-snapshot-fields";

/// Serves the snapshot.
pub async fn snapshot(
    State(app): State<Arc<App>>,
    Scoped { env, query, .. }: Scoped<KeysOwn>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let source = query.get("source").cloned();
    let with_product = headers
        .get_all(SNAPSHOT_FIELDS_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == "product_id");
    let mut v = snapshot_with_usage(&app, env, source)?;
    if with_product {
        if let Some(obj) = v.as_object_mut() {
            // Filters configured without a product stamp this one, as /v1/meter does.
            obj.insert(
                "product_id".into(),
                Value::from(app.config.product_id.as_str()),
            );
        }
    }
    Ok(json(200, &v))
}

/// `GET /v1/customers`: every catalog customer with its status, sandbox mode and, per feature,
/// quota, usage of the current window and what remains, as the gateways enforce them.
pub async fn customers(
    State(app): State<Arc<App>>,
    Scoped { env, .. }: Scoped<KeysOwn>,
) -> Result<Response, ApiError> {
    let v = snapshot_with_usage(&app, env, None)?;
    let t = app.now();
    let windows = app
        .catalog
        .read()
        .map_err(|_| ApiError::unavailable("catalog"))?
        .features
        .clone();
    let mut out = Vec::new();
    if let Some(Value::Object(customers)) = v.get("customers") {
        for (cid, c) in customers {
            let mut features = Vec::new();
            if let Some(Value::Object(fs)) = c.get("features") {
                for (name, f) in fs {
                    let quota = f.get("quota").and_then(Value::as_u64);
                    let used = f.get("used").and_then(Value::as_u64).unwrap_or(0);
                    let window_end = windows
                        .get(cid)
                        .and_then(|l| l.iter().find(|u| &u.feature == name))
                        .filter(|u| u.has_quota)
                        .map(|u| u.window.current(t).1.to_rfc3339());
                    features.push(serde_json::json!({
                        "feature": name,
                        "allowed": f.get("allowed").and_then(Value::as_bool).unwrap_or(true),
                        "quota": quota,
                        "used": quota.map(|_| used),
                        "remaining": quota.map(|q| q.saturating_sub(used)),
                        "window_start": f.get("window_start"),
                        "window_end": window_end,
                    }));
                }
            }
            let sandbox_mode = c
                .get("sandbox_mode")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            // Enforced where the customer's usage is production: a partner in sandbox mode is
            // tracked, never refused.
            let daily = c.get("daily_credits").map(|d| {
                let limit = d.get("limit").and_then(Value::as_u64).unwrap_or(0);
                let used = d.get("used").and_then(Value::as_u64).unwrap_or(0);
                let (start, end) = QuotaWindow {
                    period: Period::Day,
                    anchor: Timestamp::EPOCH,
                }
                .current(t);
                serde_json::json!({
                    "limit": limit,
                    "used": used,
                    "remaining": limit.saturating_sub(used),
                    "day_start": start.to_rfc3339(),
                    "day_end": end.to_rfc3339(),
                    "enforced": env == Environment::Production && !sandbox_mode,
                })
            });
            out.push(serde_json::json!({
                "customer_id": cid,
                "status": c.get("status").and_then(Value::as_str).unwrap_or("active"),
                "sandbox_mode": sandbox_mode,
                "daily_credits": daily,
                "features": features,
            }));
        }
    }
    Ok(json(
        200,
        &serde_json::json!({"environment": env.as_str(), "data": out}),
    ))
}

/// The snapshot of `env` with the usage of every quota's current window (and `source`'s share).
fn snapshot_with_usage(
    app: &App,
    env: Environment,
    source: Option<String>,
) -> Result<Value, ApiError> {
    let t = app.now();
    if app.usage.redis().is_some()
        && source.as_deref() == Some("gateway")
        && !DEFAULT_SOURCE_WARNED.swap(true, Ordering::Relaxed)
    {
        eprintln!("aforo-agent: a gateway syncs with the default source \"gateway\": with quotas shared across nodes, give each node's filter its own `source` (AFORO_SOURCE, or Envoy's node id), or nodes will not count each other's usage");
    }
    let partners = keys::partners(&app.stores.control).map_err(ApiError::unavailable)?;
    let extra = keys::snapshot_keys(&app.stores.control).map_err(ApiError::unavailable)?;
    let catalog = app
        .catalog
        .read()
        .map_err(|_| ApiError::unavailable("catalog"))?;
    let mut v = catalog.snapshot_value(
        &partners,
        &extra,
        &app.margin_blocked_now(),
        app.control_version(),
    );
    if let Some(obj) = v.as_object_mut() {
        obj.insert("environment".into(), Value::from(env.as_str()));
        obj.insert("generated_at".into(), Value::from(t.to_rfc3339()));
    }
    // Every quota's usage, read at once (one round trip with Redis).
    let mut wanted: Vec<(&str, &str, Timestamp)> = Vec::new();
    let mut queries = Vec::new();
    for (cid, features) in &catalog.features {
        // A partner in sandbox mode (its toggle, else the catalog's) has its usage in the sandbox.
        let in_sandbox = partners
            .get(cid)
            .copied()
            .unwrap_or_else(|| catalog.sandbox_default(cid));
        let customer_env = if in_sandbox {
            Environment::Sandbox
        } else {
            env
        };
        for fu in features.iter().filter(|f| f.has_quota) {
            let (start, _) = fu.window.current(t);
            wanted.push((cid, &fu.feature, start));
            queries.push(UsageQuery {
                env: customer_env,
                customer: cid,
                feature: &fu.feature,
                window_start: start,
            });
        }
    }
    let usage = tokio::task::block_in_place(|| app.usage.used_many(&queries, source.as_deref()))
        .map_err(|e| {
            ApiError::new(
                503,
                "state_unavailable",
                format!("{e}; gateways keep deciding on their last snapshot and their own counts"),
            )
            .header("retry-after", "1".into())
        })?;
    if let Some(Value::Object(customers)) = v.get_mut("customers") {
        for ((cid, fname, start), (used, mine)) in wanted.iter().zip(usage) {
            let Some(c) = customers.get_mut(*cid) else {
                continue;
            };
            let entry = if *fname == DAILY_CREDITS {
                c.get_mut("daily_credits")
            } else {
                c.get_mut("features").and_then(|f| f.get_mut(*fname))
            };
            let Some(fo) = entry.and_then(|f| f.as_object_mut()) else {
                continue;
            };
            with_usage(fo, used, mine, &start.to_rfc3339());
        }
    }
    Ok(v)
}
