//! The engine end to end against the fake host: decisions, headers, metering, delivery.

use super::test_host::TestHost;
use super::*;
use crate::config::Config;
use crate::dedup::DedupWindow;
use crate::entitlement::LocalReply;
use crate::host::CallResponse;
use crate::ingest::{accept_batch, parse_batch, IngestAnswer};
use crate::keys::hash_key;
use crate::time::NANOS_PER_DAY;
use serde_json::{json, Value};
use std::collections::HashMap;

pub(super) struct Req(HashMap<String, String>);

impl Req {
    fn new(method: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut m: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.insert(":method".into(), method.into());
        m.insert(":path".into(), path.into());
        Req(m)
    }
}

impl RequestView for Req {
    fn header(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
    fn peer_address(&self) -> Option<String> {
        self.0.get("@peer").cloned()
    }
}

struct Resp(HashMap<String, String>);

impl ResponseHeaders for Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

pub(super) fn snapshot_json() -> Value {
    json!({
        "customers": {
            "cust_a": {"features": {
                "search": {"quota": 3, "used": 0},
                "chat": {"quota": 100000},
                "export": {"allowed": false}
            }},
            "cust_sbx": {"sandbox_mode": true, "features": {"search": {}}}
        },
        "consumer_keys": [
            {"key_id": "key_a", "hash": hash_key("ck_live_alpha").to_text(), "customer_id": "cust_a"},
            {"key_id": "key_rev", "hash": hash_key("ck_revoked").to_text(), "customer_id": "cust_a", "revoked": true},
            {"key_id": "key_sbx", "hash": hash_key("ck_sbx").to_text(), "customer_id": "cust_sbx"}
        ]
    })
}

pub(super) fn config(extra: Value) -> Config {
    let mut base = json!({
        "api_key": "sk_test_gateway",
        "product_id": "prod_search",
        "batch_size": 10,
        "flush_interval_ms": 1000,
        "routes": [
            {"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"},
            {"method": "POST", "path_prefix": "/v1/chat", "feature": "chat", "metric": "tokens",
             "quantity": {"from": "response_json", "pointer": "/usage/total_tokens"}},
            {"path_prefix": "/v1/export", "feature": "export", "metric": "exports"}
        ],
        "entitlements": snapshot_json()
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
    Config::parse(base.to_string().as_bytes(), &|_| None).unwrap()
}

/// Runs one exchange through the engine with an upstream answer; returns the local reply or
/// the headers added to the upstream response.
pub(super) fn exchange(
    gw: &mut Gateway,
    host: &mut TestHost,
    req: &Req,
    status: u16,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>, LocalReply> {
    match gw.on_request(host, req) {
        RequestVerdict::Asking(_) => panic!("no quota leases configured here"),
        RequestVerdict::Denied(_) => Err(host.replies.pop().unwrap()),
        RequestVerdict::Continue { exchange, .. } => {
            let Some(mut ex) = exchange else {
                return Ok(vec![]);
            };
            let source = gw.config().routes[ex.route].clone();
            let mut h = HashMap::new();
            h.insert(":status".to_string(), status.to_string());
            let added = ex.on_response_headers(&Resp(h), &source, host.now);
            ex.on_response_body(body, &source, gw.config().max_body_bytes);
            gw.finish(host, *ex);
            Ok(added
                .iter()
                .flatten()
                .map(|(k, v)| (*k, v.as_str().to_string()))
                .collect())
        }
    }
}

/// A simulated ingest built from the real ingest rules; answers every pending call.
struct Ingest {
    seen: [DedupWindow; 2],
    stored: Vec<Value>,
    fail_with: Option<u16>,
}

impl Ingest {
    fn new() -> Self {
        Ingest {
            seen: [
                DedupWindow::new(100_000, 90 * NANOS_PER_DAY),
                DedupWindow::new(100_000, 90 * NANOS_PER_DAY),
            ],
            stored: Vec::new(),
            fail_with: None,
        }
    }

    fn serve(&mut self, gw: &mut Gateway, host: &mut TestHost) {
        for (token, call) in host.take_calls() {
            let response = if let Some(s) = self.fail_with {
                CallResponse {
                    status: Some(s),
                    headers: vec![],
                    body: vec![],
                }
            } else {
                let auth = call
                    .headers
                    .iter()
                    .find(|(k, _)| k == "authorization")
                    .map(|(_, v)| v.clone())
                    .unwrap();
                let env =
                    crate::environment::environment_of_key(auth.trim_start_matches("Bearer "))
                        .unwrap();
                let out = accept_batch(
                    parse_batch(&call.body).unwrap(),
                    env,
                    host.now,
                    &mut self.seen,
                );
                for (e, _) in &out.accepted {
                    self.stored
                        .push(serde_json::from_slice(&crate::event::encode_v1(e)).unwrap());
                }
                CallResponse {
                    status: Some(202),
                    headers: vec![],
                    body: out.answer.to_json(),
                }
            };
            gw.on_call_response(host, token, response);
        }
    }
}

pub(super) fn get_search(key: &str, rid: &str) -> Req {
    Req::new(
        "GET",
        "/v1/search?q=1",
        &[("x-api-key", key), ("x-request-id", rid)],
    )
}

/// The path is the client's: written into the event's properties, it stays one string value and
/// cannot add or replace a field (the customer, the quantity).
#[test]
fn a_hostile_path_stays_one_property_value_in_the_event() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({})), 7);
    let path = "/v1/search/\",\"customer_id\":\"cust_b\",\"quantity\":\"999\"}\r\n\\";
    let req = Req::new(
        "GET",
        &format!("{path}?q=\"x"),
        &[
            ("x-api-key", "ck_live_alpha"),
            ("x-request-id", "r-hostile"),
        ],
    );
    exchange(&mut gw, &mut host, &req, 200, b"").unwrap();
    let mut ingest = Ingest::new();
    host.advance_ms(1_000);
    gw.on_tick(&mut host);
    ingest.serve(&mut gw, &mut host);
    assert_eq!(ingest.stored.len(), 1);
    let e = &ingest.stored[0];
    assert_eq!(e["customer_id"], "cust_a");
    assert_eq!(e["quantity"], "1");
    assert_eq!(e["properties"]["endpoint"], path);
    assert_eq!(e["properties"]["method"], "GET");
    assert_eq!(e["properties"]["status"], 200);
}

#[test]
fn an_allowed_request_is_metered_with_all_seven_fields() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({})), 7);
    let added = exchange(
        &mut gw,
        &mut host,
        &get_search("ck_live_alpha", "r1"),
        200,
        b"",
    )
    .unwrap();
    let h: HashMap<_, _> = added.into_iter().collect();
    assert_eq!(h["ratelimit-limit"], "3");
    assert_eq!(h["ratelimit-remaining"], "2");
    let mut ingest = Ingest::new();
    host.advance_ms(1_000);
    gw.on_tick(&mut host);
    let call = &host.calls[0].1;
    assert_eq!(call.upstream, "aforo_ingest_sandbox");
    assert!(call
        .headers
        .contains(&("authorization".into(), "Bearer sk_test_gateway".into())));
    ingest.serve(&mut gw, &mut host);
    assert_eq!(ingest.stored.len(), 1);
    let e = &ingest.stored[0];
    for f in [
        "id",
        "customer_id",
        "metric",
        "quantity",
        "timestamp",
        "product_id",
        "environment",
    ] {
        assert!(e.get(f).is_some(), "missing {f}");
    }
    assert_eq!(e["customer_id"], "cust_a");
    assert_eq!(e["metric"], "api_calls");
    assert_eq!(e["quantity"], "1");
    assert_eq!(e["environment"], "sandbox");
    assert_eq!(e["properties"]["endpoint"], "/v1/search");
    assert_eq!(e["properties"]["status"], 200);
    assert_eq!(e["properties"]["key_id"], "key_a");
    let c = gw.counters();
    assert_eq!((c.received, c.delivered, c.buffered), (1, 1, 0));
    assert_eq!(host.metric(Metric::EventsDelivered), 1);
}

