//! Quantities are exact decimals >= 0: `"1"`, `1.5`, `"0.000001"`, `2e3`; never floats.
//!
//! Stored as an integer mantissa and a decimal scale (the value is `mantissa / 10^scale`),
//! normalised (no trailing fractional zeros), within rust_decimal's range (mantissa < 2^96,
//! scale <= 28) so rating converts every quantity exactly. The filter needs no decimal library.

use std::cmp::Ordering;
use std::fmt;

/// Largest mantissa (2^96 - 1), as in rust_decimal.
const MAX_MANTISSA: u128 = (1u128 << 96) - 1;
/// Most decimal places.
const MAX_SCALE: u32 = 28;

/// A finite, non-negative, exact decimal quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Quantity {
    mantissa: u128,
    scale: u32,
}

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

fn pow10(n: u32) -> u128 {
    10u128.pow(n)
}

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity {
        mantissa: 0,
        scale: 0,
    };
    /// One, the quantity of a plain API call.
    pub const ONE: Quantity = Quantity {
        mantissa: 1,
        scale: 0,
    };

    fn normalized(mut mantissa: u128, mut scale: u32) -> Self {
        while scale > 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            scale -= 1;
        }
        if mantissa == 0 {
            scale = 0;
        }
        Quantity { mantissa, scale }
    }

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
        let b = t.as_bytes();
        let mut i = usize::from(b.first() == Some(&b'+'));
        let mut mantissa: u128 = 0;
        let mut scale: i64 = 0;
        let mut int_digits = 0;
        let mut overflow = false;
        let mut push = |d: u8, mantissa: &mut u128| match mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(d as u128))
        {
            Some(m) => *mantissa = m,
            None => overflow = true,
        };
        while i < b.len() && b[i].is_ascii_digit() {
            push(b[i] - b'0', &mut mantissa);
            int_digits += 1;
            i += 1;
        }
        if int_digits == 0 {
            return Err(QuantityError::NotANumber);
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                push(b[i] - b'0', &mut mantissa);
                scale += 1;
                i += 1;
            }
            if i == start {
                return Err(QuantityError::NotANumber);
            }
        }
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            i += 1;
            let neg = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let start = i;
            let mut exp: i64 = 0;
            while i < b.len() && b[i].is_ascii_digit() {
                // Saturating: a 30-digit exponent is refused below, not an overflow here
                // (found by the ingest_body fuzz target).
                exp = exp.saturating_mul(10).saturating_add((b[i] - b'0') as i64);
                i += 1;
            }
            if i == start || i - start > 3 {
                return Err(QuantityError::NotANumber);
            }
            scale += if neg { exp } else { -exp };
        }
        if i != b.len() {
            return Err(QuantityError::NotANumber);
        }
        if overflow {
            return Err(QuantityError::OutOfRange);
        }
        // Fold trailing zeros first, so "1.000…0" with many zeros still fits.
        while scale > 0 && mantissa % 10 == 0 && mantissa != 0 {
            mantissa /= 10;
            scale -= 1;
        }
        if mantissa == 0 {
            return Ok(Quantity::ZERO);
        }
        while scale < 0 {
            mantissa = mantissa.checked_mul(10).ok_or(QuantityError::OutOfRange)?;
            scale += 1;
        }
        if scale > MAX_SCALE as i64 || mantissa > MAX_MANTISSA {
            return Err(QuantityError::OutOfRange);
        }
        Ok(Quantity::normalized(mantissa, scale as u32))
    }

    /// A whole number of units.
    pub fn from_u64(n: u64) -> Self {
        Quantity {
            mantissa: n as u128,
            scale: 0,
        }
    }

    /// The integer mantissa and decimal scale (value = mantissa / 10^scale).
    pub fn parts(self) -> (u128, u32) {
        (self.mantissa, self.scale)
    }

    /// The exact sum, or `None` past the representable range.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        let scale = self.scale.max(other.scale);
        let a = self.mantissa.checked_mul(pow10(scale - self.scale))?;
        let b = other.mantissa.checked_mul(pow10(scale - other.scale))?;
        let m = a.checked_add(b)?;
        if m > MAX_MANTISSA {
            return None;
        }
        Some(Quantity::normalized(m, scale))
    }

    /// Whole units, rounded up (a partial unit uses a whole unit of quota).
    pub fn ceil_units(self) -> u64 {
        // A whole count (nearly every quantity metered) needs no 128-bit division, which
        // Wasm has no instruction for (a call into compiler-builtins).
        if self.scale == 0 {
            return u64::try_from(self.mantissa).unwrap_or(u64::MAX);
        }
        let p = pow10(self.scale);
        let whole = self.mantissa / p + u128::from(self.mantissa % p != 0);
        u64::try_from(whole).unwrap_or(u64::MAX)
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// The canonical text (`1`, `2.5`).
    pub fn to_text(self) -> String {
        let mut out = Vec::with_capacity(24);
        self.write_text(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the canonical text to `out` (an event's JSON is written this way, with no
    /// string of its own per request).
    pub fn write_text(self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 40];
        let mut i = buf.len();
        // The digits above 32 bits by 128-bit division (a call into compiler-builtins per
        // digit in Wasm), the rest, and every digit of a mantissa under 2^32, by 32-bit
        // division by 10 (a multiply).
        let mut m = self.mantissa;
        while m > u128::from(u32::MAX) {
            i -= 1;
            buf[i] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        let mut m = m as u32;
        loop {
            i -= 1;
            buf[i] = b'0' + (m % 10) as u8;
            m /= 10;
            if m == 0 {
                break;
            }
        }
        let digits = &buf[i..];
        let scale = self.scale as usize;
        if scale == 0 {
            out.extend_from_slice(digits);
        } else if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            out.extend_from_slice(int);
            out.push(b'.');
            out.extend_from_slice(frac);
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
            out.extend_from_slice(digits);
        }
    }

    /// The exact value as a rust_decimal `Decimal` (always representable).
    #[cfg(feature = "rating")]
    pub fn decimal(self) -> rust_decimal::Decimal {
        rust_decimal::Decimal::from_i128_with_scale(self.mantissa as i128, self.scale)
    }

    /// Builds from a decimal that is >= 0 and within range.
    #[cfg(feature = "rating")]
    pub fn from_decimal(d: rust_decimal::Decimal) -> Option<Self> {
        if d.is_sign_negative() && !d.is_zero() {
            return None;
        }
        Quantity::parse(&d.normalize().to_string()).ok()
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        let (pa, pb) = (pow10(self.scale), pow10(other.scale));
        let (ia, ib) = (self.mantissa / pa, other.mantissa / pb);
        ia.cmp(&ib).then_with(|| {
            // Fractions scaled to 28 places fit in u128 (< 10^28).
            let fa = (self.mantissa % pa) * pow10(MAX_SCALE - self.scale);
            let fb = (other.mantissa % pb) * pow10(MAX_SCALE - other.scale);
            fa.cmp(&fb)
        })
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_exponent_is_refused_not_overflowed() {
        // The ingest_body fuzz target's finding: an exponent of 20+ digits overflowed i64.
        for text in [
            "1e99999999999999999999",
            "1e-99999999999999999999999999",
            "7E+1234567890123456789",
        ] {
            assert_eq!(
                Quantity::parse(text),
                Err(QuantityError::NotANumber),
                "{text}"
            );
        }
    }

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
            (
                "79228162514264337593543950335",
                "79228162514264337593543950335",
            ),
            ("1.0000000000000000000000000000000000", "1"),
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
        assert_eq!(Quantity::parse("1e-29"), Err(QuantityError::OutOfRange));
        assert_eq!(
            Quantity::parse("79228162514264337593543950336"),
            Err(QuantityError::OutOfRange)
        );
    }

    #[test]
    fn ceil_units_rounds_partial_units_up() {
        assert_eq!(Quantity::parse("2.01").unwrap().ceil_units(), 3);
        assert_eq!(Quantity::parse("2").unwrap().ceil_units(), 2);
        assert_eq!(Quantity::ZERO.ceil_units(), 0);
    }

    #[test]
    fn text_is_the_same_on_either_side_of_32_bits() {
        // The reference: the mantissa's decimal digits, the point put in by hand.
        fn reference(mantissa: u128, scale: u32) -> String {
            let digits = mantissa.to_string();
            let scale = scale as usize;
            if scale == 0 {
                digits
            } else if digits.len() > scale {
                format!(
                    "{}.{}",
                    &digits[..digits.len() - scale],
                    &digits[digits.len() - scale..]
                )
            } else {
                format!("0.{}{digits}", "0".repeat(scale - digits.len()))
            }
        }
        let edge = u128::from(u32::MAX);
        for mantissa in [
            0,
            1,
            9,
            10,
            999_999_999,
            edge - 1,
            edge,
            edge + 1,
            edge * 10,
            MAX_MANTISSA,
        ] {
            for scale in [0, 1, 3, 9, 10, 28] {
                let q = Quantity { mantissa, scale };
                assert_eq!(
                    q.to_text(),
                    reference(mantissa, scale),
                    "{mantissa} scale {scale}"
                );
                let whole = mantissa / pow10(scale) + u128::from(mantissa % pow10(scale) != 0);
                assert_eq!(u128::from(q.ceil_units()), whole.min(u128::from(u64::MAX)));
            }
        }
    }

    #[test]
    fn sums_are_exact() {
        let q = |s| Quantity::parse(s).unwrap();
        assert_eq!(q("0.1").checked_add(q("0.2")), Some(q("0.3")));
        assert_eq!(q("1.5").checked_add(q("2.5")).unwrap().to_string(), "4");
        assert_eq!(q("79228162514264337593543950335").checked_add(q("1")), None);
    }

    #[test]
    fn order_is_numeric() {
        let q = |s| Quantity::parse(s).unwrap();
        assert!(q("2.5") < q("10"));
        assert!(q("0.0001") < q("0.001"));
        assert!(q("1.25") > q("1.2"));
        assert_eq!(q("1.50"), q("1.5"));
        assert_eq!(q("1.50").cmp(&q("1.5")), Ordering::Equal);
    }

    #[cfg(feature = "rating")]
    #[test]
    fn converts_exactly_to_rust_decimal() {
        for t in [
            "0",
            "1",
            "2.5",
            "0.1234567890123456789012345678",
            "79228162514264337593543950335",
        ] {
            let q = Quantity::parse(t).unwrap();
            assert_eq!(q.decimal().to_string(), t);
            assert_eq!(Quantity::from_decimal(q.decimal()), Some(q));
        }
    }
}
