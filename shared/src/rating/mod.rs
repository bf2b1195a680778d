//! The rating engine: pricing plans, aggregation and invoices, in exact decimal money.

mod aggregate;
mod invoice;
mod models;
mod money;
mod plan;
mod rater;
#[cfg(test)]
mod tests;

pub use aggregate::{property_amount, Accumulator};
pub use invoice::{rate_charge, Invoice, InvoiceLine, RatingError};
pub use models::{graduated, package, percentage, stairstep, unit, volume, PercentageTotals};
pub use money::{format_amount, minor_units, round_half_up};
pub use plan::{Aggregation, Charge, Model, Plan, Tier};
pub use rater::Rater;
