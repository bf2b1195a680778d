//! docs/quickstart.md's Envoy path with real processes: the agent reads the quick start's
//! catalog, Envoy starts from the quick start's own `envoy.yaml` (only its ports and the module's
//! path rewritten, so tests run side by side) with nothing but `AFORO_API_KEY` set, and a
//! request with the catalog's consumer key becomes one `api_calls` event in the agent's ledger,
//! with the agent's product id. Every process is stopped when its guard drops.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_host_tests::artifacts::{filter_module, repo_root};
use aforo_host_tests::envoy::{free_port, Envoy};
use aforo_host_tests::http1::Client;
use aforo_host_tests::servers::Upstream;
use common::Agent;
use serde_json::Value;
use std::time::{Duration, Instant};

const KEY: &str = "sk_test_quickstart";

fn quickstart_file(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("deploy-examples/quickstart").join(name)).unwrap()
}

fn get(envoy: &Envoy, key: Option<&str>, path: &str) -> u16 {
    let h: Vec<(String, String)> = key
        .map(|k| vec![("x-api-key".to_string(), k.to_string())])
        .unwrap_or_default();
    Client::new(&format!("127.0.0.1:{}", envoy.port))
        .request("GET", path, &h, &[])
        .map(|r| r.status)
        .unwrap_or(0)
}

fn event_log(agent: &Agent) -> Vec<Value> {
    let r = Client::new(&agent.addr())
        .request(
            "GET",
            "/v1/event-log?limit=50",
            &[("authorization".into(), format!("Bearer {KEY}"))],
            &[],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["data"].as_array().cloned().unwrap_or_default()
}

#[test]
fn the_envoy_quick_start_meters_a_request_with_only_the_key_set() {
    let catalog: Value = serde_json::from_str(&quickstart_file("catalog.json")).unwrap();
    let agent = Agent::start("quickstart", &catalog, &[]);
    let upstream = Upstream::start().unwrap();
    let (port, admin) = (free_port(), free_port());
    let yaml = quickstart_file("envoy.yaml");
    // The four ports and the module path are the only changes.
    for fixed in [
        "port_value: 10000",
        "port_value: 8080",
        "port_value: 8787",
        "port_value: 9901",
        "filename: bin/aforo_metering.wasm",
    ] {
        assert!(yaml.contains(fixed), "envoy.yaml lacks {fixed:?}");
    }
    let yaml = yaml
        .replace("port_value: 10000", &format!("port_value: {port}"))
        .replace(
            "port_value: 8080",
            &format!("port_value: {}", upstream.port()),
        )
        .replace("port_value: 8787", &format!("port_value: {}", agent.port))
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace(
            "filename: bin/aforo_metering.wasm",
            &format!("filename: {}", filter_module().unwrap().display()),
        );
    // The filter's whole configuration is the endpoint.
    assert!(yaml.contains(r#"{"endpoint": "http://127.0.0.1:8787"}"#));
    let envoy = Envoy::start_with_env(&yaml, port, admin, 1, &[("AFORO_API_KEY", KEY)]).unwrap();

    // The first request may come before the first snapshot: served, and metered once the
    // snapshot names the key's customer.
    assert_eq!(get(&envoy, Some("ck_quickstart_acme"), "/"), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let rows = event_log(&agent);
        if !rows.is_empty() || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(events.len(), 1, "{events:?}\n{}", envoy.log_tail(30));
    let row = &events[0];
    assert_eq!(row["customer_id"], "acme");
    assert_eq!(row["metric"], "api_calls");
    assert_eq!(row["quantity"], "1");
    assert_eq!(row["outcome"], "accepted");
    // The stored event carries the agent's product (its default), none being configured.
    let seq = row["seq"].as_i64().unwrap();
    let r = Client::new(&agent.addr())
        .request(
            "GET",
            &format!("/v1/event-log/{seq}"),
            &[("authorization".into(), format!("Bearer {KEY}"))],
            &[],
        )
        .unwrap();
    let whole: Value = serde_json::from_slice(&r.body).unwrap();
    let event = &whole["data"]["event"];
    assert_eq!(event["product_id"], "default", "{whole}");
    assert_eq!(event["environment"], "sandbox");
    assert_eq!(event["properties"]["endpoint"], "/");

    // Once synced: no key and an unknown key are refused and not metered; another path is.
    assert_eq!(get(&envoy, None, "/"), 401);
    assert_eq!(get(&envoy, Some("ck_not_a_key"), "/"), 401);
    assert_eq!(
        get(&envoy, Some("ck_quickstart_acme"), "/any/path?q=1"),
        200
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let rows = event_log(&agent);
        if rows.len() >= 2 || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        upstream.hits(),
        2,
        "the refused requests never reached the API"
    );
    // Said at start (once by each Wasm VM), in Envoy's log.
    assert!(
        envoy.wait_log(
            "no routes: every request is metered as api_calls",
            1,
            Duration::from_secs(10)
        ) >= 1,
        "{}",
        envoy.log_tail(30)
    );
}
