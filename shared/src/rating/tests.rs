//! Plan-level rating: adjustments, aggregations, currencies, zero usage, and properties.

use super::*;
use crate::environment::Environment;
use crate::event::{Quantity, UsageEvent};
use crate::time::Timestamp;
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use std::str::FromStr;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn plan(v: Value) -> Plan {
    Plan::from_json(v.to_string().as_bytes()).unwrap()
}

fn ev(id: &str, customer: &str, metric: &str, q: &str, props: Value) -> UsageEvent {
    let properties: Map<String, Value> = props.as_object().cloned().unwrap_or_default();
    UsageEvent {
        id: id.into(),
        customer_id: customer.into(),
        metric: metric.into(),
        quantity: Quantity::parse(q).unwrap(),
        timestamp: Timestamp::from_unix_secs(1_773_576_000 + id.len() as i64),
        product_id: "p".into(),
        environment: Environment::Production,
        properties,
    }
}

fn invoice(p: &Plan, events: &[UsageEvent]) -> Invoice {
    let mut r = Rater::new(p.clone());
    for e in events {
        r.add(e);
    }
    let mut all = r.invoices().unwrap();
    assert_eq!(all.len(), 1, "one customer expected");
    all.remove(0)
}

fn amounts(i: &Invoice) -> Vec<String> {
    i.lines.iter().map(|l| l.amount.to_string()).collect()
}

#[test]
fn plan_minimum_is_topped_up_at_the_end() {
    // Lago (minimum commitment): $50 subscription + 3 × $10 = $80, commitment $100 → $20 true-up.
    let p = plan(json!({"currency": "USD", "minimum": "100", "charges": [
        {"id": "sub", "model": "flat", "amount": "50"},
        {"id": "seats", "metric": "seats", "model": "unit", "unit_amount": "10"}
    ]}));
    let i = invoice(&p, &[ev("a", "c", "seats", "3", json!({}))]);
    assert_eq!(
        (
            i.subtotal.as_str(),
            i.minimum_true_up.as_str(),
            i.total.as_str()
        ),
        ("80.00", "20.00", "100.00")
    );
    // Above the commitment there is no true-up.
    let i = invoice(&p, &[ev("a", "c", "seats", "7", json!({}))]);
    assert_eq!(
        (i.minimum_true_up.as_str(), i.total.as_str()),
        ("0.00", "120.00")
    );
}

#[test]
fn charge_minimum_and_maximum() {
    // OpenMeter unit_test.go: unit $10, minimum $100, no usage → $100;
    // unit $10, maximum $100, 12 units → $100.
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "min", "metric": "m", "model": "unit", "unit_amount": "10", "minimum": "100"},
        {"id": "max", "metric": "n", "model": "unit", "unit_amount": "10", "maximum": "100"}
    ]}));
    let i = invoice(&p, &[ev("a", "c", "n", "12", json!({}))]);
    assert_eq!(amounts(&i), vec!["100.00", "100.00"]);
    // Lago spending minimum: $0.010 per unit, minimum $100, usage $50 → line raised to $100.
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "mtu", "metric": "mtu", "model": "unit", "unit_amount": "0.010", "minimum": "100"}
    ]}));
    assert_eq!(
        amounts(&invoice(&p, &[ev("a", "c", "mtu", "5000", json!({}))])),
        vec!["100.00"]
    );
}

#[test]
fn the_order_of_adjustments_is_free_units_model_minimum_maximum_rounding() {
    // 1,000 included, then graduated; the minimum applies after pricing, then the cap, then rounding.
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "g", "metric": "m", "model": "graduated", "included": "1000", "minimum": "1", "maximum": "2.345",
         "tiers": [{"up_to": "10", "unit_amount": "0.1"}, {"up_to": null, "unit_amount": "0.2"}]}
    ]}));
    // 1,005 used → 5 billable → 0.50 (above the minimum, below the cap).
    assert_eq!(
        amounts(&invoice(&p, &[ev("a", "c", "m", "1005", json!({}))])),
        vec!["1.00"]
    );
    // 1,000 used → 0 billable → raised to the minimum 1.00.
    assert_eq!(
        amounts(&invoice(&p, &[ev("a", "c", "m", "1000", json!({}))])),
        vec!["1.00"]
    );
    // 1,020 used → 20 billable → 1 + 2 = 3 → capped at 2.345 → rounded half-up 2.35.
    assert_eq!(
        amounts(&invoice(&p, &[ev("a", "c", "m", "1020", json!({}))])),
        vec!["2.35"]
    );
}

