//! The gateway policies users copy (`deploy-examples/apigee`, `azure-apim`, `kong/lua`) against
//! a running agent: the requests they build reach the agent, the answers they branch on are the
//! ones it gives, and the shared decision table comes out as the gateway's client would see it.
//! A change to the agent's API that breaks an example fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod policies;

use aforo_host_tests::artifacts::repo_root;
use common::table::{self, Case};
use common::{body, Agent, SANDBOX};
use policies::{AgentCall, GatewayRequest, Outcome};
use serde_json::Value;

fn request(i: usize, c: &Case, tag: &str) -> GatewayRequest {
    let mut headers = Vec::new();
    if let Some(k) = &c.key {
        headers.push(("x-api-key".to_string(), k.clone()));
    }
    GatewayRequest {
        headers,
        client_ip: c.client_ip.clone().unwrap_or_else(|| "192.0.2.1".into()),
        feature: c.feature.clone(),
        request_id: format!("{tag}-{i}"),
    }
}

/// Compares outcomes with the table; a 429 must carry `Retry-After` to the client.
fn check(example: &str, cases: &[(usize, &Case)], outcomes: &[Outcome]) {
    let mut wrong = Vec::new();
    for ((i, c), o) in cases.iter().zip(outcomes) {
        if o.status != c.status || o.decision != c.decision {
            wrong.push(format!(
                "case {i} {:?}: expected {} {}, the {example} client got {} {}",
                c.name, c.status, c.decision, o.status, o.decision
            ));
        }
        if o.status == 429
            && o.retry_after
                .as_deref()
                .and_then(|s| s.parse::<u64>().ok())
                .is_none()
        {
            wrong.push(format!(
                "case {i} {:?}: 429 without a Retry-After in seconds: {o:?}",
                c.name
            ));
        }
    }
    assert!(wrong.is_empty(), "{example}:\n{}", wrong.join("\n"));
}

