//! Margin guards: a plan's `unit_cost` and `min_margin_percent` flag a customer whose margin
//! this month falls below the floor (a webhook, once), and with `margin_action: block` its
//! production requests are refused `margin_guard` until the margin is back; the sandbox is
//! never refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_host_tests::servers::WebhookReceiver;
use common::{body, catalog, code, Agent, ADMIN, LIVE, SANDBOX};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[test]
fn a_customer_below_the_margin_floor_is_flagged_then_refused_in_production_only() {
    let mut cat = catalog();
    cat["customers"]["initech"] = json!({"features": {"search": {"metric": "api_calls"}}});
    // Each call sells for 0.01 and costs 0.02: a margin of -100%.
    cat["plan"] = json!({"currency": "USD", "min_margin_percent": "20", "margin_action": "block",
        "charges": [{"id": "calls", "metric": "api_calls", "model": "unit", "unit_amount": "0.01", "unit_cost": "0.02"}]});
    let a = Agent::start(
        "margin",
        &cat,
        &[
            "--environments",
            "sandbox,production",
            "--tenant-keys",
            &format!("{LIVE},{SANDBOX}"),
            "--margin-check-interval-secs",
            "1",
        ],
    );
    let hooks = WebhookReceiver::start().unwrap();
    let r = a.call(
        "POST",
        "/v1/webhooks/endpoints?environment=production",
        ADMIN,
        &json!({"url": hooks.url(), "events": ["invoice.margin_flagged"]}),
    );
    assert_eq!(r.status, 201);
    let check = |key: &str| {
        a.call(
            "POST",
            "/v1/canAccess",
            key,
            &json!({"tenantId": "globex", "featureKey": "search"}),
        )
    };
    assert_eq!(check(LIVE).status, 200);
    let m = a.call(
        "POST",
        "/v1/meter",
        LIVE,
        &json!({"tenantId": "globex", "metricKey": "api_calls", "quantity": 10}),
    );
    assert_eq!(body(&m)["accepted"], 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let r = check(LIVE);
        if r.status == 403 {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "never refused: {} {}",
            r.status,
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code(&refused), "margin_guard");
    // acme has no usage this month: not refused; the sandbox never is.
    let r = a.call(
        "POST",
        "/v1/canAccess",
        LIVE,
        &json!({"tenantId": "acme", "featureKey": "search"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(check(SANDBOX).status, 200);
    // The gateways' snapshot says so too.
    let s = body(&a.call("GET", "/v1/entitlements", LIVE, &Value::Null));
    assert_eq!(s["customers"]["globex"]["margin_guard"], true);
    // One notice for the month.
    let got = hooks.wait_until(Duration::from_secs(20), |g| !g.is_empty());
    let n: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(n["type"], "invoice.margin_flagged");
    assert_eq!(
        (
            n["data"]["customer_id"].clone(),
            n["data"]["margin_percent"].clone(),
            n["data"]["blocked"].clone()
        ),
        (json!("globex"), json!("-100"), json!(true))
    );
    // Later checks do not send it again: initech going below the floor is noticed by a later
    // check, which rates customers in id order, so a second globex notice would be queued (and
    // delivered) before initech's.
    let m = a.call(
        "POST",
        "/v1/meter",
        LIVE,
        &json!({"tenantId": "initech", "metricKey": "api_calls"}),
    );
    assert_eq!(body(&m)["accepted"], 1);
    let got = hooks.wait_until(Duration::from_secs(20), |g| g.len() >= 2);
    let customers: Vec<String> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["data"]["customer_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        customers,
        ["globex", "initech"],
        "{:?}",
        got.iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect::<Vec<_>>()
    );
}
