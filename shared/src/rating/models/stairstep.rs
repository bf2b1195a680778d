//! Stairstep pricing: the flat amount of the tier the total lands in (Chargebee's model).
//! Zero usage lands on no step and costs nothing.

use super::super::plan::Tier;
use super::tier_for;
use rust_decimal::Decimal;

/// The containing tier's `flat_amount`; 0 for zero usage.
pub fn stairstep(quantity: Decimal, tiers: &[Tier]) -> Option<Decimal> {
    if quantity <= Decimal::ZERO {
        return Some(Decimal::ZERO);
    }
    tier_for(tiers, quantity).map(|t| t.flat_amount)
}

#[cfg(test)]
mod tests {
    use super::super::{d, tiers};
    use super::*;

    #[test]
    fn chargebee_steps() {
        // Chargebee pricing-models docs (stairstep: "for each tier, a flat price"), tiers
        // 1–10 $50, 11–50 $200, 51+ $500: 10 → $50, 11 → $200 (computed from the rule).
        let t = tiers(&[
            (Some("10"), "0", "50"),
            (Some("50"), "0", "200"),
            (None, "0", "500"),
        ]);
        for (q, total) in [
            ("0", "0"),
            ("1", "50"),
            ("10", "50"),
            ("10.5", "200"),
            ("11", "200"),
            ("50", "200"),
            ("51", "500"),
            ("1000000", "500"),
        ] {
            assert_eq!(stairstep(d(q), &t), Some(d(total)), "quantity {q}");
        }
    }
}
