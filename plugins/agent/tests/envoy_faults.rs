//! Faults with the real processes: a real Envoy 1.40 with the filter sends to a real
//! aforo-agent, which forwards to a recording ingest. The agent is SIGKILLed and restarted,
//! Envoy is SIGKILLed and restarted; afterwards the ingest holds every acknowledged event
//! exactly once. Every process is stopped when its guard drops, also when an assertion fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_host_tests::envoy::Envoy;
use aforo_host_tests::servers::{IngestServer, Upstream};
use common::gateway::{envoy_with_agent, search, wait_for_sync};
use common::{catalog, Agent};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const GATEWAY_KEY: &str = "sk_test_envoy_faults_gateway";

struct Stack {
    ingest: IngestServer,
    agent: Agent,
    upstream: Upstream,
    yaml: String,
    port: u16,
    admin: u16,
}

/// The ingest, the agent forwarding to it, and an Envoy config whose filter sends to the agent
/// and syncs its snapshot from it (Envoy is started by the test).
fn stack(tag: &str, flush_interval_ms: u64) -> Stack {
    let ingest = IngestServer::start(None).unwrap();
    let mut cat = catalog();
    cat["consumer_keys"].as_array_mut().unwrap().push(
        json!({"key_id": "globex-static", "key": "ck_static_globex_key", "customer_id": "globex"}),
    );
    let agent = Agent::start(
        tag,
        &cat,
        &[
            "--upstream-url",
            &format!("http://127.0.0.1:{}", ingest.port()),
            "--upstream-sandbox-key",
            "sk_test_upstream_of_the_agent",
            "--flush-interval-ms",
            "100",
        ],
    );
    let upstream = Upstream::start().unwrap();
    let config = json!({
        "api_key": GATEWAY_KEY,
        "product_id": "prod_faults",
        "ingest_url": agent.url(),
        "ingest_cluster": "aforo_agent",
        "entitlements_url": format!("{}/v1/entitlements", agent.url()),
        "entitlements_cluster": "aforo_agent",
        "sync_interval_ms": 500,
        "flush_interval_ms": flush_interval_ms,
        "initial_backoff_ms": 200,
        "max_backoff_ms": 1000,
        "routes": [{"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"}]
    });
    let (yaml, port, admin) = envoy_with_agent(&config, agent.port, upstream.port());
    Stack {
        ingest,
        agent,
        upstream,
        yaml,
        port,
        admin,
    }
}