#[test]
fn quota_is_enforced_with_retry_after_and_never_after_the_response() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({})), 7);
    for i in 0..3 {
        exchange(
            &mut gw,
            &mut host,
            &get_search("ck_live_alpha", &format!("r{i}")),
            200,
            b"",
        )
        .unwrap();
    }
    let denied = exchange(
        &mut gw,
        &mut host,
        &get_search("ck_live_alpha", "r4"),
        200,
        b"",
    )
    .unwrap_err();
    assert_eq!(denied.status, 429);
    let h: HashMap<_, _> = denied.headers.iter().cloned().collect();
    assert_eq!(h["ratelimit-remaining"], "0");
    // 2026-03-15T12:00Z → 2026-04-01T00:00Z = 16.5 days.
    assert_eq!(h["retry-after"], (16 * 86_400 + 12 * 3_600).to_string());
    let body: Value = serde_json::from_slice(&denied.body).unwrap();
    assert_eq!(body["error"]["code"], "quota_exhausted");
    assert_eq!(
        host.metric(Metric::DecisionsDenied429),
        0,
        "published on tick"
    );
    gw.publish_metrics(&mut host);
    assert_eq!(host.metric(Metric::DecisionsDenied429), 1);
}

#[test]
fn rate_limit_headers_off_keeps_the_quota_from_clients_but_enforces_it_and_keeps_retry_after() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({"rate_limit_headers": false})), 7);
    for i in 0..3 {
        let added = exchange(
            &mut gw,
            &mut host,
            &get_search("ck_live_alpha", &format!("r{i}")),
            200,
            b"",
        )
        .unwrap();
        assert!(
            added.iter().all(|(k, _)| !k.starts_with("ratelimit")),
            "{added:?}"
        );
    }
    let denied = exchange(
        &mut gw,
        &mut host,
        &get_search("ck_live_alpha", "r4"),
        200,
        b"",
    )
    .unwrap_err();
    assert_eq!(denied.status, 429, "the quota is still enforced");
    let names: Vec<&str> = denied.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        !names.iter().any(|k| k.starts_with("ratelimit")),
        "{names:?}"
    );
    let h: HashMap<_, _> = denied.headers.iter().cloned().collect();
    assert_eq!(h["retry-after"], (16 * 86_400 + 12 * 3_600).to_string());
    // Every allowed request is still metered.
    host.advance_ms(1_000);
    gw.on_tick(&mut host);
    let mut ingest = Ingest::new();
    ingest.serve(&mut gw, &mut host);
    assert_eq!(ingest.stored.len(), 3);
}

#[test]
fn not_billable_responses_give_their_quota_back() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({})), 7);
    for i in 0..5 {
        exchange(
            &mut gw,
            &mut host,
            &get_search("ck_live_alpha", &format!("r{i}")),
            503,
            b"",
        )
        .unwrap();
    }
    assert!(exchange(
        &mut gw,
        &mut host,
        &get_search("ck_live_alpha", "ok"),
        200,
        b""
    )
    .is_ok());
    assert_eq!(gw.counters().received, 1, "5xx answers are not metered");
}

#[test]
fn quota_slices_count_in_each_worker_and_merge_into_shared_data_on_the_tick() {
    // Two workers (engines) over one host's shared data; quota 3 with slices of 2.
    let mut host = TestHost::new();
    let mut w1 = Gateway::new(config(json!({"quota_slice": 2})), 7);
    let mut w2 = Gateway::new(config(json!({"quota_slice": 2})), 8);
    let mut admitted = 0;
    for i in 0..4 {
        for (n, gw) in [&mut w1, &mut w2].into_iter().enumerate() {
            let req = get_search("ck_live_alpha", &format!("w{n}-{i}"));
            if exchange(gw, &mut host, &req, 200, b"").is_ok() {
                admitted += 1;
            }
        }
    }
    // Stated bound: quota + workers × quota_slice; each worker alone never passes the quota.
    assert!((3..=3 + 2 * 2).contains(&admitted), "admitted {admitted}");
    w1.on_tick(&mut host);
    w2.on_tick(&mut host);
    let key = crate::entitlement::quota_key(Environment::Sandbox, "cust_a", "search");
    let (bytes, _) = host.shared_get(&key).expect("merged into shared data");
    let stored = crate::entitlement::CounterValue::decode(&key, &bytes).unwrap();
    assert_eq!(
        stored.count, admitted as u64,
        "every admitted unit merged, once"
    );
    // Both workers now read the spent quota: refused.
    for (n, gw) in [&mut w1, &mut w2].into_iter().enumerate() {
        let req = get_search("ck_live_alpha", &format!("after-{n}"));
        assert_eq!(
            exchange(gw, &mut host, &req, 200, b"").unwrap_err().status,
            429
        );
    }
}

#[test]
fn a_refund_through_a_quota_slice_reaches_shared_data() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({"quota_slice": 10})), 7);
    for i in 0..3 {
        let req = get_search("ck_live_alpha", &format!("r{i}"));
        exchange(&mut gw, &mut host, &req, 503, b"").unwrap();
    }
    let req = get_search("ck_live_alpha", "ok");
    exchange(&mut gw, &mut host, &req, 200, b"").unwrap();
    gw.on_tick(&mut host);
    let key = crate::entitlement::quota_key(Environment::Sandbox, "cust_a", "search");
    let (bytes, _) = host.shared_get(&key).unwrap();
    let stored = crate::entitlement::CounterValue::decode(&key, &bytes).unwrap();
    assert_eq!(stored.count, 1, "three 503s refunded, one 200 counted");
}

#[test]
fn every_denial_has_its_status_and_code() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({})), 7);
    let cases = [
        (Req::new("GET", "/v1/search", &[]), 401, "invalid_key"),
        (
            Req::new("GET", "/v1/search", &[("x-api-key", "ck_unknown")]),
            401,
            "invalid_key",
        ),
        (
            Req::new("GET", "/v1/search", &[("x-api-key", "ck_revoked")]),
            401,
            "invalid_key",
        ),
        (
            Req::new("GET", "/v1/export", &[("x-api-key", "ck_live_alpha")]),
            403,
            "no_access",
        ),
    ];
    for (req, status, code) in cases {
        let r = exchange(&mut gw, &mut host, &req, 200, b"").unwrap_err();
        assert_eq!(r.status, status);
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"]["code"], code);
        assert!(r.headers.iter().all(|(k, _)| k != "retry-after"));
    }
    // Unmatched routes pass through unmetered by default.
    assert!(exchange(
        &mut gw,
        &mut host,
        &Req::new("GET", "/health", &[]),
        200,
        b""
    )
    .is_ok());
    assert_eq!(gw.counters().received, 0);
}

