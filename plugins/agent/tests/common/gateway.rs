//! Requests through a real Envoy whose filter syncs from an agent's catalog (customers `acme`
//! with consumer key `ck_static_acme_key`, `globex` with `ck_static_globex_key`).

use aforo_host_tests::envoy::Envoy;
use aforo_host_tests::http1::Client;
use std::time::{Duration, Instant};

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
/// Envoy's main-thread VM syncs too, and the stat is the sum.
pub fn wait_for_sync(envoy: &Envoy) {
    let deadline = Instant::now() + Duration::from_secs(20);
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
        if matches!(r, Ok(r) if r.header("ratelimit-limit").is_some()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot: {}",
            envoy.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
