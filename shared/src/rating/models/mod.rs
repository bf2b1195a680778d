//! The pricing models, one file each; every function is exact (no rounding here).

mod graduated;
mod package;
mod percentage;
mod stairstep;
mod unit;
mod volume;

pub use graduated::graduated;
pub use package::package;
pub use percentage::{percentage, PercentageTotals};
pub use stairstep::stairstep;
pub use unit::unit;
pub use volume::volume;

use super::plan::Tier;
use rust_decimal::Decimal;

/// The index of the tier a quantity lands in: the first whose `up_to` is >= it.
fn tier_for(tiers: &[Tier], quantity: Decimal) -> Option<&Tier> {
    tiers.iter().find(|t| t.up_to.is_none_or(|u| quantity <= u))
}

#[cfg(test)]
pub(crate) fn tiers(spec: &[(Option<&str>, &str, &str)]) -> Vec<Tier> {
    use std::str::FromStr;
    spec.iter()
        .map(|(up, unit, flat)| Tier {
            up_to: up.map(|u| Decimal::from_str(u).unwrap()),
            unit_amount: Decimal::from_str(unit).unwrap(),
            flat_amount: Decimal::from_str(flat).unwrap(),
        })
        .collect()
}

#[cfg(test)]
pub(crate) fn d(s: &str) -> Decimal {
    use std::str::FromStr;
    Decimal::from_str(s).unwrap()
}
