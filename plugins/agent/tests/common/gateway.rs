//! Requests through a real Envoy whose filter syncs from an agent's catalog (customers `acme`
//! with consumer key `ck_static_acme_key`, `globex` with `ck_static_globex_key`).

use aforo_host_tests::artifacts::filter_module;
use aforo_host_tests::envoy::{bootstrap, cluster, free_port, wasm_filter, Envoy};
use aforo_host_tests::http1::Client;
use serde_json::Value;
use std::time::{Duration, Instant};

/// An Envoy bootstrap on free ports with the real filter (`FAIL_CLOSED`) configured by
/// `config`, a cluster `aforo_agent` to the agent on `agent_port`, and routes to the upstream
/// on `upstream_port`: (yaml, listener port, admin port).
pub fn envoy_with_agent(config: &Value, agent_port: u16, upstream_port: u16) -> (String, u16, u16) {
    let filter = wasm_filter(
        &filter_module().unwrap(),
        &serde_json::to_string_pretty(config).unwrap(),
        &[],
        "FAIL_CLOSED",
    );
    let (port, admin) = (free_port(), free_port());
    let yaml = bootstrap(
        port,
        admin,
        upstream_port,
        &filter,
        &cluster("aforo_agent", agent_port),
    );
    (yaml, port, admin)
}

/// One metered request of customer `globex` with request id `id`; its status (0: no answer).
pub fn search(envoy: &Envoy, id: &str) -> u16 {
    let h = vec![
        ("x-api-key".to_string(), "ck_static_globex_key".to_string()),
        ("x-request-id".to_string(), id.to_string()),
    ];
    Client::new(&format!("127.0.0.1:{}", envoy.port))
        .request("GET", "/v1/search", &h, &[])
        .map(|r| r.status)
        .unwrap_or(0)
}

/// Waits until the worker's filter has its snapshot: a probe of customer `acme` is answered
/// with quota headers (a fail-open answer without a snapshot has none). Stats would not do:
/// Envoy's main-thread VM syncs too, and the stat is the sum. Returns how many probes were
/// answered: each is metered as one `acme` request (those before the snapshot once it comes).
pub fn wait_for_sync(envoy: &Envoy) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answered = 0;
    for n in 0.. {
        let h = vec![
            ("x-api-key".to_string(), "ck_static_acme_key".to_string()),
            (
                "x-request-id".to_string(),
                format!("probe-{n}-{}", envoy.port),
            ),
        ];
        let r =
            Client::new(&format!("127.0.0.1:{}", envoy.port)).request("GET", "/v1/search", &h, &[]);
        if let Ok(r) = r {
            answered += 1;
            if r.header("ratelimit-limit").is_some() {
                return answered;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot: {}",
            envoy.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    answered
}
