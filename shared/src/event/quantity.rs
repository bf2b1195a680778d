//! Quantities are exact decimals >= 0: `"1"`, `1.5`, `"0.000001"`, `2e3`; never floats.

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// A finite, non-negative, exact decimal quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity(Decimal);

/// Why a quantity was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuantityError {
    /// Empty text.
    Empty,
    /// Below zero.
    Negative,
    /// `NaN`, `Infinity` and friends.
    NotFinite,
    /// Not a decimal number at all.
    NotANumber,
    /// More than 28 significant digits, or too large for exact arithmetic.
    OutOfRange,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuantityError::Empty => "must be a decimal >= 0, got an empty value",
            QuantityError::Negative => "must be a decimal >= 0, got a negative number",
            QuantityError::NotFinite => "must be a finite decimal, got NaN or infinity",
            QuantityError::NotANumber => "must be a decimal >= 0 such as 1, 2.5 or \"0.001\"",
            QuantityError::OutOfRange => {
                "must have at most 28 significant digits and be below 7.9e28"
            }
        })
    }
}

impl std::error::Error for QuantityError {}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity(Decimal::ZERO);
    /// One, the quantity of a plain API call.
    pub const ONE: Quantity = Quantity(Decimal::ONE);

    /// Parses JSON-number or decimal-string text exactly (`1`, `2.50`, `1e3`).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(QuantityError::Empty);
        }
        let lower = t.to_ascii_lowercase();
        let unsigned = lower.trim_start_matches(['+', '-']);
        if unsigned.starts_with("nan") || unsigned.starts_with("inf") {
            return Err(QuantityError::NotFinite);
        }
        if t.starts_with('-') {
            return Err(QuantityError::Negative);
        }
        if !is_decimal_grammar(t) {
            return Err(QuantityError::NotANumber);
        }
        let d = if t.contains(['e', 'E']) {
            Decimal::from_scientific(t).map_err(|_| QuantityError::OutOfRange)?
        } else {
            Decimal::from_str_exact(t).map_err(|_| QuantityError::OutOfRange)?
        };
        Ok(Quantity(d.normalize()))
    }

    /// A whole number of units.
    pub fn from_u64(n: u64) -> Self {
        Quantity(Decimal::from(n))
    }

    /// The exact decimal value.
    pub fn decimal(self) -> Decimal {
        self.0
    }

    /// Builds from a decimal that is known to be >= 0.
    pub fn from_decimal(d: Decimal) -> Option<Self> {
        if d.is_sign_negative() && !d.is_zero() {
            None
        } else {
            Some(Quantity(d.normalize()))
        }
    }

    /// Whole units, rounded up (a partial unit uses a whole unit of quota).
    pub fn ceil_units(self) -> u64 {
        let c = self.0.ceil();
        u64::from_str(&c.to_string()).unwrap_or(u64::MAX)
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// `digits [. digits] [(e|E) [+|-] digits]`, an optional leading `+` (JSON-number shaped).
fn is_decimal_grammar(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'+'));
    let start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == start {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == f {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e || i - e > 3 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_decimal_forms_are_accepted_and_normalised() {
        for (text, shown) in [
            ("1", "1"),
            ("2.50", "2.5"),
            ("0.000001", "0.000001"),
            ("1e3", "1000"),
            ("1.5E-2", "0.015"),
            ("0", "0"),
            ("0.0", "0"),
            ("+4", "4"),
            (
                "0.1234567890123456789012345678",
                "0.1234567890123456789012345678",
            ),
        ] {
            assert_eq!(Quantity::parse(text).unwrap().to_string(), shown, "{text}");
        }
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        assert_eq!(Quantity::parse("-1"), Err(QuantityError::Negative));
        assert_eq!(Quantity::parse("-0.5"), Err(QuantityError::Negative));
        assert_eq!(Quantity::parse("NaN"), Err(QuantityError::NotFinite));
        assert_eq!(Quantity::parse("Infinity"), Err(QuantityError::NotFinite));
        assert_eq!(Quantity::parse("-inf"), Err(QuantityError::NotFinite));
        assert_eq!(Quantity::parse(""), Err(QuantityError::Empty));
        for bad in [
            "abc", "1.", ".5", "1,5", "0x10", "1e", "1e+", "1 2", "1e9999",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Quantity::parse("1e40"), Err(QuantityError::OutOfRange));
        assert_eq!(
            Quantity::parse("123456789012345678901234567890"),
            Err(QuantityError::OutOfRange)
        );
    }

    #[test]
    fn ceil_units_rounds_partial_units_up() {
        assert_eq!(Quantity::parse("2.01").unwrap().ceil_units(), 3);
        assert_eq!(Quantity::parse("2").unwrap().ceil_units(), 2);
        assert_eq!(Quantity::ZERO.ceil_units(), 0);
    }
}
