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

fn start_agent(tag: &str) -> (Agent, Vec<Case>) {
    let (catalog, cases) = table::load();
    (Agent::start(tag, &catalog, &[]), cases)
}

#[test]
fn the_apigee_shared_flows_get_the_answers_they_branch_on() {
    let (agent, cases) = start_agent("apigee");
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
    let (agent, cases) = start_agent("apim");
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
    let (agent, cases) = start_agent("kong");
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
