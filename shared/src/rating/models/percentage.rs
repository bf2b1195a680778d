//! Percentage (transaction) pricing: a rate on each event's amount plus a fixed fee per paid
//! event; the first `free_events` events are free, and events stay free while the running
//! total of amounts is within `free_amount` (both limits apply when both are set, Lago-style:
//! "first 3 events or $500, whichever comes first").

use rust_decimal::Decimal;

/// Totals of a percentage charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PercentageTotals {
    /// Sum of all amounts (shown as the line's quantity).
    pub amount_total: Decimal,
    /// What is charged.
    pub charge: Decimal,
}

/// Rates `amounts` (in event order).
pub fn percentage(
    amounts: &[Decimal],
    rate: Decimal,
    fixed_amount: Decimal,
    free_events: u64,
    free_amount: Option<Decimal>,
) -> Option<PercentageTotals> {
    let mut running = Decimal::ZERO;
    let mut total = Decimal::ZERO;
    let mut charge = Decimal::ZERO;
    let pct = rate.checked_div(Decimal::ONE_HUNDRED)?;
    for (i, a) in amounts.iter().enumerate() {
        running = running.checked_add(*a)?;
        total = total.checked_add(*a)?;
        let within_events = (i as u64) < free_events || (free_events == 0 && free_amount.is_some());
        let within_amount = free_amount.is_none_or(|f| running <= f);
        let free = (free_events > 0 || free_amount.is_some()) && within_events && within_amount;
        if !free {
            charge = charge
                .checked_add(a.checked_mul(pct)?)?
                .checked_add(fixed_amount)?;
        }
    }
    Some(PercentageTotals {
        amount_total: total,
        charge,
    })
}

#[cfg(test)]
mod tests {
    use super::super::d;
    use super::*;

    #[test]
    fn lago_percentage_example() {
        // Lago docs (percentage charge model): 1.2% + $0.10 per transaction, first 3 events
        // or $500 free; transactions 200, 100, 100, 50 → the 4th costs $0.10 + 1.2% × $50 = $0.70.
        let r = percentage(
            &[d("200"), d("100"), d("100"), d("50")],
            d("1.2"),
            d("0.10"),
            3,
            Some(d("500")),
        )
        .unwrap();
        assert_eq!(r.charge, d("0.70"));
        assert_eq!(r.amount_total, d("450"));
    }

    #[test]
    fn free_amount_alone_and_no_free_tier() {
        // Only $250 free: 200 is free, 100 pushes the running total to 300 → paid.
        let r = percentage(&[d("200"), d("100")], d("1"), d("0"), 0, Some(d("250"))).unwrap();
        assert_eq!(r.charge, d("1"));
        let r = percentage(&[d("100"), d("100")], d("2.5"), d("0.3"), 0, None).unwrap();
        assert_eq!(r.charge, d("5.6"));
        assert_eq!(
            percentage(&[], d("2.5"), d("0.3"), 0, None).unwrap().charge,
            d("0")
        );
    }
}
