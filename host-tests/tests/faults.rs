//! Faults and hostile input through the real `.wasm` in the replay harness, in virtual time:
//! a slow ingest, 429 with `Retry-After`, a partly rejected batch, a long outage with bounded
//! memory, secrets kept out of every log line, and X-Forwarded-For believed only from trusted
//! hops. After each fault the conservation equation holds and the ingest holds every
//! acknowledged event exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_core::keys::hash_key;
use aforo_core::Timestamp;
use aforo_host_tests::artifacts::filter_module;
use aforo_host_tests::faults::parse_faults;
use aforo_host_tests::replay::{run, RunOptions, RunReport};
use aforo_host_tests::traffic::parse_jsonl;
use serde_json::{json, Value};
use std::collections::HashSet;

const API_KEY: &str = "sk_test_faults_0123456789secret";
const CONSUMER_KEY: &str = "ck_faults_consumer_secret_42";

fn config(extra: Value) -> Vec<u8> {
    let mut c = json!({
        "api_key": API_KEY,
        "product_id": "prod_faults",
        "ingest_url": "http://ingest.aforo.test:8080",
        "flush_interval_ms": 1000,
        "initial_backoff_ms": 500,
        "max_backoff_ms": 8000,
        "max_retry_time_ms": 120000,
        "routes": [{"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"}],
        "entitlements": {
            "customers": {"cust_a": {"features": {"search": {}}}},
            "consumer_keys": [{"key_id": "k1", "hash": hash_key(CONSUMER_KEY).to_text(), "customer_id": "cust_a"}]
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string().into_bytes()
}

/// `n` allowed requests, `interval_ms` apart, each with its own request id.
fn traffic(n: usize, interval_ms: u64) -> aforo_host_tests::traffic::Traffic {
    let line = json!({"time": "2026-03-15T12:00:00Z", "repeat": n, "interval_ms": interval_ms,
        "request": {"path": "/v1/search", "headers": {"x-api-key": CONSUMER_KEY, "x-request-id": "f-{n}"}},
        "customer": "cust_a"});
    parse_jsonl("faults.jsonl", &line.to_string(), Timestamp::EPOCH).unwrap()
}

fn replay(cfg: Vec<u8>, n: usize, interval_ms: u64, faults: &str) -> RunReport {
    let mut o = RunOptions::new(filter_module().unwrap(), cfg, traffic(n, interval_ms));
    o.faults = parse_faults(faults).unwrap();
    o.record_events = true;
    o.keep_logs = true;
    o.quiet = true;
    run(&o).unwrap()
}

/// The conservation equation, nothing left behind, and every stored event once.
fn assert_conserved(r: &RunReport, n: usize) {
    let e = &r.events;
    assert!(e.balanced, "{e:?}");
    assert_eq!(e.received, n as i64, "{e:?}");
    assert_eq!(e.buffered, 0, "nothing left in the VM: {e:?}");
    let ids: HashSet<&str> = r.stored.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), r.stored.len(), "an event stored twice");
    assert_eq!(
        r.stored.len() as i64 + e.rejected + e.dead_lettered,
        n as i64,
        "every event is stored, rejected or dead-lettered: {e:?}"
    );
    assert_eq!(r.traps, 0);
    assert_eq!(r.requests.by_status.get(&200), Some(&(n as u64)));
}

#[test]
fn a_slow_ingest_delays_delivery_but_never_the_requests() {
    let r = replay(config(json!({})), 300, 100, "0s-30s:delay=2s");
    assert_conserved(&r, 300);
    assert_eq!(r.stored.len(), 300);
    assert!(r.ingest.faults_injected >= 10, "{:?}", r.ingest);
}

#[test]
fn an_ingest_slower_than_the_timeout_is_retried_and_counted_once() {
    // Answers arrive after the filter gave up (timeout 1 s): the ingest stored the batch, the
    // filter retries it, the ingest answers "duplicate" and keeps one copy.
    let r = replay(
        config(json!({"request_timeout_ms": 1000})),
        100,
        100,
        "0s-5s:delay=2s",
    );
    assert_conserved(&r, 100);
    assert_eq!(r.stored.len(), 100);
    assert!(
        r.ingest.duplicates >= 1,
        "retries were sent: {:?}",
        r.ingest
    );
}

#[test]
fn retry_after_is_honoured() {
    // The first flush (t = 1 s) meets 429 with Retry-After: 20. Retrying sooner would meet
    // the fault again; honouring it means exactly one 429.
    let r = replay(config(json!({})), 100, 100, "0s-20s:429/20");
    assert_conserved(&r, 100);
    assert_eq!(r.stored.len(), 100);
    assert_eq!(r.ingest.by_status.get(&429), Some(&1), "{:?}", r.ingest);
}

#[test]
fn a_partly_rejected_batch_dead_letters_only_the_refused_events() {
    let r = replay(config(json!({})), 200, 100, "0s-10s:partial");
    assert_conserved(&r, 200);
    assert!(r.events.rejected > 0, "{:?}", r.events);
    assert!(r.stored.len() >= 100, "{}", r.stored.len());
    let refused: u64 = r.ingest.rejected.values().sum();
    assert_eq!(
        refused as i64, r.events.rejected,
        "the filter counts what the ingest refused"
    );
}

#[test]
fn an_hour_long_outage_keeps_memory_bounded_and_counts_the_overflow() {
    let cfg = || config(json!({"max_buffer_events": 500, "max_dead_letters": 1000}));
    let small = replay(cfg(), 2_000, 100, "0s-10h:503");
    let large = replay(cfg(), 20_000, 100, "0s-10h:503");
    for (r, n) in [(&small, 2_000), (&large, 20_000)] {
        let e = &r.events;
        assert!(e.balanced, "{e:?}");
        assert_eq!(e.received, n);
        assert!(e.buffered <= 500, "{e:?}");
        assert_eq!(e.delivered, 0);
        assert_eq!(
            e.dead_lettered,
            n - e.buffered,
            "overflow is dead-lettered: {e:?}"
        );
        assert!(e.dead_letters_spilled > 0, "{e:?}");
        assert_eq!(r.requests.by_status.get(&200), Some(&(n as u64)));
    }
    // Ten times the traffic, the same memory: the buffer and the dead letters are bounded.
    let growth = large.memory_bytes_peak as i64 - small.memory_bytes_peak as i64;
    assert!(
        growth <= 256 * 1024,
        "memory grew {growth} bytes ({} → {})",
        small.memory_bytes_peak,
        large.memory_bytes_peak
    );
    println!(
        "outage memory: configured {} B, peak {} B after 2k requests, {} B after 20k",
        small.memory_bytes_configured, small.memory_bytes_peak, large.memory_bytes_peak
    );
}

#[test]
fn no_secret_reaches_a_log_line_even_with_debug_on() {
    let wrong = "ck_wrong_key_attacker_secret";
    let lines = [
        json!({"time": "2026-03-15T12:00:00Z", "repeat": 200, "interval_ms": 100,
            "request": {"path": "/v1/search", "headers": {"x-api-key": CONSUMER_KEY, "x-request-id": "s-{n}"}}}),
        json!({"time": "2026-03-15T12:00:01Z", "repeat": 5, "interval_ms": 100,
            "request": {"path": "/v1/search", "headers": {"x-api-key": wrong, "authorization": format!("Bearer {API_KEY}")}}}),
    ];
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    let mut o = RunOptions::new(
        filter_module().unwrap(),
        config(json!({"debug": true, "max_dead_letters": 10})),
        parse_jsonl("s.jsonl", &text.join("\n"), Timestamp::EPOCH).unwrap(),
    );
    // Every path that logs: auth refused, outage, throttling, partial rejection, dead letters.
    o.faults =
        parse_faults("0s-3s:401,3s-6s:503,6s-9s:429,9s-12s:partial,12s-14s:timeout").unwrap();
    o.keep_logs = true;
    o.quiet = true;
    let r = run(&o).unwrap();
    let debug_lines = r
        .logs
        .iter()
        .filter(|l| l.message.starts_with("aforo debug:"))
        .count();
    assert!(
        debug_lines >= 200,
        "debug lines were written: {debug_lines}"
    );
    assert!(
        r.log_counts[3] + r.log_counts[4] > 0,
        "warnings were written: {:?}",
        r.log_counts
    );
    let mut all: Vec<String> = r.logs.iter().map(|l| l.message.clone()).collect();
    // A configuration the module refuses: its error must not echo the key either.
    let mut bad = RunOptions::new(
        filter_module().unwrap(),
        config(json!({"batch_size": 0, "debug": true})),
        traffic(1, 100),
    );
    bad.keep_logs = true;
    bad.quiet = true;
    let refused = run(&bad).expect_err("batch_size 0 is refused");
    all.push(refused.to_string());
    assert!(all.last().unwrap().contains("batch_size"), "{refused}");
    assert!(all.len() > 10, "{} lines", all.len());
    for line in &all {
        for secret in [
            API_KEY,
            CONSUMER_KEY,
            wrong,
            "0123456789secret",
            "consumer_secret",
        ] {
            assert!(!line.contains(secret), "{secret} in a log line: {line}");
        }
    }
}

fn ip_traffic(cases: &[(&str, Option<&str>)]) -> aforo_host_tests::traffic::Traffic {
    let lines: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, (peer, xff))| {
            let mut h = json!({"x-api-key": CONSUMER_KEY, "x-request-id": format!("ip-{i}")});
            if let Some(x) = xff {
                h["x-forwarded-for"] = json!(x);
            }
            json!({"time": format!("2026-03-15T12:00:{i:02}Z"), "request": {"path": "/v1/search", "headers": h, "peer": peer}})
                .to_string()
        })
        .collect();
    parse_jsonl("ip.jsonl", &lines.join("\n"), Timestamp::EPOCH).unwrap()
}

