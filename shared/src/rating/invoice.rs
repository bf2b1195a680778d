//! Invoice lines: stages 2 to 5 of the pipeline for one charge (rollover, aggregation,
//! rating, adjustments); `pipeline.rs` takes the lines through stages 6 to 10.
//!
//! Per charge, in this order: aggregate the metric's events → subtract `included` free units
//! and the units rolled over from the last period, then the usage discount (not below 0) →
//! price with the model (exact), prorated by the part of the period the subscription covers
//! for a flat fee with `proration: by_duration` → subtract the amount discount (not below 0) →
//! take off the percentage discount → raise to the charge `minimum` → cap at the charge
//! `maximum` → round half-up to the currency's minor unit (Orb's order of adjustments).

use super::aggregate::Accumulator;
use super::models;
use super::money::round_half_up;
use super::plan::{Charge, Model, Plan};
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
    /// The model's amount before adjustments (rounded), when adjustments changed it.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_plain")]
    pub rated: Option<Decimal>,
    /// The part of the period billed (a prorated flat fee), exact.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_string")]
    pub proration: Option<Decimal>,
    /// Included units unused this period, carried into the next (charges with `rollover`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_string")]
    pub rollover_out: Option<Decimal>,
    /// What the quantity cost the seller (charges with `unit_cost`), exact.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "opt_string")]
    pub cost: Option<Decimal>,
}

/// What the customer's terms change on one line.
#[derive(Clone, Copy, Debug, Default)]
pub struct LineTerms {
    /// Included units carried in from the last period.
    pub rollover_in: Decimal,
    /// The part of the period the subscription covers (prorated flat fees); `None`: whole.
    pub covered: Option<Decimal>,
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

fn opt_plain<S: serde::Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => as_plain_string(d, s),
        None => s.serialize_none(),
    }
}

fn opt_string<S: serde::Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => as_string(d, s),
        None => s.serialize_none(),
    }
}

/// Prices one charge from its accumulator with no terms (no rollover, the whole period).
pub fn rate_charge(
    plan: &Plan,
    c: &Charge,
    acc: &Accumulator,
    skipped: u64,
) -> Result<InvoiceLine, RatingError> {
    rate_line(plan, c, acc, skipped, LineTerms::default())
}

/// Prices one charge from its accumulator and the customer's terms, in the documented order.
pub fn rate_line(
    plan: &Plan,
    c: &Charge,
    acc: &Accumulator,
    skipped: u64,
    terms: LineTerms,
) -> Result<InvoiceLine, RatingError> {
    let err = || RatingError {
        charge: c.id.clone(),
    };
    let quantity = acc.quantity();
    let allowance = c.included + terms.rollover_in;
    let billable = (quantity - allowance - c.usage_discount).max(Decimal::ZERO);
    let priced = match &c.model {
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
    let proration = match (c.prorated, terms.covered) {
        (true, Some(part)) if part < Decimal::ONE => Some(part.max(Decimal::ZERO)),
        _ => None,
    };
    let rated = match proration {
        Some(part) => priced.checked_mul(part).ok_or_else(err)?,
        None => priced,
    };
    let mut amount = (rated - c.amount_discount).max(Decimal::ZERO);
    if !c.percentage_discount.is_zero() {
        let keep = (Decimal::ONE_HUNDRED - c.percentage_discount) / Decimal::ONE_HUNDRED;
        amount = amount.checked_mul(keep).ok_or_else(err)?;
    }
    if let Some(min) = c.minimum {
        amount = amount.max(min);
    }
    if let Some(max) = c.maximum {
        amount = amount.min(max);
    }
    let dp = plan.minor_units;
    let round = |d: Decimal| {
        let mut r = round_half_up(d, dp);
        r.rescale(dp);
        r
    };
    let amount = round(amount);
    let rated = round(rated);
    Ok(InvoiceLine {
        charge: c.id.clone(),
        metric: c.metric.clone(),
        model: c.model.name(),
        quantity: quantity.normalize(),
        amount,
        skipped_events: skipped,
        rated: (rated != amount).then_some(rated),
        proration: proration.map(|p| p.normalize()),
        rollover_out: c.rollover.map(|cap| {
            let unused = (allowance - quantity).max(Decimal::ZERO);
            cap.map_or(unused, |m| unused.min(m)).normalize()
        }),
        cost: c
            .unit_cost
            .filter(|_| c.metric.is_some())
            .and_then(|u| quantity.checked_mul(u))
            .map(|x| x.normalize()),
    })
}
