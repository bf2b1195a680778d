//! `GET /v1/entitlements?environment=…&source=…`: the snapshot gateways sync, with live usage
//! of each quota's current window and the calling node's share of it.

use super::extract::{KeysOwn, Scoped};
use super::{json, ApiError};
use crate::app::App;
use crate::catalog::with_usage;
use crate::keys;
use crate::usage::UsageQuery;
use aforo_core::{Environment, Timestamp};
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether the warning about the default `source` was logged.
static DEFAULT_SOURCE_WARNED: AtomicBool = AtomicBool::new(false);

/// Serves the snapshot.
pub async fn snapshot(
    State(app): State<Arc<App>>,
    Scoped { env, query, .. }: Scoped<KeysOwn>,
) -> Result<Response, ApiError> {
    let t = app.now();
    let source = query.get("source").cloned();
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
    let mut v = catalog.snapshot_value(&partners, &extra, app.control_version());
    if let Some(obj) = v.as_object_mut() {
        obj.insert("environment".into(), Value::from(env.as_str()));
        obj.insert("generated_at".into(), Value::from(t.to_rfc3339()));
    }
    // Every quota's usage, read at once (one round trip with Redis).
    let mut wanted: Vec<(&str, &str, Timestamp)> = Vec::new();
    let mut queries = Vec::new();
    for (cid, features) in &catalog.features {
        // A partner in sandbox mode has its usage in the sandbox.
        let customer_env = if partners.get(cid).copied().unwrap_or(false) {
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
            let Some(fo) = customers
                .get_mut(*cid)
                .and_then(|c| c.get_mut("features"))
                .and_then(|f| f.get_mut(*fname))
                .and_then(|f| f.as_object_mut())
            else {
                continue;
            };
            with_usage(fo, used, mine, &start.to_rfc3339());
        }
    }
    Ok(json(200, &v))
}
