//! The replay harness itself: determinism, workers sharing shared data, the Kong profile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_core::keys::hash_key;
use aforo_core::Timestamp;
use aforo_host_tests::abi::Profile;
use aforo_host_tests::artifacts::filter_module;
use aforo_host_tests::replay::{run, RunOptions};
use aforo_host_tests::traffic::parse_jsonl;
use serde_json::json;

fn config(extra: serde_json::Value) -> Vec<u8> {
    let mut c = json!({
        "api_key": "sk_test_harness",
        "product_id": "prod_h",
        "flush_interval_ms": 500,
        "ingest_url": "http://ingest.aforo.test:8080",
        "routes": [
            {"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"},
            {"method": "POST", "path_prefix": "/v1/chat", "feature": "chat", "metric": "tokens", "quantity": {"from": "response_json", "pointer": "/usage/total_tokens"}}
        ],
        "entitlements": {
            "customers": {"cust_a": {"features": {"search": {"quota": 30}, "chat": {}}}},
            "consumer_keys": [{"key_id": "k1", "hash": hash_key("ck_harness").to_text(), "customer_id": "cust_a"}]
        }
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c.to_string().into_bytes()
}

fn traffic() -> aforo_host_tests::traffic::Traffic {
    let text = r#"{"time": "2026-03-15T12:00:00Z", "repeat": 40, "interval_ms": 100, "request": {"path": "/v1/search", "headers": {"x-api-key": "ck_harness", "x-request-id": "s-{n}"}}, "customer": "cust_a"}
{"time": "2026-03-15T12:00:05Z", "repeat": 10, "interval_ms": 100, "request": {"method": "POST", "path": "/v1/chat", "headers": {"x-api-key": "ck_harness", "x-request-id": "c-{n}"}, "body": "{}"}, "response": {"status": 200, "body": "{\"usage\": {\"total_tokens\": 7}}"}, "customer": "cust_a"}
{"time": "2026-03-15T12:00:07Z", "request": {"path": "/v1/search", "headers": {"x-api-key": "ck_wrong"}}, "customer": "anonymous"}"#;
    parse_jsonl("t.jsonl", text, Timestamp::EPOCH).unwrap()
}

fn opts(cfg: Vec<u8>) -> RunOptions {
    let mut o = RunOptions::new(filter_module().unwrap(), cfg, traffic());
    o.record_events = true;
    o
}

#[test]
fn replays_are_deterministic() {
    let a = run(&opts(config(json!({})))).unwrap();
    let b = run(&opts(config(json!({})))).unwrap();
    assert_eq!(
        serde_json::to_value(&a).unwrap(),
        serde_json::to_value(&b).unwrap()
    );
    assert_eq!(a.stored, b.stored);
    assert_eq!(a.requests.by_decision["allowed"], 40);
    assert_eq!(a.requests.by_decision["quota_exhausted"], 10);
    assert_eq!(a.requests.by_decision["invalid_key"], 1);
    let tokens: Vec<&str> = a
        .stored
        .iter()
        .filter(|e| e.metric == "tokens")
        .map(|e| e.quantity.as_str())
        .collect();
    assert_eq!(tokens, vec!["7"; 10]);
}

#[test]
fn workers_share_one_quota_through_shared_data() {
    for workers in [1, 2, 4] {
        let mut o = opts(config(json!({})));
        o.workers = workers;
        let r = run(&o).unwrap();
        // 40 searches against a quota of 30: the workers never admit more than the quota
        // (the harness runs them one callback at a time, so creation races cannot happen here).
        assert_eq!(
            r.requests.by_decision["allowed"],
            30 + 10,
            "{workers} workers: 30 searches + 10 chats"
        );
        assert_eq!(r.requests.by_decision["quota_exhausted"], 10);
        assert!(r.events.balanced);
        assert_eq!(r.events.delivered, 40);
    }
}

#[test]
fn the_kong_profile_gives_the_same_outcomes_with_host_port_dispatch() {
    let envoy = run(&opts(config(json!({})))).unwrap();
    let mut k = opts(config(json!({"dispatch": "authority"})));
    k.profile = Profile::Kong;
    let kong = run(&k).unwrap();
    assert_eq!(kong.requests.by_decision, envoy.requests.by_decision);
    assert_eq!(kong.statuses, envoy.statuses);
    assert_eq!(kong.stored, envoy.stored, "same events at the ingest");
    assert_eq!(kong.events.delivered, 40);
}

#[test]
fn on_kong_the_filter_dispatches_to_host_and_port_even_when_told_cluster() {
    // Kong resolves the upstream as a host name, so an Envoy cluster name can never be
    // dispatched there: every event would be dead-lettered. The filter sees on the first
    // request that it runs in nginx (`ngx.*` properties) and calls host:port of its URLs; an
    // explicit "cluster" is overridden too, with an error naming the fix.
    let explicit = json!({"dispatch": "authority"});
    let mut reference = opts(config(explicit));
    reference.profile = Profile::Kong;
    let reference = run(&reference).unwrap();
    for (extra, told_cluster) in [(json!({}), false), (json!({"dispatch": "cluster"}), true)] {
        let mut k = opts(config(extra));
        k.profile = Profile::Kong;
        let r = run(&k).unwrap();
        assert_eq!(r.requests.by_decision["allowed"], 40);
        assert_eq!(r.events.delivered, 40, "{:?}", r.events);
        assert_eq!(
            r.stored, reference.stored,
            "the same events as with dispatch: authority"
        );
        let named_fix = r
            .logs
            .iter()
            .any(|l| l.message.contains("\"dispatch\": \"authority\""));
        assert_eq!(named_fix, told_cluster, "{:?}", r.logs);
    }
}

#[test]
fn the_kong_profile_traps_on_functions_ngx_wasm_module_lacks() {
    // The filter never calls them; the harness proves it by trapping as Kong would.
    let mut k = opts(config(json!({"dispatch": "authority"})));
    k.profile = Profile::Kong;
    let r = run(&k).unwrap();
    assert_eq!(r.traps, 0);
}

#[test]
fn on_kong_a_filter_syncing_its_snapshot_sets_its_tick_period_once() {
    // ngx_wasm_module traps a module that sets a non-zero tick period twice ("tick_period
    // already set"); the filter used to shorten its period until the first sync was sent and
    // lengthen it after, which trapped there on the first tick. The harness's Kong profile
    // traps the same way (and, like Kong, has no node property, by which the filter knows
    // Envoy), so a second set shows here as a trap and lost traffic.
    let snapshot = json!({
        "customers": {"cust_a": {"features": {"search": {"quota": 30}, "chat": {}}}},
        "consumer_keys": [{"key_id": "k1", "hash": hash_key("ck_harness").to_text(), "customer_id": "cust_a"}]
    });
    let synced = json!({
        "dispatch": "authority",
        "entitlements": null,
        "entitlements_url": "http://ingest.aforo.test:8080/v1/entitlements",
        "sync_interval_ms": 1000
    });
    let said = |r: &aforo_host_tests::replay::RunReport, what: &str| {
        r.logs.iter().any(|l| l.message.contains(what))
    };
    let mut k = opts(config(synced.clone()));
    k.profile = Profile::Kong;
    k.snapshot = Some(snapshot.to_string().into_bytes());
    let kong = run(&k).unwrap();
    assert_eq!(kong.traps, 0, "{:?}", kong.logs);
    assert!(said(
        &kong,
        "ticking every 250 ms (this host takes one tick period)"
    ));
    // Requests before the first snapshot pass under failure_mode (open), then the synced
    // quota is enforced; every admitted request is metered once.
    assert!(
        kong.requests.by_decision["quota_exhausted"] > 0,
        "{:?}",
        kong.requests
    );
    assert!(kong.events.balanced, "{:?}", kong.events);
    assert_eq!(
        kong.events.delivered as u64,
        kong.requests.by_decision["allowed"]
    );
    // Without "dispatch": the same (the filter finds nginx on the first request and syncs by
    // host:port from then on).
    let mut undeclared = synced.clone();
    undeclared.as_object_mut().unwrap().remove("dispatch");
    let mut u = opts(config(undeclared));
    u.profile = Profile::Kong;
    u.snapshot = Some(snapshot.to_string().into_bytes());
    let u = run(&u).unwrap();
    assert_eq!(u.traps, 0, "{:?}", u.logs);
    assert_eq!(u.requests.by_decision, kong.requests.by_decision);
    assert_eq!(u.stored, kong.stored);
    // Envoy: fast until the first sync is sent, then the usual period.
    let mut e = opts(config(synced));
    e.snapshot = Some(snapshot.to_string().into_bytes());
    let envoy = run(&e).unwrap();
    assert_eq!(envoy.traps, 0);
    assert!(said(&envoy, "ticking every 20 ms"));
    assert!(!said(&envoy, "takes one tick period"));
}

#[test]
fn the_vm_going_away_flushes_in_envoy_and_never_calls_out_in_kong() {
    // Envoy calls the root's on_done before removing a VM, the last chance to send what is
    // buffered; Kong never calls it (and traps a dispatch from a step it does not allow: the
    // harness's Kong profile traps one from on_done, which it does not call either).
    let slow = json!({"flush_interval_ms": 600_000, "dispatch": "authority"});
    let mut e = opts(config(slow.clone()));
    e.drain_ms = 0;
    let envoy = run(&e).unwrap();
    assert_eq!(envoy.traps, 0);
    assert_eq!(
        envoy.events.delivered, 40,
        "flushed from on_done: {:?}",
        envoy.events
    );
    let mut k = opts(config(slow));
    k.drain_ms = 0;
    k.profile = Profile::Kong;
    let kong = run(&k).unwrap();
    assert_eq!(kong.traps, 0, "{:?}", kong.logs);
    // Left in the VM: the documented loss window of a VM that goes away.
    assert_eq!(kong.events.buffered, 40, "{:?}", kong.events);
}

#[test]
fn a_configuration_the_module_refuses_is_an_error_with_the_field() {
    let o = opts(config(json!({"batch_size": 0})));
    let e = run(&o).unwrap_err().to_string();
    assert!(e.contains("batch_size: must be 1..=1000, got 0"), "{e}");
}

/// A browser recording (HAR) carries no customer labels: the report names customers from what
/// the module billed, and a denied request by the customer its key was billed to elsewhere.
#[test]
fn har_requests_are_labelled_with_the_customer_they_resolved_to() {
    let entry = |second: u32, key: &str| {
        format!(
            r#"{{"startedDateTime": "2026-03-15T12:00:0{second}Z", "request": {{"method": "GET", "url": "https://api.example.com/v1/search?q={second}", "headers": [{{"name": "X-Api-Key", "value": "{key}"}}]}}, "response": {{"status": 200, "headers": [], "content": {{"text": "{{}}"}}}}}}"#
        )
    };
    let har = format!(
        r#"{{"log": {{"version": "1.2", "entries": [{}, {}, {}, {}]}}}}"#,
        entry(1, "ck_harness"),
        entry(2, "ck_harness"),
        entry(3, "ck_harness"),
        entry(4, "ck_wrong")
    );
    let traffic = aforo_host_tests::traffic::Traffic::from_entries(
        aforo_host_tests::traffic::parse_har("t.har", &har).unwrap(),
    );
    let cfg = config(json!({"entitlements": {
        "customers": {"cust_a": {"features": {"search": {"quota": 2}}}},
        "consumer_keys": [{"key_id": "k1", "hash": hash_key("ck_harness").to_text(), "customer_id": "cust_a"}]
    }}));
    let mut o = RunOptions::new(filter_module().unwrap(), cfg, traffic);
    o.record_events = true;
    o.per_request = true;
    let r = run(&o).unwrap();
    assert_eq!(
        serde_json::to_value(&r.by_customer).unwrap(),
        json!({"cust_a": {"allowed": 2, "quota_exhausted": 1}})
    );
    let customers: Vec<Option<&str>> = r.results.iter().map(|x| x.customer.as_deref()).collect();
    assert_eq!(
        customers,
        [Some("cust_a"), Some("cust_a"), Some("cust_a"), None]
    );
    assert_eq!(r.results[3].decision, "invalid_key");
    assert_eq!(r.results[3].status, 401);
    // Each served request names the one event the ingest stored for it.
    for x in &r.results[..2] {
        assert_eq!(x.events.len(), 1);
        assert!(r
            .stored
            .iter()
            .any(|e| e.id == x.events[0].id && e.customer_id == "cust_a"));
    }
    assert!(r.results[2].events.is_empty());
}
