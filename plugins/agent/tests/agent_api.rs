//! The agent's HTTP API as a gateway and an operator use it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{body, catalog, code, field, Agent, ADMIN, LIVE, SANDBOX};
use serde_json::json;

fn ev(id: &str, customer: &str, q: u64, env: &str) -> serde_json::Value {
    let now = aforo_host_tests::servers::wall_now();
    json!({"id": id, "customer_id": customer, "metric": "api_calls", "quantity": q, "timestamp": now.to_rfc3339(), "product_id": "p", "environment": env})
}

#[test]
fn check_then_meter_counts_against_the_quota() {
    let a = Agent::start("quota", &catalog(), &[]);
    for i in 0..5 {
        let r = a.call(
            "POST",
            "/v1/canAccess",
            SANDBOX,
            &json!({"apiKey": "ck_static_acme_key", "featureKey": "search"}),
        );
        assert_eq!(r.status, 200);
        assert_eq!(body(&r)["remaining"], 5 - i);
        let m = a.call_with(
            "POST",
            "/v1/meter",
            &[
                ("authorization", &format!("Bearer {SANDBOX}")),
                ("x-request-id", &format!("req-{i}")),
            ],
            br#"{"tenantId": "acme", "metricKey": "api_calls"}"#,
        );
        assert_eq!(m.status, 202);
        assert_eq!(body(&m)["accepted"], 1);
    }
    let r = a.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"apiKey": "ck_static_acme_key", "featureKey": "search"}),
    );
    assert_eq!(r.status, 429);
    assert_eq!(code(&r), "quota_exhausted");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    // A retried meter call with the same request id is counted once.
    let m = a.call_with(
        "POST",
        "/v1/meter",
        &[
            ("authorization", &format!("Bearer {SANDBOX}")),
            ("x-request-id", "req-0"),
        ],
        br#"{"tenantId": "acme", "metricKey": "api_calls"}"#,
    );
    assert_eq!(body(&m)["duplicates"], 1);
    let r = a.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"apiKey": "ck_static_acme_key", "featureKey": "export"}),
    );
    assert_eq!((r.status, code(&r).as_str()), (403, "no_access"));
}

/// An LLM call's usage in one `/v1/meter`: one event per metric, each id derived from the
/// request's and the metric (a retry counts each once), the properties on each; a refused
/// quantity is refused alone.
#[test]
fn one_meter_call_may_carry_several_metrics() {
    let a = Agent::start("quantities", &catalog(), &[]);
    let call = |rid: &str, body: serde_json::Value| {
        a.call_with(
            "POST",
            "/v1/meter",
            &[
                ("authorization", &format!("Bearer {SANDBOX}")),
                ("x-request-id", rid),
            ],
            body.to_string().as_bytes(),
        )
    };
    let usage = json!({"tenantId": "acme", "quantities": {"input_tokens": 25, "output_tokens": "15"},
                       "properties": {"model": "claude-sonnet-4"}});
    let m = call("llm-1", usage.clone());
    assert_eq!(m.status, 202, "{}", String::from_utf8_lossy(&m.body));
    let b = body(&m);
    assert_eq!(
        (b["accepted"].as_u64(), b["duplicates"].as_u64()),
        (Some(2), Some(0))
    );
    let ids = b["ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    // The retry: the same two ids, both duplicates.
    let again = body(&call("llm-1", usage));
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(again["ids"].as_array().unwrap(), &ids);
    // A bad quantity is refused alone; the other metric is stored.
    let partial = body(&call(
        "llm-2",
        json!({"tenantId": "acme", "quantities": {"input_tokens": 3, "output_tokens": "-1"}}),
    ));
    assert_eq!(partial["accepted"], 1);
    assert_eq!(partial["rejected"].as_array().unwrap().len(), 1);
    // What was stored: the usage per metric, each event with the model.
    let log = body(&a.call(
        "GET",
        "/v1/event-log?outcome=accepted",
        SANDBOX,
        &serde_json::Value::Null,
    ));
    let mut rows: Vec<(String, String)> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"].as_str().unwrap().to_string(),
                r["quantity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("input_tokens".to_string(), "25".to_string()),
            ("input_tokens".to_string(), "3".to_string()),
            ("output_tokens".to_string(), "15".to_string()),
        ]
    );
    let seq = log["data"][log["data"].as_array().unwrap().len() - 1]["seq"]
        .as_i64()
        .unwrap();
    let one = body(&a.call(
        "GET",
        &format!("/v1/event-log/{seq}"),
        SANDBOX,
        &serde_json::Value::Null,
    ));
    assert_eq!(
        one["data"]["event"]["properties"]["model"],
        "claude-sonnet-4"
    );
    // Mixed or empty forms are refused, naming the field.
    for (bad, f) in [
        (
            json!({"tenantId": "acme", "quantities": {"a": 1}, "metricKey": "a"}),
            "metricKey",
        ),
        (json!({"tenantId": "acme", "quantities": {}}), "quantities"),
        (
            json!({"tenantId": "acme", "quantities": {"a": [1]}}),
            "quantities.a",
        ),
    ] {
        let r = call("llm-bad", bad.clone());
        assert_eq!(r.status, 422, "{bad}");
        assert_eq!(field(&r), f, "{bad}");
    }
}

/// The snapshot's `product_id` goes only to filters that ask for it: a filter from before the
/// field refuses a snapshot carrying it, so agents and filters upgrade in either order.
#[test]
fn the_snapshot_names_the_product_only_to_filters_that_read_it() {
    let a = Agent::start(
        "snapshot-fields",
        &catalog(),
        &["--product-id", "prod_agent"],
    );
    let get = |extra: &[(&str, &str)]| {
        let mut h = vec![("authorization", format!("Bearer {SANDBOX}"))];
        h.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        body(&a.call_with("GET", "/v1/entitlements", &h, b""))
    };
    assert!(get(&[]).get("product_id").is_none());
    assert_eq!(
        get(&[("aforo-snapshot-fields", "product_id")])["product_id"],
        "prod_agent"
    );
    assert_eq!(
        get(&[("aforo-snapshot-fields", "other, product_id")])["product_id"],
        "prod_agent"
    );
}

