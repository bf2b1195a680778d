//! `GET /v1/usage` and `GET /v1/invoices/preview`: what was used and what it would cost, per
//! environment. Production only unless `?environment=sandbox` is asked for (with a sandbox key).

use super::extract::{ProductionUnlessAsked, Scoped};
use super::{json, ApiError};
use crate::app::App;
use aforo_core::entitlement::{Period, QuotaWindow};
use aforo_core::event::Quantity;
use aforo_core::rating::Rater;
use aforo_core::time::parse_rfc3339;
use aforo_core::{Environment, Timestamp};
use axum::extract::State;
use axum::response::Response;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

struct ReportPeriod {
    env: Environment,
    from: Timestamp,
    to: Timestamp,
    customer: Option<String>,
}

fn period(app: &App, scoped: Scoped<ProductionUnlessAsked>) -> Result<ReportPeriod, ApiError> {
    let Scoped { env, query: q, .. } = scoped;
    let (month_start, month_end) = QuotaWindow::calendar(Period::Month).current(app.now());
    let time = |k: &str, default: Timestamp| -> Result<Timestamp, ApiError> {
        match q.get(k) {
            None => Ok(default),
            Some(s) => {
                parse_rfc3339(s).map_err(|e| ApiError::invalid("invalid_query", k, e.to_string()))
            }
        }
    };
    Ok(ReportPeriod {
        env,
        from: time("from", month_start)?,
        to: time("to", month_end)?,
        customer: q.get("customer").cloned(),
    })
}

/// Usage per customer and metric in a period (default: the current calendar month).
pub async fn usage(
    State(app): State<Arc<App>>,
    scoped: Scoped<ProductionUnlessAsked>,
) -> Result<Response, ApiError> {
    let p = period(&app, scoped)?;
    let events = app
        .stores
        .events_between(p.env, p.from, p.to, p.customer.as_deref())
        .map_err(ApiError::unavailable)?;
    let mut totals: BTreeMap<(String, String), (Quantity, u64)> = BTreeMap::new();
    for e in &events {
        let t = totals
            .entry((e.customer_id.clone(), e.metric.clone()))
            .or_insert((Quantity::ZERO, 0));
        t.0 = t
            .0
            .checked_add(e.quantity)
            .ok_or_else(|| ApiError::new(500, "overflow", "usage exceeds exact decimal range"))?;
        t.1 += 1;
    }
    let rows: Vec<_> = totals
        .into_iter()
        .map(|((c, m), (q, n))| json!({"customer_id": c, "metric": m, "quantity": q.to_text(), "events": n}))
        .collect();
    Ok(json(
        200,
        &json!({"environment": p.env.as_str(), "from": p.from.to_rfc3339(), "to": p.to.to_rfc3339(), "usage": rows}),
    ))
}

/// Invoices of the period rated with the catalog's plan (a preview: sandbox is never billed).
pub async fn invoice_preview(
    State(app): State<Arc<App>>,
    scoped: Scoped<ProductionUnlessAsked>,
) -> Result<Response, ApiError> {
    let p = period(&app, scoped)?;
    let plan = app
        .catalog
        .read()
        .map_err(|_| ApiError::unavailable("catalog"))?
        .plan
        .clone()
        .ok_or_else(|| {
            ApiError::new(
                404,
                "no_plan",
                "no pricing plan is configured: add \"plan\" to the catalog",
            )
        })?;
    let currency = plan.currency.clone();
    let events = app
        .stores
        .events_between(p.env, p.from, p.to, p.customer.as_deref())
        .map_err(ApiError::unavailable)?;
    let mut rater = Rater::new(plan);
    for e in &events {
        rater.add(e);
    }
    let invoices = rater
        .invoices()
        .map_err(|e| ApiError::new(500, "rating_failed", e.to_string()))?;
    Ok(json(
        200,
        &json!({"environment": p.env.as_str(), "from": p.from.to_rfc3339(), "to": p.to.to_rfc3339(), "currency": currency, "invoices": invoices}),
    ))
}
