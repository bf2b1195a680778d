//! The billing pipeline, stage by stage, with worked examples from public billing docs (the
//! source named beside each), and properties that hold for any plan and terms.

use super::*;
use crate::environment::Environment;
use crate::event::{Quantity, UsageEvent};
use crate::time::{parse_rfc3339, Timestamp};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn plan(v: Value) -> Plan {
    Plan::from_json(v.to_string().as_bytes()).unwrap()
}

fn terms(v: Value) -> Terms {
    let text = json!({"customers": [v]}).to_string();
    Terms::list_from_json(text.as_bytes()).unwrap().remove(0)
}

fn ev(n: usize, customer: &str, metric: &str, q: &str) -> UsageEvent {
    UsageEvent {
        id: format!("e{n}"),
        customer_id: customer.into(),
        metric: metric.into(),
        quantity: Quantity::parse(q).unwrap(),
        timestamp: Timestamp::from_unix_secs(1_773_576_000),
        product_id: "p".into(),
        environment: Environment::Production,
        properties: Map::new(),
    }
}

/// One invoice of customer `c` with `events` (`(metric, quantity)`) on `terms`.
fn bill(p: &Plan, t: Option<Terms>, events: &[(&str, &str)]) -> Invoice {
    let mut r = Rater::new(p.clone());
    if let Some(t) = t {
        r.subscribe(t);
    }
    for (i, (m, q)) in events.iter().enumerate() {
        r.add(&ev(i, "c", m, q));
    }
    let mut all = r.invoices().unwrap();
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn line(i: &Invoice, charge: &str) -> String {
    i.lines
        .iter()
        .find(|l| l.charge == charge)
        .unwrap()
        .amount
        .to_string()
}

fn c(extra: Value) -> Value {
    let mut t = json!({"id": "c", "environment": "production"});
    for (k, v) in extra.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

#[test]
fn the_minimum_applies_after_the_discounts() {
    // Orb, invoice calculation examples, example 2: $0.10 per compute hour, 200 hours, 10%
    // discount, $50 minimum, $500 maximum: 20.00 → 18.00 → 50.00 (the minimum first would
    // give 45.00).
    let p = plan(
        json!({"currency": "USD", "charges": [{"id": "compute", "metric": "hours",
        "model": "unit", "unit_amount": "0.10", "adjustments": [
            {"type": "maximum", "amount": "500"}, {"type": "percentage_discount", "percent": "10"},
            {"type": "minimum", "amount": "50"}]}]}),
    );
    let i = bill(&p, None, &[("hours", "200")]);
    assert_eq!(line(&i, "compute"), "50.00");
    assert_eq!(
        i.lines[0].rated.map(|r| r.to_string()),
        Some("20.00".into())
    );
}

#[test]
fn discounts_apply_in_orbs_order_whatever_the_list_says() {
    // Orb, adjustments: usage discount before pricing, then amount, then percent.
    // $1 × (100 − 10) = 90 → 85 → 76.50 (percent before amount would give 76.00).
    let adj = json!([{"type": "percentage_discount", "percent": "10"},
        {"type": "amount_discount", "amount": "5"}, {"type": "usage_discount", "quantity": "10"}]);
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "u", "metric": "m", "model": "unit", "unit_amount": "1", "adjustments": adj},
        {"id": "g", "metric": "m", "model": "graduated", "adjustments": adj, "tiers": [
            {"up_to": "50", "unit_amount": "1"}, {"unit_amount": "0.5"}]}]}));
    let i = bill(&p, None, &[("m", "100")]);
    assert_eq!(line(&i, "u"), "76.50");
    // Graduated over 90 units: 50 + 40 × 0.5 = 70 → 65 → 58.50.
    assert_eq!(line(&i, "g"), "58.50");
    assert_eq!(i.stages[4].detail["u"], "-13.50");
}

#[test]
fn exclusive_tax_is_added_on_the_total() {
    // Orb, invoice calculation examples, example 1: 150,000 calls over three graduated tiers
    // = 107.00, 8% tax = 8.56, total 115.56.
    let p = plan(
        json!({"currency": "USD", "tax_rate_percent": "8", "charges": [
        {"id": "calls", "metric": "calls", "model": "graduated", "tiers": [
            {"up_to": "10000", "unit_amount": "0.001"}, {"up_to": "100000", "unit_amount": "0.0008"},
            {"unit_amount": "0.0005"}]}]}),
    );
    let i = bill(&p, None, &[("calls", "150000")]);
    assert_eq!(
        (
            i.subtotal.as_str(),
            i.tax.as_str(),
            i.total.as_str(),
            i.amount_due.as_str()
        ),
        ("107.00", "8.56", "115.56", "115.56")
    );
}

