//! Daily credit limits: every unit of every metered feature of a customer counts against its
//! credits for the UTC day; in production the request past the limit is refused with 429
//! `daily_credit_limit` and `Retry-After` to the next UTC midnight, in the agent and in Envoy
//! through the snapshot; in the sandbox it is tracked and never refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_host_tests::envoy::Envoy;
use aforo_host_tests::http1::Client;
use aforo_host_tests::servers::{wall_now, Upstream};
use common::gateway::{envoy_with_agent, wait_for_sync};
use common::{body, catalog, code, Agent, LIVE, SANDBOX};
use serde_json::{json, Value};

fn with_daily_limit() -> Value {
    let mut cat = catalog();
    cat["customers"]["globex"]["daily_credits"] = json!({"limit": 3});
    cat["customers"]["globex"]["features"]["export"] = json!({"metric": "exports"});
    cat["consumer_keys"].as_array_mut().unwrap().push(
        json!({"key_id": "globex-static", "key": "ck_static_globex_key", "customer_id": "globex"}),
    );
    cat
}

fn seconds_to_utc_midnight() -> i64 {
    let now = wall_now().unix_nanos() / 1_000_000_000;
    86_400 - now.rem_euclid(86_400)
}

fn check(a: &Agent, key: &str, feature: &str) -> aforo_host_tests::http1::Response {
    a.call(
        "POST",
        "/v1/canAccess",
        key,
        &json!({"apiKey": "ck_static_globex_key", "featureKey": feature}),
    )
}

/// globex as `GET /v1/customers` lists it for the key's environment.
fn globex_in_customers(a: &Agent, key: &str) -> Value {
    let c = body(&a.call("GET", "/v1/customers", key, &Value::Null));
    c["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["customer_id"] == "globex")
        .cloned()
        .unwrap_or_else(|| panic!("no globex in {c}"))
}

fn meter(a: &Agent, key: &str, metric: &str, quantity: u64) {
    let r = a.call(
        "POST",
        "/v1/meter",
        key,
        &json!({"tenantId": "globex", "metricKey": metric, "quantity": quantity}),
    );
    assert_eq!(
        (r.status, body(&r)["accepted"].clone()),
        (202, json!(1)),
        "{}",
        body(&r)
    );
}

#[test]
fn production_refuses_past_the_daily_limit_and_the_sandbox_only_counts() {
    let a = Agent::start(
        "daily",
        &with_daily_limit(),
        &[
            "--environments",
            "sandbox,production",
            "--tenant-keys",
            &format!("{LIVE},{SANDBOX}"),
        ],
    );
    // Two features, one customer: 2 + 1 units use the 3 credits.
    assert_eq!(check(&a, LIVE, "search").status, 200);
    meter(&a, LIVE, "api_calls", 2);
    assert_eq!(check(&a, LIVE, "export").status, 200);
    meter(&a, LIVE, "exports", 1);
    let r = check(&a, LIVE, "search");
    assert_eq!(
        (r.status, code(&r).as_str()),
        (429, "daily_credit_limit"),
        "{}",
        body(&r)
    );
    let retry: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((retry - seconds_to_utc_midnight()).abs() <= 2, "{retry}");
    let g = globex_in_customers(&a, LIVE);
    assert_eq!(
        (
            g["daily_credits"]["limit"].clone(),
            g["daily_credits"]["used"].clone(),
            g["daily_credits"]["remaining"].clone(),
            g["daily_credits"]["enforced"].clone()
        ),
        (json!(3), json!(3), json!(0), json!(true)),
        "{g}"
    );
    // The sandbox counts its own credits and never refuses.
    for _ in 0..5 {
        assert_eq!(check(&a, SANDBOX, "search").status, 200);
        meter(&a, SANDBOX, "api_calls", 1);
    }
    let g = globex_in_customers(&a, SANDBOX);
    assert_eq!(
        (
            g["daily_credits"]["used"].clone(),
            g["daily_credits"]["enforced"].clone()
        ),
        (json!(5), json!(false)),
        "{g}"
    );
}

#[test]
fn envoy_refuses_past_the_daily_limit_through_the_snapshot() {
    let a = Agent::start(
        "daily-envoy",
        &with_daily_limit(),
        &["--environments", "sandbox,production"],
    );
    let upstream = Upstream::start().unwrap();
    let config = json!({
        "api_key": LIVE,
        "product_id": "prod_daily",
        "ingest_url": a.url(),
        "ingest_cluster": "aforo_agent",
        "entitlements_url": format!("{}/v1/entitlements", a.url()),
        "entitlements_cluster": "aforo_agent",
        "sync_interval_ms": 300,
        "flush_interval_ms": 100,
        "routes": [
            {"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"},
            {"method": "GET", "path_prefix": "/v1/export", "feature": "export", "metric": "exports"}
        ]
    });
    let (yaml, port, admin) = envoy_with_agent(&config, a.port, upstream.port());
    let envoy = Envoy::start(&yaml, port, admin, 1).unwrap_or_else(|e| panic!("{e}"));
    wait_for_sync(&envoy);
    let probes = upstream.hits();
    let get = |path: &str, id: &str| {
        let h = vec![
            ("x-api-key".to_string(), "ck_static_globex_key".to_string()),
            ("x-request-id".to_string(), id.to_string()),
        ];
        Client::new(&format!("127.0.0.1:{}", envoy.port))
            .request("GET", path, &h, &[])
            .unwrap()
    };
    assert_eq!(get("/v1/search", "d1").status, 200);
    assert_eq!(get("/v1/export", "d2").status, 200);
    assert_eq!(get("/v1/search", "d3").status, 200);
    let r = get("/v1/export", "d4");
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    let b: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(b["error"]["code"], "daily_credit_limit");
    let retry: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((retry - seconds_to_utc_midnight()).abs() <= 2, "{retry}");
    assert_eq!(
        upstream.hits() - probes,
        3,
        "the refused request never reached the API"
    );
}
