//! Graduated (tiered) pricing: each tier prices the units inside it; a tier's flat fee is
//! charged once the tier is entered, and the first tier's flat fee even at zero usage.

use super::super::plan::Tier;
use rust_decimal::Decimal;

/// Sum over tiers of `units in tier × unit_amount + flat_amount (if entered)`.
pub fn graduated(quantity: Decimal, tiers: &[Tier]) -> Option<Decimal> {
    let mut total = Decimal::ZERO;
    let mut lower = Decimal::ZERO;
    for (i, t) in tiers.iter().enumerate() {
        let entered = i == 0 || quantity > lower;
        if !entered {
            break;
        }
        let upper = t.up_to.map_or(quantity, |u| u.min(quantity));
        let units = (upper - lower).max(Decimal::ZERO);
        total = total
            .checked_add(units.checked_mul(t.unit_amount)?)?
            .checked_add(t.flat_amount)?;
        match t.up_to {
            Some(u) => lower = u,
            None => break,
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::super::{d, tiers};
    use super::*;

    #[test]
    fn stripe_tiers_on_and_past_each_boundary() {
        // Stripe tiered-pricing docs: 1–5 @7, 6–10 @6.5, 11+ @6 (graduated totals computed
        // from the documented rule: 6 → 41.50, 20 → 127.50, 25 → 157.50).
        let t = tiers(&[
            (Some("5"), "7", "0"),
            (Some("10"), "6.5", "0"),
            (None, "6", "0"),
        ]);
        assert_eq!(graduated(d("0"), &t), Some(d("0")));
        assert_eq!(graduated(d("5"), &t), Some(d("35")));
        assert_eq!(graduated(d("6"), &t), Some(d("41.5")));
        assert_eq!(graduated(d("10"), &t), Some(d("67.5")));
        assert_eq!(graduated(d("11"), &t), Some(d("73.5")));
        assert_eq!(graduated(d("20"), &t), Some(d("127.5")));
        assert_eq!(graduated(d("25"), &t), Some(d("157.5")));
    }

    #[test]
    fn orb_invoice_calculation_example() {
        // Orb docs: 0–10,000 @0.001, 10,001–100,000 @0.0008, 100,001+ @0.0005;
        // 150,000 calls → 10 + 72 + 25 = $107.00.
        let t = tiers(&[
            (Some("10000"), "0.001", "0"),
            (Some("100000"), "0.0008", "0"),
            (None, "0.0005", "0"),
        ]);
        assert_eq!(graduated(d("150000"), &t), Some(d("107")));
    }

    #[test]
    fn lago_flat_fees_once_a_tier_is_entered() {
        // Lago spec (graduated_service_spec.rb): 0–10 @10 + flat 2, 11–20 @5 + flat 3,
        // 21+ @5 + flat 3: 0 → 2, 1 → 12, 10 → 102, 11 → 110, 12 → 115, 21 → 163.
        let t = tiers(&[
            (Some("10"), "10", "2"),
            (Some("20"), "5", "3"),
            (None, "5", "3"),
        ]);
        for (q, total) in [
            ("0", "2"),
            ("1", "12"),
            ("10", "102"),
            ("11", "110"),
            ("12", "115"),
            ("21", "163"),
        ] {
            assert_eq!(graduated(d(q), &t), Some(d(total)), "quantity {q}");
        }
    }

    #[test]
    fn openmeter_flat_only_tiers() {
        // OpenMeter tieredgraduated_test.go: ≤5 flat 100, ≤10 flat 50, ≤15 @10, ∞ @5:
        // 0 → 100, 3 → 100, 5 → 100, 5.001 → 150, 7 → 150, 12 → 170, 22 → 235.
        let t = tiers(&[
            (Some("5"), "0", "100"),
            (Some("10"), "0", "50"),
            (Some("15"), "10", "0"),
            (None, "5", "0"),
        ]);
        for (q, total) in [
            ("0", "100"),
            ("3", "100"),
            ("5", "100"),
            ("5.001", "150"),
            ("7", "150"),
            ("12", "170"),
            ("22", "235"),
        ] {
            assert_eq!(graduated(d(q), &t), Some(d(total)), "quantity {q}");
        }
    }
}