#[test]
fn bad_input_is_refused_with_the_contract() {
    let a = Agent::start(
        "bad",
        &catalog(),
        &["--sandbox-events-per-hour", "20", "--tenant-keys", SANDBOX],
    );
    // Oversize body: 413.
    let big = vec![b' '; (1 << 20) + 10];
    let r = a.call_with(
        "POST",
        "/v1/events",
        &[("authorization", &format!("Bearer {SANDBOX}"))],
        &big,
    );
    assert_eq!((r.status, code(&r).as_str()), (413, "payload_too_large"));
    let r = a.call_with(
        "POST",
        "/v1/canAccess",
        &[("authorization", &format!("Bearer {SANDBOX}"))],
        &vec![b' '; 70_000],
    );
    assert_eq!(r.status, 413);
    // Malformed JSON: 400 with the position.
    let r = a.call_with(
        "POST",
        "/v1/events",
        &[("authorization", &format!("Bearer {SANDBOX}"))],
        b"{\"events\": [1,}",
    );
    assert_eq!(r.status, 400);
    assert!(
        body(&r)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("column"),
        "{:?}",
        body(&r)
    );
    let r = a.call_with(
        "POST",
        "/v1/canAccess",
        &[("authorization", &format!("Bearer {SANDBOX}"))],
        b"{\"featureKey\": ",
    );
    assert_eq!(r.status, 400);
    assert!(body(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("line 1"));
    // Nesting past the limit: 400 on every endpoint.
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    for path in ["/v1/events", "/v1/canAccess", "/v1/meter"] {
        let r = a.call_with(
            "POST",
            path,
            &[("authorization", &format!("Bearer {SANDBOX}"))],
            deep.as_bytes(),
        );
        assert_eq!(r.status, 400, "{path}");
    }
    // Unknown partner: 403; unknown field in well-formed JSON: 422 naming it.
    let r = a.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"tenantId": "nobody", "featureKey": "search"}),
    );
    assert_eq!((r.status, code(&r).as_str()), (403, "unknown_customer"));
    let r = a.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"tenantId": "acme", "featurekey": "search"}),
    );
    assert_eq!(r.status, 422);
    assert_eq!(body(&r)["error"]["field"], "featurekey");
    assert_eq!(body(&r)["error"]["status"], 422);
    assert!(body(&r)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did you mean \"featureKey\""));
    // No key, wrong key: 401.
    let r = a.call_with("POST", "/v1/events", &[], b"{\"events\": []}");
    assert_eq!(r.status, 401);
    let r = a.call("POST", "/v1/events", "sk_prod_nope", &json!({"events": []}));
    assert_eq!(r.status, 401);
    // Over the rate limit: 429 with Retry-After.
    let batch: Vec<_> = (0..15)
        .map(|i| ev(&format!("rl-{i}"), "acme", 1, "sandbox"))
        .collect();
    assert_eq!(
        a.call("POST", "/v1/events", SANDBOX, &json!({"events": batch}))
            .status,
        202
    );
    let batch: Vec<_> = (15..30)
        .map(|i| ev(&format!("rl-{i}"), "acme", 1, "sandbox"))
        .collect();
    let r = a.call("POST", "/v1/events", SANDBOX, &json!({"events": batch}));
    assert_eq!((r.status, code(&r).as_str()), (429, "rate_limited"));
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
}

#[test]
fn revoked_and_rotated_keys_and_the_admin_api() {
    let a = Agent::start("keys", &catalog(), &[]);
    // The admin API refuses without the admin key.
    assert_eq!(
        a.call(
            "POST",
            "/v1/admin/partners",
            SANDBOX,
            &json!({"customer_id": "globex"})
        )
        .status,
        401
    );
    assert_eq!(
        a.call(
            "GET",
            "/v1/admin/keys",
            "adm_wrong_wrong_wrong_wrong",
            &serde_json::Value::Null
        )
        .status,
        401
    );
    let r = a.call(
        "POST",
        "/v1/admin/partners",
        ADMIN,
        &json!({"customer_id": "nobody"}),
    );
    assert_eq!(r.status, 404);
    let r = a.call(
        "POST",
        "/v1/admin/partners",
        ADMIN,
        &json!({"customer_id": "globex", "scopes": ["search"]}),
    );
    assert_eq!(r.status, 201);
    let key = body(&r)["api_key"].as_str().unwrap().to_string();
    let key_id = body(&r)["key_id"].as_str().unwrap().to_string();
    assert!(key.starts_with("ck_"));
    let check = |k: &str| {
        a.call(
            "POST",
            "/v1/canAccess",
            SANDBOX,
            &json!({"apiKey": k, "featureKey": "search"}),
        )
    };
    assert_eq!(check(&key).status, 200);
    // Listing never shows a secret.
    let list = a.call("GET", "/v1/admin/keys", ADMIN, &serde_json::Value::Null);
    assert!(!String::from_utf8_lossy(&list.body).contains(&key));
    // Rotate with no grace: the old key stops, the new one works.
    let r = a.call(
        "POST",
        &format!("/v1/admin/keys/{key_id}/rotate"),
        ADMIN,
        &json!({"grace_period_secs": 0}),
    );
    assert_eq!(r.status, 201);
    let new_key = body(&r)["new"]["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        (check(&key).status, code(&check(&key)).as_str()),
        (401, "invalid_key")
    );
    assert_eq!(check(&new_key).status, 200);
    // Revoke: 401.
    let new_id = body(&r)["new"]["key_id"].as_str().unwrap().to_string();
    assert_eq!(
        a.call(
            "POST",
            &format!("/v1/admin/keys/{new_id}/revoke"),
            ADMIN,
            &serde_json::Value::Null
        )
        .status,
        200
    );
    assert_eq!(check(&new_key).status, 401);
}