#[test]
fn shadow_mode_decides_counts_and_never_blocks() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({"mode": "shadow"})), 7);
    match gw.on_request(
        &mut host,
        &Req::new("GET", "/v1/export", &[("x-api-key", "ck_live_alpha")]),
    ) {
        RequestVerdict::Continue {
            upstream_headers, ..
        } => {
            assert_eq!(
                upstream_headers,
                vec![("x-aforo-would-deny".to_string(), "no_access".to_string())]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(host.replies.is_empty());
    gw.publish_metrics(&mut host);
    assert_eq!(host.metric(Metric::DecisionsShadowDenied), 1);
}

#[test]
fn llm_tokens_come_from_the_response_body() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({})), 7);
    let req = Req::new(
        "POST",
        "/v1/chat",
        &[("x-api-key", "ck_live_alpha"), ("x-request-id", "c1")],
    );
    exchange(
        &mut gw,
        &mut host,
        &req,
        200,
        br#"{"usage": {"total_tokens": 1234}}"#,
    )
    .unwrap();
    // A body without the pointer is rejected with a reason, not dropped.
    let req = Req::new(
        "POST",
        "/v1/chat",
        &[("x-api-key", "ck_live_alpha"), ("x-request-id", "c2")],
    );
    exchange(&mut gw, &mut host, &req, 200, br#"{"usage": {}}"#).unwrap();
    let mut ingest = Ingest::new();
    gw.flush_now(&mut host);
    ingest.serve(&mut gw, &mut host);
    assert_eq!(ingest.stored.len(), 1);
    assert_eq!(ingest.stored[0]["quantity"], "1234");
    let c = gw.counters();
    assert_eq!((c.received, c.delivered, c.rejected), (2, 1, 1));
    assert!(c.balanced());
    let dl: Vec<String> = gw.delivery[0]
        .dead_letters()
        .map(|d| d.reason.to_string())
        .collect();
    assert_eq!(dl, vec!["rejected_quantity_unavailable"]);
}

/// One streamed exchange on the chat route: `chunks` of a `content_type` body, `ended` when
/// the upstream finished it (else cut off).
fn streamed(
    gw: &mut Gateway,
    host: &mut TestHost,
    rid: &str,
    content_type: &str,
    chunks: &[&[u8]],
    ended: bool,
) {
    chat_exchange(gw, host, rid, b"", content_type, chunks, ended);
}

/// One exchange on the chat route with a request body.
fn chat_exchange(
    gw: &mut Gateway,
    host: &mut TestHost,
    rid: &str,
    request_body: &[u8],
    content_type: &str,
    chunks: &[&[u8]],
    ended: bool,
) {
    let req = Req::new(
        "POST",
        "/v1/chat",
        &[("x-api-key", "ck_live_alpha"), ("x-request-id", rid)],
    );
    let RequestVerdict::Continue {
        exchange: Some(mut ex),
        ..
    } = gw.on_request(host, &req)
    else {
        panic!("not admitted")
    };
    let route = gw.config().routes[ex.route].clone();
    ex.on_request_body(request_body, &route, 256);
    // As a host does at the request's end: its properties are read and its copy dropped.
    ex.on_request_end(&route);
    assert!(ex.request_body.is_empty());
    let mut h = HashMap::new();
    h.insert(":status".to_string(), "200".to_string());
    h.insert("content-type".to_string(), content_type.to_string());
    ex.on_response_headers(&Resp(h), &route, host.now);
    for c in chunks {
        ex.on_response_body(c, &route, 256);
    }
    if ended {
        ex.on_response_end();
    }
    gw.finish(host, *ex);
}

#[test]
fn a_route_may_estimate_a_missing_usage_from_the_request_size_and_says_so() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(
        config(json!({
            "routes": [{"method": "POST", "path_prefix": "/v1/chat", "feature": "chat", "on_missing": "estimate_request_bytes",
                "meters": [
                    {"metric": "output_tokens", "quantity": {"from": "response_json", "pointer": "/usage/completion_tokens"}},
                    {"metric": "requests"}
                ]}]
        })),
        7,
    );
    let prompt = br#"{"messages": [{"role": "user", "content": "count the words"}]}"#;
    // Cut off before the usage: estimated, flagged; the constant meter is as always.
    chat_exchange(
        &mut gw,
        &mut host,
        "e1",
        prompt,
        "text/event-stream",
        &[b"data: {\"x\":1}\n\n"],
        false,
    );
    // The usage arrived: billed as it says, not estimated.
    chat_exchange(
        &mut gw,
        &mut host,
        "e2",
        prompt,
        "text/event-stream",
        &[b"data: {\"usage\":{\"completion_tokens\":4}}\n\n"],
        true,
    );
    let mut ingest = Ingest::new();
    gw.flush_now(&mut host);
    ingest.serve(&mut gw, &mut host);
    let got: Vec<(String, String, Value)> = ingest
        .stored
        .iter()
        .map(|e| {
            (
                e["metric"].as_str().unwrap().to_string(),
                e["quantity"].as_str().unwrap().to_string(),
                e["properties"]["estimated"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "output_tokens".into(),
                prompt.len().to_string(),
                json!("request_bytes")
            ),
            ("requests".into(), "1".into(), Value::Null),
            ("output_tokens".into(), "4".into(), Value::Null),
            ("requests".into(), "1".into(), Value::Null),
        ]
    );
    assert_eq!(gw.counters().rejected, 0);
}

/// A quota counted in tokens: a request is admitted while tokens remain, its tokens are
/// debited once the response says how many, and `RateLimit-*` count tokens. The overshoot is
/// at most what the requests in flight at the last admission used.
#[test]
fn token_quotas_admit_while_tokens_remain_and_debit_what_the_response_used() {
    let mut host = TestHost::new();
    let mut snapshot = snapshot_json();
    snapshot["customers"]["cust_a"]["features"]["chat"] = json!({"quota": 100});
    let mut gw = Gateway::new(config(json!({"entitlements": snapshot})), 7);
    let chat = |rid: &str| {
        Req::new(
            "POST",
            "/v1/chat",
            &[("x-api-key", "ck_live_alpha"), ("x-request-id", rid)],
        )
    };
    let used = br#"{"usage": {"total_tokens": 40}}"#;
    let mut remaining = Vec::new();
    for rid in ["t1", "t2", "t3"] {
        let added = exchange(&mut gw, &mut host, &chat(rid), 200, used).unwrap();
        let h: HashMap<_, _> = added.into_iter().collect();
        assert_eq!(h["ratelimit-limit"], "100");
        remaining.push(h["ratelimit-remaining"].clone());
    }
    // Remaining in tokens at each admission: 100, 60, 20 (the third is admitted on 20 left and
    // uses 40: 20 over, its own tokens at most).
    assert_eq!(remaining, vec!["100", "60", "20"]);
    let r = exchange(&mut gw, &mut host, &chat("t4"), 200, used).unwrap_err();
    assert_eq!(r.status, 429);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"]["code"], "quota_exhausted");
    // Two requests in flight at once, both admitted on the same remainder: the overshoot is
    // bounded by what those in flight use, never more.
    // A fresh host: its shared counters start at zero.
    let mut host = TestHost::new();
    let mut gw = Gateway::new(
        config(json!({"entitlements": snapshot_json_with_chat_quota(100)})),
        8,
    );
    let mut in_flight = Vec::new();
    for rid in ["f1", "f2"] {
        match gw.on_request(&mut host, &chat(rid)) {
            RequestVerdict::Continue {
                exchange: Some(ex), ..
            } => in_flight.push(ex),
            _ => panic!("admitted while tokens remain"),
        }
    }
    for mut ex in in_flight {
        let route = gw.config().routes[ex.route].clone();
        let mut h = HashMap::new();
        h.insert(":status".to_string(), "200".to_string());
        ex.on_response_headers(&Resp(h), &route, host.now);
        ex.on_response_body(br#"{"usage": {"total_tokens": 90}}"#, &route, 1024);
        ex.on_response_end();
        gw.finish(&mut host, *ex);
    }
    let r = exchange(&mut gw, &mut host, &chat("f3"), 200, used).unwrap_err();
    assert_eq!(
        r.status, 429,
        "180 of 100 used: 80 over, less than the 90 + 90 in flight"
    );
}

#[test]
fn a_stream_cut_off_before_its_usage_still_counts_against_a_token_quota() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(
        config(json!({"entitlements": snapshot_json_with_chat_quota(100)})),
        9,
    );
    // Over 100 bytes of content, then the client goes away before the usage event.
    let content = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}],\"usage\":null}}\n\n",
        "word ".repeat(20)
    );
    let content = content.as_bytes();
    assert!(content.len() > 100);
    streamed(
        &mut gw,
        &mut host,
        "cut-1",
        "text/event-stream",
        &[content],
        false,
    );
    // Refused for billing (a dead letter), but the quota counted its bytes: no more tokens.
    assert_eq!(gw.counters().rejected, 1);
    let r = exchange(
        &mut gw,
        &mut host,
        &Req::new(
            "POST",
            "/v1/chat",
            &[("x-api-key", "ck_live_alpha"), ("x-request-id", "cut-2")],
        ),
        200,
        br#"{"usage": {"total_tokens": 1}}"#,
    )
    .unwrap_err();
    assert_eq!(r.status, 429);
}

