//! Package pricing: whole packages, rounded up ("a package counts from its first unit").

use rust_decimal::Decimal;

/// `ceil(quantity / size) × amount`; zero units cost nothing.
pub fn package(quantity: Decimal, size: Decimal, amount: Decimal) -> Option<Decimal> {
    if quantity <= Decimal::ZERO || size <= Decimal::ZERO {
        return Some(Decimal::ZERO);
    }
    quantity.checked_div(size)?.ceil().checked_mul(amount)
}

#[cfg(test)]
mod tests {
    use super::super::d;
    use super::*;

    #[test]
    fn lago_package_examples() {
        // Lago spec (package_service_spec.rb): 121 units, size 10, $100 → $1,300;
        // with 10 free units → $1,200; with 200 free → $0 (free units are subtracted first).
        assert_eq!(package(d("121"), d("10"), d("100")), Some(d("1300")));
        assert_eq!(package(d("111"), d("10"), d("100")), Some(d("1200")));
        assert_eq!(package(d("0"), d("10"), d("100")), Some(d("0")));
        // Lago docs: $5 per 100, first 100 free, 201 units → 101 paid → 2 packages → $10.
        assert_eq!(package(d("101"), d("100"), d("5")), Some(d("10")));
    }

    #[test]
    fn orb_rounds_partial_packages_up() {
        // Orb docs: package size 10: "4 units will be billed as 10 and 11 units at 20".
        assert_eq!(package(d("4"), d("10"), d("1")), Some(d("1")));
        assert_eq!(package(d("11"), d("10"), d("1")), Some(d("2")));
        // Exactly on a package boundary, and one unit past it.
        assert_eq!(package(d("10"), d("10"), d("1")), Some(d("1")));
        assert_eq!(package(d("10.000001"), d("10"), d("1")), Some(d("2")));
    }
}
