//! `POST /v1/leases`: quota leases for the gateway filters in front of this agent
//! (`quota_leases` in the filter). A filter is a lease node of its own: its renewal runs in
//! Redis under `gw/<source>` with this agent's `max_overshoot`, so the bound a window keeps is
//! the same however many filters and agents share it. The body and answer are the core's
//! (`aforo_core::entitlement::LeaseAsk`, `grant_to_json`).

use super::extract::Gateway;
use super::{json, read_body, ApiError, SMALL_BODY};
use crate::app::App;
use crate::redis_state::StateError;
use aforo_core::config::is_name;
use aforo_core::entitlement::{grant_to_json, CounterKey, CounterKind, LeaseAsk};
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use std::sync::Arc;

/// Runs one renewal (a give-back, a new lease, or both) for a filter.
pub async fn renew(
    State(app): State<Arc<App>>,
    Gateway { env, .. }: Gateway,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&app, body, SMALL_BODY).await?;
    let ask = LeaseAsk::from_json(&bytes).map_err(|e| {
        let field = e.split_whitespace().next().unwrap_or("body").to_string();
        ApiError::invalid("invalid_lease", field, e)
    })?;
    if !is_name(&ask.source) || ask.source.len() > 128 {
        return Err(ApiError::invalid(
            "invalid_lease",
            "source",
            "must be 1..=128 letters, digits or _-.: characters (the filter's source)",
        ));
    }
    // A quota counter of the key's own environment (a sandbox key never holds production
    // quota, nor the reverse), of a customer's feature the catalog gives a quota: its quota
    // and window are the catalog's, whatever the body says, so no caller can open a window of
    // its own or lease past the plan.
    let own_env = format!("aforo:q:{}:", env.as_str());
    let counter = match CounterKey::parse(&ask.key) {
        Some(k) if k.kind == CounterKind::Quota => ask.key.strip_prefix(&own_env),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::invalid(
            "invalid_lease",
            "key",
            format!("must be a quota counter of the {env} environment (aforo:q:{env}:<customer>:<feature>), as this key's environment"),
        )
    })?;
    let terms = app.catalog.read().ok().and_then(|c| c.quota_terms(counter));
    let Some((quota, window)) = terms else {
        return Err(ApiError::invalid(
            "invalid_lease",
            "key",
            "no customer's feature with a quota in the catalog has this counter",
        ));
    };
    // The window asked for: the current one by this agent's clock, or the one before or after
    // (a gateway's clock a little behind or ahead; the store's own clock then decides).
    let (start, end) = window.current(app.now());
    let windows = [
        window.current(start.plus_nanos(-1)),
        (start, end),
        window.current(end),
    ];
    let Some(&(_, window_end)) = windows.iter().find(|(s, _)| *s == ask.renewal.window_start)
    else {
        return Err(ApiError::invalid(
            "invalid_lease",
            "window_start",
            "is not the start of this counter's current window (nor the one before or after) by the agent's clock; check the gateway's clock (NTP)",
        ));
    };
    let mut renewal = ask.renewal.clone();
    renewal.quota = quota;
    renewal.window_end = window_end;
    let Some(leases) = app.usage.leases() else {
        return Err(ApiError::new(
            409,
            "leases_off",
            "this agent does not lease quotas: run it on Redis (state) with max_overshoot set, or turn quota_leases off in the filter",
        ));
    };
    let grant =
        tokio::task::block_in_place(|| leases.renew_for_gateway(&ask.source, &ask.key, &renewal))
            .map_err(|e| match e {
            StateError::Down(_) => ApiError::unavailable(format!("Redis: {e}")),
            StateError::Failed(_) => {
                ApiError::new(503, "lease_failed", format!("{e}")).header("retry-after", "1".into())
            }
        })?;
    Ok(json(200, &grant_to_json(&grant)))
}
