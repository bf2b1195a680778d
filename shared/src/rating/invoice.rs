//! Invoices: one per customer and environment, lines in plan order, then the commitment.
//!
//! Order of adjustments, per charge: aggregate the metric's events → subtract `included`
//! free units (not below 0) → price with the model (exact) → raise to the charge `minimum`
//! → cap at the charge `maximum` → round half-up to the currency's minor unit. Then the plan:
//! subtotal = sum of rounded lines; minimum true-up = plan `minimum` − subtotal when positive;
//! total = subtotal + true-up.

use super::aggregate::Accumulator;
use super::models;
use super::money::{format_amount, round_half_up};
use super::plan::{Charge, Model, Plan};
use crate::environment::Environment;
use rust_decimal::Decimal;
use serde::Serialize;
use std::fmt;

/// Arithmetic left the exact range (about 7.9e28).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatingError {
    /// The charge that overflowed.
    pub charge: String,
}

impl fmt::Display for RatingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "charge {:?}: the amount exceeds exact decimal range",
            self.charge
        )
    }
}

impl std::error::Error for RatingError {}

/// One invoice line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InvoiceLine {
    /// Charge id.
    pub charge: String,
    /// Metric, when usage-based.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Pricing model.
    pub model: &'static str,
    /// Aggregated usage (before free units).
    #[serde(serialize_with = "as_string")]
    pub quantity: Decimal,
    /// Amount, rounded to the currency's minor unit and written with its decimals (`10.00`).
    #[serde(serialize_with = "as_plain_string")]
    pub amount: Decimal,
    /// Events that lacked the property this charge needs (not rated, so you can look).
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_events: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn as_string<S: serde::Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.normalize().to_string())
}

fn as_plain_string<S: serde::Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
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
    /// What is due.
    pub total: String,
}

/// Prices one charge from its accumulator, applying the documented order of adjustments.
pub fn rate_charge(
    plan: &Plan,
    c: &Charge,
    acc: &Accumulator,
    skipped: u64,
) -> Result<InvoiceLine, RatingError> {
    let err = || RatingError {
        charge: c.id.clone(),
    };
    let quantity = acc.quantity();
    let billable = (quantity - c.included).max(Decimal::ZERO);
    let mut amount = match &c.model {
        Model::Flat { amount } => Some(*amount),
        Model::Unit { unit_amount } => models::unit(billable, *unit_amount),
        Model::Package { size, amount } => models::package(billable, *size, *amount),
        Model::Graduated(t) => models::graduated(billable, t),
        Model::Volume(t) => models::volume(billable, t),
        Model::Stairstep(t) => models::stairstep(billable, t),
        Model::Percentage {
            rate,
            fixed_amount,
            free_events,
            free_amount,
        } => models::percentage(
            &acc.ordered_amounts(),
            *rate,
            *fixed_amount,
            *free_events,
            *free_amount,
        )
        .map(|p| p.charge),
    }
    .ok_or_else(err)?;
    if let Some(min) = c.minimum {
        amount = amount.max(min);
    }
    if let Some(max) = c.maximum {
        amount = amount.min(max);
    }
    let mut amount = round_half_up(amount, plan.minor_units);
    amount.rescale(plan.minor_units);
    Ok(InvoiceLine {
        charge: c.id.clone(),
        metric: c.metric.clone(),
        model: c.model.name(),
        quantity: quantity.normalize(),
        amount,
        skipped_events: skipped,
    })
}

/// Builds the invoice from priced lines.
pub fn assemble(
    plan: &Plan,
    environment: Environment,
    customer_id: &str,
    lines: Vec<InvoiceLine>,
) -> Invoice {
    let subtotal: Decimal = lines.iter().map(|l| l.amount).sum();
    let true_up = plan.minimum.map_or(Decimal::ZERO, |m| {
        (round_half_up(m, plan.minor_units) - subtotal).max(Decimal::ZERO)
    });
    let dp = plan.minor_units;
    Invoice {
        environment,
        customer_id: customer_id.to_string(),
        currency: plan.currency.clone(),
        lines,
        subtotal: format_amount(subtotal, dp),
        minimum_true_up: format_amount(true_up, dp),
        total: format_amount(subtotal + true_up, dp),
    }
}
