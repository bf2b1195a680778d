//! The invoice pipeline after the lines: stages 6 to 10, in one documented order, each
//! recorded under `stages` so a reader sees how the total came to be.
//!
//! 1 usage (events admitted) · 2 rollover · 3 aggregation · 4 rating · 5 adjustments (the lines,
//! `invoice.rs`) · 6 commitment: the plan `minimum` tops the subtotal up · 7 coupons, in the
//! customer's order, each on what the ones before left (an amount coupon's excess is dropped,
//! as Stripe does) · 8 tax on what is left, once per invoice, exclusive (added) or inclusive
//! (backed out: tax = amount × rate / (100 + rate)) · 9 prepaid credits after tax (Lago's order;
//! Orb applies credits before tax) · 10 settlement: `amount_due`. Every amount is rounded
//! half-up to the currency's minor unit where it is made, so the lines, the true-up, the
//! coupons and the tax add up exactly to the totals.

use super::invoice::InvoiceLine;
use super::money::{format_amount, round_half_up};
use super::plan::Plan;
use super::terms::{CouponOff, Terms};
use crate::environment::Environment;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// One stage of the pipeline as the invoice records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// 1..=10.
    pub stage: u8,
    /// Its name.
    pub name: &'static str,
    /// The invoice's running amount after it (stages that move money).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// What it did.
    pub detail: Value,
}

/// A coupon as applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppliedCoupon {
    /// The coupon's id.
    pub id: String,
    /// What it took off.
    pub amount: String,
}

/// A reason to look at an invoice before it is billed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// `margin_guard`.
    pub code: &'static str,
    /// What a person reads.
    pub message: String,
}

/// One customer's invoice in one environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Invoice {
    /// Sandbox invoices are previews only: they are never billed.
    pub environment: Environment,
    /// The customer.
    pub customer_id: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Lines in plan order.
    pub lines: Vec<InvoiceLine>,
    /// Sum of the lines.
    pub subtotal: String,
    /// Commitment top-up.
    pub minimum_true_up: String,
    /// Coupons taken off (each in `coupons`).
    pub discounts: String,
    /// The coupons applied, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub coupons: Vec<AppliedCoupon>,
    /// The tax rate applied, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax_rate_percent: Option<String>,
    /// Tax (included in the lines when `tax_inclusive`).
    pub tax: String,
    /// Prices include the tax.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tax_inclusive: bool,
    /// What the invoice is worth: subtotal + true-up − discounts (+ tax when exclusive).
    pub total: String,
    /// Prepaid credits used.
    pub credits_applied: String,
    /// Prepaid credits left for later.
    pub credits_remaining: String,
    /// What the customer pays: total − credits applied.
    pub amount_due: String,
    /// What the usage cost the seller (charges with `unit_cost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// (net revenue − cost) / net revenue × 100, net revenue being the total before tax.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin_percent: Option<String>,
    /// Reasons to look before billing.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
    /// How the total came to be, stage by stage.
    pub stages: Vec<Stage>,
}

/// What stages 1 to 3 saw, for the record.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    /// Events admitted and rated for the customer.
    pub events: u64,
}

