//! Volume pricing: every unit at the price of the single tier the total lands in, plus that
//! tier's flat fee. Unlike graduated pricing, the total can go down as usage goes up.

use super::super::plan::Tier;
use super::tier_for;
use rust_decimal::Decimal;

/// `quantity × tier.unit_amount + tier.flat_amount` for the tier containing `quantity`.
pub fn volume(quantity: Decimal, tiers: &[Tier]) -> Option<Decimal> {
    let t = tier_for(tiers, quantity)?;
    quantity
        .checked_mul(t.unit_amount)?
        .checked_add(t.flat_amount)
}

#[cfg(test)]
mod tests {
    use super::super::{d, tiers};
    use super::*;

    #[test]
    fn stripe_volume_table() {
        // Stripe tiered-pricing docs: 1–5 @7, 6–10 @6.5, 11+ @6: 1 → 7, 5 → 35, 6 → 39,
        // 20 → 120, 25 → 150; and on/past the second boundary: 10 → 65, 11 → 66.
        let t = tiers(&[
            (Some("5"), "7", "0"),
            (Some("10"), "6.5", "0"),
            (None, "6", "0"),
        ]);
        for (q, total) in [
            ("0", "0"),
            ("1", "7"),
            ("5", "35"),
            ("6", "39"),
            ("10", "65"),
            ("11", "66"),
            ("20", "120"),
            ("25", "150"),
        ] {
            assert_eq!(volume(d(q), &t), Some(d(total)), "quantity {q}");
        }
    }

    #[test]
    fn lago_volume_with_flat_fees_and_fractions() {
        // Lago spec (volume_service_spec.rb): 0–100 @2 + 10, 101–200 @1, 201+ @0.5 + 50:
        // 0 → 10, 1 → 12, 100 → 210, 100.5 → 100.5 (second tier), 101 → 101, 200 → 200, 300 → 200.
        let t = tiers(&[
            (Some("100"), "2", "10"),
            (Some("200"), "1", "0"),
            (None, "0.5", "50"),
        ]);
        for (q, total) in [
            ("0", "10"),
            ("1", "12"),
            ("100", "210"),
            ("100.5", "100.5"),
            ("101", "101"),
            ("200", "200"),
            ("300", "200"),
        ] {
            assert_eq!(volume(d(q), &t), Some(d(total)), "quantity {q}");
        }
    }

    #[test]
    fn openmeter_volume_total_goes_down_past_a_boundary() {
        // OpenMeter tieredvolume_test.go: ≤5 flat 100, ≤10 flat 150, ≤15 @10, ∞ @5:
        // 0 → 100, 3 → 100, 5 → 100, 14 → 140, 15 → 150, 16 → 80, 100 → 500.
        let t = tiers(&[
            (Some("5"), "0", "100"),
            (Some("10"), "0", "150"),
            (Some("15"), "10", "0"),
            (None, "5", "0"),
        ]);
        for (q, total) in [
            ("0", "100"),
            ("3", "100"),
            ("5", "100"),
            ("14", "140"),
            ("15", "150"),
            ("16", "80"),
            ("100", "500"),
        ] {
            assert_eq!(volume(d(q), &t), Some(d(total)), "quantity {q}");
        }
        assert!(
            volume(d("16"), &t) < volume(d("15"), &t),
            "the documented decrease"
        );
    }
}
