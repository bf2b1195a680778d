//! Per-unit pricing: units × price.

use rust_decimal::Decimal;

/// `quantity × unit_amount`.
pub fn unit(quantity: Decimal, unit_amount: Decimal) -> Option<Decimal> {
    quantity.checked_mul(unit_amount)
}

#[cfg(test)]
mod tests {
    use super::super::d;
    use super::*;

    #[test]
    fn lago_standard_example() {
        // Lago docs (charges overview): $0.05 × 1,000 = $50.
        assert_eq!(unit(d("1000"), d("0.05")), Some(d("50")));
        assert_eq!(unit(d("0"), d("0.05")), Some(d("0")));
    }
}