/// Takes priced lines through stages 6 to 10; `terms` are the customer's (none: the plan's).
pub fn finish(
    plan: &Plan,
    environment: Environment,
    customer_id: &str,
    lines: Vec<InvoiceLine>,
    terms: Option<&Terms>,
    usage: Usage,
    rollover_in: &dyn Fn(&str) -> Decimal,
) -> Invoice {
    let dp = plan.minor_units;
    let fmt = |d: Decimal| format_amount(d, dp);
    let round = |d: Decimal| round_half_up(d, dp);
    let mut stages = Vec::with_capacity(10);
    let obj = |pairs: Vec<(String, Value)>| Value::Object(pairs.into_iter().collect::<Map<_, _>>());

    stages.push(Stage {
        stage: 1,
        name: "usage",
        amount: None,
        detail: json!({"events": usage.events}),
    });
    let rollover: Vec<(String, Value)> = lines
        .iter()
        .filter(|l| l.rollover_out.is_some() || !rollover_in(&l.charge).is_zero())
        .map(|l| {
            (
                l.charge.clone(),
                json!({
                    "in": rollover_in(&l.charge).normalize().to_string(),
                    "out": l.rollover_out.unwrap_or_default().to_string(),
                }),
            )
        })
        .collect();
    stages.push(Stage {
        stage: 2,
        name: "rollover",
        amount: None,
        detail: obj(rollover),
    });
    stages.push(Stage {
        stage: 3,
        name: "aggregation",
        amount: None,
        detail: obj(lines
            .iter()
            .filter(|l| l.metric.is_some())
            .map(|l| (l.charge.clone(), Value::from(l.quantity.to_string())))
            .collect()),
    });
    let rated_total: Decimal = lines.iter().map(|l| l.rated.unwrap_or(l.amount)).sum();
    stages.push(Stage {
        stage: 4,
        name: "rating",
        amount: Some(fmt(rated_total)),
        detail: obj(lines
            .iter()
            .map(|l| {
                (
                    l.charge.clone(),
                    Value::from(fmt(l.rated.unwrap_or(l.amount))),
                )
            })
            .collect()),
    });
    let subtotal: Decimal = lines.iter().map(|l| l.amount).sum();
    stages.push(Stage {
        stage: 5,
        name: "adjustments",
        amount: Some(fmt(subtotal)),
        detail: obj(lines
            .iter()
            .filter_map(|l| {
                l.rated
                    .map(|r| (l.charge.clone(), Value::from(fmt(l.amount - r))))
            })
            .collect()),
    });

    // 6. The plan's commitment.
    let true_up = plan
        .minimum
        .map_or(Decimal::ZERO, |m| (round(m) - subtotal).max(Decimal::ZERO));
    let committed = subtotal + true_up;
    stages.push(Stage {
        stage: 6,
        name: "commitment",
        amount: Some(fmt(committed)),
        detail: json!({"minimum": plan.minimum.map(&fmt), "minimum_true_up": fmt(true_up)}),
    });

    // 7. Coupons, in order, each on what is left.
    let mut left = committed;
    let mut coupons = Vec::new();
    let mut skipped = Vec::new();
    for c in terms.map(|t| t.coupons.as_slice()).unwrap_or(&[]) {
        if !c.applies() {
            skipped.push(c.id.clone());
            continue;
        }
        let off = match c.off {
            CouponOff::Amount(a) => round(a).min(left),
            CouponOff::Percent(p) => round(left * p / Decimal::ONE_HUNDRED).min(left),
        };
        left -= off;
        coupons.push(AppliedCoupon {
            id: c.id.clone(),
            amount: fmt(off),
        });
    }
    let discounts = committed - left;
    stages.push(Stage {
        stage: 7,
        name: "coupons",
        amount: Some(fmt(left)),
        detail: json!({"applied": coupons, "not_applicable": skipped}),
    });

    // 8. Tax on what is left.
    let rate = terms
        .and_then(|t| t.tax_rate_percent)
        .or(plan.tax_rate_percent);
    let tax = match rate {
        None => Decimal::ZERO,
        Some(r) if plan.tax_inclusive => round(left * r / (Decimal::ONE_HUNDRED + r)),
        Some(r) => round(left * r / Decimal::ONE_HUNDRED),
    };
    let total = if plan.tax_inclusive { left } else { left + tax };
    stages.push(Stage {
        stage: 8,
        name: "tax",
        amount: Some(fmt(total)),
        detail: json!({
            "rate_percent": rate.map(|r| r.normalize().to_string()),
            "behavior": if plan.tax_inclusive { "inclusive" } else { "exclusive" },
            "tax": fmt(tax),
        }),
    });

    // 9. Prepaid credits, after tax.
    let credits = terms.map_or(Decimal::ZERO, |t| round(t.prepaid_credits));
    let applied = credits.min(total);
    let amount_due = total - applied;
    stages.push(Stage {
        stage: 9,
        name: "credits",
        amount: Some(fmt(amount_due)),
        detail: json!({"applied": fmt(applied), "remaining": fmt(credits - applied)}),
    });
    stages.push(Stage {
        stage: 10,
        name: "settlement",
        amount: Some(fmt(amount_due)),
        detail: json!({"rounding": "half_up", "minor_units": dp}),
    });

    // Margin: the seller's cost of the usage against the revenue before tax.
    let costs: Vec<Decimal> = lines.iter().filter_map(|l| l.cost).collect();
    let cost = (!costs.is_empty()).then(|| costs.iter().copied().sum::<Decimal>());
    let revenue = if plan.tax_inclusive { left - tax } else { left };
    let margin = cost.and_then(|c| {
        (!revenue.is_zero()).then(|| {
            ((revenue - c) * Decimal::ONE_HUNDRED / revenue)
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        })
    });
    let mut flags = Vec::new();
    let floor = terms
        .and_then(|t| t.min_margin_percent)
        .or(plan.min_margin_percent);
    if let (Some(min), Some(c)) = (floor, cost) {
        let below = match margin {
            Some(m) => m < min,
            None => c > Decimal::ZERO,
        };
        if below {
            flags.push(Flag {
                code: "margin_guard",
                message: format!(
                    "the margin is {}% where at least {}% is required (cost {} against revenue {})",
                    margin.map_or("undefined".to_string(), |m| m.normalize().to_string()),
                    min.normalize(),
                    fmt(c),
                    fmt(revenue)
                ),
            });
        }
    }

    Invoice {
        environment,
        customer_id: customer_id.to_string(),
        currency: plan.currency.clone(),
        lines,
        subtotal: fmt(subtotal),
        minimum_true_up: fmt(true_up),
        discounts: fmt(discounts),
        coupons,
        tax_rate_percent: rate.map(|r| r.normalize().to_string()),
        tax: fmt(tax),
        tax_inclusive: plan.tax_inclusive,
        total: fmt(total),
        credits_applied: fmt(applied),
        credits_remaining: fmt(credits - applied),
        amount_due: fmt(amount_due),
        cost: cost.map(fmt),
        margin_percent: margin.map(|m| m.normalize().to_string()),
        flags,
        stages,
    }
}
