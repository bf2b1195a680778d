//! Money: ISO 4217 minor units and half-up rounding of each invoice line.

use rust_decimal::{Decimal, RoundingStrategy};

/// Currencies whose minor unit is not 2 decimals (ISO 4217), and every active code.
const ZERO_DECIMALS: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
    "VUV", "XAF", "XOF", "XPF",
];
const THREE_DECIMALS: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
const FOUR_DECIMALS: &[&str] = &["CLF", "UYW"];
const TWO_DECIMALS: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR",
    "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF",
    "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK", "LBP",
    "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD",
    "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP",
    "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "UYU", "UZS", "VES", "WST", "XCD", "YER", "ZAR",
    "ZMW", "ZWL",
];

/// Decimal places of a currency's minor unit (USD 2, JPY 0, BHD 3); `None` for unknown codes.
pub fn minor_units(code: &str) -> Option<u32> {
    if ZERO_DECIMALS.contains(&code) {
        Some(0)
    } else if THREE_DECIMALS.contains(&code) {
        Some(3)
    } else if FOUR_DECIMALS.contains(&code) {
        Some(4)
    } else if TWO_DECIMALS.contains(&code) {
        Some(2)
    } else {
        None
    }
}

/// Rounds an amount half-up (away from zero at the midpoint) to `dp` decimals.
pub fn round_half_up(amount: Decimal, dp: u32) -> Decimal {
    amount.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero)
}

/// An amount written with exactly the currency's decimals (`10` → `10.00` for USD).
pub fn format_amount(amount: Decimal, dp: u32) -> String {
    let mut a = round_half_up(amount, dp);
    a.rescale(dp);
    a.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn minor_units_follow_iso_4217() {
        assert_eq!(minor_units("USD"), Some(2));
        assert_eq!(minor_units("JPY"), Some(0));
        assert_eq!(minor_units("BHD"), Some(3));
        assert_eq!(minor_units("EUR"), Some(2));
        assert_eq!(minor_units("usd"), None);
        assert_eq!(minor_units("XYZ"), None);
    }

    #[test]
    fn half_up_rounding_per_line() {
        // Stripe: 0.05¢ × 30 = 1.5¢ → 2¢.
        assert_eq!(round_half_up(d("0.0005") * d("30"), 2), d("0.02"));
        assert_eq!(round_half_up(d("0.004999"), 2), d("0.00"));
        assert_eq!(round_half_up(d("2.5"), 0), d("3"));
        assert_eq!(round_half_up(d("1.0005"), 3), d("1.001"));
        assert_eq!(format_amount(d("10"), 2), "10.00");
        assert_eq!(format_amount(d("1234.5"), 0), "1235");
        assert_eq!(format_amount(d("0.0015"), 3), "0.002");
    }
}