fn snapshot_json_with_chat_quota(quota: u64) -> Value {
    let mut s = snapshot_json();
    s["customers"]["cust_a"]["features"]["chat"] = json!({"quota": quota});
    s
}

#[test]
fn properties_come_from_the_request_and_the_response_and_stay_data() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(
        config(json!({
            "routes": [{"method": "POST", "path_prefix": "/v1/chat", "feature": "chat", "metric": "tokens",
                "quantity": {"from": "response_json", "pointer": "/usage/total_tokens"},
                "properties": {
                    "model": {"from": "response_json", "pointer": "/model"},
                    "asked": {"from": "request_json", "pointer": "/model"},
                    "temperature": {"from": "request_json", "pointer": "/temperature"}
                }}]
        })),
        7,
    );
    // Whole bodies; the client's model is hostile text, and stays one string value.
    chat_exchange(
        &mut gw,
        &mut host,
        "p1",
        br#"{"model": "gpt-4o\",\"customer_id\":\"x", "temperature": 0.2}"#,
        "application/json",
        &[br#"{"model": "gpt-4o-2024-08-06", "usage": {"total_tokens": 5}}"#],
        true,
    );
    // Streamed: the model in every chunk, the last wins; the request body is not JSON.
    chat_exchange(
        &mut gw,
        &mut host,
        "p2",
        b"not json",
        "text/event-stream",
        &[
            b"data: {\"model\":\"gpt-4o-mini\",\"usage\":null}\n\n",
            b"data: {\"model\":\"gpt-4o-mini-2024\",\"usage\":{\"total_tokens\":9}}\n\ndata: [DONE]\n\n",
        ],
        true,
    );
    // A body past max_body_bytes (256 here) gives no property, and the event stands.
    let big = format!(
        r#"{{"model": "m", "pad": "{}", "usage": {{"total_tokens": 3}}}}"#,
        "x".repeat(300)
    );
    chat_exchange(
        &mut gw,
        &mut host,
        "p3",
        br#"{"model": [1]}"#,
        "application/json",
        &[big.as_bytes()],
        true,
    );
    let mut ingest = Ingest::new();
    gw.flush_now(&mut host);
    ingest.serve(&mut gw, &mut host);
    let props: Vec<Value> = ingest
        .stored
        .iter()
        .map(|e| e["properties"].clone())
        .collect();
    assert_eq!(
        props.len(),
        2,
        "the third has no readable quantity: {props:?}"
    );
    assert_eq!(props[0]["model"], "gpt-4o-2024-08-06");
    assert_eq!(props[0]["asked"], "gpt-4o\",\"customer_id\":\"x");
    assert_eq!(props[0]["temperature"], 0.2);
    assert_eq!(props[0]["endpoint"], "/v1/chat");
    assert_eq!(ingest.stored[0]["customer_id"], "cust_a");
    assert_eq!(props[1]["model"], "gpt-4o-mini-2024");
    assert!(props[1].get("asked").is_none());
    assert_eq!(ingest.stored[1]["quantity"], "9");
}

#[test]
fn streamed_usage_is_read_as_it_passes_and_a_stream_without_it_is_never_zero() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({})), 7);
    // OpenAI chat completions with include_usage: the usage in the last chunk, split anywhere.
    let openai = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
        "data: [DONE]\n\n"
    )
    .as_bytes();
    let parts: Vec<&[u8]> = vec![&openai[..7], &openai[7..80], &openai[80..81], &openai[81..]];
    streamed(
        &mut gw,
        &mut host,
        "s1",
        "text/event-stream; charset=utf-8",
        &parts,
        true,
    );
    // Cut off after the usage arrived: the usage is billed.
    let before_done = openai.len() - "data: [DONE]\n\n".len();
    streamed(
        &mut gw,
        &mut host,
        "s2",
        "text/event-stream",
        &[&openai[..before_done]],
        false,
    );
    // Cut off before it: a dead letter with the reason, not a zero.
    streamed(
        &mut gw,
        &mut host,
        "s3",
        "text/event-stream",
        &[&openai[..60]],
        false,
    );
    // Ended without usage (include_usage not asked for): a dead letter too.
    streamed(
        &mut gw,
        &mut host,
        "s4",
        "TEXT/EVENT-STREAM",
        &[b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n"],
        true,
    );
    // An event larger than max_body_bytes (256 here) is skipped; the usage after it is read,
    // and nothing of the stream is kept beyond one event.
    let big = format!("data: {{\"pad\":\"{}\"}}\n\n", "x".repeat(1000));
    streamed(
        &mut gw,
        &mut host,
        "s5",
        "text/event-stream",
        &[
            big.as_bytes(),
            b"data: {\"usage\":{\"total_tokens\":7}}\n\n",
        ],
        true,
    );
    let mut ingest = Ingest::new();
    gw.flush_now(&mut host);
    ingest.serve(&mut gw, &mut host);
    let quantities: Vec<&str> = ingest
        .stored
        .iter()
        .map(|e| e["quantity"].as_str().unwrap())
        .collect();
    assert_eq!(quantities, vec!["11", "11", "7"]);
    let c = gw.counters();
    assert_eq!((c.received, c.delivered, c.rejected), (5, 3, 2));
    assert!(c.balanced());
    let logs = host.logs.borrow();
    assert!(
        logs.iter()
            .any(|(_, l)| l.contains("cut off before /usage/total_tokens arrived")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|(_, l)| l
                .contains("ended without /usage/total_tokens in any event (2 events read)")),
        "{logs:?}"
    );
}

