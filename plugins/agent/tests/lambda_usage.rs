//! The AWS usage handler (the core through wasm-bindgen, in Node) pointed at a real local
//! agent: access-log lines in the deploy example's format become events the agent stores once;
//! delivering the same log batch again adds nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{body, catalog, Agent, SANDBOX};
use serde_json::{json, Value};

/// The deploy example's access-log format rendered with `values` (`$context.x` → `values[x]`).
fn log_line(format: &str, values: &Value) -> String {
    let mut out = String::new();
    let mut rest = format;
    while let Some(i) = rest.find("$context.") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + "$context.".len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .unwrap_or(tail.len());
        let key = &tail[..end];
        match &values[key] {
            Value::String(s) => out.push_str(s),
            Value::Null => out.push('-'),
            v => out.push_str(&v.to_string()),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn access_logs_reach_the_agent_once_even_when_delivered_twice() {
    let agent = Agent::start("lambda-usage", &catalog(), &[]);
    let template: Value = serde_json::from_slice(
        &std::fs::read(
            aforo_host_tests::artifacts::repo_root().join("deploy-examples/aws/template.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let format = template["Resources"]["Api"]["Properties"]["AccessLogSetting"]["Format"]
        .as_str()
        .unwrap();
    let now_ms = aforo_host_tests::servers::wall_now().unix_nanos() / 1_000_000;
    let mut lines: Vec<String> = (0..50)
        .map(|i| {
            log_line(
                format,
                &json!({"requestId": format!("aws-req-{i}"), "extendedRequestId": format!("ext-{i}"), "requestTimeEpoch": now_ms - 1000,
                    "httpMethod": "GET", "path": "/prod/v1/search", "stage": "prod", "status": 200, "responseLength": 10,
                    "authorizer.customerId": "globex", "authorizer.environment": "sandbox",
                    "authorizer.keyId": null, "identity.sourceIp": "203.0.113.7"}),
            )
        })
        .collect();
    // Not billable: a 500.
    lines.push(log_line(
        format,
        &json!({"requestId": "aws-req-500", "extendedRequestId": "ext-500", "requestTimeEpoch": now_ms, "httpMethod": "GET",
            "path": "/prod/v1/search", "stage": "prod", "status": 500, "authorizer.customerId": "globex"}),
    ));
    let config = json!({
        "product_id": "prod_aws",
        "ingest_url": agent.url(),
        "routes": [{"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"}],
        "entitlements": {"customers": {}}
    })
    .to_string();
    let env = [
        ("AFORO_CONFIG", config.as_str()),
        ("AFORO_API_KEY", SANDBOX),
    ];
    // Delivered twice to one warm instance, then once more to a fresh instance (another
    // Lambda, or a retry on a new one).
    let warm = common::node::driver("usage.js", &json!({"lines": lines, "times": 2}), &env);
    let cold = common::node::driver("usage.js", &json!({"lines": lines, "times": 1}), &env);
    assert_eq!(
        warm[0],
        json!({"lines": 51, "metered": 50, "skipped": 1, "invalid": 0, "delivered": 50, "duplicates": 0, "rejected": 0, "deadLettered": 0})
    );
    for again in [&warm[1], &cold[0]] {
        assert_eq!(again["delivered"], 50);
        assert_eq!(
            again["duplicates"], 50,
            "the redelivered batch is recognised"
        );
    }
    let usage = agent.call(
        "GET",
        "/v1/usage?environment=sandbox",
        SANDBOX,
        &Value::Null,
    );
    assert_eq!(usage.status, 200);
    let rows = body(&usage)["usage"].clone();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
    assert_eq!(rows[0]["customer_id"], "globex");
    assert_eq!(rows[0]["metric"], "api_calls");
    assert_eq!(rows[0]["quantity"], "50", "every event once: {rows}");
}
