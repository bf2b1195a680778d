//! The rating engine: pricing plans, aggregation and invoices, in exact decimal money.

mod aggregate;
mod dimension;
mod invoice;
mod models;
mod money;
mod pipeline;
#[cfg(test)]
mod pipeline_tests;
mod plan;
mod rater;
mod terms;
#[cfg(test)]
mod tests;

pub use aggregate::{property_amount, Accumulator};
pub use dimension::Filter;
pub use invoice::{rate_charge, rate_line, InvoiceLine, LineTerms, RatingError};
pub use models::{graduated, package, percentage, stairstep, unit, volume, PercentageTotals};
pub use money::{format_amount, minor_units, round_half_up};
pub use pipeline::{finish, AppliedCoupon, Flag, Invoice, Stage, Usage};
pub use plan::{Aggregation, Charge, Model, Plan, Tier};
pub use rater::Rater;
pub use terms::{Coupon, CouponDuration, CouponOff, Terms};
