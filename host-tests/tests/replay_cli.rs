//! `aforo-replay` run as a process, as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_host_tests::artifacts::{binary, filter_module, repo_root};
use serde_json::Value;
use std::process::Command;

fn replay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("aforo-replay").unwrap())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample(name: &str) -> String {
    repo_root()
        .join("host-tests/samples")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn rate_prints_the_expected_invoice_for_the_shipped_sample() {
    let (code, out, err) = replay(&[
        "rate",
        "--plan",
        &sample("plan.json"),
        "--events",
        &sample("events.jsonl"),
        "--now",
        "2026-03-15T12:00:00Z",
    ]);
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    let want: Value =
        serde_json::from_slice(&std::fs::read(sample("expected-invoice.json")).unwrap()).unwrap();
    assert_eq!(got, want);
}

#[test]
fn rate_as_a_table_shows_totals() {
    let (code, out, _) = replay(&[
        "rate",
        "--plan",
        &sample("plan.json"),
        "--events",
        &sample("events.jsonl"),
        "--now",
        "2026-03-15T12:00:00Z",
        "--format",
        "table",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("total 205.66"), "{out}");
    assert!(out.contains("sandbox: preview, never billed"), "{out}");
    assert!(out.contains("timestamp_in_future 1"), "{out}");
}

#[test]
fn invalid_inputs_exit_2_and_say_where() {
    let dir = std::env::temp_dir().join(format!("aforo-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_plan = dir.join("bad-plan.json");
    std::fs::write(&bad_plan, r#"{"currency":"USD","charges":[{"id":"a","metric":"m","model":"graduated","tiers":[{"up_to":"10","unit_amount":"1"},{"up_to":"5","unit_amount":"1"},{"up_to":null,"unit_amount":"1"}]}]}"#).unwrap();
    let (code, _, err) = replay(&[
        "rate",
        "--plan",
        bad_plan.to_str().unwrap(),
        "--events",
        &sample("events.jsonl"),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("charges[0].tiers[1].up_to: must be greater than 10"),
        "{err}"
    );

    let bad_events = dir.join("bad.jsonl");
    std::fs::write(&bad_events, "{\"id\": \"a\"}\n{\"id\": \n").unwrap();
    let (code, _, err) = replay(&[
        "rate",
        "--plan",
        &sample("plan.json"),
        "--events",
        bad_events.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.jsonl:2"), "{err}");

    let truncated = dir.join("t.jsonl");
    std::fs::write(
        &truncated,
        "{\"request\": {\"path\": \"/a\"}}\n{\"request\": {\"path\": \"/a\"\n",
    )
    .unwrap();
    let module = filter_module().unwrap();
    let config = repo_root().join("host-tests/scenarios/minimum-spend/config.json");
    let (code, _, err) = replay(&[
        "run",
        "--module",
        module.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--traffic",
        truncated.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("t.jsonl: line 2"), "{err}");

    let empty_har = dir.join("e.har");
    std::fs::write(&empty_har, r#"{"log": {"version": "1.2", "entries": []}}"#).unwrap();
    let (code, _, err) = replay(&[
        "run",
        "--module",
        module.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--traffic",
        empty_har.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("the HAR has no entries"), "{err}");

    let bad_config = dir.join("c.json");
    std::fs::write(
        &bad_config,
        r#"{"api_key": "sk_test_x", "product_id": "p", "flush_interval_ms": 1}"#,
    )
    .unwrap();
    let traffic = repo_root().join("host-tests/scenarios/minimum-spend/traffic.jsonl");
    let (code, _, err) = replay(&[
        "run",
        "--module",
        module.to_str().unwrap(),
        "--config",
        bad_config.to_str().unwrap(),
        "--traffic",
        traffic.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("flush_interval_ms: must be 10..=3600000, got 1"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_prints_a_report_and_scenario_checks_expectations() {
    let dir = repo_root().join("host-tests/scenarios/minimum-spend");
    let (code, out, err) = replay(&[
        "scenario",
        dir.to_str().unwrap(),
        "--format",
        "table",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("minimum true-up 30.00   discounts 0.00   tax 0.00   total 100.00"),
        "{out}"
    );
    assert!(err.contains("as expected"), "{err}");
}

#[test]
fn every_command_answers_help_and_version_and_lists_its_flags() {
    let (code, out, _) = replay(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("aforo-replay "), "{out}");
    let (code, out, _) = replay(&["--help"]);
    assert_eq!(code, 0);
    for c in ["run", "rate", "send", "scenario", "upstream"] {
        assert!(out.contains(c), "{c} in\n{out}");
    }
    // Every flag each command accepts is in its --help (once --seed and --chunk were accepted
    // but not listed).
    for (cmd, flags) in [
        (
            "run",
            &[
                "--module",
                "--config",
                "--traffic",
                "--plan",
                "--profile",
                "--workers",
                "--ingest-faults",
                "--snapshot",
                "--env",
                "--drain",
                "--seed",
                "--chunk",
                "--format",
                "--log-module",
                "--quiet",
            ][..],
        ),
        (
            "rate",
            &[
                "--plan",
                "--events",
                "--now",
                "--customers",
                "--period",
                "--format",
            ][..],
        ),
        (
            "send",
            &[
                "--target",
                "--traffic",
                "--concurrency",
                "--format",
                "--quiet",
            ][..],
        ),
        ("scenario", &["--module", "--format", "--quiet"][..]),
        ("upstream", &["--port"][..]),
    ] {
        let (code, out, err) = replay(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd} --help: {err}");
        for f in flags {
            assert!(out.contains(f), "{cmd} --help lacks {f}:\n{out}");
        }
    }
    // A wrong value names the flag and what it accepts; exit status 2.
    let (code, _, err) = replay(&[
        "run",
        "--module",
        "m",
        "--config",
        "c",
        "--traffic",
        "t",
        "--profile",
        "nginx",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--profile") && err.contains("envoy") && err.contains("kong"),
        "{err}"
    );
    let (code, _, err) = replay(&["run", "--modul", "m"]);
    assert_eq!(code, 2);
    assert!(err.contains("--module"), "a suggestion: {err}");
}

/// The published schema of the run report, as a validator (of the report, or of one of its
/// `$defs` for the lines of `--format jsonl`).
fn report_validator(def: Option<&str>) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("docs/replay-report.schema.json")).unwrap();
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    if let Some(d) = def {
        schema = serde_json::json!({
            "$schema": schema["$schema"],
            "$defs": schema["$defs"],
            "$ref": format!("#/$defs/{d}"),
        });
    }
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what} breaks the schema: {errors:#?}");
}

/// Requests in the clock-skew scenario's traffic (one every 500 ms).
const SKEW_REQUESTS: usize = 1000;

/// `run` on a scenario's files, with its gateway clock skew.
fn run_scenario_files(name: &str, skew: &str, format: &str) -> String {
    let dir = repo_root().join("host-tests/scenarios").join(name);
    let module = filter_module().unwrap();
    let file = |f: &str| dir.join(f).display().to_string();
    let (code, out, err) = replay(&[
        "run",
        "--module",
        module.to_str().unwrap(),
        "--config",
        &file("config.json"),
        "--traffic",
        &file("traffic.jsonl"),
        "--plan",
        &file("plan.json"),
        "--gateway-clock-skew",
        skew,
        "--format",
        format,
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn the_json_report_lists_every_request_with_its_outcome_and_every_stored_event() {
    // The clock-skew scenario: the gateway runs 6 minutes ahead, so every request is served
    // (200, allowed) and every event is refused by the ingest as timestamp_in_future.
    let report: Value =
        serde_json::from_str(&run_scenario_files("clock-skew", "+6m", "json")).unwrap();
    assert_valid(&report_validator(None), &report, "the clock-skew report");
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), SKEW_REQUESTS);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i as u64);
        assert_eq!(r["method"], "GET");
        assert_eq!(r["path"], "/v1/search");
        assert_eq!(r["customer"], "cust_a");
        assert_eq!(r["status"], 200);
        assert_eq!(r["decision"], "allowed");
        let events = r["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "request {i}: {r}");
        assert_eq!(events[0]["outcome"], "rejected");
        assert_eq!(events[0]["code"], "timestamp_in_future");
    }
    let ids: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| r["events"][0]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), SKEW_REQUESTS, "one distinct event per request");
    assert_eq!(report["stored_events"], serde_json::json!([]));

    // The same traffic with clocks in step: every event stored, each listed once, each tied to
    // the request that made it.
    let report: Value =
        serde_json::from_str(&run_scenario_files("clock-skew", "0s", "json")).unwrap();
    assert_valid(&report_validator(None), &report, "the report without skew");
    let stored = report["stored_events"].as_array().unwrap();
    assert_eq!(stored.len(), SKEW_REQUESTS);
    let results = report["results"].as_array().unwrap();
    for (r, time) in results.iter().zip(0..) {
        let event = &r["events"][0];
        assert_eq!(event["outcome"], "stored", "{r}");
        let e = stored.iter().find(|e| e["id"] == event["id"]).unwrap();
        assert_eq!(e["customer_id"], "cust_a");
        assert_eq!(e["metric"], "api_calls");
        // Request n arrives at 09:00:00 + n × 500 ms; its event carries that time.
        let at = aforo_core::time::parse_rfc3339(e["timestamp"].as_str().unwrap()).unwrap();
        let start = aforo_core::time::parse_rfc3339("2026-03-02T09:00:00Z").unwrap();
        assert_eq!(at.millis_since(start), time * 500, "{e} for request {time}");
    }
}

#[test]
fn jsonl_streams_requests_then_events_then_the_summary() {
    let out = run_scenario_files("clock-skew", "0s", "jsonl");
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    let n = SKEW_REQUESTS;
    assert_eq!(kinds.len(), 2 * n + 1);
    assert!(kinds[..n].iter().all(|k| *k == "request"), "{kinds:?}");
    assert!(kinds[n..2 * n].iter().all(|k| *k == "event"), "{kinds:?}");
    assert_eq!(kinds[2 * n], "summary");
    let request = report_validator(Some("request_result"));
    let event = report_validator(Some("stored_event"));
    let whole = report_validator(None);
    for l in &lines {
        match l["type"].as_str().unwrap() {
            "request" => assert_valid(&request, l, "a request line"),
            "event" => assert_valid(&event, l, "an event line"),
            _ => {
                // The summary is the report without the lines above.
                let mut s = l.clone();
                let m = s.as_object_mut().unwrap();
                m.remove("type");
                m.insert("results".into(), Value::Array(Vec::new()));
                m.insert("stored_events".into(), Value::Array(Vec::new()));
                assert_valid(&whole, &s, "the summary line");
                assert_eq!(l["ingest"]["accepted"], SKEW_REQUESTS);
            }
        }
    }
}

/// The billing pipeline from the command line: every customer listed is invoiced (an idle one
/// its flat fee and the first tier's flat fee), the period prorates and bounds the events, and
/// coupons, tax and prepaid credits make the amount due.
#[test]
fn rate_with_customers_and_a_period_invoices_the_idle_and_runs_every_stage() {
    let billing = |f: &str| sample(&format!("billing/{f}"));
    let (code, out, err) = replay(&[
        "rate",
        "--plan",
        &billing("plan.json"),
        "--events",
        &billing("events.jsonl"),
        "--customers",
        &billing("customers.json"),
        "--period",
        "2026-03-01T00:00:00Z/2026-04-01T00:00:00Z",
        "--now",
        "2026-04-01T12:00:00Z",
    ]);
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    let inv = |id: &str| {
        got["invoices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["customer_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no invoice for {id}: {got}"))
    };
    let summary = |i: &Value| {
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
    let idle = inv("idle");
    let lines: Vec<(&str, &str)> = idle["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["charge"].as_str().unwrap(), l["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(lines, [("platform", "49.00"), ("api", "10.00")]);
    assert_eq!(
        summary(&idle),
        ["59.00", "0.00", "11.80", "70.80", "0.00", "70.80"]
    );
    // acme: 22 of March's 31 days of 49.00 = 34.77; 3,000 calls (February's are outside the
    // period) = 10.00 + 2,000 × 0.01 = 30.00; 10% coupon = 6.48; 20% tax on 58.29 = 11.66;
    // 20.00 of credits.
    let acme = inv("acme");
    assert_eq!(acme["lines"][0]["amount"], "34.77");
    assert_eq!(acme["lines"][1]["amount"], "30.00");
    assert_eq!(
        summary(&acme),
        ["64.77", "6.48", "11.66", "69.95", "20.00", "49.95"]
    );
    let names: Vec<&str> = acme["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "usage",
            "rollover",
            "aggregation",
            "rating",
            "adjustments",
            "commitment",
            "coupons",
            "tax",
            "credits",
            "settlement"
        ]
    );
    assert_eq!(got["events"]["outside_period"], 1);
    // A customers file with a mistake says where.
    let bad = std::env::temp_dir().join(format!("aforo-bad-customers-{}.json", std::process::id()));
    std::fs::write(
        &bad,
        r#"{"customers": [{"id": "x", "coupons": [{"id": "c"}]}]}"#,
    )
    .unwrap();
    let (code, _, err) = replay(&[
        "rate",
        "--plan",
        &billing("plan.json"),
        "--events",
        &billing("events.jsonl"),
        "--customers",
        &bad.display().to_string(),
        "--period",
        "2026-03-01T00:00:00Z",
    ]);
    let _ = std::fs::remove_file(&bad);
    assert_ne!(code, 0);
    assert!(err.contains("customers[0].coupons[0]"), "{err}");
}

/// The quick start's promise, in the harness: a configuration of only the key meters every
/// 2xx/3xx request of the traffic as one `api_calls`, each event with a product id (the
/// snapshot's, else `default`), whatever the path or method.
#[test]
fn a_key_alone_meters_every_billable_request_with_a_product() {
    let dir = std::env::temp_dir().join(format!("aforo-cli-key-only-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    std::fs::write(&config, r#"{"api_key": "sk_test_only_a_key"}"#).unwrap();
    let traffic = dir.join("traffic.jsonl");
    std::fs::write(
        &traffic,
        [
            // Served before the first sync (fail open): metered once the snapshot names the key.
            r#"{"time": "2026-03-15T12:00:00Z", "repeat": 3, "request": {"path": "/v1/anything?n={n}", "headers": {"x-api-key": "ck_acme"}}}"#,
            r#"{"request": {"method": "POST", "path": "/orders", "headers": {"x-api-key": "ck_acme"}}, "response": {"status": 201}}"#,
            r#"{"request": {"method": "DELETE", "path": "/orders/7", "headers": {"x-api-key": "ck_acme"}}, "response": {"status": 404}}"#,
            r#"{"request": {"path": "/health", "headers": {"x-api-key": "ck_acme"}}, "response": {"status": 500}}"#,
            // Once synced, an unknown key is refused.
            r#"{"time": "2026-03-15T12:00:05Z", "request": {"path": "/v1/anything", "headers": {"x-api-key": "ck_unknown"}}}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let module = filter_module().unwrap();
    for (product, expected) in [
        (Some("prod_from_snapshot"), "prod_from_snapshot"),
        (None, "default"),
    ] {
        let mut snapshot = serde_json::json!({
            "customers": {"acme": {"features": {"api_calls": {}}}},
            "consumer_keys": [{"key_id": "k", "hash": aforo_core::keys::hash_key("ck_acme").to_text(), "customer_id": "acme"}]
        });
        if let Some(p) = product {
            snapshot["product_id"] = Value::from(p);
        }
        let snap = dir.join("snapshot.json");
        std::fs::write(&snap, snapshot.to_string()).unwrap();
        let (code, out, err) = replay(&[
            "run",
            "--module",
            module.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--traffic",
            traffic.to_str().unwrap(),
            "--snapshot",
            snap.to_str().unwrap(),
            "--quiet",
        ]);
        assert_eq!(code, 0, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        let statuses: Vec<u64> = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, vec![200, 200, 200, 201, 404, 500, 401]);
        let stored = report["stored_events"].as_array().unwrap();
        assert_eq!(stored.len(), 4, "the 2xx requests: {stored:?}");
        for e in stored {
            assert_eq!(e["metric"], "api_calls");
            assert_eq!(e["quantity"], "1");
            assert_eq!(e["customer_id"], "acme");
            assert_eq!(e["product_id"], expected, "{e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Streamed (SSE) responses in a traffic file meter the same however the harness cuts them:
/// whole, a byte at a time, or at random places.
#[test]
fn streamed_responses_meter_the_same_however_they_are_cut() {
    let dir = std::env::temp_dir().join(format!("aforo-cli-sse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "api_key": "sk_test_streams", "product_id": "prod_llm", "customer_header": "x-customer-id",
            "routes": [{"method": "POST", "path_prefix": "/v1/chat", "feature": "chat",
                "meters": [
                    {"metric": "input_tokens", "quantity": {"from": "response_json", "pointer": "/usage/prompt_tokens"}},
                    {"metric": "output_tokens", "quantity": {"from": "response_json", "pointer": "/usage/completion_tokens"}}
                ],
                "properties": {"model": {"from": "response_json", "pointer": "/model"}}}]
        })
        .to_string(),
    )
    .unwrap();
    let traffic = dir.join("traffic.jsonl");
    let lines: Vec<String> = (0..20u64)
        .map(|n| {
            let body = aforo_host_tests::sse_upstream::openai_stream(10 + n, 2 + n);
            serde_json::json!({
                "request": {"method": "POST", "path": "/v1/chat/completions",
                            "headers": {"x-customer-id": format!("cust_{}", n % 3)}},
                "response": {"status": 200, "headers": {"content-type": "text/event-stream"},
                             "body": String::from_utf8(body).unwrap()}
            })
            .to_string()
        })
        .collect();
    std::fs::write(&traffic, lines.join("\n")).unwrap();
    let module = filter_module().unwrap();
    // The stored events of a run over `traffic_file`: customer, metric, quantity, model.
    let run_on = |traffic_file: &std::path::Path,
                  extra: &[&str]|
     -> Vec<(String, String, String, String)> {
        let mut args = vec![
            "run",
            "--module",
            module.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--traffic",
            traffic_file.to_str().unwrap(),
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = replay(&args);
        assert_eq!(code, 0, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        let mut events: Vec<(String, String, String, String)> = report["stored_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let props: Value = serde_json::from_str(e["properties"].as_str().unwrap_or("{}"))
                    .unwrap_or_default();
                (
                    e["customer_id"].as_str().unwrap().to_string(),
                    e["metric"].as_str().unwrap().to_string(),
                    e["quantity"].as_str().unwrap().to_string(),
                    props["model"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        events.sort();
        events
    };
    let run = |extra: &[&str]| run_on(&traffic, extra);
    let whole = run(&[]);
    assert_eq!(whole.len(), 40, "{whole:?}");
    assert!(whole.iter().all(|e| e.3 == "gpt-4o-mini"), "{whole:?}");
    assert!(whole.contains(&(
        "cust_1".into(),
        "output_tokens".into(),
        "21".into(),
        "gpt-4o-mini".into()
    )));
    assert_eq!(run(&["--chunk", "1"]), whole);
    assert_eq!(run(&["--chunk", "random", "--seed", "7"]), whole);
    assert_eq!(run(&["--chunk", "random", "--seed", "8"]), whole);
    // The same traffic as a HAR recording (browsers and proxies export streams this way).
    let entries: Vec<Value> = (0..20u64)
        .map(|n| {
            let body = aforo_host_tests::sse_upstream::openai_stream(10 + n, 2 + n);
            serde_json::json!({
                "startedDateTime": format!("2026-03-15T12:00:{:02}.000Z", n),
                "request": {"method": "POST", "url": "https://api.example.com/v1/chat/completions",
                            "headers": [{"name": "X-Customer-Id", "value": format!("cust_{}", n % 3)}]},
                "response": {"status": 200, "headers": [{"name": "Content-Type", "value": "text/event-stream; charset=utf-8"}],
                             "content": {"size": body.len(), "mimeType": "text/event-stream", "text": String::from_utf8(body).unwrap()}}
            })
        })
        .collect();
    let har = dir.join("traffic.har");
    std::fs::write(
        &har,
        serde_json::json!({"log": {"version": "1.2", "entries": entries}}).to_string(),
    )
    .unwrap();
    assert_eq!(run_on(&har, &["--chunk", "random", "--seed", "3"]), whole);
    let (code, _, err) = replay(&["run", "--chunk", "sometimes"]);
    assert_eq!(code, 2);
    assert!(err.contains("random"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