/// The meter calls were accepted and counted: acme's searches are the quota's 3 units.
fn check_metering(agent: &Agent, calls: &[AgentCall], example: &str) {
    let meters: Vec<&AgentCall> = calls.iter().filter(|c| c.path == "/v1/meter").collect();
    assert!(!meters.is_empty(), "{example}: no meter call was made");
    for m in &meters {
        assert_eq!(m.status, 202, "{example}: meter call refused: {m:?}");
    }
    let usage = agent.call(
        "GET",
        "/v1/usage?environment=sandbox",
        SANDBOX,
        &Value::Null,
    );
    assert_eq!(usage.status, 200);
    let rows = body(&usage)["usage"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let used = |customer: &str, metric: &str| {
        rows.iter()
            .find(|r| r["customer_id"] == customer && r["metric"] == metric)
            .and_then(|r| r["quantity"].as_str().map(str::to_string))
    };
    assert_eq!(
        used("acme", "api_calls").as_deref(),
        Some("3"),
        "{example}: {rows:?}"
    );
    assert_eq!(
        used("acme", "reports").as_deref(),
        Some("2"),
        "{example}: {rows:?}"
    );
}

/// The agent with the table's catalog; `tenant`: the gateway key may name customers
/// (`tenant_keys`), as a gateway that authenticates callers itself must be configured.
fn start_agent(tag: &str, tenant: bool) -> (Agent, Vec<Case>) {
    let (catalog, cases) = table::load();
    let flags: &[&str] = if tenant {
        &["--tenant-keys", SANDBOX]
    } else {
        &[]
    };
    (Agent::start(tag, &catalog, flags), cases)
}

#[test]
fn the_apigee_shared_flows_get_the_answers_they_branch_on() {
    let (agent, cases) = start_agent("apigee", false);
    let mut apigee = policies::apigee::Apigee::load(
        &repo_root().join("deploy-examples/apigee"),
        &agent.addr(),
        SANDBOX,
    );
    // A PreProxyFlowHook runs before any proxy policy, so there is no trusted customer header:
    // the Apigee example identifies callers by consumer key only.
    let run: Vec<(usize, &Case)> = cases
        .iter()
        .enumerate()
        .filter(|(_, c)| c.tenant.is_none())
        .collect();
    let outcomes: Vec<Outcome> = run
        .iter()
        .map(|(i, c)| apigee.run(&request(*i, c, "apigee")))
        .collect();
    check("Apigee", &run, &outcomes);
    let access = apigee
        .calls
        .iter()
        .find(|c| c.path == "/v1/canAccess")
        .unwrap();
    let sent: Value = serde_json::from_str(&access.body).unwrap();
    assert_eq!(
        sent["featureKey"], "search",
        "the proxy name is the feature"
    );
    check_metering(&agent, &apigee.calls, "Apigee");
}

#[test]
fn the_apim_fragments_get_the_answers_they_branch_on() {
    let (agent, cases) = start_agent("apim", true);
    let mut apim = policies::apim::Apim::load(
        &repo_root().join("deploy-examples/azure-apim"),
        &agent.addr(),
        SANDBOX,
    );
    let run: Vec<(usize, &Case)> = cases.iter().enumerate().collect();
    let outcomes: Vec<Outcome> = run
        .iter()
        .map(|(i, c)| apim.run(&request(*i, c, "apim"), c.tenant.as_deref()))
        .collect();
    check("APIM", &run, &outcomes);
    check_metering(&agent, &apim.calls, "APIM");
}

#[test]
fn the_kong_lua_plugin_gets_the_answers_it_branches_on() {
    let (agent, cases) = start_agent("kong", true);
    let outcomes = policies::kong::run_table(
        &repo_root().join("deploy-examples/kong"),
        &table::path(),
        &agent.url(),
        SANDBOX,
    );
    let run: Vec<(usize, &Case)> = cases.iter().enumerate().collect();
    check("Kong", &run, &outcomes);
    let usage = agent.call(
        "GET",
        "/v1/usage?environment=sandbox",
        SANDBOX,
        &Value::Null,
    );
    let rows = body(&usage)["usage"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        rows.iter().any(|r| r["customer_id"] == "acme"
            && r["metric"] == "api_calls"
            && r["quantity"] == "3"),
        "the plugin's log phase metered acme's 3 searches: {rows:?}"
    );
}

// --- Hostile callers: whatever a client puts in a header, the decision is for the key's own
// customer or a refusal, through every gateway's real substitution rules.

const VICTIM_KEY: &str = "ck_hostile_victim_acme";
const OWN_KEY: &str = "ck_hostile_mallory_own";

fn hostile_catalog() -> Value {
    serde_json::json!({
        "customers": {
            "acme": {"features": {"search": {"metric": "api_calls", "quota": 1000}}},
            "mallory": {"features": {"search": {"metric": "api_calls", "quota": 1000}}}
        },
        "consumer_keys": [
            {"key_id": "acme-k", "key": VICTIM_KEY, "customer_id": "acme"},
            {"key_id": "mallory-k", "key": OWN_KEY, "customer_id": "mallory"}
        ]
    })
}

/// Header values a client controls, as bytes: injections, quotes, backslashes, control
/// characters, CR/LF, non-UTF-8, a comma list. Only the last is mallory's own key.
fn hostile_values() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        r#"","tenantId":"acme"#.to_string(),
        format!(r#"{OWN_KEY}","tenantId":"acme"#),
        format!(r#"{OWN_KEY}","apiKey":"{VICTIM_KEY}"#),
        format!(r#"x","apiKey":"{VICTIM_KEY}","featureKey":"search"#),
        format!(r#"{OWN_KEY}\"#),
        format!(r#"{OWN_KEY}\",\"tenantId\":\"acme"#),
        "\"".to_string(),
        "\\".to_string(),
        format!("{OWN_KEY}\r\nX-Api-Key: {VICTIM_KEY}"),
        format!("{OWN_KEY}\u{0}"),
        "\u{1}\u{1f}\u{7f}".to_string(),
        String::new(),
        format!("{OWN_KEY},{VICTIM_KEY}"),
        OWN_KEY.to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    v.push(vec![0xff, 0xfe, b'"', b',', b'"', 0xc3]);
    let mut latin1 = OWN_KEY.as_bytes().to_vec();
    latin1.push(0xe9);
    v.push(latin1);
    v
}

/// A gateway that reads header bytes into text the way a Java or .NET server does when it
/// accepts them at all: each byte one character (ISO-8859-1).
fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| c as char).collect()
}

/// Usage per customer at the agent.
fn usage_by_customer(agent: &Agent) -> std::collections::HashMap<String, String> {
    let usage = agent.call(
        "GET",
        "/v1/usage?environment=sandbox",
        SANDBOX,
        &Value::Null,
    );
    body(&usage)["usage"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["customer_id"].as_str().unwrap_or("").to_string(),
                r["quantity"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Every outcome is a refusal or an admission billed to mallory: acme is never billed, and
/// mallory exactly once per admitted request.
fn only_own_customer(example: &str, agent: &Agent, outcomes: &[(Vec<u8>, Outcome)]) {
    let admitted = outcomes.iter().filter(|(_, o)| o.status == 200).count();
    for (v, o) in outcomes {
        assert!(
            o.status == 200 || (400..500).contains(&o.status),
            "{example}: header {:?} got {o:?}",
            String::from_utf8_lossy(v)
        );
    }
    assert!(
        admitted >= 1,
        "{example}: mallory's own key was refused: {outcomes:?}"
    );
    let usage = usage_by_customer(agent);
    assert_eq!(
        usage.get("acme"),
        None,
        "{example}: acme was billed: {usage:?}"
    );
    assert_eq!(
        usage.get("mallory").map(String::as_str),
        Some(admitted.to_string().as_str()),
        "{example}: mallory is billed once per admitted request: {usage:?} {outcomes:?}"
    );
}

/// Each hostile value through a gateway, with what its client got.
fn hostile_outcomes(mut run: impl FnMut(&GatewayRequest) -> Outcome) -> Vec<(Vec<u8>, Outcome)> {
    hostile_values()
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let o = run(&hostile_request(i, &v));
            (v, o)
        })
        .collect()
}

fn hostile_request(i: usize, value: &[u8]) -> GatewayRequest {
    GatewayRequest {
        headers: vec![("x-api-key".to_string(), latin1(value))],
        client_ip: "192.0.2.1".into(),
        feature: "search".into(),
        request_id: format!("gw-generated-{i}"),
    }
}

#[test]
fn a_header_value_never_names_another_customer_through_the_apigee_flows() {
    let agent = Agent::start("hostile-apigee", &hostile_catalog(), &[]);
    let mut apigee = policies::apigee::Apigee::load(
        &repo_root().join("deploy-examples/apigee"),
        &agent.addr(),
        SANDBOX,
    );
    let outcomes = hostile_outcomes(|r| apigee.run(r));
    only_own_customer("Apigee", &agent, &outcomes);
    // Every canAccess body the flow built is JSON whose apiKey is the header's text, whole.
    for c in apigee.calls.iter().filter(|c| c.path == "/v1/canAccess") {
        let sent: Value = serde_json::from_str(&c.body)
            .unwrap_or_else(|e| panic!("Apigee sent a body that is not JSON ({e}): {}", c.body));
        assert!(sent.get("tenantId").is_none(), "{sent}");
    }
}

#[test]
fn a_header_value_never_names_another_customer_through_the_apim_fragments() {
    let agent = Agent::start("hostile-apim", &hostile_catalog(), &[]);
    let mut apim = policies::apim::Apim::load(
        &repo_root().join("deploy-examples/azure-apim"),
        &agent.addr(),
        SANDBOX,
    );
    let outcomes = hostile_outcomes(|r| apim.run(r, None));
    only_own_customer("APIM", &agent, &outcomes);
}

/// Runs requests through the real Kong plugin; header values are bytes (hex).
fn kong_requests(agent: &Agent, conf: Value, requests: Vec<Value>) -> Value {
    policies::kong::run_requests(
        &repo_root().join("deploy-examples/kong"),
        &agent.url(),
        SANDBOX,
        conf,
        requests,
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}

#[test]
fn a_header_value_never_names_another_customer_through_the_kong_plugin() {
    let agent = Agent::start("hostile-kong", &hostile_catalog(), &[]);
    let values = hostile_values();
    let requests: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::json!({"headers_hex": {"x-api-key": hex(v)}, "request_id": format!("nginx-{i}")}))
        .collect();
    let out = kong_requests(&agent, serde_json::json!({}), requests);
    let outcomes: Vec<(Vec<u8>, Outcome)> = values
        .into_iter()
        .zip(out["outcomes"].as_array().unwrap())
        .map(|(v, o)| {
            (
                v,
                Outcome {
                    status: o["status"].as_u64().unwrap() as u16,
                    decision: o["code"].as_str().unwrap_or("").to_string(),
                    retry_after: None,
                },
            )
        })
        .collect();
    only_own_customer("Kong", &agent, &outcomes);
}

#[test]
fn one_request_id_header_repeated_by_a_client_is_still_one_event_per_served_request() {
    let agent = Agent::start("kong-rid", &hostile_catalog(), &[]);
    let requests: Vec<Value> = (0..3)
        .map(|i| {
            serde_json::json!({"headers_hex": {"x-api-key": hex(OWN_KEY.as_bytes()), "x-request-id": hex(b"chosen-by-the-client")},
                "request_id": format!("nginx-{i}")})
        })
        .collect();
    let out = kong_requests(&agent, serde_json::json!({}), requests);
    // lua-cjson writes an empty table as {}.
    assert!(
        out["logs"].as_array().is_none_or(Vec::is_empty),
        "the plugin logged problems: {out}"
    );
    assert!(
        out["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == 200),
        "{out}"
    );
    let usage = usage_by_customer(&agent);
    assert_eq!(
        usage.get("mallory").map(String::as_str),
        Some("3"),
        "{usage:?}"
    );
    // Only when the operator trusts a header (an edge sets it) does it make one event.
    let trusted_agent = Agent::start("kong-rid-trusted", &hostile_catalog(), &[]);
    let requests: Vec<Value> = (0..3)
        .map(|i| {
            serde_json::json!({"headers_hex": {"x-api-key": hex(OWN_KEY.as_bytes()), "x-edge-request-id": hex(b"edge-1")},
                "request_id": format!("nginx-{i}")})
        })
        .collect();
    kong_requests(
        &trusted_agent,
        serde_json::json!({"request_id_header": "x-edge-request-id"}),
        requests,
    );
    let usage = usage_by_customer(&trusted_agent);
    assert_eq!(
        usage.get("mallory").map(String::as_str),
        Some("1"),
        "{usage:?}"
    );
}

/// `rate_limit_headers = false` (the filter's option, in the Kong plugin): clients get no
/// `RateLimit-*` header, allowed or refused, a 429 keeps `Retry-After`, and the quota is
/// enforced and every served request metered as with the default, which sends all four.
#[test]
fn the_kong_plugin_without_rate_limit_headers_still_enforces_and_meters() {
    let mut catalog = hostile_catalog();
    catalog["customers"]["mallory"]["features"]["search"]["quota"] = serde_json::json!(2);
    catalog["customers"]["acme"]["features"]["search"]["quota"] = serde_json::json!(2);
    let agent = Agent::start("kong-no-rl-headers", &catalog, &[]);
    let three = |key: &str, tag: &str| -> Vec<Value> {
        (0..3)
            .map(|i| serde_json::json!({"headers_hex": {"x-api-key": hex(key.as_bytes())}, "request_id": format!("{tag}-{i}")}))
            .collect()
    };
    let hidden = kong_requests(
        &agent,
        serde_json::json!({"rate_limit_headers": false}),
        three(OWN_KEY, "hidden"),
    );
    let shown = kong_requests(&agent, serde_json::json!({}), three(VICTIM_KEY, "shown"));
    let statuses = |out: &Value| -> Vec<u64> {
        out["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["status"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(statuses(&hidden), [200, 200, 429], "{hidden}");
    assert_eq!(statuses(&shown), [200, 200, 429], "{shown}");
    let names = |o: &Value| -> Vec<String> {
        o["headers"]
            .as_object()
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default()
    };
    for o in hidden["outcomes"].as_array().unwrap() {
        assert!(names(o).iter().all(|n| !n.starts_with("ratelimit-")), "{o}");
    }
    let refused = &hidden["outcomes"][2];
    assert!(refused["headers"]["retry-after"].is_string(), "{refused}");
    // The default passes the quota's state on, allowed and refused.
    for o in shown["outcomes"].as_array().unwrap() {
        assert!(o["headers"]["ratelimit-remaining"].is_string(), "{o}");
    }
    assert!(shown["outcomes"][2]["headers"]["retry-after"].is_string());
    let usage = usage_by_customer(&agent);
    assert_eq!(
        (
            usage.get("mallory").map(String::as_str),
            usage.get("acme").map(String::as_str)
        ),
        (Some("2"), Some("2")),
        "each served request metered once, with or without the headers: {usage:?}"
    );
}

#[test]
fn an_unreachable_agent_lets_apigee_requests_through_unmetered() {
    // The refusals of the table reach the client through the shared flows above (with the
    // model's reading that a non-success status leaves no response variable). Here: an agent
    // that cannot be reached lets the request through unmetered, as deploy-examples/apigee/README.md documents.
    let (agent, _) = start_agent("apigee-down", false);
    let mut apigee = policies::apigee::Apigee::load(
        &repo_root().join("deploy-examples/apigee"),
        &agent.addr(),
        SANDBOX,
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = closed.local_addr().unwrap().to_string();
    drop(closed);
    apigee.set_agent(&nobody);
    let o = apigee.run(&GatewayRequest {
        headers: vec![("x-api-key".into(), "ck_table_acme".into())],
        client_ip: "192.0.2.1".into(),
        feature: "search".into(),
        request_id: "down-1".into(),
    });
    assert_eq!(o.status, 200, "fail open: {o:?}");
    assert!(
        apigee.calls.iter().all(|c| c.path != "/v1/meter"),
        "nothing metered without a decision"
    );
}
