//! The filter in a real Envoy 1.40 (V8), with a real upstream and a real recording ingest,
//! all on loopback with free ports. Every process is stopped when its guard drops, also when
//! an assertion fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_core::keys::hash_key;
use aforo_host_tests::artifacts::filter_module;
use aforo_host_tests::envoy::{
    bootstrap, cluster, free_port, listener, wasm_filter, Envoy, FilterKind,
};
use aforo_host_tests::http1::{Client, Response};
use aforo_host_tests::servers::{IngestServer, Upstream};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

fn snapshot() -> Value {
    json!({
        "customers": {
            "cust_a": {"features": {
                "search": {"quota": 2},
                "chat": {"quota": 1000000},
                "export": {"allowed": false}
            }},
            "cust_b": {"features": {"search": {"quota": 1000}, "chat": {}}},
            "cust_q": {"features": {"search": {"quota": 20}}}
        },
        "consumer_keys": [
            {"key_id": "key_a", "hash": hash_key("ck_e2e_alpha").to_text(), "customer_id": "cust_a"},
            {"key_id": "key_b", "hash": hash_key("ck_e2e_bravo").to_text(), "customer_id": "cust_b"},
            {"key_id": "key_q", "hash": hash_key("ck_e2e_quota").to_text(), "customer_id": "cust_q"},
            {"key_id": "key_revoked", "hash": hash_key("ck_e2e_revoked").to_text(), "customer_id": "cust_b", "revoked": true}
        ]
    })
}

fn base_config() -> Value {
    json!({
        "product_id": "prod_e2e",
        "flush_interval_ms": 200,
        "initial_backoff_ms": 200,
        "max_backoff_ms": 1000,
        "routes": [
            {"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"},
            {"method": "POST", "path_prefix": "/v1/chat", "feature": "chat", "metric": "tokens",
             "quantity": {"from": "response_json", "pointer": "/usage/total_tokens"}},
            {"path_prefix": "/v1/export", "feature": "export", "metric": "exports"}
        ],
        "entitlements": snapshot()
    })
}

struct Stack {
    kind: FilterKind,
    envoy: Envoy,
    upstream: Upstream,
    sandbox: IngestServer,
    production: IngestServer,
}

/// Envoy with the filter, an upstream, and one ingest per environment (clusters
/// `aforo_ingest_sandbox` and `aforo_ingest_production`, the filter's defaults).
fn stack(kind: FilterKind, config: Value, env: &[(&str, &str)], concurrency: u32) -> Stack {
    let upstream = Upstream::start().unwrap();
    let sandbox = IngestServer::start(None).unwrap();
    let production = IngestServer::start(None).unwrap();
    let (port, admin) = (free_port(), free_port());
    let filter = kind
        .filter(&serde_json::to_string_pretty(&config).unwrap(), env)
        .unwrap();
    let clusters = format!(
        "{}{}",
        cluster("aforo_ingest_sandbox", sandbox.port()),
        cluster("aforo_ingest_production", production.port())
    );
    let mut yaml = bootstrap(port, admin, upstream.port(), &filter, &clusters);
    if concurrency > 1 {
        // Connections spread over the workers exactly (the kernel's reuse-port hashing puts
        // all of a test's few connections on one worker now and then).
        yaml = yaml.replacen(
            "    filter_chains:",
            "    enable_reuse_port: false\n    connection_balance_config: { exact_balance: {} }\n    filter_chains:",
            1,
        );
    }
    let envoy = Envoy::start_with_env(&yaml, port, admin, concurrency, &kind.process_env(env))
        .unwrap_or_else(|e| panic!("{e}"));
    Stack {
        kind,
        envoy,
        upstream,
        sandbox,
        production,
    }
}

impl Stack {
    /// One of the filter's stats (`aforo_events_delivered_total` …) under its build's prefix.
    fn stat(&self, name: &str) -> Option<i64> {
        self.envoy.stat(&self.kind.stat(name))
    }

    /// A stat once it reads `want` (an answer is counted after the ingest has stored it), or
    /// what it reads after 10 s.
    fn stat_reaching(&self, name: &str, want: i64) -> Option<i64> {
        self.envoy
            .wait_stat(&self.kind.stat(name), want, Duration::from_secs(10))
    }

    /// Whether each of the `n` workers took connections (else one worker saw everything).
    fn assert_workers_served(&self, n: u32) {
        for w in 0..n {
            let name = format!(
                "listener.127.0.0.1_{}.worker_{w}.downstream_cx_total",
                self.envoy.port
            );
            assert!(self.envoy.stat(&name).unwrap_or(0) > 0, "{name} is 0");
        }
    }
}

fn get(client: &mut Client, path: &str, headers: &[(&str, &str)]) -> Response {
    let h: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    client.request("GET", path, &h, &[]).unwrap()
}