#[test]
fn package_with_free_units_on_an_invoice() {
    // Lago docs: $5 per 100 units, first 100 free, 201 units → $10.
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "pkg", "metric": "calls", "model": "package", "package_size": 100, "package_amount": 5, "included": 100}
    ]}));
    assert_eq!(
        amounts(&invoice(&p, &[ev("a", "c", "calls", "201", json!({}))])),
        vec!["10.00"]
    );
}

#[test]
fn zero_usage_for_every_model() {
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "flat", "model": "flat", "amount": "9.99"},
        {"id": "unit", "metric": "m", "model": "unit", "unit_amount": "1"},
        {"id": "package", "metric": "m", "model": "package", "package_size": "10", "package_amount": "1"},
        {"id": "graduated", "metric": "m", "model": "graduated", "tiers": [{"up_to": "5", "flat_amount": "100"}, {"up_to": null, "unit_amount": "1"}]},
        {"id": "volume", "metric": "m", "model": "volume", "tiers": [{"up_to": "5", "flat_amount": "100"}, {"up_to": null, "unit_amount": "1"}]},
        {"id": "stairstep", "metric": "m", "model": "stairstep", "tiers": [{"up_to": "5", "flat_amount": "50"}, {"up_to": null, "flat_amount": "90"}]},
        {"id": "percentage", "metric": "m", "model": "percentage", "rate": "2", "property": "amount", "fixed_amount": "0.3"}
    ]}));
    let mut r = Rater::new(p.clone());
    r.add_customer(Environment::Production, "idle");
    let i = r.invoices().unwrap().remove(0);
    // Flat fees and first-tier flat fees are billed at zero usage (OpenMeter, Lago since 2026-07);
    // stairstep and package cost nothing without usage.
    assert_eq!(
        amounts(&i),
        vec!["9.99", "0.00", "0.00", "100.00", "100.00", "0.00", "0.00"]
    );
    assert_eq!(i.total, "209.99");
}

#[test]
fn aggregations_sum_count_max_unique() {
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "sum", "metric": "gb", "model": "unit", "unit_amount": "1"},
        {"id": "count", "metric": "gb", "aggregation": "count", "model": "unit", "unit_amount": "1"},
        {"id": "max", "metric": "gb", "aggregation": "max", "model": "unit", "unit_amount": "1"},
        {"id": "users", "metric": "gb", "aggregation": "unique_count", "property": "user", "model": "unit", "unit_amount": "1"}
    ]}));
    let events = [
        ev("a", "c", "gb", "1.5", json!({"user": "u1"})),
        ev("bb", "c", "gb", "4", json!({"user": "u2"})),
        ev("ccc", "c", "gb", "2", json!({"user": "u1"})),
        ev("dddd", "c", "gb", "0.5", json!({})),
    ];
    let i = invoice(&p, &events);
    let q: Vec<String> = i.lines.iter().map(|l| l.quantity.to_string()).collect();
    assert_eq!(q, vec!["8", "4", "4", "2"]);
    assert_eq!(
        i.lines[3].skipped_events, 1,
        "the event without a user is reported, not hidden"
    );
}

#[test]
fn each_line_is_rounded_to_the_currency_then_summed() {
    // Stripe decimal amounts: 0.05¢ × 30 = 1.5¢ → 2¢ per line; two such lines → 4¢, not 3¢.
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "a", "metric": "m", "model": "unit", "unit_amount": "0.0005"},
        {"id": "b", "metric": "m", "model": "unit", "unit_amount": "0.0005"}
    ]}));
    let i = invoice(&p, &[ev("a", "c", "m", "30", json!({}))]);
    assert_eq!(i.total, "0.04");
    let jpy = plan(
        json!({"currency": "JPY", "charges": [{"id": "a", "metric": "m", "model": "unit", "unit_amount": "0.5"}]}),
    );
    assert_eq!(
        invoice(&jpy, &[ev("a", "c", "m", "3", json!({}))]).total,
        "2"
    );
    let bhd = plan(
        json!({"currency": "BHD", "charges": [{"id": "a", "metric": "m", "model": "unit", "unit_amount": "0.0005"}]}),
    );
    assert_eq!(
        invoice(&bhd, &[ev("a", "c", "m", "3", json!({}))]).total,
        "0.002"
    );
}

