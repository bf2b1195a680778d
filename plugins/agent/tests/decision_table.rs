//! One decision table, every host: the agent's `/v1/canAccess`, the proxy-wasm filter (the
//! real `.wasm` in the replay harness), the Lambda authorizer and the native Envoy module (in a
//! real Envoy) answer `host-tests/decisions/access-table.json` the same way, from the same
//! snapshot (the one the agent serves at `/v1/entitlements`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_core::Timestamp;
use aforo_host_tests::artifacts::filter_module;
use aforo_host_tests::envoy::{bootstrap, cluster, free_port, Envoy, FilterKind};
use aforo_host_tests::http1::Client;
use aforo_host_tests::replay::{run, RunOptions};
use aforo_host_tests::servers::{wall_now, IngestServer, Upstream};
use aforo_host_tests::traffic::parse_jsonl;
use common::table::{load as table, metric_of, Case};
use common::{body, Agent, SANDBOX};
use serde_json::{json, Value};

fn agent_decisions(agent: &Agent, catalog: &Value, cases: &[Case]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let mut req = json!({"featureKey": c.feature});
        for (field, v) in [
            ("apiKey", &c.key),
            ("tenantId", &c.tenant),
            ("clientIp", &c.client_ip),
        ] {
            if let Some(v) = v {
                req[field] = json!(v);
            }
        }
        let r = agent.call("POST", "/v1/canAccess", SANDBOX, &req);
        let b = body(&r);
        let decision = b["error"]["code"].as_str().unwrap_or("allowed").to_string();
        if r.status == 200 {
            // The gateway meters what it served, before the next request.
            let m = agent.call(
                "POST",
                "/v1/meter",
                SANDBOX,
                &json!({"tenantId": b["customer_id"], "metricKey": metric_of(catalog, &c.feature), "id": format!("table-{i}")}),
            );
            assert_eq!(
                m.status,
                202,
                "{}: meter: {}",
                c.name,
                String::from_utf8_lossy(&m.body)
            );
        }
        out.push((r.status, decision));
    }
    out
}

/// The gateway configuration both proxy-side hosts (the filter, the Lambda authorizer) run the
/// table with: a route per feature, the trusted customer header, the agent's snapshot inline.
fn gateway_config(snapshot: &Value, catalog: &Value, cases: &[Case]) -> Value {
    let mut features: Vec<&str> = cases.iter().map(|c| c.feature.as_str()).collect();
    features.sort_unstable();
    features.dedup();
    let routes: Vec<Value> = features
        .iter()
        .map(|f| json!({"path_prefix": format!("/f/{f}"), "feature": f, "metric": metric_of(catalog, f)}))
        .collect();
    json!({
        "api_key": "sk_test_decision_table",
        "product_id": "table",
        "ingest_url": "http://ingest.aforo.test:8080",
        "customer_header": "x-customer-id",
        "routes": routes,
        "entitlements": snapshot,
    })
}

fn headers_of(i: usize, c: &Case) -> Value {
    let mut headers = json!({"x-request-id": format!("table-{i}")});
    if let Some(k) = &c.key {
        headers["x-api-key"] = json!(k);
    }
    if let Some(t) = &c.tenant {
        headers["x-customer-id"] = json!(t);
    }
    headers
}

fn filter_decisions(snapshot: &Value, catalog: &Value, cases: &[Case]) -> Vec<(u16, String)> {
    let config = gateway_config(snapshot, catalog, cases);
    let start = wall_now();
    let lines: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let headers = headers_of(i, c);
            let peer = match c.client_ip.as_deref() {
                Some(ip) if ip.contains(':') => format!("[{ip}]:40000"),
                Some(ip) => format!("{ip}:40000"),
                None => "192.0.2.1:40000".to_string(),
            };
            let t = Timestamp::from_unix_nanos(start.unix_nanos() + i as i64 * 10_000_000);
            json!({"time": t.to_rfc3339(), "request": {"path": format!("/f/{}", c.feature), "headers": headers, "peer": peer}})
                .to_string()
        })
        .collect();
    let traffic = parse_jsonl("table.jsonl", &lines.join("\n"), Timestamp::EPOCH).unwrap();
    let mut o = RunOptions::new(
        filter_module().unwrap(),
        config.to_string().into_bytes(),
        traffic,
    );
    o.quiet = true;
    let report = run(&o).unwrap();
    assert_eq!(report.traps, 0);
    report
        .statuses
        .iter()
        .copied()
        .zip(report.decisions.iter().map(|d| d.to_string()))
        .collect()
}