#[test]
fn forwarded_for_is_believed_only_from_trusted_hops_for_ipv4_and_ipv6() {
    let cfg = config(json!({
        "trusted_proxies": ["10.0.0.0/8", "fd00::/8"],
        "entitlements": {
            "customers": {"cust_a": {"ip_allowlist": ["203.0.113.0/24", "2001:db8::/32"], "features": {"search": {}}}},
            "consumer_keys": [{"key_id": "k1", "hash": hash_key(CONSUMER_KEY).to_text(), "customer_id": "cust_a"}]
        }
    }));
    let cases: [(&str, Option<&str>, u16); 10] = [
        // Directly from an allowed address.
        ("203.0.113.5:4000", None, 200),
        ("[2001:db8::5]:4000", None, 200),
        // Directly from outside, claiming an allowed address: the claim is ignored.
        ("198.51.100.7:4000", Some("203.0.113.5"), 403),
        ("[2001:db9::1]:4000", Some("2001:db8::5"), 403),
        // Through a trusted proxy, from an allowed client.
        ("10.1.2.3:4000", Some("203.0.113.5"), 200),
        ("[fd00::1]:4000", Some("2001:db8::5"), 200),
        // Through a trusted proxy, from outside: the proxy's own address does not count.
        ("10.1.2.3:4000", Some("198.51.100.7"), 403),
        // A client that prepends a forged entry: the hop the trusted proxy saw is the client.
        ("10.1.2.3:4000", Some("203.0.113.5, 198.51.100.7"), 403),
        // Two trusted hops, then the allowed client.
        ("10.1.2.3:4000", Some("203.0.113.5, 10.9.9.9"), 200),
        // A garbled entry stops the walk at the last trusted hop, which is not allowed.
        ("[fd00::1]:4000", Some("not-an-ip"), 403),
    ];
    let traffic = ip_traffic(&cases.map(|(p, x, _)| (p, x)));
    let mut o = RunOptions::new(filter_module().unwrap(), cfg, traffic);
    o.quiet = true;
    let r = run(&o).unwrap();
    let want: Vec<u16> = cases.iter().map(|c| c.2).collect();
    assert_eq!(r.statuses, want);
    for (d, (_, _, s)) in r.decisions.iter().zip(cases.iter()) {
        if *s == 403 {
            assert_eq!(d, "ip_not_allowed");
        }
    }
}
