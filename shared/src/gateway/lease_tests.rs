//! Filters taking quota units from leases through their agent (`quota_leases`): two gateway
//! workers against one store, where the store's side is the core's own rule (`StoredLeases`,
//! which `lease.lua` runs in Redis) and claims take leased events' units from the gateway's
//! prepaid units, as `claim.lua` does.

use super::test_host::TestHost;
use super::*;
use crate::entitlement::{
    counters_of, gateway_node, grant_to_json, LeaseAsk, LeasePolicy, LocalReply, Period,
    QuotaWindow, StoredLeases,
};
use crate::host::CallResponse;
use crate::keys::hash_key;
use serde_json::{json, Value};
use std::collections::HashMap;

struct Req(HashMap<String, String>);

impl RequestView for Req {
    fn header(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
    fn peer_address(&self) -> Option<String> {
        None
    }
}

fn search() -> Req {
    Req(HashMap::from([
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), "/v1/search".to_string()),
        ("x-api-key".to_string(), "ck_alpha".to_string()),
    ]))
}

fn snapshot(quota: u64) -> Vec<u8> {
    json!({
        "customers": {"cust_a": {"features": {"search": {"quota": quota}}}},
        "consumer_keys": [{"key_id": "key_a", "hash": hash_key("ck_alpha").to_text(), "customer_id": "cust_a"}]
    })
    .to_string()
    .into_bytes()
}