/// The native module in a real Envoy on the same table. The peer is loopback, named a trusted
/// proxy, so a case's client IP travels in `X-Forwarded-For` (Envoy passes it on unchanged:
/// `use_remote_address` is off).
fn native_decisions(snapshot: &Value, catalog: &Value, cases: &[Case]) -> Vec<(u16, String)> {
    let mut config = gateway_config(snapshot, catalog, cases);
    config["trusted_proxies"] = json!(["127.0.0.1/32"]);
    // Events go to the filter's default cluster, served by a recording ingest.
    config.as_object_mut().unwrap().remove("ingest_url");
    let upstream = Upstream::start().unwrap();
    let ingest = IngestServer::start(None).unwrap();
    let (port, admin) = (free_port(), free_port());
    let filter = FilterKind::Native.filter(&config.to_string(), &[]).unwrap();
    let yaml = bootstrap(
        port,
        admin,
        upstream.port(),
        &filter,
        &cluster("aforo_ingest_sandbox", ingest.port()),
    );
    let envoy = Envoy::start(&yaml, port, admin, 1).unwrap_or_else(|e| panic!("{e}"));
    let mut client = Client::new(&format!("127.0.0.1:{}", envoy.port));
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut headers: Vec<(String, String)> = headers_of(i, c)
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            if let Some(ip) = &c.client_ip {
                headers.push(("x-forwarded-for".into(), ip.clone()));
            }
            let r = client
                .request("GET", &format!("/f/{}", c.feature), &headers, &[])
                .unwrap();
            let decision = serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|b| b["error"]["code"].as_str().map(str::to_string))
                .unwrap_or_else(|| "allowed".into());
            (r.status, decision)
        })
        .collect()
}

/// The Lambda authorizer (the core through wasm-bindgen, in Node) on the same table: the HTTP
/// API answer carries every reason; the REST answer must agree (Allow, `Unauthorized` for 401,
/// Deny with the same code otherwise).
fn lambda_decisions(snapshot: &Value, catalog: &Value, cases: &[Case]) -> Vec<(u16, String)> {
    let requests: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"method": "GET", "path": format!("/f/{}", c.feature), "headers": headers_of(i, c),
                   "sourceIp": c.client_ip.clone().unwrap_or_else(|| "192.0.2.1".into())})
        })
        .collect();
    let input = json!({"config": gateway_config(snapshot, catalog, cases), "requests": requests});
    let answers = common::node::driver("authorize.js", &input, &[]);
    answers
        .as_array()
        .unwrap()
        .iter()
        .zip(cases)
        .map(|(a, c)| {
            let ctx = &a["v2"]["context"];
            let status = ctx["status"].as_u64().unwrap() as u16;
            let code = ctx["code"].as_str().unwrap_or("allowed").to_string();
            assert_eq!(a["v2"]["isAuthorized"], json!(status == 200), "{}", c.name);
            let rest = a["v1"]["effect"].as_str().unwrap();
            let want = match status {
                200 => "Allow",
                401 => "Unauthorized",
                _ => "Deny",
            };
            assert_eq!(rest, want, "{}: REST answer", c.name);
            if rest == "Deny" {
                assert_eq!(a["v1"]["context"]["code"], json!(code), "{}", c.name);
            }
            (status, code)
        })
        .collect()
}

#[test]
fn every_host_decides_the_shared_table_alike() {
    let (catalog, cases) = table();
    // The table has customers named by a trusted customer header: this gateway key may.
    let agent = Agent::start("table", &json!(catalog), &["--tenant-keys", SANDBOX]);
    let snap = agent.call("GET", "/v1/entitlements", SANDBOX, &Value::Null);
    assert_eq!(snap.status, 200);
    let snapshot = body(&snap);

    let from_agent = agent_decisions(&agent, &catalog, &cases);
    let from_filter = filter_decisions(&snapshot, &catalog, &cases);
    let from_lambda = lambda_decisions(&snapshot, &catalog, &cases);
    let from_native = native_decisions(&snapshot, &catalog, &cases);
    let mut wrong = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let expected = (c.status, c.decision.clone());
        let answers = [
            &from_agent[i],
            &from_filter[i],
            &from_lambda[i],
            &from_native[i],
        ];
        if answers.iter().any(|a| **a != expected) {
            wrong.push(format!(
                "case {i} {:?}: expected {expected:?}, agent {:?}, filter {:?}, lambda {:?}, native {:?}",
                c.name, from_agent[i], from_filter[i], from_lambda[i], from_native[i]
            ));
        }
    }
    assert!(wrong.is_empty(), "decisions differ:\n{}", wrong.join("\n"));
    assert!(cases.len() >= 20, "the table covers every decision");
}