#[test]
fn the_responses_api_usage_comes_from_response_completed() {
    let mut host = TestHost::new();
    let meters = json!([
        {"metric": "input_tokens", "quantity": {"from": "response_json", "pointer": "/response/usage/input_tokens"}},
        {"metric": "output_tokens", "quantity": {"from": "response_json", "pointer": "/response/usage/output_tokens"}}
    ]);
    let mut gw = Gateway::new(
        config(json!({
            "routes": [{"method": "POST", "path_prefix": "/v1/chat", "feature": "chat", "meters": meters,
                "properties": {"model": {"from": "response_json", "pointer": "/response/model"}}}]
        })),
        7,
    );
    // OpenAI's Responses API: usage is null until response.completed.
    let stream = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"model\":\"gpt-4.1\",\"usage\":null}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"model\":\"gpt-4.1-2025-04-14\",\"usage\":{\"input_tokens\":36,\"output_tokens\":87,\"total_tokens\":123}}}\n\n"
    )
    .as_bytes();
    streamed(
        &mut gw,
        &mut host,
        "r1",
        "text/event-stream",
        &[&stream[..33], &stream[33..]],
        true,
    );
    let mut ingest = Ingest::new();
    gw.flush_now(&mut host);
    ingest.serve(&mut gw, &mut host);
    let got: Vec<(&str, &str, &str)> = ingest
        .stored
        .iter()
        .map(|e| {
            (
                e["metric"].as_str().unwrap(),
                e["quantity"].as_str().unwrap(),
                e["properties"]["model"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("input_tokens", "36", "gpt-4.1-2025-04-14"),
            ("output_tokens", "87", "gpt-4.1-2025-04-14"),
        ]
    );
}

#[test]
fn several_meters_make_one_event_each_with_ids_stable_per_metric() {
    let mut host = TestHost::new();
    let meters = json!([
        {"metric": "input_tokens", "quantity": {"from": "response_json", "pointer": "/message/usage/input_tokens"}},
        {"metric": "output_tokens", "quantity": {"from": "response_json", "pointer": "/usage/output_tokens"}},
        {"metric": "requests"}
    ]);
    let mut gw = Gateway::new(
        config(json!({
            "request_id_header": "x-request-id",
            "routes": [{"method": "POST", "path_prefix": "/v1/chat", "feature": "chat", "meters": meters}]
        })),
        7,
    );
    let anthropic = concat!(
        "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n",
        "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hi\"}}\r\n\r\n",
        "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\r\n\r\n",
        "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n"
    )
    .as_bytes();
    streamed(
        &mut gw,
        &mut host,
        "m1",
        "text/event-stream",
        &[&anthropic[..50], &anthropic[50..]],
        true,
    );
    // The same request again (a retry with the same trusted request id): the same three ids.
    streamed(
        &mut gw,
        &mut host,
        "m1",
        "text/event-stream",
        &[anthropic],
        true,
    );
    // Cut off after message_start: the input tokens are billed, the output tokens are not
    // billed as zero, the request count stands.
    streamed(
        &mut gw,
        &mut host,
        "m2",
        "text/event-stream",
        &[&anthropic[..120]],
        false,
    );
    let mut ingest = Ingest::new();
    gw.flush_now(&mut host);
    ingest.serve(&mut gw, &mut host);
    let stored: Vec<(String, String)> = ingest
        .stored
        .iter()
        .map(|e| {
            (
                e["metric"].as_str().unwrap().to_string(),
                e["quantity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        stored,
        vec![
            ("input_tokens".into(), "25".into()),
            ("output_tokens".into(), "15".into()),
            ("requests".into(), "1".into()),
            ("input_tokens".into(), "25".into()),
            ("requests".into(), "1".into()),
        ]
    );
    let ids: std::collections::HashSet<&str> = ingest
        .stored
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "one id per metric and request");
    let c = gw.counters();
    // 9 offered: the retry's three were duplicates at the ingest, the cut output refused.
    assert_eq!((c.received, c.rejected), (9, 1));
    assert!(c.balanced());
}

#[test]
fn an_ingest_outage_loses_nothing_and_duplicates_nothing() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(
        config(
            json!({"max_retry_time_ms": 10_000, "initial_backoff_ms": 100, "max_backoff_ms": 1000}),
        ),
        7,
    );
    let mut ingest = Ingest::new();
    ingest.fail_with = Some(503);
    for i in 0..40 {
        let req = Req::new(
            "POST",
            "/v1/chat",
            &[
                ("x-api-key", "ck_live_alpha"),
                ("x-request-id", &format!("r{i}")),
            ],
        );
        exchange(
            &mut gw,
            &mut host,
            &req,
            200,
            br#"{"usage": {"total_tokens": 2}}"#,
        )
        .unwrap();
        host.advance_ms(500);
        gw.on_tick(&mut host);
        ingest.serve(&mut gw, &mut host);
    }
    // 20 seconds of 503s: some batches exhausted their retries and were dead-lettered.
    assert!(gw.counters().dead_lettered > 0, "{:?}", gw.counters());
    assert!(gw.counters().balanced());
    ingest.fail_with = None;
    for _ in 0..200 {
        host.advance_ms(500);
        gw.on_tick(&mut host);
        ingest.serve(&mut gw, &mut host);
    }
    let c = gw.counters();
    assert_eq!(
        (c.received, c.delivered, c.dead_lettered, c.buffered),
        (40, 40, 0, 0),
        "{c:?}"
    );
    let mut ids: Vec<&str> = ingest
        .stored
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every event once");
    assert_eq!(ingest.stored.len(), 40, "none twice");
}

#[test]
fn an_engine_handed_to_another_host_delivers_its_dead_letters_and_buffer_there() {
    // The first host: the ingest refuses long enough for batches to be dead-lettered.
    let mut old = TestHost::new();
    let mut gw = Gateway::new(
        config(
            json!({"max_retry_time_ms": 2_000, "initial_backoff_ms": 100, "max_backoff_ms": 500}),
        ),
        9,
    );
    let mut ingest = Ingest::new();
    ingest.fail_with = Some(503);
    for i in 0..12 {
        let req = Req::new(
            "POST",
            "/v1/chat",
            &[
                ("x-api-key", "ck_live_alpha"),
                ("x-request-id", &format!("h{i}")),
            ],
        );
        exchange(
            &mut gw,
            &mut old,
            &req,
            200,
            br#"{"usage": {"total_tokens": 2}}"#,
        )
        .unwrap();
        old.advance_ms(500);
        gw.on_tick(&mut old);
        ingest.serve(&mut gw, &mut old);
    }
    // Calls the first host never answered (its configuration went away) are failed.
    for (token, _) in old.take_calls() {
        gw.on_call_response(&mut old, token, CallResponse::failed());
    }
    let before = gw.counters();
    assert!(before.dead_lettered > 0 && before.balanced(), "{before:?}");
    gw.leave(&mut old);
    assert!(gw.holds_work(), "dead letters went back to the buffer");
    assert_eq!(
        (
            old.metric(Metric::EventsBuffered),
            old.metric(Metric::EventsDeadLettered)
        ),
        (0, 0),
        "the first host's gauges no longer count this engine"
    );
    // The next host: the ingest answers; everything arrives once.
    let mut new = TestHost::new();
    new.now = old.now;
    ingest.fail_with = None;
    for _ in 0..40 {
        new.advance_ms(500);
        gw.on_tick(&mut new);
        ingest.serve(&mut gw, &mut new);
    }
    assert!(!gw.holds_work(), "{:?}", gw.counters());
    let mut ids: Vec<&str> = ingest
        .stored
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "every event stored");
    gw.end(&mut new);
    assert_eq!(new.metric(Metric::EventsBuffered), 0);
    assert_eq!(new.metric(Metric::EventsDeadLettered), 0);
}

#[test]
fn an_engine_that_ends_with_dead_letters_writes_them_to_the_log() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(
        config(json!({"max_retry_time_ms": 1_000, "initial_backoff_ms": 100})),
        3,
    );
    let mut ingest = Ingest::new();
    ingest.fail_with = Some(503);
    let req = Req::new(
        "GET",
        "/v1/search",
        &[("x-api-key", "ck_live_alpha"), ("x-request-id", "dl-1")],
    );
    exchange(&mut gw, &mut host, &req, 200, b"{}").unwrap();
    for _ in 0..20 {
        host.advance_ms(500);
        gw.on_tick(&mut host);
        ingest.serve(&mut gw, &mut host);
    }
    assert_eq!(gw.counters().dead_lettered, 1, "{:?}", gw.counters());
    gw.end(&mut host);
    let logs = host.logs.borrow();
    assert!(
        logs.iter().any(
            |(_, m)| m.starts_with("aforo dead letter of a replaced configuration")
                && m.contains("dl-1")
                || m.starts_with("aforo dead letter of a replaced configuration")
                    && m.contains("evt_")
        ),
        "{logs:?}"
    );
}

