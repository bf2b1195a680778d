//! `GET /v1/usage` and `GET /v1/invoices/preview`: what was used and what it would cost, per
//! environment. Production only unless `?environment=sandbox` is asked for (with a sandbox key).

use super::extract::{ProductionUnlessAsked, Scoped};
use super::{json, ApiError};
use crate::app::App;
use aforo_core::entitlement::{Period, QuotaWindow};
use aforo_core::event::Quantity;
use aforo_core::rating::{Rater, Terms};
use aforo_core::time::{parse_rfc3339, parse_utc_offset, period_of, Granularity};
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
    /// `?period=daily|monthly`: sums per day or month instead of over the whole range.
    buckets: Option<Granularity>,
    /// `?tz=±HH:MM` (default UTC): the calendar the buckets follow.
    offset_secs: i64,
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
    let buckets = match q.get("period") {
        None => None,
        Some(p) => Some(Granularity::parse(p).ok_or_else(|| {
            ApiError::invalid(
                "invalid_query",
                "period",
                format!("must be daily or monthly, got {p:?}"),
            )
        })?),
    };
    let offset_secs = match q.get("tz") {
        None => 0,
        // A `+` left unencoded in a query string arrives as a space.
        Some(z) => parse_utc_offset(&z.replace(' ', "+")).ok_or_else(|| {
            ApiError::invalid(
                "invalid_query",
                "tz",
                format!("must be UTC or an offset like +05:30, got {z:?}"),
            )
        })?,
    };
    // Without from/to, the current month of the calendar the report follows (the tz's).
    let (month_start, month_end) = if offset_secs == 0 {
        (month_start, month_end)
    } else {
        period_of(app.now(), Granularity::Monthly, offset_secs)
    };
    let (from, to) = (time("from", month_start)?, time("to", month_end)?);
    if from > to {
        return Err(ApiError::invalid(
            "invalid_query",
            "from",
            "must not be after to",
        ));
    }
    Ok(ReportPeriod {
        env,
        from,
        to,
        customer: q.get("customer").cloned(),
        buckets,
        offset_secs,
    })
}

/// Usage per customer and metric in a period (default: the current calendar month); with
/// `?period=daily|monthly`, per day or month too (UTC, or `?tz=±HH:MM`).
pub async fn usage(
    State(app): State<Arc<App>>,
    scoped: Scoped<ProductionUnlessAsked>,
) -> Result<Response, ApiError> {
    let p = period(&app, scoped)?;
    let events = app
        .stores
        .events_between(p.env, p.from, p.to, p.customer.as_deref())
        .map_err(ApiError::unavailable)?;
    type Bucket = Option<(Timestamp, Timestamp)>;
    let mut totals: BTreeMap<(Bucket, String, String), (Quantity, u64)> = BTreeMap::new();
    for e in &events {
        let bucket = p.buckets.map(|g| period_of(e.timestamp, g, p.offset_secs));
        let t = totals
            .entry((bucket, e.customer_id.clone(), e.metric.clone()))
            .or_insert((Quantity::ZERO, 0));
        t.0 = t
            .0
            .checked_add(e.quantity)
            .ok_or_else(|| ApiError::new(500, "overflow", "usage exceeds exact decimal range"))?;
        t.1 += 1;
    }
    let rows: Vec<_> = totals
        .into_iter()
        .map(|((b, c, m), (q, n))| {
            let mut row =
                json!({"customer_id": c, "metric": m, "quantity": q.to_text(), "events": n});
            if let Some((start, end)) = b {
                row["period_start"] = json!(start.to_rfc3339());
                row["period_end"] = json!(end.to_rfc3339());
            }
            row
        })
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
    if p.buckets.is_some() {
        return Err(ApiError::invalid(
            "invalid_query",
            "period",
            "invoices cover from..to as one period; ask for each period with from and to",
        ));
    }
    let catalog = app
        .catalog
        .read()
        .map_err(|_| ApiError::unavailable("catalog"))?;
    // Customers with billing terms are invoiced on them, with or without events.
    let mut terms = Vec::new();
    for (cid, b) in &catalog.billing {
        if p.customer.as_ref().is_none_or(|c| c == cid) {
            let t = Terms::from_billing(&format!("customers.{cid}.billing"), cid, p.env, b)
                .map_err(|e| ApiError::new(500, "rating_failed", e.to_string()))?;
            terms.push(t);
        }
    }
    let plan = catalog.plan.clone().ok_or_else(|| {
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
    drop(catalog);
    let mut rater = Rater::new(plan);
    rater.set_period(p.from, p.to);
    for t in terms {
        rater.subscribe(t);
    }
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