#[test]
fn sandbox_and_production_never_mix() {
    let a = Agent::start(
        "envs",
        &catalog(),
        &["--environments", "sandbox,production"],
    );
    let sandbox_only = Agent::start("sbx", &catalog(), &[]);
    // A live key at a sandbox-only agent: 403, for writes and reads.
    let r = sandbox_only.call(
        "POST",
        "/v1/events",
        LIVE,
        &json!({"events": [ev("x", "acme", 1, "production")]}),
    );
    assert_eq!((r.status, code(&r).as_str()), (403, "wrong_environment"));
    assert_eq!(
        sandbox_only
            .call("GET", "/v1/usage", LIVE, &serde_json::Value::Null)
            .status,
        403
    );
    // An event whose environment is not the key's is refused per event.
    let r = a.call(
        "POST",
        "/v1/events",
        SANDBOX,
        &json!({"events": [ev("e1", "acme", 1, "production"), ev("e2", "acme", 2, "sandbox")]}),
    );
    assert_eq!(r.status, 202);
    assert_eq!(body(&r)["accepted"], 1);
    assert_eq!(body(&r)["rejected"][0]["code"], "environment_mismatch");
    assert_eq!(
        a.call(
            "POST",
            "/v1/events",
            LIVE,
            &json!({"events": [ev("p1", "acme", 7, "production")]})
        )
        .status,
        202
    );
    // The same id in both environments is two events: separate namespaces.
    assert_eq!(
        body(&a.call(
            "POST",
            "/v1/events",
            LIVE,
            &json!({"events": [ev("e2", "acme", 3, "production")]})
        ))["accepted"],
        1
    );
    // Usage reports show production unless sandbox is asked for, and a key reads its own only.
    let prod = a.call("GET", "/v1/usage", LIVE, &serde_json::Value::Null);
    assert_eq!(body(&prod)["environment"], "production");
    assert_eq!(body(&prod)["usage"][0]["quantity"], "10");
    assert_eq!(
        a.call("GET", "/v1/usage", SANDBOX, &serde_json::Value::Null)
            .status,
        403,
        "a sandbox key cannot read production"
    );
    let sbx = a.call(
        "GET",
        "/v1/usage?environment=sandbox",
        SANDBOX,
        &serde_json::Value::Null,
    );
    assert_eq!(body(&sbx)["usage"][0]["quantity"], "2");
    assert_eq!(
        a.call(
            "GET",
            "/v1/usage?environment=sandbox",
            LIVE,
            &serde_json::Value::Null
        )
        .status,
        403
    );
}

#[test]
fn a_partner_toggled_to_sandbox_keeps_its_keys_and_is_no_longer_billed() {
    let a = Agent::start(
        "toggle",
        &catalog(),
        &["--environments", "sandbox,production"],
    );
    let meter = |rid: &str| {
        a.call_with(
            "POST",
            "/v1/meter",
            &[
                ("authorization", &format!("Bearer {LIVE}")),
                ("x-request-id", rid),
            ],
            br#"{"tenantId": "acme", "metricKey": "api_calls", "quantity": 4}"#,
        )
    };
    assert_eq!(body(&meter("before"))["environment"], "production");
    let r = a.call(
        "POST",
        "/v1/admin/partners/acme/toggle-sandbox",
        ADMIN,
        &serde_json::Value::Null,
    );
    assert_eq!(body(&r)["data"]["sandbox_mode"], true);
    assert_eq!(body(&r)["message"], "Sandbox mode enabled.");
    // The same key still works; its usage now goes to the sandbox.
    let r = a.call(
        "POST",
        "/v1/canAccess",
        LIVE,
        &json!({"apiKey": "ck_static_acme_key", "featureKey": "search"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(body(&r)["environment"], "sandbox");
    assert_eq!(body(&meter("after"))["environment"], "sandbox");
    let inv = a.call(
        "GET",
        "/v1/invoices/preview",
        LIVE,
        &serde_json::Value::Null,
    );
    assert_eq!(inv.status, 200);
    let lines = &body(&inv)["invoices"][0]["lines"][0];
    assert_eq!(
        (lines["quantity"].as_str(), lines["amount"].as_str()),
        (Some("4"), Some("0.04")),
        "only the usage before the toggle is billed"
    );
    let sbx = a.call(
        "GET",
        "/v1/usage?environment=sandbox",
        SANDBOX,
        &serde_json::Value::Null,
    );
    assert_eq!(body(&sbx)["usage"][0]["quantity"], "4");
}

#[test]
fn rejected_events_are_dead_lettered_and_replayable() {
    let a = Agent::start("dl", &catalog(), &[]);
    let future = aforo_host_tests::servers::wall_now()
        .plus_millis(10 * 60_000)
        .to_rfc3339();
    let mut e = ev("later", "acme", 1, "sandbox");
    e["timestamp"] = json!(future);
    let r = a.call(
        "POST",
        "/v1/events",
        SANDBOX,
        &json!({"events": [e, ev("now", "acme", 1, "sandbox")]}),
    );
    assert_eq!(body(&r)["rejected"][0]["code"], "timestamp_in_future");
    let dl = a.call("GET", "/v1/dead-letters", SANDBOX, &serde_json::Value::Null);
    let rows = body(&dl)["dead_letters"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["reason"], "rejected:timestamp_in_future");
    assert_eq!(rows[0]["event_id"], "later");
    // Replaying re-validates: still in the future, so still refused (and kept).
    let r = a.call("POST", "/v1/dead-letters/replay", SANDBOX, &json!({}));
    assert_eq!(body(&r)["still_refused"][0]["code"], "timestamp_in_future");
    assert_eq!(
        body(&a.call("GET", "/v1/dead-letters", SANDBOX, &serde_json::Value::Null))["dead_letters"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn health_and_metrics() {
    let a = Agent::start("ops", &catalog(), &["--tenant-keys", SANDBOX]);
    a.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"tenantId": "acme", "featureKey": "search"}),
    );
    let h = a.call("GET", "/healthz", SANDBOX, &serde_json::Value::Null);
    assert_eq!(body(&h)["status"], "ok");
    let m = a.call("GET", "/metrics", SANDBOX, &serde_json::Value::Null);
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("aforo_agent_decisions_total{decision=\"allowed\"} 1"),
        "{text}"
    );
    assert!(text.contains("aforo_agent_can_access_seconds_count 1"));
    assert_eq!(
        a.call("GET", "/nope", SANDBOX, &serde_json::Value::Null)
            .status,
        404
    );
}

#[test]
fn no_key_reaches_the_agent_log() {
    // An upstream that is down makes the forwarder log its failures too.
    let dead = aforo_host_tests::envoy::free_port();
    let upstream_key = "sk_test_upstream_secret_for_logs";
    let a = Agent::start(
        "logs",
        &catalog(),
        &[
            "--upstream-url",
            &format!("http://127.0.0.1:{dead}"),
            "--upstream-sandbox-key",
            upstream_key,
            "--flush-interval-ms",
            "100",
            "--api-keys",
            SANDBOX,
        ],
    );
    let r = a.call(
        "POST",
        "/v1/admin/partners",
        ADMIN,
        &json!({"customer_id": "globex"}),
    );
    assert_eq!(r.status, 201);
    let partner_key = body(&r)["api_key"].as_str().unwrap().to_string();
    let wrong_admin = "adm_attacker_guess_0000000000";
    let wrong_gateway = "sk_test_attacker_guess_000000";
    let wrong_consumer = "ck_attacker_guess_0000000000";
    assert_eq!(
        a.call(
            "GET",
            "/v1/admin/keys",
            wrong_admin,
            &serde_json::Value::Null
        )
        .status,
        401
    );
    for k in [partner_key.as_str(), wrong_consumer, "ck_static_acme_key"] {
        a.call(
            "POST",
            "/v1/canAccess",
            SANDBOX,
            &json!({"apiKey": k, "featureKey": "search"}),
        );
    }
    let events = json!({"events": [ev("log-1", "globex", 1, "sandbox")]});
    assert_eq!(a.call("POST", "/v1/events", SANDBOX, &events).status, 202);
    assert_eq!(
        a.call("POST", "/v1/events", wrong_gateway, &events).status,
        401
    );
    // A malformed body that quotes a key back must not be echoed into the log.
    a.call_with(
        "POST",
        "/v1/canAccess",
        &[("authorization", &format!("Bearer {SANDBOX}"))],
        format!("{{\"apiKey\": \"{wrong_consumer}\", \"featureKey\": ").as_bytes(),
    );
    // Let the forwarder fail a few times.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !a.log().contains("forward") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = a.log();
    assert!(log.contains("forward"), "the forwarder logged: {log}");
    for secret in [
        ADMIN,
        SANDBOX,
        upstream_key,
        partner_key.as_str(),
        wrong_admin,
        wrong_gateway,
        wrong_consumer,
        "ck_static_acme_key",
    ] {
        assert!(!log.contains(secret), "{secret} in the agent log:\n{log}");
    }
}

#[test]
fn only_keys_trusted_to_name_customers_may_and_an_empty_key_is_no_key() {
    let a = Agent::start("identity", &catalog(), &[]);
    let ask = |b: serde_json::Value| a.call("POST", "/v1/canAccess", SANDBOX, &b);
    // The body an Apigee template pasting `","tenantId":"acme` into apiKey used to build.
    let r = a.call_with(
        "POST",
        "/v1/canAccess",
        &[("authorization", &format!("Bearer {SANDBOX}"))],
        br#"{"apiKey":"","tenantId":"acme","featureKey":"search","clientIp":"192.0.2.1"}"#,
    );
    assert_eq!((r.status, code(&r).as_str()), (403, "tenant_not_allowed"));
    // A gateway key without the permission cannot name a customer at all...
    let r = ask(json!({"tenantId": "acme", "featureKey": "search"}));
    assert_eq!((r.status, code(&r).as_str()), (403, "tenant_not_allowed"));
    assert!(
        body(&r)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tenant_keys"),
        "the message names the setting: {}",
        body(&r)
    );
    // ...nor beside a consumer key.
    let r =
        ask(json!({"apiKey": "ck_static_acme_key", "tenantId": "globex", "featureKey": "search"}));
    assert_eq!((r.status, code(&r).as_str()), (403, "tenant_not_allowed"));
    // An empty consumer key is a missing one.
    let r = ask(json!({"apiKey": "", "featureKey": "search"}));
    assert_eq!((r.status, code(&r).as_str()), (401, "invalid_key"));
    // A key given twice is refused, naming it (parsers disagree on which copy wins).
    let r = a.call_with(
        "POST",
        "/v1/canAccess",
        &[("authorization", &format!("Bearer {SANDBOX}"))],
        br#"{"apiKey": "ck_static_acme_key", "featureKey": "search", "apiKey": "ck_other"}"#,
    );
    assert_eq!((r.status, code(&r).as_str()), (400, "invalid_body"));
    assert!(
        body(&r)["error"]["message"]
            .as_str()
            .unwrap()
            .contains(r#""apiKey" appears twice"#),
        "{}",
        body(&r)
    );
    for path in ["/v1/meter", "/v1/events", "/v1/dead-letters/replay"] {
        let r = a.call_with(
            "POST",
            path,
            &[("authorization", &format!("Bearer {SANDBOX}"))],
            br#"{"tenantId": "acme", "metricKey": "a", "tenantId": "globex"}"#,
        );
        assert_eq!(
            r.status,
            400,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // The refusals are counted like any decision.
    let m = a.call("GET", "/metrics", SANDBOX, &serde_json::Value::Null);
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("aforo_agent_decisions_total{decision=\"tenant_not_allowed\"} 3"),
        "{text}"
    );
    // Nothing above was billed.
    let usage = a.call(
        "GET",
        "/v1/usage?environment=sandbox",
        SANDBOX,
        &serde_json::Value::Null,
    );
    assert_eq!(body(&usage)["usage"], json!([]));

    // A gateway key the operator trusts (tenant_keys) names customers; an empty apiKey beside
    // a customer id is still a missing key.
    let trusted = Agent::start("identity-trusted", &catalog(), &["--tenant-keys", SANDBOX]);
    let r = trusted.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"tenantId": "acme", "featureKey": "search"}),
    );
    assert_eq!(
        (r.status, body(&r)["customer_id"].as_str()),
        (200, Some("acme"))
    );
    let r = trusted.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"apiKey": "", "tenantId": "acme", "featureKey": "search"}),
    );
    assert_eq!((r.status, code(&r).as_str()), (401, "invalid_key"));
    // Another key of the same agent is not trusted by that.
    let other = "sk_test_another_gateway";
    let r = trusted.call(
        "POST",
        "/v1/canAccess",
        other,
        &json!({"tenantId": "acme", "featureKey": "search"}),
    );
    assert_eq!((r.status, code(&r).as_str()), (403, "tenant_not_allowed"));
}