#[test]
fn percentage_on_an_invoice_uses_event_order() {
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "fees", "metric": "payments", "model": "percentage", "property": "amount",
         "rate": "1.2", "fixed_amount": "0.10", "free_events": 3, "free_amount": "500"}
    ]}));
    let events = [
        ev("a", "c", "payments", "1", json!({"amount": 200})),
        ev("bb", "c", "payments", "1", json!({"amount": "100"})),
        ev("ccc", "c", "payments", "1", json!({"amount": 100})),
        ev("dddd", "c", "payments", "1", json!({"amount": 50})),
    ];
    let i = invoice(&p, &events);
    assert_eq!(amounts(&i), vec!["0.70"]);
    assert_eq!(i.lines[0].quantity, d("450"));
}

#[test]
fn customers_and_environments_get_separate_invoices() {
    let p = plan(
        json!({"currency": "USD", "charges": [{"id": "u", "metric": "m", "model": "unit", "unit_amount": "1"}]}),
    );
    let mut sandbox = ev("s", "c1", "m", "5", json!({}));
    sandbox.environment = Environment::Sandbox;
    let mut r = Rater::new(p.clone());
    for e in [
        ev("a", "c1", "m", "2", json!({})),
        ev("b", "c2", "m", "3", json!({})),
        sandbox,
    ] {
        r.add(&e);
    }
    let got: Vec<(String, String, String)> = r
        .invoices()
        .unwrap()
        .into_iter()
        .map(|i| (i.environment.to_string(), i.customer_id, i.total))
        .collect();
    assert_eq!(
        got,
        vec![
            ("sandbox".into(), "c1".into(), "5.00".into()),
            ("production".into(), "c1".into(), "2.00".into()),
            ("production".into(), "c2".into(), "3.00".into()),
        ]
    );
}

fn tier_plan() -> Vec<Tier> {
    vec![
        Tier {
            up_to: Some(d("5")),
            unit_amount: d("7"),
            flat_amount: d("3"),
        },
        Tier {
            up_to: Some(d("10.5")),
            unit_amount: d("6.5"),
            flat_amount: d("1"),
        },
        Tier {
            up_to: None,
            unit_amount: d("0.25"),
            flat_amount: d("0"),
        },
    ]
}

proptest! {
    #[test]
    fn graduated_and_package_never_decrease(a in 0u64..100_000, b in 0u64..100_000, scale in 0u32..3) {
        let (lo, hi) = (a.min(b), a.max(b));
        let (lo, hi) = (Decimal::new(lo as i64, scale), Decimal::new(hi as i64, scale));
        let t = tier_plan();
        prop_assert!(graduated(lo, &t) <= graduated(hi, &t));
        prop_assert!(package(lo, d("7"), d("3")) <= package(hi, d("7"), d("3")));
    }

    #[test]
    fn rating_is_the_same_twice_and_with_duplicates_removed(quantities in proptest::collection::vec(0u32..1000, 1..40), dup_every in 1usize..5) {
        let p = plan(json!({"currency": "USD", "minimum": "10", "charges": [
            {"id": "g", "metric": "m", "model": "graduated", "tiers": [{"up_to": "100", "unit_amount": "0.013"}, {"up_to": null, "unit_amount": "0.007"}]},
            {"id": "v", "metric": "m", "model": "volume", "tiers": [{"up_to": "100", "unit_amount": "0.02"}, {"up_to": null, "unit_amount": "0.01"}]}
        ]}));
        let events: Vec<UsageEvent> = quantities.iter().enumerate().map(|(i, q)| ev(&format!("e{i}"), "c", "m", &q.to_string(), json!({}))).collect();
        // The same events with duplicates sent again, deduplicated as the ingest does.
        let mut with_dups = events.clone();
        with_dups.extend(events.iter().step_by(dup_every).cloned());
        let mut seen = std::collections::HashSet::new();
        let deduped: Vec<UsageEvent> = with_dups.into_iter().filter(|e| seen.insert(e.id.clone())).collect();
        let once = invoice(&p, &events);
        prop_assert_eq!(&once, &invoice(&p, &events));
        prop_assert_eq!(&once, &invoice(&p, &deduped));
    }
}