impl Stack {
    fn envoy(&self) -> Envoy {
        Envoy::start(&self.yaml, self.port, self.admin, 1).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Events of `globex` (the probes are `acme`'s) the ingest holds.
fn globex(ingest: &IngestServer) -> Vec<String> {
    ingest
        .stored()
        .into_iter()
        .filter(|e| e.customer_id == "globex")
        .map(|e| e.id)
        .collect()
}

fn wait_for(ingest: &IngestServer, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    while globex(ingest).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    globex(ingest).len()
}

fn assert_once(ingest: &IngestServer, want: &[String]) {
    let ids = globex(ingest);
    let unique: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(ids.len(), unique.len(), "an event reached the ingest twice");
    assert_eq!(unique.len(), want.len(), "events lost: {}", ids.len());
}

#[test]
fn the_agent_killed_and_restarted_loses_and_doubles_nothing() {
    let mut s = stack("killed", 200);
    let envoy = s.envoy();
    wait_for_sync(&envoy);
    let mut sent = Vec::new();
    for i in 0..60 {
        if i == 20 {
            s.agent.kill9();
        }
        if i == 40 {
            s.agent.restart();
        }
        let id = format!("agent-restart-{i}");
        // The filter decides from its cached snapshot: the agent being down changes nothing
        // for the client.
        assert_eq!(search(&envoy, &id), 200, "request {i}");
        sent.push(id);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        wait_for(&s.ingest, 60),
        60,
        "{}\n{}",
        envoy.log_tail(20),
        s.agent.log()
    );
    // The gauge moves on the filter's tick, after the agent's last answer.
    assert_eq!(
        envoy.wait_stat(
            "wasmcustom.aforo_events_buffered",
            0,
            Duration::from_secs(10)
        ),
        Some(0)
    );
    assert_once(&s.ingest, &sent);
    assert!(
        envoy
            .stat("wasmcustom.aforo_flush_failures_total")
            .unwrap_or(0)
            >= 1,
        "the outage was seen by the filter"
    );
    assert!(s.upstream.hits() >= 60);
}

#[test]
fn envoy_killed_and_restarted_loses_only_what_it_had_not_flushed() {
    // Flushes every 200 ms: what was flushed before the kill survives it.
    let s = stack("envoy-restart", 200);
    let mut envoy = s.envoy();
    wait_for_sync(&envoy);
    let mut sent = Vec::new();
    for i in 0..20 {
        let id = format!("envoy-restart-a-{i}");
        assert_eq!(search(&envoy, &id), 200);
        sent.push(id);
    }
    assert_eq!(
        wait_for(&s.ingest, 20),
        20,
        "{:?} {:?} {:?} {:?}\n{}\n{}",
        envoy.stat("wasmcustom.aforo_events_received_total"),
        envoy.stat("wasmcustom.aforo_events_delivered_total"),
        envoy.stat("wasmcustom.aforo_events_rejected_total"),
        s.ingest.stats(),
        envoy.log_tail(30),
        s.agent.log()
    );
    envoy.stop();
    let envoy = s.envoy();
    wait_for_sync(&envoy);
    for i in 0..20 {
        let id = format!("envoy-restart-b-{i}");
        assert_eq!(search(&envoy, &id), 200);
        sent.push(id);
    }
    assert_eq!(wait_for(&s.ingest, 40), 40);
    std::thread::sleep(Duration::from_millis(500));
    assert_once(&s.ingest, &sent);
}

#[test]
fn events_still_inside_a_killed_envoy_are_lost_as_documented() {
    // The documented limit: with a 60 s flush interval, a SIGKILL inside the window loses the
    // events buffered in the VM. The agent narrows the window to flush_interval_ms (set it low).
    let s = stack("envoy-loss", 60_000);
    let mut envoy = s.envoy();
    wait_for_sync(&envoy);
    for i in 0..5 {
        assert_eq!(search(&envoy, &format!("lost-{i}")), 200);
    }
    // Gauges are published on the next tick.
    let deadline = Instant::now() + Duration::from_secs(5);
    // (The probes of `wait_for_sync` are buffered too.)
    while envoy.stat("wasmcustom.aforo_events_buffered").unwrap_or(0) < 5 {
        assert!(Instant::now() < deadline, "{}", envoy.log_tail(20));
        std::thread::sleep(Duration::from_millis(100));
    }
    envoy.stop();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        s.ingest.stored().len(),
        0,
        "nothing was flushed, so nothing arrived"
    );
    assert!(s.upstream.hits() >= 5, "yet the requests were served");
}

/// `deploy-examples/envoy/envoy-local-agent.yaml` as a user runs it (ports and the module path
/// replaced, as the demo does), the agent behind a proxy that answers the filter's first
/// delivery with a 503 after the agent stored it: 100 requests that all carry one client-chosen
/// `x-request-id` are 100 events, and the delivery retried after the 503 counts once.
#[test]
fn one_client_request_id_on_a_hundred_requests_is_a_hundred_events() {
    use aforo_host_tests::envoy::free_port;
    use aforo_host_tests::http1::{serve, Client, Response};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let mut cat = catalog();
    cat["consumer_keys"].as_array_mut().unwrap().push(
        json!({"key_id": "globex-static", "key": "ck_static_globex_key", "customer_id": "globex"}),
    );
    let agent = Agent::start("local-example", &cat, &[]);
    // The ingest answers 503 to the first delivery, after storing it.
    let deliveries = Arc::new(AtomicU64::new(0));
    let (seen, agent_addr) = (deliveries.clone(), agent.addr());
    let front = serve(Arc::new(move |req| {
        let r = Client::new(&agent_addr)
            .request(&req.method, &req.path, &req.headers, &req.body)
            .unwrap_or_else(|e| Response::json(502, e.to_string()));
        if req.method == "POST"
            && req.path == "/v1/events"
            && seen.fetch_add(1, Ordering::SeqCst) == 0
        {
            return Response::json(503, r#"{"error": {"code": "unavailable"}}"#);
        }
        r
    }))
    .unwrap();
    let upstream = Upstream::start().unwrap();
    let (port, admin) = (free_port(), free_port());
    let example = std::fs::read_to_string(
        aforo_host_tests::artifacts::repo_root()
            .join("deploy-examples/envoy/envoy-local-agent.yaml"),
    )
    .unwrap();
    let yaml = example
        .replace(
            "/etc/envoy/aforo_metering.wasm",
            &aforo_host_tests::artifacts::filter_module()
                .unwrap()
                .display()
                .to_string(),
        )
        .replace(
            "address: 0.0.0.0, port_value: 10000",
            &format!("address: 127.0.0.1, port_value: {port}"),
        )
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace(
            "port_value: 8080",
            &format!("port_value: {}", upstream.port()),
        )
        .replace("port_value: 8787", &format!("port_value: {}", front.port()))
        .replace("127.0.0.1:8787", &format!("127.0.0.1:{}", front.port()));
    let envoy = Envoy::start_with_env(&yaml, port, admin, 1, &[("AFORO_API_KEY", common::SANDBOX)])
        .unwrap_or_else(|e| panic!("{e}"));
    wait_for_sync(&envoy);
    for i in 0..100 {
        assert_eq!(search(&envoy, "chosen-by-the-client"), 200, "request {i}");
    }
    let globex_used = || {
        let r = agent.call(
            "GET",
            "/v1/usage?environment=sandbox",
            common::SANDBOX,
            &serde_json::Value::Null,
        );
        common::body(&r)["usage"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .find(|u| u["customer_id"] == "globex")
            .and_then(|u| u["quantity"].as_str().map(str::to_string))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while globex_used().as_deref() != Some("100") {
        assert!(
            Instant::now() < deadline,
            "globex: {:?}\n{}\n{}",
            globex_used(),
            envoy.log_tail(20),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Everything the filter had is delivered, the 503 was retried, and nothing counts twice.
    let deadline = Instant::now() + Duration::from_secs(10);
    while envoy.stat("wasmcustom.aforo_events_buffered") != Some(0) {
        assert!(Instant::now() < deadline, "{}", envoy.log_tail(20));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        deliveries.load(Ordering::SeqCst) >= 2,
        "the 503'd delivery was retried"
    );
    assert!(
        envoy
            .stat("wasmcustom.aforo_events_duplicate_total")
            .unwrap_or(0)
            >= 1,
        "the retry found its events already stored: {}",
        envoy.log_tail(10)
    );
    assert_eq!(globex_used().as_deref(), Some("100"));
}