fn dead_letters(a: &Agent) -> Vec<serde_json::Value> {
    body(&a.call("GET", "/v1/dead-letters", SANDBOX, &serde_json::Value::Null))["dead_letters"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_replay_keeps_every_dead_letter_it_cannot_store_and_stores_the_rest_once() {
    let a = Agent::start("dl-replay", &catalog(), &[]);
    let far = aforo_host_tests::servers::wall_now()
        .plus_millis(10 * 60_000)
        .to_rfc3339();
    // Ten unrecoverable entries: not events at all, bad fields, or far in the future.
    let mut bad = vec![
        json!({}),
        json!(42),
        json!("text"),
        json!({"id": "no-fields"}),
        json!({"id": "neg", "customer_id": "acme", "metric": "api_calls", "quantity": -1, "timestamp": far, "product_id": "p", "environment": "sandbox"}),
        json!({"id": "unknown-field", "customer_id": "acme", "metric": "m", "quantity": 1, "timestamp": far, "product_id": "p", "environment": "sandbox", "extra": 1}),
    ];
    for i in 0..2 {
        let mut e = ev(&format!("future-{i}"), "acme", 1, "sandbox");
        e["timestamp"] = json!(far);
        bad.push(e);
    }
    let r = a.call("POST", "/v1/events", SANDBOX, &json!({"events": bad}));
    assert_eq!(
        body(&r)["rejected"].as_array().unwrap().len(),
        8,
        "{}",
        body(&r)
    );
    // Two refused by /v1/meter: a quantity that is no number, and a timestamp too far ahead.
    for b in [
        json!({"tenantId": "acme", "metricKey": "api_calls", "quantity": "lots", "id": "m-bad"}),
        json!({"tenantId": "acme", "metricKey": "api_calls", "timestamp": far, "id": "m-future"}),
    ] {
        let m = a.call("POST", "/v1/meter", SANDBOX, &b);
        assert_eq!(
            (m.status, body(&m)["accepted"].as_u64()),
            (202, Some(0)),
            "{}",
            body(&m)
        );
    }
    let before = dead_letters(&a);
    assert_eq!(before.len(), 10, "{before:?}");
    for d in &before {
        assert!(
            d["event"].is_object() || d["received"].is_string(),
            "every dead letter holds what was sent: {d}"
        );
    }
    let meter_kept = before.iter().find(|d| d["event_id"] == "m-future").unwrap();
    assert_eq!(meter_kept["event"]["customer_id"], "acme");
    assert_eq!(meter_kept["event"]["timestamp"], json!(far));
    let text_kept = before.iter().find(|d| d["received"] == "\"text\"").unwrap();
    assert_eq!(text_kept["origin"], "unparsable");
    let r = a.call("POST", "/v1/dead-letters/replay", SANDBOX, &json!({}));
    let b = body(&r);
    assert_eq!(
        (
            b["replayed"].as_u64(),
            b["stored"].as_u64(),
            b["duplicates"].as_u64()
        ),
        (Some(10), Some(0), Some(0)),
        "{b}"
    );
    assert_eq!(b["still_refused"].as_array().unwrap().len(), 10, "{b}");
    let after = dead_letters(&a);
    assert_eq!(after.len(), 10, "nothing vanished: {after:?}");
    for (x, y) in before.iter().zip(&after) {
        assert_eq!(
            (&x["seq"], &x["event"], &x["received"]),
            (&y["seq"], &y["event"], &y["received"])
        );
    }

    // A refusal whose reason clears: a meter call 5 minutes and 3 seconds ahead.
    let soon = aforo_host_tests::servers::wall_now()
        .plus_millis(5 * 60_000 + 3_000)
        .to_rfc3339();
    let m = a.call(
        "POST",
        "/v1/meter",
        SANDBOX,
        &json!({"tenantId": "globex", "metricKey": "api_calls", "quantity": 7, "timestamp": soon, "id": "m-soon"}),
    );
    assert_eq!(body(&m)["rejected"][0]["code"], "timestamp_in_future");
    // Replayed until its time has come (bounded): then stored once, and in the usage.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let stored = loop {
        let r = a.call("POST", "/v1/dead-letters/replay", SANDBOX, &json!({}));
        let b = body(&r);
        let (replayed, stored, dups, still) = (
            b["replayed"].as_u64().unwrap(),
            b["stored"].as_u64().unwrap(),
            b["duplicates"].as_u64().unwrap(),
            b["still_refused"].as_array().unwrap().len() as u64,
        );
        assert_eq!(replayed, stored + dups + still, "the answer adds up: {b}");
        if stored == 1 {
            break b;
        }
        assert!(std::time::Instant::now() < deadline, "never stored: {b}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(
        stored["still_refused"].as_array().unwrap().len(),
        10,
        "{stored}"
    );
    assert_eq!(
        dead_letters(&a).len(),
        10,
        "the stored one left, the others stayed"
    );
    let usage = a.call(
        "GET",
        "/v1/usage?environment=sandbox",
        SANDBOX,
        &serde_json::Value::Null,
    );
    let rows = body(&usage)["usage"].as_array().unwrap().clone();
    assert!(
        rows.iter()
            .any(|r| r["customer_id"] == "globex" && r["quantity"] == "7"),
        "{rows:?}"
    );
    // Replaying again stores nothing twice.
    let r = a.call("POST", "/v1/dead-letters/replay", SANDBOX, &json!({}));
    assert_eq!(body(&r)["stored"], 0);
}

#[test]
fn events_the_upstream_refused_are_requeued_by_a_replay_and_delivered_once() {
    use aforo_host_tests::servers::IngestServer;
    let ingest = IngestServer::start(None).unwrap();
    // Every other event of a batch refused by the upstream.
    ingest.set_faults("0s-10m:partial").unwrap();
    let a = Agent::start(
        "dl-upstream",
        &catalog(),
        &[
            "--upstream-url",
            &format!("http://127.0.0.1:{}", ingest.port()),
            "--upstream-sandbox-key",
            "sk_test_upstream_of_the_agent",
            "--flush-interval-ms",
            "50",
        ],
    );
    let batch: Vec<_> = (0..4)
        .map(|i| ev(&format!("up-{i}"), "acme", 1, "sandbox"))
        .collect();
    let r = a.call("POST", "/v1/events", SANDBOX, &json!({"events": batch}));
    assert_eq!(body(&r)["accepted"], 4);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while dead_letters(&a).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", a.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let dl = dead_letters(&a);
    assert!(dl.iter().all(|d| d["origin"] == "upstream"), "{dl:?}");
    assert_eq!(ingest.stored().len(), 2);
    // The upstream takes everything again; the replay re-queues what this agent holds.
    ingest.set_faults("").unwrap();
    let r = a.call("POST", "/v1/dead-letters/replay", SANDBOX, &json!({}));
    let b = body(&r);
    assert_eq!(
        (
            b["replayed"].as_u64(),
            b["stored"].as_u64(),
            b["requeued"].as_u64()
        ),
        (Some(2), Some(2), Some(2)),
        "{b}"
    );
    assert_eq!(ingest.wait_for(4, std::time::Duration::from_secs(20)), 4);
    let mut ids: Vec<String> = ingest.stored().into_iter().map(|e| e.id).collect();
    ids.sort();
    assert_eq!(ids, ["up-0", "up-1", "up-2", "up-3"], "each once");
    assert!(dead_letters(&a).is_empty());
}

/// The partner API: one partner's status, the toggle's `{data, message}`, a catalog's own
/// `sandbox_mode` honoured by the first toggle, 404 for unknown customers, 422 for invalid
/// values, 405 in the same error body.
#[test]
fn a_partner_can_be_read_and_toggled_with_the_documented_messages() {
    let mut cat = catalog();
    cat["customers"]["globex"]["sandbox_mode"] = json!(true);
    let a = Agent::start("partners", &cat, &["--environments", "sandbox,production"]);
    let get = |id: &str| {
        a.call(
            "GET",
            &format!("/v1/partners/{id}"),
            ADMIN,
            &serde_json::Value::Null,
        )
    };
    let toggle = |id: &str, b: serde_json::Value| {
        a.call(
            "POST",
            &format!("/v1/admin/partners/{id}/toggle-sandbox"),
            ADMIN,
            &b,
        )
    };
    let r = get("acme");
    assert_eq!(r.status, 200);
    assert_eq!(
        body(&r)["data"],
        json!({"customer_id": "acme", "status": "active", "sandbox_mode": false, "active_keys": 0})
    );
    // globex is in sandbox mode by the catalog, also once it has a key of its own, and what it
    // meters goes to the sandbox.
    let k = a.call(
        "POST",
        "/v1/admin/partners",
        ADMIN,
        &json!({"customer_id": "globex"}),
    );
    assert_eq!(k.status, 201);
    assert_eq!(body(&get("globex"))["data"]["sandbox_mode"], true);
    let m = a.call(
        "POST",
        "/v1/meter",
        LIVE,
        &json!({"tenantId": "globex", "metricKey": "api_calls"}),
    );
    assert_eq!(body(&m)["environment"], "sandbox", "{:?}", body(&m));
    // The production snapshot counts globex's quota where its usage is: the sandbox.
    let s = a.call("GET", "/v1/entitlements", LIVE, &serde_json::Value::Null);
    assert_eq!(
        body(&s)["customers"]["globex"]["features"]["search"]["used"],
        1,
        "{:?}",
        body(&s)["customers"]["globex"]
    );
    // The first flip takes it to production.
    let r = toggle("globex", serde_json::Value::Null);
    assert_eq!(r.status, 200);
    assert_eq!(body(&r)["data"]["sandbox_mode"], false);
    assert_eq!(
        body(&r)["message"],
        "Sandbox mode disabled — partner is now in production."
    );
    let r = toggle("globex", json!({"sandbox_mode": true}));
    assert_eq!(
        (
            body(&r)["data"]["sandbox_mode"].clone(),
            body(&r)["message"].clone()
        ),
        (json!(true), json!("Sandbox mode enabled."))
    );
    // A key counts while it is active; acme has a key in the catalog, so it is in use and its
    // first key here does not move it to the sandbox.
    let k = a.call(
        "POST",
        "/v1/admin/partners",
        ADMIN,
        &json!({"customer_id": "acme"}),
    );
    assert_eq!(k.status, 201);
    assert_eq!(body(&k)["partner"]["sandbox_mode"], false, "{}", body(&k));
    assert_eq!(body(&get("acme"))["data"]["active_keys"], 1);
    // Unknown customer: 404; a value of the wrong type or an unknown field: 422 naming it;
    // bytes that are not JSON: 400.
    let r = get("nobody");
    assert_eq!((r.status, code(&r).as_str()), (404, "unknown_customer"));
    let r = toggle("acme", json!({"sandbox_mode": 1}));
    assert_eq!((r.status, field(&r)), (422, json!("sandbox_mode")));
    let r = toggle("acme", json!({"sandbox": true}));
    assert_eq!((r.status, field(&r)), (422, json!("sandbox")));
    let r = a.call_with(
        "POST",
        "/v1/admin/partners/acme/toggle-sandbox",
        &[("authorization", &format!("Bearer {ADMIN}"))],
        b"{sandbox_mode",
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        body(&get("acme"))["data"]["sandbox_mode"],
        false,
        "refusals change nothing"
    );
    // Without the admin key: refused.
    let r = a.call(
        "GET",
        "/v1/partners/acme",
        SANDBOX,
        &serde_json::Value::Null,
    );
    assert!(r.status == 401 || r.status == 403, "{}", r.status);
    // A method the route does not serve: 405 with the error body.
    let r = a.call(
        "DELETE",
        "/v1/partners/acme",
        ADMIN,
        &serde_json::Value::Null,
    );
    assert_eq!((r.status, code(&r).as_str()), (405, "method_not_allowed"));
    // Query values: 422 naming the parameter.
    let r = a.call(
        "GET",
        "/v1/usage?environment=staging",
        LIVE,
        &serde_json::Value::Null,
    );
    assert_eq!((r.status, field(&r)), (422, json!("environment")));
    let r = a.call(
        "GET",
        "/v1/usage?from=yesterday",
        LIVE,
        &serde_json::Value::Null,
    );
    assert_eq!((r.status, field(&r)), (422, json!("from")));
    let r = a.call(
        "GET",
        "/v1/invoices/preview?period=daily",
        LIVE,
        &serde_json::Value::Null,
    );
    assert_eq!((r.status, field(&r)), (422, json!("period")));
    // A replay body with a misspelt field is refused, not read as "replay everything".
    let r = a.call(
        "POST",
        "/v1/dead-letters/replay",
        SANDBOX,
        &json!({"seq": [1]}),
    );
    assert_eq!((r.status, field(&r)), (422, json!("seq")));
}

/// Rotation without downtime: the old key keeps working beside the new one for the grace
/// period, then answers 401; rotating it again after that is 404.
#[test]
fn a_rotated_key_keeps_working_for_its_grace_period_then_stops() {
    let a = Agent::start("rotate-grace", &catalog(), &[]);
    let r = a.call(
        "POST",
        "/v1/admin/partners",
        ADMIN,
        &json!({"customer_id": "globex"}),
    );
    let old = body(&r)["api_key"].as_str().unwrap().to_string();
    let old_id = body(&r)["key_id"].as_str().unwrap().to_string();
    let check = |k: &str| {
        a.call(
            "POST",
            "/v1/canAccess",
            SANDBOX,
            &json!({"apiKey": k, "featureKey": "search"}),
        )
        .status
    };
    let r = a.call(
        "POST",
        &format!("/v1/admin/keys/{old_id}/rotate"),
        ADMIN,
        &json!({"grace_period_secs": 6}),
    );
    assert_eq!(r.status, 201);
    assert!(body(&r)["old"]["expires_at"].is_string(), "{:?}", body(&r));
    let new = body(&r)["new"]["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        (check(&old), check(&new)),
        (200, 200),
        "both work during the grace"
    );
    // A key in its grace period is not rotated again (a second successor would inherit the
    // grace deadline as its expiry).
    let again = a.call(
        "POST",
        &format!("/v1/admin/keys/{old_id}/rotate"),
        ADMIN,
        &serde_json::Value::Null,
    );
    assert_eq!((again.status, code(&again).as_str()), (404, "unknown_key"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while check(&old) == 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the old key still works after its grace"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(check(&old), 401);
    assert_eq!(check(&new), 200);
    let r = a.call(
        "POST",
        &format!("/v1/admin/keys/{old_id}/rotate"),
        ADMIN,
        &serde_json::Value::Null,
    );
    assert_eq!((r.status, code(&r).as_str()), (404, "unknown_key"));
    let r = a.call(
        "POST",
        &format!("/v1/admin/keys/{old_id}/rotate"),
        ADMIN,
        &json!({"grace_period_secs": -1}),
    );
    assert_eq!(r.status, 422);
}

/// `/v1/usage?period=daily|monthly`: one row per customer, metric and day (or month), UTC unless
/// `tz` gives an offset; any other period or zone is 422 naming the parameter.
#[test]
fn usage_is_summed_per_day_or_month_when_asked() {
    let a = Agent::start(
        "usage-period",
        &catalog(),
        &["--environments", "sandbox,production"],
    );
    let now = aforo_host_tests::servers::wall_now();
    let day = 86_400_000_000_000i64;
    let at = |id: &str, q: u64, t: aforo_core::Timestamp| json!({"id": id, "customer_id": "acme", "metric": "api_calls", "quantity": q, "timestamp": t.to_rfc3339(), "product_id": "p", "environment": "production"});
    let yesterday = aforo_core::Timestamp::from_unix_nanos(now.unix_nanos() - day);
    let r = a.call(
        "POST",
        "/v1/events",
        LIVE,
        &json!({"events": [at("d1", 3, yesterday), at("d2", 4, now), at("d3", 5, now)]}),
    );
    assert_eq!(body(&r)["accepted"], 3, "{:?}", body(&r));
    let range = format!(
        "from={}&to={}",
        aforo_core::Timestamp::from_unix_nanos(now.unix_nanos() - 2 * day).to_rfc3339(),
        aforo_core::Timestamp::from_unix_nanos(now.unix_nanos() + day).to_rfc3339()
    )
    .replace('+', "%2B");
    let get = |q: &str| {
        a.call(
            "GET",
            &format!("/v1/usage?{range}&{q}"),
            LIVE,
            &serde_json::Value::Null,
        )
    };
    let r = get("period=daily");
    assert_eq!(r.status, 200, "{:?}", body(&r));
    let rows = body(&r)["usage"].as_array().unwrap().clone();
    let midnight = |t: aforo_core::Timestamp| {
        aforo_core::Timestamp::from_unix_nanos(t.unix_nanos().div_euclid(day) * day).to_rfc3339()
    };
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["period_start"].as_str().unwrap().to_string(),
                r["quantity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (midnight(yesterday), "3".to_string()),
            (midnight(now), "9".to_string())
        ]
    );
    // Without a period: one row over the whole range, as before.
    let r = get("customer=acme");
    assert_eq!(body(&r)["usage"].as_array().unwrap().len(), 1);
    assert_eq!(body(&r)["usage"][0]["quantity"], "12");
    assert!(body(&r)["usage"][0].get("period_start").is_none());
    // A fixed offset moves the boundaries with it: each event lands in its local day. The `+`
    // also works unencoded (a query string turns it into a space).
    let mut want: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for (t, q) in [(yesterday, 3), (now, 9)] {
        let (start, _) =
            aforo_core::time::period_of(t, aforo_core::time::Granularity::Daily, 19_800);
        *want.entry(start.to_rfc3339()).or_default() += q;
    }
    for tz in ["%2B05:30", "+05:30"] {
        let r = get(&format!("period=daily&tz={tz}"));
        assert_eq!(r.status, 200, "{tz}: {:?}", body(&r));
        let got: std::collections::BTreeMap<String, u64> = body(&r)["usage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["period_start"].as_str().unwrap().to_string(),
                    r["quantity"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{tz}");
        assert!(got.keys().all(|k| k.ends_with("T18:30:00Z")), "{got:?}");
    }
    for (q, named) in [
        ("period=weekly", "period"),
        ("period=daily&tz=Europe/Paris", "tz"),
    ] {
        let r = get(q);
        assert_eq!((r.status, field(&r)), (422, json!(named)), "{q}");
    }
}

/// `GET /v1/customers`: each catalog customer with quota, used and remaining per feature in the
/// key's environment, the usage the gateways enforce.
#[test]
fn customers_list_usage_against_quota_per_feature() {
    let a = Agent::start(
        "customers",
        &catalog(),
        &["--environments", "sandbox,production"],
    );
    for i in 0..2 {
        let r = a.call(
            "POST",
            "/v1/events",
            SANDBOX,
            &json!({"events": [ev(&format!("c{i}"), "acme", 1, "sandbox")]}),
        );
        assert_eq!(body(&r)["accepted"], 1);
    }
    let list = |key: &str, q: &str| {
        a.call(
            "GET",
            &format!("/v1/customers{q}"),
            key,
            &serde_json::Value::Null,
        )
    };
    let r = list(SANDBOX, "");
    assert_eq!(r.status, 200, "{:?}", body(&r));
    assert_eq!(body(&r)["environment"], "sandbox");
    let data = body(&r)["data"].as_array().unwrap().clone();
    let acme = data.iter().find(|c| c["customer_id"] == "acme").unwrap();
    let search = acme["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == "search")
        .unwrap();
    assert_eq!(
        (
            search["quota"].clone(),
            search["used"].clone(),
            search["remaining"].clone()
        ),
        (json!(5), json!(2), json!(3))
    );
    assert!(
        search["window_start"].is_string() && search["window_end"].is_string(),
        "{search}"
    );
    let export = acme["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == "export")
        .unwrap();
    assert_eq!(export["allowed"], false);
    // Production holds none of it; a sandbox key cannot read production.
    let r = list(LIVE, "");
    let prod = body(&r)["data"].as_array().unwrap().clone();
    let acme = prod.iter().find(|c| c["customer_id"] == "acme").unwrap();
    let search = acme["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == "search")
        .unwrap();
    assert_eq!(search["used"], 0);
    let r = list(SANDBOX, "?environment=production");
    assert_eq!(r.status, 403);
}

/// Every partner starts in sandbox mode: a customer's first key makes it a partner whose usage
/// goes to the sandbox until it is toggled live. A customer already in use (production events,
/// keys in the catalog) keeps the mode it has; the catalog's explicit `"sandbox_mode": false`
/// marks a customer live from its first key; a partner's mode never moves with a new key.
#[test]
fn new_partners_start_in_sandbox_and_customers_in_use_keep_their_mode() {
    let mut cat = catalog();
    for c in ["umbrella", "hooli"] {
        cat["customers"][c] = json!({"features": {"search": {"metric": "api_calls"}}});
    }
    cat["customers"]["initech"] =
        json!({"sandbox_mode": false, "features": {"search": {"metric": "api_calls"}}});
    cat["consumer_keys"].as_array_mut().unwrap().push(
        json!({"key_id": "hooli-static", "key": "ck_static_hooli_key", "customer_id": "hooli"}),
    );
    let a = Agent::start(
        "new-partners",
        &cat,
        &["--environments", "sandbox,production"],
    );
    let create = |id: &str| {
        let k = a.call(
            "POST",
            "/v1/admin/partners",
            ADMIN,
            &json!({"customer_id": id}),
        );
        assert_eq!(k.status, 201, "{}", body(&k));
        body(&k)
    };
    let meter_env = |id: &str| {
        let m = a.call(
            "POST",
            "/v1/meter",
            LIVE,
            &json!({"tenantId": id, "metricKey": "api_calls"}),
        );
        body(&m)["environment"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // A new customer: sandbox until toggled.
    assert_eq!(create("umbrella")["partner"]["sandbox_mode"], true);
    assert_eq!(meter_env("umbrella"), "sandbox");
    // acme is already billed in production: a key does not move it.
    assert_eq!(meter_env("acme"), "production");
    assert_eq!(create("acme")["partner"]["sandbox_mode"], false);
    assert_eq!(meter_env("acme"), "production");
    // hooli has a key in the catalog: in use, stays live.
    assert_eq!(create("hooli")["partner"]["sandbox_mode"], false);
    // The catalog says initech is live.
    assert_eq!(create("initech")["partner"]["sandbox_mode"], false);
    assert_eq!(meter_env("initech"), "production");
    // Going live, then a second key: still live.
    let r = a.call(
        "POST",
        "/v1/admin/partners/umbrella/toggle-sandbox",
        ADMIN,
        &json!({"sandbox_mode": false}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(create("umbrella")["partner"]["sandbox_mode"], false);
    assert_eq!(meter_env("umbrella"), "production");
}

/// The key list says what the console's Keys page shows: created, last used (by a decision
/// here), and the state: active, rotating (replaced, working until its expiry), revoked.
#[test]
fn keys_are_listed_with_their_state_and_last_use() {
    let a = Agent::start("key-list", &catalog(), &[]);
    let k = body(&a.call(
        "POST",
        "/v1/admin/partners",
        ADMIN,
        &json!({"customer_id": "acme"}),
    ));
    let (id, secret) = (
        k["key_id"].as_str().unwrap().to_string(),
        k["api_key"].as_str().unwrap().to_string(),
    );
    let find = |id: &str| -> serde_json::Value {
        let l = body(&a.call("GET", "/v1/admin/keys", ADMIN, &serde_json::Value::Null));
        l["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["key_id"] == id)
            .cloned()
            .unwrap()
    };
    let k0 = find(&id);
    assert_eq!(
        (k0["status"].clone(), k0["last_used_at"].clone()),
        (json!("active"), serde_json::Value::Null)
    );
    assert!(k0["created_at"].as_str().unwrap().ends_with('Z'));
    let r = a.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"apiKey": secret, "featureKey": "search"}),
    );
    assert_eq!(r.status, 200);
    assert!(find(&id)["last_used_at"].is_string(), "{}", find(&id));
    let r = body(&a.call(
        "POST",
        &format!("/v1/admin/keys/{id}/rotate"),
        ADMIN,
        &json!({"grace_period_secs": 600}),
    ));
    assert_eq!(find(&id)["status"], "rotating");
    let new_id = r["new"]["key_id"].as_str().unwrap().to_string();
    assert_eq!(find(&new_id)["status"], "active");
    a.call(
        "POST",
        &format!("/v1/admin/keys/{new_id}/revoke"),
        ADMIN,
        &serde_json::Value::Null,
    );
    assert_eq!(find(&new_id)["status"], "revoked");
    assert!(
        !body(&a.call("GET", "/v1/admin/keys", ADMIN, &serde_json::Value::Null))
            .to_string()
            .contains(&secret[5..]),
        "no secret listed"
    );
}

/// The invoice preview bills the catalog's customers on their `billing` terms (coupons, tax,
/// prepaid credits), a customer without events included.
#[test]
fn invoice_previews_follow_each_customers_billing_terms() {
    let mut cat = catalog();
    cat["plan"] = json!({"currency": "USD", "charges": [
        {"id": "platform", "model": "flat", "amount": "10.00"},
        {"id": "calls", "metric": "api_calls", "model": "unit", "unit_amount": "0.01"}]});
    cat["customers"]["acme"]["billing"] = json!({"tax_rate_percent": 20, "prepaid_credits": "5",
        "coupons": [{"id": "launch", "percent_off": "10", "duration": "forever"}]});
    cat["customers"]["initech"] = json!({"features": {}, "billing": {"tax_rate_percent": "20"}});
    let a = Agent::start(
        "preview-terms",
        &cat,
        &[
            "--environments",
            "sandbox,production",
            "--tenant-keys",
            LIVE,
        ],
    );
    for i in 0..3 {
        let r = a.call(
            "POST",
            "/v1/meter",
            LIVE,
            &json!({"tenantId": "acme", "metricKey": "api_calls", "id": format!("pv-{i}")}),
        );
        assert_eq!(body(&r)["environment"], "production", "{}", body(&r));
    }
    let r = a.call(
        "GET",
        "/v1/invoices/preview",
        LIVE,
        &serde_json::Value::Null,
    );
    assert_eq!(r.status, 200, "{}", body(&r));
    let invoices = body(&r)["invoices"].as_array().unwrap().clone();
    let of = |id: &str| {
        invoices
            .iter()
            .find(|i| i["customer_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id}: {invoices:?}"))
    };
    let sum = |i: &serde_json::Value| {
        [
            "subtotal",
            "discounts",
            "tax",
            "total",
            "credits_applied",
            "amount_due",
        ]
        .map(|k| i[k].as_str().unwrap().to_string())
    };
    // acme: 10.00 + 3 × 0.01 = 10.03; 10% off = 1.00; 20% tax on 9.03 = 1.81; 5.00 of credits.
    assert_eq!(
        sum(&of("acme")),
        ["10.03", "1.00", "1.81", "10.84", "5.00", "5.84"]
    );
    // initech has no events and is invoiced its flat fee, with tax.
    assert_eq!(
        sum(&of("initech")),
        ["10.00", "0.00", "2.00", "12.00", "0.00", "12.00"]
    );
}