#[test]
fn sandbox_mode_partners_go_to_the_sandbox_pipeline() {
    let mut host = TestHost::new();
    // A live gateway with a sandbox key for sandbox-mode partners.
    let mut gw = Gateway::new(
        config(json!({"api_key": "sk_live_gw", "sandbox_api_key": "sk_test_gw"})),
        7,
    );
    exchange(
        &mut gw,
        &mut host,
        &get_search("ck_live_alpha", "a"),
        200,
        b"",
    )
    .unwrap();
    exchange(&mut gw, &mut host, &get_search("ck_sbx", "b"), 200, b"").unwrap();
    gw.flush_now(&mut host);
    let mut by_upstream: Vec<(String, String)> = host
        .calls
        .iter()
        .map(|(_, c)| {
            (
                c.upstream.clone(),
                c.headers
                    .iter()
                    .find(|(k, _)| k == "authorization")
                    .unwrap()
                    .1
                    .clone(),
            )
        })
        .collect();
    by_upstream.sort();
    assert_eq!(
        by_upstream,
        vec![
            (
                "aforo_ingest_production".to_string(),
                "Bearer sk_live_gw".to_string()
            ),
            (
                "aforo_ingest_sandbox".to_string(),
                "Bearer sk_test_gw".to_string()
            ),
        ]
    );
    let mut ingest = Ingest::new();
    ingest.serve(&mut gw, &mut host);
    let envs: Vec<&str> = ingest
        .stored
        .iter()
        .map(|e| e["environment"].as_str().unwrap())
        .collect();
    assert!(envs.contains(&"production") && envs.contains(&"sandbox"));

    // Without a sandbox key the sandbox-mode event is dead-lettered, loudly.
    let mut gw = Gateway::new(config(json!({"api_key": "sk_live_gw"})), 7);
    exchange(&mut gw, &mut host, &get_search("ck_sbx", "c"), 200, b"").unwrap();
    assert_eq!(gw.counters_for(Environment::Sandbox).dead_lettered, 1);
    assert!(host
        .logs
        .borrow()
        .iter()
        .any(|(_, l)| l.contains("sandbox_api_key")));
}

#[test]
fn stale_snapshots_follow_the_failure_mode() {
    let sync = json!({"entitlements": null, "entitlements_url": "http://127.0.0.1:9/v1/entitlements", "sync_interval_ms": 1000, "max_snapshot_age_ms": 5000});
    let mut host = TestHost::new();
    let mut closed = Gateway::new(
        config(
            json!({"failure_mode": "closed"})
                .as_object()
                .unwrap()
                .clone()
                .into_iter()
                .chain(sync.as_object().unwrap().clone())
                .collect::<serde_json::Map<_, _>>()
                .into(),
        ),
        1,
    );
    let r = exchange(
        &mut closed,
        &mut host,
        &get_search("ck_live_alpha", "x"),
        200,
        b"",
    )
    .unwrap_err();
    assert_eq!(r.status, 503);
    assert!(r.headers.iter().any(|(k, _)| k == "retry-after"));

    let mut open = Gateway::new(config(sync.clone()), 1);
    let ok = exchange(
        &mut open,
        &mut host,
        &Req::new("GET", "/v1/search", &[("x-api-key", "ck_live_alpha")]),
        200,
        b"",
    );
    assert!(ok.is_ok(), "open failure mode serves the request");
    open.publish_metrics(&mut host);
    assert_eq!(host.metric(Metric::DecisionsFailOpen), 1);

    // Until the first snapshot the host ticks as fast as it can, so the first sync starts now.
    assert_eq!(open.tick_period_ms(), 20);
    // A sync installs a snapshot; five seconds without a successful sync make it stale again.
    host.calls.clear();
    open.on_tick(&mut host);
    let (token, call) = host.take_calls().pop().unwrap();
    assert!(call
        .headers
        .iter()
        .any(|(k, v)| k == ":path" && v == "/v1/entitlements?environment=sandbox&source=gateway"));
    open.on_call_response(
        &mut host,
        token,
        CallResponse {
            status: Some(200),
            headers: vec![],
            body: snapshot_json().to_string().into_bytes(),
        },
    );
    assert_eq!(open.tick_period_ms(), 500, "back to the normal period");
    assert!(exchange(
        &mut open,
        &mut host,
        &get_search("ck_live_alpha", "y"),
        200,
        b""
    )
    .is_ok());
    assert!(
        exchange(&mut open, &mut host, &get_search("ck_nope", "z"), 200, b"").is_err(),
        "fresh snapshot decides"
    );
    host.advance_ms(5_001);
    assert!(
        exchange(&mut open, &mut host, &get_search("ck_nope", "w"), 200, b"").is_ok(),
        "stale: open again"
    );
}

#[test]
fn event_ids_are_stable_for_a_trusted_request_id() {
    let mut host = TestHost::new();
    let trusted = || config(json!({"request_id_header": "x-request-id"}));
    let mut a = Gateway::new(trusted(), 1);
    let mut b = Gateway::new(trusted(), 2);
    exchange(
        &mut a,
        &mut host,
        &get_search("ck_live_alpha", "same"),
        200,
        b"",
    )
    .unwrap();
    let mut host2 = TestHost::new();
    exchange(
        &mut b,
        &mut host2,
        &get_search("ck_live_alpha", "same"),
        200,
        b"",
    )
    .unwrap();
    a.flush_now(&mut host);
    b.flush_now(&mut host2);
    assert_eq!(host.calls[0].1.body, host2.calls[0].1.body);
    let answer = IngestAnswer::parse(b"{}").unwrap();
    assert_eq!(answer.accepted, 0);
}