#[test]
fn coupons_come_off_before_tax_and_credits_after() {
    // Lago: coupons are deducted before tax, prepaid credits after tax. $50 plan + $20 usage,
    // a $10 coupon, 10% tax, $30 of credits: 60.00 + 6.00 = 66.00, 36.00 due. (Orb takes
    // credits before tax: 70 − 10 − 30 = 30, tax 3, due 33.)
    let p = plan(
        json!({"currency": "USD", "tax_rate_percent": "10", "charges": [
        {"id": "plan", "model": "flat", "amount": "50"},
        {"id": "usage", "metric": "m", "model": "unit", "unit_amount": "1"}]}),
    );
    let t = c(json!({"coupons": [{"id": "welcome", "amount_off": "10"}], "prepaid_credits": "30"}));
    let i = bill(&p, Some(terms(t)), &[("m", "20")]);
    assert_eq!(
        (
            i.subtotal.as_str(),
            i.discounts.as_str(),
            i.tax.as_str(),
            i.total.as_str(),
            i.credits_applied.as_str(),
            i.credits_remaining.as_str(),
            i.amount_due.as_str()
        ),
        ("70.00", "10.00", "6.00", "66.00", "30.00", "0.00", "36.00")
    );
    // A wallet of 100: 66 used, 34 left, nothing due.
    let t =
        c(json!({"coupons": [{"id": "welcome", "amount_off": "10"}], "prepaid_credits": "100"}));
    let i = bill(&p, Some(terms(t)), &[("m", "20")]);
    assert_eq!(
        (
            i.credits_applied.as_str(),
            i.credits_remaining.as_str(),
            i.amount_due.as_str()
        ),
        ("66.00", "34.00", "0.00")
    );
}

#[test]
fn inclusive_tax_is_backed_out_of_the_total() {
    // Stripe: €600 with 10% inclusive tax stays €600; tax = 600 × 10 / 110 = 54.55.
    let p = plan(
        json!({"currency": "EUR", "tax_rate_percent": "10", "tax_behavior": "inclusive",
        "charges": [{"id": "plan", "model": "flat", "amount": "600"}]}),
    );
    let i = bill(&p, Some(terms(c(json!({})))), &[]);
    assert_eq!(
        (i.tax.as_str(), i.total.as_str(), i.amount_due.as_str()),
        ("54.55", "600.00", "600.00")
    );
    assert!(i.tax_inclusive);
    // The customer's own rate wins over the plan's.
    let i = bill(&p, Some(terms(c(json!({"tax_rate_percent": "20"})))), &[]);
    assert_eq!(i.tax, "100.00");
}

#[test]
fn coupons_apply_in_order_for_their_periods() {
    let p = plan(
        json!({"currency": "USD", "charges": [{"id": "plan", "model": "flat", "amount": "100"}]}),
    );
    let due = |coupons: Value| bill(&p, Some(terms(c(json!({"coupons": coupons})))), &[]).total;
    // 10% then $10: 90 → 80; $10 then 10%: 90 → 81 (Lago: applied first, deducted first).
    assert_eq!(
        due(json!([{"id": "p", "percent_off": "10"}, {"id": "a", "amount_off": "10"}])),
        "80.00"
    );
    assert_eq!(
        due(json!([{"id": "a", "amount_off": "10"}, {"id": "p", "percent_off": "10"}])),
        "81.00"
    );
    // Larger than the invoice: the excess is dropped (Stripe); never below zero.
    assert_eq!(due(json!([{"id": "big", "amount_off": "250"}])), "0.00");
    // Once: the first period only; repeating 3: the first three; forever: always.
    assert_eq!(
        due(json!([{"id": "o", "amount_off": "10", "duration": "once", "periods_used": 1}])),
        "100.00"
    );
    assert_eq!(
        due(
            json!([{"id": "r", "amount_off": "10", "duration": "repeating", "periods": 3, "periods_used": 2}])
        ),
        "90.00"
    );
    assert_eq!(
        due(
            json!([{"id": "r", "amount_off": "10", "duration": "repeating", "periods": 3, "periods_used": 3}])
        ),
        "100.00"
    );
    assert_eq!(
        due(json!([{"id": "f", "percent_off": "25", "duration": "forever", "periods_used": 40}])),
        "75.00"
    );
}