#[test]
fn volume_totals_can_decrease_and_that_is_documented() {
    // OpenMeter tieredvolume_test.go: 15 units → 150, 16 units → 80.
    let t = vec![
        Tier {
            up_to: Some(d("5")),
            unit_amount: d("0"),
            flat_amount: d("100"),
        },
        Tier {
            up_to: Some(d("10")),
            unit_amount: d("0"),
            flat_amount: d("150"),
        },
        Tier {
            up_to: Some(d("15")),
            unit_amount: d("10"),
            flat_amount: d("0"),
        },
        Tier {
            up_to: None,
            unit_amount: d("5"),
            flat_amount: d("0"),
        },
    ];
    assert!(volume(d("16"), &t).unwrap() < volume(d("15"), &t).unwrap());
}

#[test]
fn prices_per_model_rate_each_model_at_its_price_and_show_unpriced_models() {
    // LLM list prices per million tokens: gpt-4o input $2.50, gpt-4o-mini input $0.15.
    let p = plan(json!({"currency": "USD", "charges": [
        {"id": "input", "metric": "input_tokens", "model": "unit", "dimension": "model", "prices": {
            "gpt-4o": {"unit_amount": "0.0000025"},
            "gpt-4o-mini": {"unit_amount": "0.00000015"}
        }},
        {"id": "batch", "metric": "output_tokens", "model": "unit", "unit_amount": "0.00001",
         "filter": {"model": ["gpt-4o", "gpt-4o-mini"], "tier": "batch"}}
    ]}));
    let ids: Vec<&str> = p.charges.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec!["input:gpt-4o", "input:gpt-4o-mini", "batch"]);
    let events = [
        ev(
            "a",
            "c",
            "input_tokens",
            "1200000",
            json!({"model": "gpt-4o"}),
        ),
        ev(
            "bb",
            "c",
            "input_tokens",
            "800000",
            json!({"model": "gpt-4o"}),
        ),
        ev(
            "ccc",
            "c",
            "input_tokens",
            "3333333",
            json!({"model": "gpt-4o-mini"}),
        ),
        // A model the plan does not price: counted on the invoice, never free.
        ev("dddd", "c", "input_tokens", "5000", json!({"model": "o3"})),
        ev("eeeee", "c", "input_tokens", "5000", json!({})),
        ev(
            "ffffff",
            "c",
            "output_tokens",
            "1000",
            json!({"model": "gpt-4o", "tier": "batch"}),
        ),
        ev(
            "ggggggg",
            "c",
            "output_tokens",
            "1000",
            json!({"model": "gpt-4o"}),
        ),
    ];
    let i = invoice(&p, &events);
    // 2,000,000 × 0.0000025 = 5.00; 3,333,333 × 0.00000015 = 0.49999995 → 0.50; 1000 × 0.00001 = 0.01.
    assert_eq!(amounts(&i), vec!["5.00", "0.50", "0.01"]);
    let skipped: Vec<u64> = i.lines.iter().map(|l| l.skipped_events).collect();
    assert_eq!(skipped, vec![2, 0, 1]);
    // Every way to get it wrong is named.
    for (bad, path) in [
        (
            json!({"id": "x", "metric": "m", "model": "unit", "dimension": "model"}),
            "charges[0].prices",
        ),
        (
            json!({"id": "x", "metric": "m", "model": "unit", "unit_amount": "1", "prices": {"a": {}}}),
            "charges[0].prices",
        ),
        (
            json!({"id": "x", "metric": "m", "model": "unit", "dimension": "model", "prices": {"a": {"metric": "n", "unit_amount": "1"}}}),
            "charges[0].prices.a.metric",
        ),
        (
            json!({"id": "x", "metric": "m", "model": "unit", "dimension": "model", "prices": {"gpt 4": {"unit_amount": "1"}}}),
            "charges[0].prices.gpt 4.id",
        ),
        (
            json!({"id": "x", "metric": "m", "model": "unit", "unit_amount": "1", "filter": ["gpt-4o"]}),
            "charges[0].filter",
        ),
    ] {
        let e = Plan::from_json(
            json!({"currency": "USD", "charges": [bad]})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(e.path, path, "{e}");
    }
}