#[test]
fn logged_requests_are_metered_like_proxied_ones_and_count_once() {
    let mut gw = Gateway::new(config(json!({})), 7);
    let mut host = TestHost::new();
    let logged =
        |rid: &'static str, method: &'static str, path: &'static str, status: u16| LoggedRequest {
            request_id: rid,
            time: host.now,
            method,
            path,
            status,
            customer_id: "cust_a",
            environment: Environment::Sandbox,
            key_id: Some("key_a"),
            request_bytes: None,
            response_bytes: Some(10),
        };
    let (a, again, other) = (
        logged("r-1", "GET", "/v1/search?q=1", 200),
        logged("r-1", "GET", "/v1/search?q=1", 200),
        logged("r-2", "GET", "/v1/search", 200),
    );
    let (health, failed, chat) = (
        logged("r-3", "GET", "/healthz", 200),
        logged("r-4", "GET", "/v1/search", 500),
        logged("r-5", "POST", "/v1/chat", 200),
    );
    assert_eq!(gw.meter_logged(&mut host, &a), Ok(()));
    assert_eq!(gw.meter_logged(&mut host, &again), Ok(()));
    assert_eq!(gw.meter_logged(&mut host, &other), Ok(()));
    assert_eq!(
        gw.meter_logged(&mut host, &health),
        Err(NotMetered::NoRoute)
    );
    assert_eq!(
        gw.meter_logged(&mut host, &failed),
        Err(NotMetered::NotBillable(500))
    );
    // A quantity read from the response body cannot come from a log line: refused, counted.
    assert_eq!(gw.meter_logged(&mut host, &chat), Ok(()));
    let c = gw.counters();
    assert_eq!((c.received, c.rejected), (4, 1));
    host.advance_ms(1_000);
    gw.on_tick(&mut host);
    let calls = host.take_calls();
    assert_eq!(calls.len(), 1);
    let body: Value = serde_json::from_slice(&calls[0].1.body).unwrap();
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[0]["id"], events[1]["id"],
        "a redelivered line keeps its id"
    );
    assert_ne!(events[0]["id"], events[2]["id"]);
    assert_eq!(events[0]["customer_id"], "cust_a");
    assert_eq!(events[0]["metric"], "api_calls");
    assert_eq!(events[0]["properties"]["endpoint"], "/v1/search");
}

/// Ticks (starting the first snapshot sync) and answers that sync with `snapshot_json()`.
fn answer_first_sync(gw: &mut Gateway, host: &mut TestHost) {
    answer_first_sync_with(gw, host, snapshot_json());
}

/// Ticks (starting the first snapshot sync) and answers that sync with `snapshot`.
pub(super) fn answer_first_sync_with(gw: &mut Gateway, host: &mut TestHost, snapshot: Value) {
    gw.on_tick(host);
    let (token, _) = host
        .take_calls()
        .into_iter()
        .find(|(_, c)| {
            c.headers
                .iter()
                .any(|(k, v)| k == ":path" && v.starts_with("/v1/entitlements"))
        })
        .unwrap();
    gw.on_call_response(
        host,
        token,
        CallResponse {
            status: Some(200),
            headers: vec![],
            body: snapshot.to_string().into_bytes(),
        },
    );
}