#[test]
fn flat_fees_are_prorated_by_the_days_the_subscription_covers() {
    // Lago, assign a plan: $50 monthly from August 10th: 22 × 50 / 31 = 35.48.
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "plan", "model": "flat", "amount": "50", "proration": "by_duration"},
        {"id": "support", "model": "flat", "amount": "10"}]}));
    let mut r = Rater::new(p.clone());
    r.set_period(
        parse_rfc3339("2026-08-01T00:00:00Z").unwrap(),
        parse_rfc3339("2026-09-01T00:00:00Z").unwrap(),
    );
    r.subscribe(terms(c(
        json!({"service_period": {"start": "2026-08-10T00:00:00Z", "end": "2026-09-01T00:00:00Z"}}),
    )));
    let i = r.invoices().unwrap().remove(0);
    assert_eq!(line(&i, "plan"), "35.48");
    assert_eq!(
        line(&i, "support"),
        "10.00",
        "only charges that ask are prorated"
    );
    // A leap February: $29 for Feb 20 to Mar 1 of 2028 is 10 of 29 days.
    let p = plan(
        json!({"currency": "USD", "charges": [{"id": "plan", "model": "flat", "amount": "29", "proration": "by_duration"}]}),
    );
    let mut r = Rater::new(p);
    r.set_period(
        parse_rfc3339("2028-02-01T00:00:00Z").unwrap(),
        parse_rfc3339("2028-03-01T00:00:00Z").unwrap(),
    );
    r.subscribe(terms(c(
        json!({"service_period": {"start": "2028-02-20T00:00:00Z", "end": "2028-04-01T00:00:00Z"}}),
    )));
    assert_eq!(line(&r.invoices().unwrap()[0], "plan"), "10.00");
}

#[test]
fn a_customer_without_events_is_invoiced_its_fees() {
    // OpenMeter's graduated calculator ("if there's no usage in the first tier we need to bill
    // the flat fee regardless") and Lago PR 5760: the first tier's flat fee at zero usage.
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "platform", "model": "flat", "amount": "49"},
        {"id": "api", "metric": "calls", "model": "graduated", "tiers": [
            {"up_to": "5", "flat_amount": "100"}, {"up_to": "10", "flat_amount": "50"},
            {"up_to": "15", "unit_amount": "10"}, {"unit_amount": "5"}]}]}));
    let i = bill(&p, Some(terms(c(json!({})))), &[]);
    assert_eq!(
        (line(&i, "platform"), line(&i, "api"), i.total.clone()),
        ("49.00".into(), "100.00".into(), "149.00".to_string())
    );
    assert_eq!(i.stages[0].detail["events"], 0);
}

#[test]
fn unused_included_units_roll_over_up_to_the_cap() {
    // Autumn, rollovers: 1,000 included, 600 used, at most 300 carried: 300 out; the next
    // period has 1,300 included: 1,500 used bills 200.
    let p = plan(
        json!({"currency": "USD", "charges": [{"id": "api", "metric": "m", "model": "unit",
        "unit_amount": "0.01", "included": "1000", "rollover": {"max": "300"}}]}),
    );
    let i = bill(&p, Some(terms(c(json!({})))), &[("m", "600")]);
    assert_eq!(
        i.lines[0].rollover_out.map(|d| d.to_string()),
        Some("300".into())
    );
    let i = bill(
        &p,
        Some(terms(c(json!({"rollover_in": {"api": "300"}})))),
        &[("m", "1500")],
    );
    assert_eq!(line(&i, "api"), "2.00");
    assert_eq!(i.stages[1].detail["api"], json!({"in": "300", "out": "0"}));
}

#[test]
fn margin_below_the_floor_is_flagged() {
    // 3,500 units at 0.02 with a cost of 0.008 each: revenue 70.00, cost 28.00, margin 60%.
    let p = plan(
        json!({"currency": "USD", "min_margin_percent": "50", "charges": [{"id": "llm",
        "metric": "tokens", "model": "unit", "unit_amount": "0.02", "unit_cost": "0.008"}]}),
    );
    let i = bill(&p, None, &[("tokens", "3500")]);
    assert_eq!(
        (i.cost.as_deref(), i.margin_percent.as_deref()),
        (Some("28.00"), Some("60"))
    );
    assert!(i.flags.is_empty());
    // The customer asks for 65%: flagged.
    let i = bill(
        &p,
        Some(terms(c(json!({"min_margin_percent": "65"})))),
        &[("tokens", "3500")],
    );
    assert_eq!(i.flags.len(), 1);
    assert_eq!(i.flags[0].code, "margin_guard");
}