fn gateway(source: &str, extra: Value) -> Gateway {
    let mut c = json!({
        "api_key": "sk_test_gateway",
        "entitlements_url": "http://127.0.0.1:8787/v1/entitlements",
        "quota_leases": true,
        "source": source,
        "batch_size": 1,
        "routes": [{"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"}]
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut c, extra) {
        b.extend(e);
    }
    Gateway::new(
        crate::config::Config::parse(c.to_string().as_bytes(), &|_| None).unwrap(),
        7,
    )
}

/// The agent and Redis: snapshots, the store's lease rule, and claims of delivered events.
struct Agent {
    store: StoredLeases,
    quota: u64,
    events: Vec<Value>,
    down: bool,
    /// Answer lease asks with this status instead (a refusal).
    lease_status: Option<u16>,
    asks: u32,
}

impl Agent {
    fn new(quota: u64) -> Self {
        Agent {
            store: StoredLeases::default(),
            quota,
            events: Vec::new(),
            down: false,
            lease_status: None,
            asks: 0,
        }
    }

    fn answer(&mut self, host: &TestHost, call: &crate::host::OutboundRequest) -> CallResponse {
        let path = call
            .headers
            .iter()
            .find(|(k, _)| k == ":path")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let ok = |body: Vec<u8>| CallResponse {
            status: Some(200),
            headers: vec![],
            body,
        };
        if self.down {
            return CallResponse::failed();
        }
        if path.starts_with("/v1/entitlements") {
            return ok(snapshot(self.quota));
        }
        if let (Some(s), "/v1/leases") = (self.lease_status, path.as_str()) {
            self.asks += 1;
            return CallResponse {
                status: Some(s),
                headers: vec![],
                body: br#"{"error":{"code":"invalid_lease","field":"key"}}"#.to_vec(),
            };
        }
        if path == "/v1/leases" {
            let ask = LeaseAsk::from_json(&call.body).unwrap();
            if ask.renewal.want > 0 {
                self.asks += 1;
            }
            let g = self.store.renew(
                &gateway_node(&ask.source),
                &ask.renewal,
                host.now,
                &LeasePolicy::STRICT,
            );
            return ok(grant_to_json(&g).to_string().into_bytes());
        }
        // The ingest: each event claimed as the agent's claim script does.
        for event in crate::ingest::parse_batch(&call.body).unwrap() {
            let event = event.unwrap();
            let window = QuotaWindow::calendar(Period::Month);
            let e = serde_json::to_value(&event.properties).unwrap();
            let source = e["source"].as_str().unwrap().to_string();
            for (t, _) in counters_of(
                event.environment,
                &event,
                std::iter::once(("search", window)),
                host.now,
            ) {
                if t.prepaid {
                    self.store
                        .count_prepaid(t.window_start, t.units, &gateway_node(&source));
                } else {
                    self.store.count(t.window_start, t.units);
                }
            }
            self.events.push(json!({ "properties": e }));
        }
        ok(br#"{"accepted":1,"duplicates":0,"rejected":[],"flagged":[]}"#.to_vec())
    }

    /// Answers every call the gateway has out (background calls and lease asks alike).
    fn serve(&mut self, gw: &mut Gateway, host: &mut TestHost) {
        while !host.calls.is_empty() {
            for (token, call) in host.take_calls() {
                let r = self.answer(host, &call);
                if !gw.on_lease_answer(host, token, r.clone()) {
                    gw.on_call_response(host, token, r);
                }
            }
        }
    }
}

/// One request as a proxy runs it: paused while an ask is out, decided again on its answer.
fn request(
    gw: &mut Gateway,
    host: &mut TestHost,
    agent: &mut Agent,
    status: u16,
) -> Result<(), LocalReply> {
    let mut asks = 0;
    loop {
        match gw.on_request(host, &search()) {
            RequestVerdict::Denied(_) => return Err(host.replies.pop().unwrap()),
            RequestVerdict::Asking(token) => {
                asks += 1;
                assert!(asks <= 2, "a request asks at most twice");
                let (_, call) = host
                    .calls
                    .iter()
                    .find(|(t, _)| *t == token)
                    .cloned()
                    .unwrap();
                host.calls.retain(|(t, _)| *t != token);
                let r = agent.answer(host, &call);
                assert!(gw.on_lease_answer(host, token, r));
            }
            RequestVerdict::Continue { exchange, .. } => {
                let mut ex = exchange.unwrap();
                let route = gw.config().routes[ex.route].clone();
                let h = HashMap::from([(":status".to_string(), status.to_string())]);
                struct Resp(HashMap<String, String>);
                impl ResponseHeaders for Resp {
                    fn header(&self, name: &str) -> Option<String> {
                        self.0.get(name).cloned()
                    }
                }
                ex.on_response_headers(&Resp(h), &route, host.now);
                gw.finish(host, *ex);
                return Ok(());
            }
        }
    }
}

fn synced(gw: &mut Gateway, host: &mut TestHost, agent: &mut Agent) {
    gw.on_tick(host);
    agent.serve(gw, host);
    assert!(gw.snapshot().is_some());
}

#[test]
fn two_filters_admit_exactly_the_quota_and_each_unit_is_counted_once() {
    let mut host = TestHost::new();
    let mut agent = Agent::new(40);
    let mut a = gateway("envoy-a", json!({}));
    let mut b = gateway("envoy-b", json!({}));
    synced(&mut a, &mut host, &mut agent);
    synced(&mut b, &mut host, &mut agent);
    let mut admitted = 0;
    let mut refusals = Vec::new();
    for i in 0..60 {
        let gw = if i % 3 == 0 { &mut b } else { &mut a };
        match request(gw, &mut host, &mut agent, 200) {
            Ok(()) => admitted += 1,
            Err(r) => refusals.push(r),
        }
        host.advance_ms(10);
        gw.on_tick(&mut host);
        agent.serve(gw, &mut host);
    }
    assert_eq!(admitted, 40, "exactly the quota, across two filters");
    assert!(refusals.iter().all(|r| r.status == 429));
    assert!(refusals
        .iter()
        .all(|r| r.headers.iter().any(|(k, _)| k == "retry-after")));
    // Each spent lease asks for twice as much next time, and a refusal is remembered.
    assert!(
        agent.asks <= 20,
        "slices: {} asks for 60 requests",
        agent.asks
    );
    // Every admitted request's event names the leased feature, and the store counted each
    // unit once (the lease at admission, not the claim again).
    a.flush_now(&mut host);
    b.flush_now(&mut host);
    agent.serve(&mut a, &mut host);
    agent.serve(&mut b, &mut host);
    assert_eq!(agent.events.len(), 40);
    assert!(agent
        .events
        .iter()
        .all(|e| e["properties"]["leased"] == json!(["search"])));
    assert_eq!(agent.store.counted, 40);
    // The leases went back when the workers stopped: nothing held, nothing past the quota.
    assert_eq!(a.lease_units_held() + b.lease_units_held(), 0);
    assert!(agent.store.open.is_empty(), "{:?}", agent.store.open);
}

#[test]
fn a_unit_not_billed_goes_back_to_the_lease_and_unspent_units_go_back_on_the_tick() {
    let mut host = TestHost::new();
    let mut agent = Agent::new(100);
    let mut gw = gateway("envoy-a", json!({}));
    synced(&mut gw, &mut host, &mut agent);
    // The first lease is one unit; the next, twice the last: one unit left after two requests.
    request(&mut gw, &mut host, &mut agent, 200).unwrap();
    request(&mut gw, &mut host, &mut agent, 200).unwrap();
    let held = gw.lease_units_held();
    assert_eq!(held, 1);
    // A 500 is not billable: its unit returns to the lease, and no event is sent for it.
    request(&mut gw, &mut host, &mut agent, 500).unwrap();
    assert_eq!(gw.lease_units_held(), held);
    // The lease's time passes: the tick gives its unspent units back to the store.
    host.advance_ms(LeasePolicy::STRICT.lease_ns / 1_000_000);
    gw.on_tick(&mut host);
    agent.serve(&mut gw, &mut host);
    assert_eq!(gw.lease_units_held(), 0);
    assert_eq!(
        agent.store.counted, 2,
        "only the billed requests stay counted"
    );
    gw.flush_now(&mut host);
    agent.serve(&mut gw, &mut host);
    assert_eq!(agent.events.len(), 2);
    assert_eq!(agent.store.counted, 2, "their events are not counted again");
}

#[test]
fn an_agent_that_does_not_answer_leaves_the_decision_to_the_failure_mode() {
    for (mode, expected) in [("closed", Some(503)), ("open", None)] {
        let mut host = TestHost::new();
        let mut agent = Agent::new(100);
        let mut gw = gateway("envoy-a", json!({"failure_mode": mode}));
        synced(&mut gw, &mut host, &mut agent);
        // Two requests: leases of one unit, then two; one unit left in hand.
        request(&mut gw, &mut host, &mut agent, 200).unwrap();
        request(&mut gw, &mut host, &mut agent, 200).unwrap();
        assert_eq!(gw.lease_units_held(), 1);
        agent.down = true;
        // What is held is spent with no call.
        assert!(matches!(
            gw.on_request(&mut host, &search()),
            RequestVerdict::Continue { .. }
        ));
        assert!(host.calls.is_empty());
        let got = request(&mut gw, &mut host, &mut agent, 200)
            .err()
            .map(|r| r.status);
        assert_eq!(got, expected, "failure_mode {mode}");
        // Within the second, no new ask: the next request is decided the same way at once.
        let before = host.calls.len();
        let again = match gw.on_request(&mut host, &search()) {
            RequestVerdict::Asking(_) => panic!("asked again within the second"),
            RequestVerdict::Denied(s) => Some(s),
            RequestVerdict::Continue { .. } => None,
        };
        assert_eq!(again, expected);
        assert_eq!(host.calls.len(), before);
        assert!(host
            .logs
            .borrow()
            .iter()
            .any(|(_, l)| l.contains("quota lease ask") && l.contains(mode)));
        // The agent back: a second later requests ask again and are admitted from a lease.
        agent.down = false;
        host.advance_ms(1_001);
        host.replies.clear();
        let asks = agent.asks;
        request(&mut gw, &mut host, &mut agent, 200).unwrap();
        assert_eq!(agent.asks, asks + 1, "asked the agent again");
    }
}

#[test]
fn a_sandbox_partner_behind_a_live_key_leases_with_the_sandbox_key_or_not_at_all() {
    let snapshot = |sandbox: bool| {
        json!({
            "customers": {"cust_a": {"sandbox_mode": sandbox, "features": {"search": {"quota": 5}}}},
            "consumer_keys": [{"key_id": "key_a", "hash": hash_key("ck_alpha").to_text(), "customer_id": "cust_a"}]
        })
        .to_string()
        .into_bytes()
    };
    for (keys, leased) in [
        (
            json!({"api_key": "sk_live_gw", "sandbox_api_key": "sk_test_gw"}),
            true,
        ),
        (json!({"api_key": "sk_live_gw"}), false),
    ] {
        let mut host = TestHost::new();
        let mut gw = gateway("envoy-a", keys);
        gw.on_tick(&mut host);
        let (token, _) = host.take_calls().pop().unwrap();
        gw.on_call_response(
            &mut host,
            token,
            CallResponse {
                status: Some(200),
                headers: vec![],
                body: snapshot(true),
            },
        );
        match gw.on_request(&mut host, &search()) {
            RequestVerdict::Asking(token) => {
                assert!(leased);
                let (_, call) = host.calls.iter().find(|(t, _)| *t == token).unwrap();
                let auth = call.headers.iter().find(|(k, _)| k == "authorization");
                assert_eq!(auth.unwrap().1, "Bearer sk_test_gw");
                assert!(LeaseAsk::from_json(&call.body)
                    .unwrap()
                    .key
                    .starts_with("aforo:q:sandbox:"));
            }
            RequestVerdict::Continue { .. } => {
                assert!(
                    !leased,
                    "decided on this node's counters without a sandbox key"
                );
                assert!(host.calls.is_empty());
            }
            RequestVerdict::Denied(s) => panic!("denied {s}"),
        }
    }
}

#[test]
fn in_shadow_mode_a_request_served_without_an_answer_is_metered() {
    let mut host = TestHost::new();
    let mut agent = Agent::new(100);
    let mut gw = gateway(
        "envoy-a",
        json!({"mode": "shadow", "failure_mode": "closed"}),
    );
    synced(&mut gw, &mut host, &mut agent);
    agent.down = true;
    request(&mut gw, &mut host, &mut agent, 200).unwrap();
    agent.down = false;
    gw.flush_now(&mut host);
    agent.serve(&mut gw, &mut host);
    assert_eq!(agent.events.len(), 1, "served in shadow mode, and metered");
}

#[test]
fn quota_leases_need_an_agent_that_serves_the_snapshot() {
    let parse = |v: Value| crate::config::Config::parse(v.to_string().as_bytes(), &|_| None);
    let base = json!({"api_key": "sk_test_gw", "quota_leases": true});
    let inline =
        json!({"api_key": "sk_test_gw", "quota_leases": true, "entitlements": {"customers": {}}});
    let e = parse(inline).unwrap_err();
    assert_eq!(e.path, "quota_leases");
    let odd = json!({"api_key": "sk_test_gw", "quota_leases": true, "entitlements_url": "http://a:1/snapshot"});
    let e = parse(odd).unwrap_err();
    assert!(e.to_string().contains("/entitlements"), "{e}");
    let c = parse(base).unwrap();
    let t = c.quota_leases.unwrap();
    assert_eq!(t.path, "/v1/leases");
}

#[test]
fn a_counter_the_agent_refuses_to_lease_is_counted_here_not_refused() {
    let mut host = TestHost::new();
    let mut agent = Agent::new(100);
    let mut gw = gateway("envoy-a", json!({"failure_mode": "closed"}));
    synced(&mut gw, &mut host, &mut agent);
    // The agent's catalog lacks the counter (a 422): not an outage, so not a 503.
    agent.lease_status = Some(422);
    request(&mut gw, &mut host, &mut agent, 200).unwrap();
    assert_eq!(agent.asks, 1);
    request(&mut gw, &mut host, &mut agent, 200).unwrap();
    assert_eq!(agent.asks, 1, "not asked again for a while");
    assert!(host
        .logs
        .borrow()
        .iter()
        .any(|(_, l)| l.contains("counted here")));
    // An agent without leases (409) is an outage: closed refuses what would need a lease.
    let mut gw = gateway("envoy-b", json!({"failure_mode": "closed"}));
    agent.lease_status = None;
    synced(&mut gw, &mut host, &mut agent);
    agent.lease_status = Some(409);
    let r = request(&mut gw, &mut host, &mut agent, 200).unwrap_err();
    assert_eq!(r.status, 503);
}