/// The events of the flushes sent once the flush interval has passed.
fn flushed_events(gw: &mut Gateway, host: &mut TestHost) -> Vec<Value> {
    host.advance_ms(10_000);
    gw.on_tick(host);
    host.take_calls()
        .into_iter()
        .filter(|(_, c)| {
            c.headers
                .iter()
                .any(|(k, v)| k == ":path" && v == "/v1/events")
        })
        .flat_map(|(_, c)| {
            let body: Value = serde_json::from_slice(&c.body).unwrap();
            body["events"].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

#[test]
fn a_key_alone_meters_every_billable_request_as_api_calls_with_a_product() {
    for (snapshot_product, expected) in [
        (Some("prod_from_catalog"), "prod_from_catalog"),
        (None, "default"),
    ] {
        let config = Config::parse(br#"{"api_key": "sk_test_only_a_key"}"#, &|_| None).unwrap();
        let mut gw = Gateway::new(config, 11);
        let mut host = TestHost::new();
        let mut snapshot = json!({
            "customers": {"cust_a": {"features": {"api_calls": {}}}},
            "consumer_keys": [
                {"key_id": "key_a", "hash": hash_key("ck_a").to_text(), "customer_id": "cust_a"}
            ]
        });
        if let Some(p) = snapshot_product {
            snapshot["product_id"] = json!(p);
        }
        answer_first_sync_with(&mut gw, &mut host, snapshot);
        for (i, (method, path, status)) in [
            ("GET", "/", 200),
            ("POST", "/anything/at/all?x=1", 201),
            ("DELETE", "/v1/x", 204),
            ("GET", "/missing", 404),
            ("GET", "/broken", 503),
        ]
        .into_iter()
        .enumerate()
        {
            let req = Req::new(method, path, &[("x-api-key", "ck_a")]);
            assert!(
                exchange(&mut gw, &mut host, &req, status, b"").is_ok(),
                "{i}"
            );
        }
        // An unknown key is refused as with any route.
        let r = exchange(
            &mut gw,
            &mut host,
            &Req::new("GET", "/", &[("x-api-key", "ck_x")]),
            200,
            b"",
        )
        .unwrap_err();
        assert_eq!(r.status, 401);
        let events = flushed_events(&mut gw, &mut host);
        assert_eq!(events.len(), 3, "{events:?}");
        for e in &events {
            assert_eq!(e["metric"], "api_calls");
            assert_eq!(e["quantity"], "1");
            assert_eq!(e["customer_id"], "cust_a");
            assert_eq!(e["product_id"], expected);
            assert_eq!(e["environment"], "sandbox");
        }
        let endpoints: Vec<&str> = events
            .iter()
            .map(|e| e["properties"]["endpoint"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(endpoints, vec!["/", "/anything/at/all", "/v1/x"]);
    }
}

#[test]
fn usage_served_before_the_first_snapshot_is_metered_when_it_arrives() {
    let mut gw = Gateway::new(
        config(
            json!({"entitlements": null, "entitlements_url": "http://127.0.0.1:9/v1/entitlements"}),
        ),
        3,
    );
    let mut host = TestHost::new();
    // Never synced, failure_mode open: served, but the key cannot be resolved yet.
    let served_at = host.now;
    for (key, rid, status) in [
        ("ck_live_alpha", "early-1", 200),
        ("ck_unknown", "early-2", 200),
        ("ck_live_alpha", "early-3", 500),
    ] {
        let served = exchange(&mut gw, &mut host, &get_search(key, rid), status, b"");
        assert!(served.is_ok(), "{rid}");
    }
    assert_eq!(gw.counters().received, 0, "nothing can be built yet");
    // The first sync answers.
    host.advance_ms(300);
    answer_first_sync(&mut gw, &mut host);
    // The billable request with a known key is metered, at the time it was served; the unknown
    // key is logged; the 500 was never billable.
    assert_eq!(gw.counters().received, 1);
    assert!(host
        .logs
        .borrow()
        .iter()
        .any(|(_, l)| l.contains("1 requests served before the first snapshot carried keys")));
    host.advance_ms(5_000);
    gw.on_tick(&mut host);
    let flush = host
        .take_calls()
        .into_iter()
        .find(|(_, c)| {
            c.headers
                .iter()
                .any(|(k, v)| k == ":path" && v == "/v1/events")
        })
        .unwrap();
    let body: Value = serde_json::from_slice(&flush.1.body).unwrap();
    let e = &body["events"][0];
    assert_eq!(e["customer_id"], "cust_a");
    assert_eq!(e["timestamp"], served_at.to_rfc3339());
    assert_eq!(e["properties"]["key_id"], "key_a");
}

#[test]
fn waiting_usage_keeps_the_partners_environment_and_late_arrivals_are_resolved_at_once() {
    let mut gw = Gateway::new(
        config(
            json!({"entitlements": null, "entitlements_url": "http://127.0.0.1:9/v1/entitlements", "api_key": "sk_live_gw", "sandbox_api_key": "sk_test_gw"}),
        ),
        5,
    );
    let mut host = TestHost::new();
    // A partner in sandbox mode calls before the first snapshot.
    assert!(exchange(
        &mut gw,
        &mut host,
        &get_search("ck_sbx", "sbx-early"),
        200,
        b""
    )
    .is_ok());
    // A request starts before the snapshot and finishes after it.
    let started = gw.on_request(&mut host, &get_search("ck_live_alpha", "late"));
    let RequestVerdict::Continue {
        exchange: Some(mut late),
        ..
    } = started
    else {
        panic!("served under failure_mode open");
    };
    answer_first_sync(&mut gw, &mut host);
    assert_eq!(
        gw.counters_for(Environment::Sandbox).received,
        1,
        "the partner's usage is sandbox usage"
    );
    assert_eq!(gw.counters_for(Environment::Production).received, 0);
    let mut resp = HashMap::new();
    resp.insert(":status".to_string(), "200".to_string());
    late.on_response_headers(
        &Resp(resp),
        &crate::config::Route::every_request("x"),
        host.now,
    );
    gw.finish(&mut host, *late);
    assert_eq!(
        gw.counters_for(Environment::Production).received,
        1,
        "resolved at once, not left waiting for another sync"
    );
    // And the tick period is back to normal once the first sync has started.
    assert_eq!(gw.tick_period_ms(), 500);
}

#[test]
fn a_request_id_the_client_sends_never_merges_served_requests_by_default() {
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({})), 7);
    let mut ingest = Ingest::new();
    for _ in 0..3 {
        exchange(
            &mut gw,
            &mut host,
            &get_search("ck_live_alpha", "chosen-by-the-client"),
            200,
            b"",
        )
        .unwrap();
    }
    gw.flush_now(&mut host);
    ingest.serve(&mut gw, &mut host);
    let ids: std::collections::HashSet<&str> = ingest
        .stored
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        (ingest.stored.len(), ids.len()),
        (3, 3),
        "three served requests are three events"
    );
    assert_eq!(gw.counters().delivered, 3);
}

struct NginxReq(Req);

impl RequestView for NginxReq {
    fn header(&self, name: &str) -> Option<String> {
        self.0.header(name)
    }
    fn peer_address(&self) -> Option<String> {
        self.0.peer_address()
    }
    fn runs_in_nginx(&self) -> bool {
        true
    }
}

#[test]
fn in_nginx_calls_go_to_host_and_port_and_an_explicit_cluster_is_named_in_the_log() {
    for (extra, explicit) in [
        (json!({"ingest_url": "http://agent.local:8787"}), false),
        (
            json!({"ingest_url": "http://agent.local:8787", "dispatch": "cluster"}),
            true,
        ),
    ] {
        let mut host = TestHost::new();
        let mut gw = Gateway::new(config(extra), 7);
        let req = NginxReq(get_search("ck_live_alpha", "r1"));
        match gw.on_request(&mut host, &req) {
            RequestVerdict::Continue {
                exchange: Some(mut ex),
                ..
            } => {
                let mut h = HashMap::new();
                h.insert(":status".to_string(), "200".to_string());
                let source = gw.config().routes[ex.route].clone();
                ex.on_response_headers(&Resp(h), &source, host.now);
                gw.finish(&mut host, *ex);
            }
            other => panic!("{other:?}"),
        }
        gw.flush_now(&mut host);
        assert_eq!(host.calls[0].1.upstream, "agent.local:8787");
        let errors: Vec<String> = host
            .logs
            .borrow()
            .iter()
            .filter(|(l, _)| *l == LogLevel::Error)
            .map(|(_, m)| m.clone())
            .collect();
        assert_eq!(
            errors
                .iter()
                .any(|m| m.contains("\"dispatch\": \"authority\"")),
            explicit,
            "{errors:?}"
        );
    }
    // Envoy keeps its cluster names.
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(json!({"ingest_url": "http://agent.local:8787"})), 7);
    exchange(
        &mut gw,
        &mut host,
        &get_search("ck_live_alpha", "r1"),
        200,
        b"",
    )
    .unwrap();
    gw.flush_now(&mut host);
    assert_eq!(host.calls[0].1.upstream, "aforo_ingest_sandbox");
}

#[test]
fn an_exchange_keeps_the_endpoint_and_not_the_room_of_a_long_query() {
    let query = "q=".to_string() + &"x".repeat(60_000);
    let ex = Exchange::new(
        0,
        Timestamp::from_unix_secs(1),
        None,
        "GET".into(),
        format!("/v1/search?{query}"),
    );
    assert_eq!(ex.endpoint, "/v1/search");
    assert!(ex.endpoint.capacity() < 1_000, "{}", ex.endpoint.capacity());
    let ex = Exchange::new(
        0,
        Timestamp::from_unix_secs(1),
        None,
        "GET".into(),
        "/a#b".into(),
    );
    assert_eq!(ex.endpoint, "/a");
}

#[test]
fn the_usual_tick_period_is_what_the_fast_start_returns_to() {
    // A host that can set its period once (Kong) starts at the usual one.
    let sync =
        json!({"entitlements": null, "entitlements_url": "http://127.0.0.1:9/v1/entitlements"});
    let gw = Gateway::new(config(sync), 7);
    assert_eq!(gw.tick_period_ms(), 20, "fast until the first sync");
    assert_eq!(gw.usual_tick_period_ms(), 500);
    let inline = Gateway::new(config(json!({"flush_interval_ms": 200})), 7);
    assert_eq!(inline.tick_period_ms(), 100);
    assert_eq!(inline.usual_tick_period_ms(), 100);
}

#[test]
fn in_nginx_a_first_sync_sent_to_a_cluster_name_is_sent_again_by_address_on_the_next_tick() {
    // Kong without "dispatch": the first tick's sync goes to a cluster name nginx cannot
    // resolve; the first request shows nginx, and the next tick syncs by host:port, not a
    // whole sync interval later (requests meanwhile would be decided by failure_mode).
    struct Nginx;
    impl RequestView for Nginx {
        fn header(&self, name: &str) -> Option<String> {
            (name == ":path").then(|| "/v1/search".to_string())
        }
        fn peer_address(&self) -> Option<String> {
            None
        }
        fn runs_in_nginx(&self) -> bool {
            true
        }
    }
    let sync = json!({"entitlements": null,
        "entitlements_url": "http://agent.local:8787/v1/entitlements", "sync_interval_ms": 60000});
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(sync), 7);
    gw.on_tick(&mut host);
    let (token, first) = host.take_calls().pop().unwrap();
    assert_eq!(first.upstream, "aforo_agent");
    // nginx fails it: no upstream answered.
    gw.on_call_response(
        &mut host,
        token,
        CallResponse {
            status: None,
            headers: vec![],
            body: vec![],
        },
    );
    let _ = gw.on_request(&mut host, &Nginx);
    host.advance_ms(500);
    gw.on_tick(&mut host);
    let calls = host.take_calls();
    let again = calls
        .iter()
        .find(|(_, c)| {
            c.headers
                .iter()
                .any(|(k, v)| k == ":path" && v.starts_with("/v1/entitlements"))
        })
        .unwrap_or_else(|| panic!("no sync on the next tick: {calls:?}"));
    assert_eq!(again.1.upstream, "agent.local:8787");
}