fn code(r: &Response) -> String {
    serde_json::from_slice::<Value>(&r.body).unwrap()["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn an_allowed_request_reaches_the_upstream_and_is_metered_with_seven_fields(kind: FilterKind) {
    let s = stack(
        kind,
        base_config(),
        &[("AFORO_API_KEY", "sk_test_e2e_env_key")],
        1,
    );
    let mut c = Client::new(&format!("127.0.0.1:{}", s.envoy.port));
    let r = get(
        &mut c,
        "/v1/search?q=1",
        &[("x-api-key", "ck_e2e_bravo"), ("x-request-id", "e2e-1")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), Some("1000"));
    assert_eq!(r.header("ratelimit-remaining"), Some("999"));
    assert!(r.header("ratelimit-reset").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(s.upstream.hits(), 1);
    let body = b"{\"messages\": [\"hello\"]}".to_vec();
    let h = vec![
        ("x-api-key".to_string(), "ck_e2e_bravo".to_string()),
        ("x-request-id".to_string(), "e2e-2".to_string()),
    ];
    let r = c.request("POST", "/v1/chat", &h, &body).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        s.sandbox.wait_for(2, Duration::from_secs(10)),
        2,
        "{}",
        s.envoy.log_tail(20)
    );
    let stored = s.sandbox.stored();
    let search = stored.iter().find(|e| e.metric == "api_calls").unwrap();
    assert!(search.id.starts_with("evt_"));
    assert_eq!(search.customer_id, "cust_b");
    assert_eq!(search.quantity, "1");
    assert_eq!(search.product_id, "prod_e2e");
    assert_eq!(search.environment, "sandbox");
    assert!(search.timestamp.ends_with('Z'));
    let props: Value = serde_json::from_str(&search.properties).unwrap();
    assert_eq!(props["endpoint"], "/v1/search");
    assert_eq!(props["status"], 200);
    let chat = stored.iter().find(|e| e.metric == "tokens").unwrap();
    assert_eq!(
        chat.quantity,
        (10 + body.len()).to_string(),
        "tokens from /usage/total_tokens of the response"
    );
    assert!(s.production.stored().is_empty());
    assert_eq!(s.stat_reaching("aforo_events_delivered_total", 2), Some(2));
}

fn over_quota_unknown_feature_and_bad_keys_are_refused_with_the_contract(kind: FilterKind) {
    let mut cfg = base_config();
    cfg["api_key"] = json!("sk_test_e2e");
    let s = stack(kind, cfg, &[], 1);
    let mut c = Client::new(&format!("127.0.0.1:{}", s.envoy.port));
    for i in 0..2 {
        assert_eq!(
            get(
                &mut c,
                "/v1/search",
                &[
                    ("x-api-key", "ck_e2e_alpha"),
                    ("x-request-id", &format!("q{i}"))
                ]
            )
            .status,
            200
        );
    }
    let r = get(&mut c, "/v1/search", &[("x-api-key", "ck_e2e_alpha")]);
    assert_eq!(r.status, 429);
    assert_eq!(code(&r), "quota_exhausted");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.header("ratelimit-limit"), Some("2"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert!(r.header("ratelimit-reset").is_some());
    let r = get(&mut c, "/v1/export", &[("x-api-key", "ck_e2e_alpha")]);
    assert_eq!((r.status, code(&r).as_str()), (403, "no_access"));
    let r = get(&mut c, "/v1/search", &[]);
    assert_eq!((r.status, code(&r).as_str()), (401, "invalid_key"));
    let r = get(&mut c, "/v1/search", &[("x-api-key", "ck_e2e_revoked")]);
    assert_eq!((r.status, code(&r).as_str()), (401, "invalid_key"));
    assert!(r.header("retry-after").is_none());
    assert_eq!(
        s.upstream.hits(),
        2,
        "denied requests never reach the upstream"
    );
}

/// `rate_limit_headers: false`: clients see no quota state, the quota still holds, `Retry-After`
/// stays on the 429, and every admitted request is metered.
fn without_rate_limit_headers_the_quota_holds_and_clients_see_only_retry_after(kind: FilterKind) {
    let mut cfg = base_config();
    cfg["api_key"] = json!("sk_test_e2e_hidden");
    cfg["rate_limit_headers"] = json!(false);
    let s = stack(kind, cfg, &[], 1);
    let no_rate_limit_headers = |h: &[(String, String)]| {
        let names: Vec<String> = h.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
        assert!(
            !names.iter().any(|k| k.starts_with("ratelimit")),
            "{names:?}"
        );
    };
    let mut c = Client::new(&format!("127.0.0.1:{}", s.envoy.port));
    for i in 0..2 {
        let r = get(
            &mut c,
            "/v1/search",
            &[
                ("x-api-key", "ck_e2e_alpha"),
                ("x-request-id", &format!("h{i}")),
            ],
        );
        assert_eq!(r.status, 200);
        no_rate_limit_headers(&r.headers);
    }
    let r = get(&mut c, "/v1/search", &[("x-api-key", "ck_e2e_alpha")]);
    assert_eq!((r.status, code(&r).as_str()), (429, "quota_exhausted"));
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    no_rate_limit_headers(&r.headers);
    assert_eq!(s.upstream.hits(), 2);
    assert_eq!(s.sandbox.wait_for(2, Duration::from_secs(10)), 2);
}

fn an_ingest_outage_ends_with_every_event_once(kind: FilterKind) {
    let mut cfg = base_config();
    cfg["api_key"] = json!("sk_test_e2e_outage");
    let s = stack(kind, cfg, &[], 1);
    s.sandbox.set_faults("0s-3s:503").unwrap();
    let mut c = Client::new(&format!("127.0.0.1:{}", s.envoy.port));
    for i in 0..20 {
        let r = get(
            &mut c,
            "/v1/search",
            &[
                ("x-api-key", "ck_e2e_bravo"),
                ("x-request-id", &format!("outage-{i}")),
            ],
        );
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        s.sandbox.wait_for(20, Duration::from_secs(30)),
        20,
        "{}",
        s.envoy.log_tail(30)
    );
    std::thread::sleep(Duration::from_millis(500));
    let stored = s.sandbox.stored();
    let ids: HashSet<&str> = stored.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        (stored.len(), ids.len()),
        (20, 20),
        "every event arrived, none twice"
    );
    let stats = s.sandbox.stats();
    assert!(
        stats.by_status.get(&503).copied().unwrap_or(0) >= 1,
        "the outage was seen: {stats:?}"
    );
    assert_eq!(
        s.stat_reaching("aforo_events_delivered_total", 20),
        Some(20)
    );
    assert_eq!(s.stat_reaching("aforo_events_buffered", 0), Some(0));
}

fn two_workers_share_one_quota(kind: FilterKind) {
    let mut cfg = base_config();
    cfg["api_key"] = json!("sk_test_e2e_workers");
    let s = stack(kind, cfg, &[], 2);
    let statuses = hammer_quota(&s, "w");
    s.assert_workers_served(2);
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    // Documented bound: the Wasm filter, quota + (workers - 1), from Envoy's non-atomic creation
    // of a new shared key; the native module creates counters atomically: exactly the quota.
    let bound = match kind {
        FilterKind::Wasm => 20..=21,
        FilterKind::Native => 20..=20,
    };
    assert!(
        bound.contains(&admitted),
        "admitted {admitted} of quota 20 with 2 workers ({kind:?})"
    );
    assert_eq!(admitted + refused, 64);
}

/// 64 requests of the quota-20 customer from 8 threads; the statuses.
fn hammer_quota(s: &Stack, prefix: &str) -> Vec<u16> {
    let url = format!("127.0.0.1:{}", s.envoy.port);
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let url = url.clone();
                sc.spawn(move || {
                    let mut c = Client::new(&url);
                    (0..8)
                        .map(|i| {
                            get(
                                &mut c,
                                "/v1/search",
                                &[
                                    ("x-api-key", "ck_e2e_quota"),
                                    ("x-request-id", &format!("{prefix}{t}-{i}")),
                                ],
                            )
                            .status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn two_workers_with_quota_slices_pass_the_quota_by_at_most_the_stated_bound(kind: FilterKind) {
    let mut cfg = base_config();
    cfg["api_key"] = json!("sk_test_e2e_slices");
    cfg["quota_slice"] = json!(5);
    let s = stack(kind, cfg, &[], 2);
    let statuses = hammer_quota(&s, "s");
    // Both workers served connections (else one worker's slices would see everything).
    s.assert_workers_served(2);
    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(admitted + refused, 64, "{statuses:?}");
    // Documented bound: less than quota + workers × quota_slice, plus, for the Wasm filter,
    // Envoy's creation caveat (workers - 1).
    let most = match kind {
        FilterKind::Wasm => 20 + 2 * 5,
        FilterKind::Native => 20 + 2 * 5 - 1,
    };
    assert!(
        (20..=most).contains(&admitted),
        "admitted {admitted} of quota 20 with 2 workers and slices of 5"
    );
    // Every admitted request is metered, once.
    assert_eq!(
        s.sandbox.wait_for(admitted, Duration::from_secs(30)),
        admitted,
        "{}",
        s.envoy.log_tail(30)
    );
    // More requests, merged or not: the bound holds for the whole window.
    let later = hammer_quota(&s, "t");
    let admitted = admitted + later.iter().filter(|s| **s == 200).count();
    assert!(admitted <= most, "admitted {admitted} in all of quota 20");
    assert_eq!(
        s.sandbox.wait_for(admitted, Duration::from_secs(30)),
        admitted
    );
    let stored = s.sandbox.stored();
    let ids: HashSet<&str> = stored.iter().map(|e| e.id.as_str()).collect();
    assert_eq!((stored.len(), ids.len()), (admitted, admitted));
}

fn sandbox_and_live_keys_go_to_their_own_clusters(kind: FilterKind) {
    for (key, env) in [
        ("sk_test_e2e_route", "sandbox"),
        ("sk_live_e2e_route", "production"),
    ] {
        let mut cfg = base_config();
        cfg["api_key"] = json!(key);
        let s = stack(kind, cfg, &[], 1);
        let mut c = Client::new(&format!("127.0.0.1:{}", s.envoy.port));
        assert_eq!(
            get(
                &mut c,
                "/v1/search",
                &[("x-api-key", "ck_e2e_bravo"), ("x-request-id", "route-1")]
            )
            .status,
            200
        );
        let (hit, miss) = if env == "sandbox" {
            (&s.sandbox, &s.production)
        } else {
            (&s.production, &s.sandbox)
        };
        assert_eq!(
            hit.wait_for(1, Duration::from_secs(10)),
            1,
            "{key} must reach the {env} cluster"
        );
        assert_eq!(hit.stored()[0].environment, env);
        std::thread::sleep(Duration::from_millis(400));
        assert!(
            miss.stored().is_empty() && miss.stats().requests == 0,
            "{key} must never reach the other cluster"
        );
    }
}

fn a_malformed_configuration_stops_envoy_and_names_the_field(kind: FilterKind) {
    let cases = [
        (
            json!({"api_key": "sk_test_x", "product_id": "p", "batch_size": 0}),
            "batch_size: must be 1..=1000, got 0",
        ),
        (
            json!({"api_key": "sk_prod_x", "product_id": "p"}),
            "api_key: unknown key prefix \\\"sk_prod_\\\"",
        ),
        (
            json!({"api_key": "sk_test_x", "product_id": "p", "batchsize": 5}),
            "batchsize: unknown field (did you mean \\\"batch_size\\\"?)",
        ),
    ];
    for (cfg, expected) in cases {
        // The Wasm filter under both of its failure policies; the native module has none.
        let policies: &[&str] = match kind {
            FilterKind::Wasm => &["FAIL_CLOSED", "FAIL_OPEN"],
            FilterKind::Native => &["-"],
        };
        for policy in policies {
            let (port, admin) = (free_port(), free_port());
            let filter = match kind {
                FilterKind::Wasm => {
                    wasm_filter(&filter_module().unwrap(), &cfg.to_string(), &[], policy)
                }
                FilterKind::Native => kind.filter(&cfg.to_string(), &[]).unwrap(),
            };
            let yaml = bootstrap(port, admin, free_port(), &filter, "");
            let mut envoy = Envoy::spawn(&yaml, port, admin, 1).unwrap();
            let exit = envoy.wait_exit(Duration::from_secs(20));
            let log = envoy.log();
            assert!(
                exit.is_some_and(|c| c != 0),
                "Envoy must refuse to start with {cfg} under {policy}; log:\n{log}"
            );
            assert!(
                log.contains(&expected.replace("\\\"", "\"")),
                "the log must name the field ({expected}):\n{log}"
            );
        }
    }
}

fn the_snapshot_is_synced_from_a_cluster_and_fails_closed_when_absent(kind: FilterKind) {
    let upstream = Upstream::start().unwrap();
    let agent = IngestServer::start(Some(snapshot().to_string().into_bytes())).unwrap();
    let mut cfg = base_config();
    cfg.as_object_mut().unwrap().remove("entitlements");
    cfg["api_key"] = json!("sk_test_e2e_sync");
    cfg["entitlements_url"] = json!("http://agent.local/v1/entitlements");
    cfg["sync_interval_ms"] = json!(300);
    cfg["max_snapshot_age_ms"] = json!(1000);
    cfg["failure_mode"] = json!("closed");
    // The agent cluster serves the snapshot; the ingest clusters point at it too.
    let clusters = format!(
        "{}{}{}",
        cluster("aforo_agent", agent.port()),
        cluster("aforo_ingest_sandbox", agent.port()),
        cluster("aforo_ingest_production", agent.port())
    );
    let (port, admin) = (free_port(), free_port());
    let yaml = bootstrap(
        port,
        admin,
        upstream.port(),
        &kind.filter(&cfg.to_string(), &[]).unwrap(),
        &clusters,
    );
    let envoy = Envoy::start(&yaml, port, admin, 1).unwrap_or_else(|e| panic!("{e}"));
    let mut c = Client::new(&format!("127.0.0.1:{port}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut status = 0;
    while std::time::Instant::now() < deadline {
        status = get(&mut c, "/v1/search", &[("x-api-key", "ck_e2e_bravo")]).status;
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        status,
        200,
        "a synced snapshot admits the key: {}",
        envoy.log_tail(20)
    );
    assert_eq!(
        get(&mut c, "/v1/search", &[("x-api-key", "ck_unknown")]).status,
        401
    );
    if kind == FilterKind::Wasm {
        // Envoy answers its `node` property in a root context, so the filter knows it may
        // start fast for the first sync and slow down after (Kong takes one period only).
        // The log file lags the traffic by up to its flush interval: wait for the line.
        envoy.wait_log("aforo: ticking every", 1, Duration::from_secs(10));
        let log = envoy.log();
        assert!(
            log.contains("aforo: ticking every 20 ms") && !log.contains("takes one tick period"),
            "{}",
            envoy.log_tail(30)
        );
    }
    assert!(
        envoy
            .stat(&kind.stat("aforo_snapshot_syncs_total"))
            .unwrap_or(0)
            >= 1
    );
    drop(envoy);

    // With a cluster that answers nothing, the closed failure mode answers 503.
    let dead_port = free_port();
    let clusters = format!(
        "{}{}{}",
        cluster("aforo_agent", dead_port),
        cluster("aforo_ingest_sandbox", dead_port),
        cluster("aforo_ingest_production", dead_port)
    );
    let (port, admin) = (free_port(), free_port());
    let yaml = bootstrap(
        port,
        admin,
        upstream.port(),
        &kind.filter(&cfg.to_string(), &[]).unwrap(),
        &clusters,
    );
    let envoy = Envoy::start(&yaml, port, admin, 1).unwrap_or_else(|e| panic!("{e}"));
    let mut c = Client::new(&format!("127.0.0.1:{port}"));
    let r = get(&mut c, "/v1/search", &[("x-api-key", "ck_e2e_bravo")]);
    assert_eq!(
        (r.status, code(&r).as_str()),
        (503, "entitlements_unavailable")
    );
    assert!(r.header("retry-after").is_some());
    drop(envoy);
}

#[test]
fn the_harness_and_a_real_envoy_agree_on_every_status_and_every_event() {
    use aforo_host_tests::replay::{run, RunOptions};
    use aforo_host_tests::send::send;
    use aforo_host_tests::traffic::parse_jsonl;
    let text = r#"{"time": "2026-03-15T12:00:00Z", "repeat": 5, "interval_ms": 10, "request": {"path": "/v1/search?q={n}", "headers": {"x-api-key": "ck_e2e_alpha", "x-request-id": "d-a-{n}"}}, "customer": "cust_a"}
{"repeat": 6, "request": {"method": "POST", "path": "/v1/chat", "headers": {"x-api-key": "ck_e2e_bravo", "x-request-id": "d-b-{n}"}, "body": "{\"prompt\": \"{n}\"}"}, "customer": "cust_b"}
{"request": {"path": "/v1/export", "headers": {"x-api-key": "ck_e2e_alpha", "x-request-id": "d-x"}}, "customer": "cust_a"}
{"request": {"path": "/v1/search", "headers": {"x-api-key": "ck_e2e_revoked", "x-request-id": "d-r"}}, "customer": "cust_b"}
{"request": {"path": "/v1/search"}, "customer": "anonymous"}
{"request": {"path": "/health"}, "customer": "anonymous"}"#;
    let traffic = parse_jsonl("diff.jsonl", text, aforo_core::Timestamp::EPOCH).unwrap();
    // The harness replays the responses the demo upstream would give.
    let entries: Vec<_> = traffic
        .entries()
        .into_iter()
        .map(|mut e| {
            let tokens = 10 + e.request.body.len();
            e.response.status = 200;
            e.response.body =
                format!(r#"{{"ok":true,"usage":{{"total_tokens":{tokens}}}}}"#).into_bytes();
            e
        })
        .collect();
    let traffic = aforo_host_tests::traffic::Traffic::from_entries(entries);
    let mut cfg = base_config();
    cfg["api_key"] = json!("sk_test_e2e_diff");
    // Ids from the traffic's request ids (as an edge that sets them would give), so both hosts
    // must derive the very same ids; by default each VM makes its own.
    cfg["request_id_header"] = json!("x-request-id");

    let s = stack(FilterKind::Wasm, cfg.clone(), &[], 1);
    let live = send(&s.envoy.url(), &traffic, 1).unwrap();
    let mut opts = RunOptions::new(
        filter_module().unwrap(),
        cfg.to_string().into_bytes(),
        traffic.clone(),
    );
    opts.record_events = true;
    let sim = run(&opts).unwrap();
    assert_eq!(live.statuses, sim.statuses, "same status for every request");
    assert_eq!(
        live.statuses,
        vec![200, 200, 429, 429, 429, 200, 200, 200, 200, 200, 200, 403, 401, 401, 200]
    );

    let n = sim.stored.len();
    assert_eq!(s.sandbox.wait_for(n, Duration::from_secs(10)), n);
    std::thread::sleep(Duration::from_millis(500));
    let key = |e: &aforo_host_tests::ingest_sim::StoredEvent| {
        (
            e.id.clone(),
            e.customer_id.clone(),
            e.metric.clone(),
            e.quantity.clone(),
        )
    };
    let mut a: Vec<_> = s.sandbox.stored().iter().map(key).collect();
    let mut b: Vec<_> = sim.stored.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(
        a, b,
        "the same events (ids, customers, metrics, quantities) at both ingests"
    );
    assert_eq!(a.len(), 8);
}

fn a_throttling_slow_and_partly_refusing_ingest_ends_with_every_event_accounted_once(
    kind: FilterKind,
) {
    let mut cfg = base_config();
    cfg["api_key"] = json!("sk_test_e2e_faults");
    cfg["request_timeout_ms"] = json!(5000);
    let s = stack(kind, cfg, &[], 1);
    // 0-2 s: 429 with Retry-After: 3; 3-6 s: answers 2 s late; 6-8 s: every other event refused.
    s.sandbox
        .set_faults("0s-2s:429/3,3s-6s:delay=2s,6s-8s:partial")
        .unwrap();
    let mut c = Client::new(&format!("127.0.0.1:{}", s.envoy.port));
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(8) {
        let r = get(
            &mut c,
            "/v1/search",
            &[
                ("x-api-key", "ck_e2e_bravo"),
                ("x-request-id", &format!("faults-{sent}")),
            ],
        );
        assert_eq!(r.status, 200, "the client never waits on the ingest");
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // Wait until nothing is buffered in the filter.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let received = s.stat("aforo_events_received_total");
        let buffered = s.stat("aforo_events_buffered");
        if received == Some(sent) && buffered == Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "received {received:?} of {sent}, buffered {buffered:?}: {}",
            s.envoy.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let stat = |n: &str| s.stat(n).unwrap_or(0);
    let (delivered, rejected, dead) = (
        stat("aforo_events_delivered_total"),
        stat("aforo_events_rejected_total"),
        stat("aforo_events_dead_lettered"),
    );
    assert_eq!(
        delivered + rejected + dead,
        sent,
        "received = delivered + rejected + dead-lettered + buffered(0)"
    );
    let stored = s.sandbox.stored();
    let ids: HashSet<&str> = stored.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), stored.len(), "an event stored twice");
    assert!(rejected >= 1, "the partial refusal was seen");
    assert_eq!(
        stored.len() as i64 + rejected + dead,
        sent,
        "every event is stored once, or refused and dead-lettered"
    );
    let stats = s.sandbox.stats();
    assert_eq!(
        stats.by_status.get(&429).copied(),
        Some(1),
        "Retry-After: 3 was honoured (one 429 in a 2 s window): {stats:?}"
    );
}

/// Sends raw HTTP/1.1 bytes (header values a String cannot hold) and returns the status.
fn raw_status(port: u16, request: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn a_header_that_is_not_utf8_neither_traps_the_filter_nor_loses_the_event(kind: FilterKind) {
    let mut cfg = base_config();
    cfg["api_key"] = json!("sk_test_e2e_latin1");
    let s = stack(kind, cfg, &[], 1);
    // Latin-1 "café" in a header the filter does not read, and in the consumer key itself.
    let referer = b"GET /v1/search HTTP/1.1\r\nHost: api\r\nx-api-key: ck_e2e_bravo\r\nx-request-id: latin1-1\r\nReferer: caf\xe9\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(s.envoy.port, referer), 200);
    let bad_key = b"GET /v1/search HTTP/1.1\r\nHost: api\r\nx-api-key: ck_caf\xe9\r\nConnection: close\r\n\r\n";
    assert_eq!(
        raw_status(s.envoy.port, bad_key),
        401,
        "a key that is not UTF-8 is no key"
    );
    // The VM is alive: the next request is decided and metered as usual.
    let mut c = Client::new(&format!("127.0.0.1:{}", s.envoy.port));
    let r = get(
        &mut c,
        "/v1/search",
        &[("x-api-key", "ck_e2e_bravo"), ("x-request-id", "latin1-2")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), Some("1000"));
    assert_eq!(
        s.sandbox.wait_for(2, Duration::from_secs(10)),
        2,
        "{}",
        s.envoy.log_tail(20)
    );
}

/// The same traffic through the Wasm filter and the native module: the same statuses, and the
/// same events (ids from the request ids, customers, metrics, quantities) at each ingest.
#[test]
fn the_wasm_filter_and_the_native_module_answer_and_meter_the_same() {
    let traffic: Vec<(&str, &str, &str)> = vec![
        ("GET", "/v1/search?q=1", "ck_e2e_alpha"),
        ("GET", "/v1/search?q=2", "ck_e2e_alpha"),
        ("GET", "/v1/search?q=3", "ck_e2e_alpha"),
        ("POST", "/v1/chat", "ck_e2e_bravo"),
        ("POST", "/v1/chat", "ck_e2e_bravo"),
        ("GET", "/v1/export", "ck_e2e_alpha"),
        ("GET", "/v1/search", "ck_e2e_revoked"),
        ("GET", "/v1/search", "ck_e2e_\",\"key\":\"x"),
        ("GET", "/v1/search", ""),
        ("GET", "/health", "ck_e2e_bravo"),
        ("GET", "/v1/search", "ck_e2e_bravo"),
    ];
    let mut cfg = base_config();
    cfg["api_key"] = json!("sk_test_e2e_same");
    cfg["request_id_header"] = json!("x-request-id");
    // Unset, the node is named by Envoy's node id in Wasm and by the host name natively.
    cfg["source"] = json!("e2e");
    let mut results = Vec::new();
    for kind in FilterKind::ALL {
        let s = stack(kind, cfg.clone(), &[], 1);
        let mut c = Client::new(&format!("127.0.0.1:{}", s.envoy.port));
        let mut statuses = Vec::new();
        for (i, (method, path, key)) in traffic.iter().enumerate() {
            // A hostile request id: event ids derive from it (request_id_header), and must
            // neither carry it nor let it forge another field.
            let rid = format!("same-{i}\",\"id\":\"evt_forged\",\"customer_id\":\"cust_forged");
            let mut h = vec![("x-request-id".to_string(), rid)];
            if !key.is_empty() {
                h.push(("x-api-key".to_string(), key.to_string()));
            }
            let body: &[u8] = if *method == "POST" {
                b"{\"prompt\": \"hi\"}"
            } else {
                b""
            };
            let r = c.request(method, path, &h, body).unwrap();
            // Everything a client sees but the clock: status, the refusal's body, the
            // RateLimit headers' values, and whether the time-dependent ones are there.
            let header = |n: &str| r.header(n).map(str::to_string);
            let refusal = if r.status == 200 {
                String::new()
            } else {
                String::from_utf8_lossy(&r.body).into_owned()
            };
            statuses.push((
                r.status,
                refusal,
                header("ratelimit-limit"),
                header("ratelimit-remaining"),
                header("retry-after").is_some(),
                header("ratelimit-reset").is_some(),
                header("content-type"),
            ));
        }
        let admitted = statuses.iter().filter(|r| r.0 == 200).count();
        // /health matches no route: allowed, not metered.
        let metered = admitted - 1;
        assert_eq!(
            s.sandbox.wait_for(metered, Duration::from_secs(10)),
            metered,
            "{kind:?}: {}",
            s.envoy.log_tail(20)
        );
        // Read the ingest once the filter has nothing more to send.
        let n = metered as i64;
        assert_eq!(s.stat_reaching("aforo_events_delivered_total", n), Some(n));
        assert_eq!(s.stat_reaching("aforo_events_buffered", 0), Some(0));
        let mut events: Vec<_> = s
            .sandbox
            .stored()
            .iter()
            .map(|e| {
                (
                    e.id.clone(),
                    e.customer_id.clone(),
                    e.metric.clone(),
                    e.quantity.clone(),
                    e.environment.clone(),
                    e.product_id.clone(),
                    e.properties.clone(),
                )
            })
            .collect();
        events.sort();
        results.push((statuses, events));
    }
    let (wasm, native) = (&results[0], &results[1]);
    for (i, (w, n)) in wasm.0.iter().zip(&native.0).enumerate() {
        assert_eq!(
            w, n,
            "request {i} ({:?}): the same answer from both",
            traffic[i]
        );
    }
    assert_eq!(
        wasm.0.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![200, 200, 429, 200, 200, 403, 401, 401, 401, 200, 200]
    );
    assert_eq!(wasm.1, native.1, "the same events at the ingest");
    assert_eq!(wasm.1.len(), 5);
    for e in &wasm.1 {
        assert!(
            e.0.starts_with("evt_") && !e.0.contains('"') && e.0 != "evt_forged",
            "{e:?}"
        );
    }
    let customers: Vec<&str> = wasm.1.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        customers.iter().filter(|c| **c == "cust_a").count(),
        2,
        "the customer comes from the key, never the request id: {customers:?}"
    );
    assert_eq!(customers.iter().filter(|c| **c == "cust_b").count(), 3);
}

// Each case, once per build of the filter: `wasm::…` and `native::…`.
aforo_host_tests::for_both_filters!(
    an_allowed_request_reaches_the_upstream_and_is_metered_with_seven_fields,
    over_quota_unknown_feature_and_bad_keys_are_refused_with_the_contract,
    without_rate_limit_headers_the_quota_holds_and_clients_see_only_retry_after,
    an_ingest_outage_ends_with_every_event_once,
    two_workers_share_one_quota,
    two_workers_with_quota_slices_pass_the_quota_by_at_most_the_stated_bound,
    sandbox_and_live_keys_go_to_their_own_clusters,
    a_malformed_configuration_stops_envoy_and_names_the_field,
    the_snapshot_is_synced_from_a_cluster_and_fails_closed_when_absent,
    a_throttling_slow_and_partly_refusing_ingest_ends_with_every_event_accounted_once,
    a_header_that_is_not_utf8_neither_traps_the_filter_nor_loses_the_event,
);

/// The test listener as an LDS resource file, with `filters` before the router.
fn lds_file(port: u16, filters: &str) -> String {
    let item = listener(port, filters).replacen(
        "- name: ingress",
        "- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: ingress",
        1,
    );
    format!("resources:\n{item}")
}

/// Envoy replaces a filter configuration on a listener update and cancels its calls; the events
/// the old configuration still held (here: the ingest refuses everything for a while) are
/// handed to the new one and delivered, each once.
#[test]
fn a_listener_update_hands_the_events_held_to_the_new_configuration() {
    let upstream = Upstream::start().unwrap();
    let sandbox = IngestServer::start(None).unwrap();
    sandbox.set_faults("0s-600s:503").unwrap();
    let (port, admin) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("aforo-lds-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lds = dir.join("lds.yaml");
    let config = |flush: u64| {
        let mut cfg = base_config();
        cfg["api_key"] = json!("sk_test_e2e_reload");
        cfg["flush_interval_ms"] = json!(flush);
        FilterKind::Native.filter(&cfg.to_string(), &[]).unwrap()
    };
    std::fs::write(&lds, lds_file(port, &config(200))).unwrap();
    let yaml = format!(
        "node: {{ id: reload-test, cluster: reload-test }}
dynamic_resources:
  lds_config:
    path_config_source:
      path: {}
      watched_directory: {{ path: {} }}
static_resources:
  clusters:
{}{}admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
",
        lds.display(),
        dir.display(),
        cluster("upstream", upstream.port()),
        cluster("aforo_ingest_sandbox", sandbox.port()),
    );
    let envoy = Envoy::start_with_args(&yaml, port, admin, 1, &["--drain-time-s", "1"])
        .unwrap_or_else(|e| panic!("{e}"));
    let send = |from: usize| {
        let mut c = Client::new(&format!("127.0.0.1:{port}"));
        for i in from..from + 10 {
            let r = get(
                &mut c,
                "/v1/search",
                &[
                    ("x-api-key", "ck_e2e_bravo"),
                    ("x-request-id", &format!("reload-{i}")),
                ],
            );
            assert_eq!(r.status, 200, "{}", envoy.log_tail(20));
        }
    };
    send(0);
    // The ingest has refused the first configuration's batches.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sandbox.stats().by_status.get(&503).copied().unwrap_or(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            envoy.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A listener update (another flush interval): Envoy builds a new filter configuration,
    // drains the old listener (1 s) and destroys the old configuration.
    let next = dir.join("lds.next.yaml");
    std::fs::write(&next, lds_file(port, &config(300))).unwrap();
    std::fs::rename(&next, &lds).unwrap();
    assert!(
        envoy.wait_log(
            "held by a replaced configuration",
            1,
            Duration::from_secs(30)
        ) >= 1,
        "the old configuration was not replaced: {}",
        envoy.log_tail(30)
    );
    send(10);
    sandbox.set_faults("").unwrap();
    assert_eq!(
        sandbox.wait_for(20, Duration::from_secs(30)),
        20,
        "{}",
        envoy.log_tail(30)
    );
    std::thread::sleep(Duration::from_millis(700));
    let stored = sandbox.stored();
    let ids: HashSet<&str> = stored.iter().map(|e| e.id.as_str()).collect();
    assert_eq!((stored.len(), ids.len()), (20, 20), "every event stored");
    // The gauges follow the engines: nothing is counted as held once all is delivered.
    let gauge = |n: &str| envoy.stat(&FilterKind::Native.stat(n));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while gauge("aforo_events_buffered") != Some(0) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gauge("aforo_events_buffered"), Some(0));
    assert_eq!(gauge("aforo_events_dead_lettered"), Some(0));
    drop(envoy);
    let _ = std::fs::remove_dir_all(&dir);
}