#[test]
fn terms_and_adjustments_refuse_what_they_cannot_mean() {
    let bad_plan = |charge: Value| {
        Plan::from_json(
            json!({"currency": "USD", "charges": [charge]})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(bad_plan(json!({"id": "a", "metric": "m", "model": "unit", "unit_amount": "1", "proration": "by_duration"})).contains("flat fees only"));
    assert!(bad_plan(json!({"id": "a", "metric": "m", "model": "unit", "unit_amount": "1", "rollover": {"max": "1"}})).contains("set included"));
    assert!(bad_plan(json!({"id": "a", "model": "flat", "amount": "1", "minimum": "1", "adjustments": [{"type": "minimum", "amount": "2"}]})).contains("given twice"));
    assert!(bad_plan(json!({"id": "a", "model": "flat", "amount": "1", "adjustments": [{"type": "amount_discount", "amount": "1"}, {"type": "amount_discount", "amount": "2"}]})).contains("given twice"));
    assert!(bad_plan(json!({"id": "a", "model": "flat", "amount": "1", "adjustments": [{"type": "percentage_discount", "percent": "101"}]})).contains("0..=100"));
    let bad_terms = |v: Value| {
        Terms::list_from_json(json!({"customers": [v]}).to_string().as_bytes())
            .unwrap_err()
            .to_string()
    };
    assert!(bad_terms(
        json!({"id": "c", "coupons": [{"id": "x", "percent_off": "5", "amount_off": "1"}]})
    )
    .contains("exactly one"));
    assert!(bad_terms(
        json!({"id": "c", "coupons": [{"id": "x", "amount_off": "1", "duration": "repeating"}]})
    )
    .contains("periods"));
    assert!(bad_terms(json!({"id": "c", "service_period": {"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}})).contains("after start"));
    assert!(bad_terms(json!({"id": "c", "tax": "5"})).contains("tax"));
}

proptest! {
    /// Whatever the usage, terms and plan: the stages run 1 to 10 in order; the total is the
    /// rounded lines plus the true-up, less the coupons, plus exclusive tax; what is due is the
    /// total less the credits; nothing is negative.
    #[test]
    fn the_totals_are_the_sum_of_the_rounded_parts(
        q in 0u64..5_000,
        unit in 0u64..500,
        minimum in 0u64..200,
        pct in 0u64..=100,
        coupon in 0u64..80,
        tax in 0u64..30,
        credits in 0u64..100,
        inclusive in any::<bool>(),
    ) {
        let p = plan(json!({"currency": "USD", "minimum": minimum.to_string(),
            "tax_rate_percent": tax.to_string(), "tax_behavior": if inclusive { "inclusive" } else { "exclusive" },
            "charges": [
                {"id": "plan", "model": "flat", "amount": "9.99"},
                {"id": "api", "metric": "m", "model": "unit", "unit_amount": format!("0.{unit:03}"),
                 "adjustments": [{"type": "percentage_discount", "percent": pct.to_string()}]}]}));
        let t = c(json!({"coupons": [{"id": "k", "amount_off": coupon.to_string()}], "prepaid_credits": credits.to_string()}));
        let i = bill(&p, Some(terms(t)), &[("m", &q.to_string())]);
        let n = |s: &str| s.parse::<rust_decimal::Decimal>().unwrap();
        let lines: rust_decimal::Decimal = i.lines.iter().map(|l| l.amount).sum();
        prop_assert_eq!(n(&i.subtotal), lines);
        let net = n(&i.subtotal) + n(&i.minimum_true_up) - n(&i.discounts);
        let total = if inclusive { net } else { net + n(&i.tax) };
        prop_assert_eq!(n(&i.total), total);
        prop_assert_eq!(n(&i.amount_due), n(&i.total) - n(&i.credits_applied));
        prop_assert!(n(&i.amount_due) >= rust_decimal::Decimal::ZERO);
        let order: Vec<u8> = i.stages.iter().map(|s| s.stage).collect();
        prop_assert_eq!(order, (1..=10).collect::<Vec<u8>>());
        prop_assert_eq!(i.stages[9].amount.clone(), Some(i.amount_due.clone()));
    }

    /// Adding an event never lowers the total of a plan without volume pricing.
    #[test]
    fn more_usage_never_costs_less(q in 0u64..20_000, extra in 1u64..500) {
        let p = plan(json!({"currency": "USD", "charges": [
            {"id": "g", "metric": "m", "model": "graduated", "tiers": [
                {"up_to": "100", "unit_amount": "0.5", "flat_amount": "3"}, {"unit_amount": "0.1", "flat_amount": "2"}]},
            {"id": "p", "metric": "m", "model": "package", "package_size": "50", "package_amount": "4"}]}));
        let before = bill(&p, None, &[("m", &q.to_string())]).total.parse::<f64>().unwrap();
        let after = bill(&p, None, &[("m", &q.to_string()), ("m", &extra.to_string())]).total.parse::<f64>().unwrap();
        prop_assert!(after >= before);
    }
}
