//! The durability promise under SIGKILL: every event the agent acknowledged reaches the upstream,
//! once by id, even when the agent is killed while it is both taking and forwarding events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_host_tests::http1::Client;
use aforo_host_tests::servers::{wall_now, IngestServer};
use common::{catalog, Agent, LIVE};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const EVENTS: usize = 100_000;
const PER_REQUEST: usize = 500;
const FORWARD_BATCH: usize = 500;
const SENDERS: usize = 2;

fn batch(first: usize, n: usize) -> (Vec<String>, Vec<u8>) {
    let ts = wall_now().to_rfc3339();
    let ids: Vec<String> = (first..first + n)
        .map(|i| format!("crash-{i:06}"))
        .collect();
    let events: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({"id": id, "customer_id": "acme", "metric": "api_calls", "quantity": 1,
                   "timestamp": ts, "product_id": "p", "environment": "production"})
        })
        .collect();
    (ids, json!({ "events": events }).to_string().into_bytes())
}

/// Posts batches until each is acknowledged, retrying through the agent's restart as a
/// filter does; records the ids of every batch that got a 2xx.
fn sender(
    addr: String,
    batches: Arc<Mutex<Vec<usize>>>,
    acked: Arc<Mutex<BTreeSet<String>>>,
    acked_count: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
) {
    let headers = vec![
        ("authorization".to_string(), format!("Bearer {LIVE}")),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let Some(first) = batches.lock().unwrap().pop() else {
            return;
        };
        let (ids, body) = batch(first, PER_REQUEST);
        loop {
            assert!(Instant::now() < deadline, "sending took over 5 minutes");
            let r = Client::new(&addr)
                .with_timeout(Duration::from_secs(30))
                .request("POST", "/v1/events", &headers, &body);
            match r {
                Ok(r) if r.status == 202 || r.status == 200 => {
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    let done = v["accepted"].as_u64().unwrap() + v["duplicates"].as_u64().unwrap();
                    assert_eq!(done as usize, ids.len(), "partial batch: {v}");
                    acked_count.fetch_add(ids.len(), Ordering::SeqCst);
                    acked.lock().unwrap().extend(ids);
                    break;
                }
                Ok(r) => panic!(
                    "unexpected answer {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ),
                Err(_) => {
                    // The agent is down (killed): a gateway keeps the batch and retries.
                    failures.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

#[test]
fn sigkill_mid_ingest_and_forwarding_loses_and_doubles_nothing() {
    let upstream = IngestServer::start(None).unwrap();
    let upstream_url = format!("http://127.0.0.1:{}", upstream.port());
    let mut agent = Agent::start(
        "crash",
        &catalog(),
        &[
            "--upstream-url",
            &upstream_url,
            "--environments",
            "production",
            "--upstream-production-key",
            "sk_live_upstream_of_the_agent",
            "--batch-size",
            &FORWARD_BATCH.to_string(),
            "--flush-interval-ms",
            "100",
            "--production-events-per-hour",
            "10000000",
        ],
    );
    let batches = Arc::new(Mutex::new(
        (0..EVENTS / PER_REQUEST)
            .rev()
            .map(|b| b * PER_REQUEST)
            .collect::<Vec<_>>(),
    ));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (addr, b, a, c, f) = (
                agent.addr(),
                batches.clone(),
                acked.clone(),
                acked_count.clone(),
                failures.clone(),
            );
            std::thread::spawn(move || sender(addr, b, a, c, f))
        })
        .collect();

    // Kill once half the events are acknowledged and the forwarder is busy.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked_count.load(Ordering::SeqCst) < EVENTS / 2 || upstream.stats().accepted == 0 {
        assert!(Instant::now() < deadline, "the agent never got half way");
        std::thread::sleep(Duration::from_millis(5));
    }
    let acked_before_kill = acked_count.load(Ordering::SeqCst);
    let forwarded_before_kill = upstream.stats().accepted;
    agent.kill9();
    std::thread::sleep(Duration::from_millis(300));
    agent.restart();

    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(
        acked.len(),
        EVENTS,
        "every batch is acknowledged in the end"
    );
    assert!(
        failures.load(Ordering::SeqCst) > 0,
        "the kill hit while requests were in flight"
    );

    let stored = upstream.wait_for(EVENTS, Duration::from_secs(180));
    let stats = upstream.stats();
    let ids: Vec<String> = upstream.stored().into_iter().map(|e| e.id).collect();
    let distinct: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(stored, EVENTS, "upstream stats: {stats:?}");
    assert_eq!(ids.len(), distinct.len(), "an id was stored twice upstream");
    assert_eq!(
        distinct, acked,
        "upstream holds exactly the acknowledged ids"
    );
    // A crash re-sends at most the batch that was in flight when it struck.
    assert!(
        stats.duplicates <= FORWARD_BATCH as u64,
        "re-sent {} events after one crash (batch size {FORWARD_BATCH})",
        stats.duplicates
    );
    assert_eq!(stats.accepted as usize, EVENTS);
    eprintln!(
        "crash test: killed at {acked_before_kill} acknowledged / {forwarded_before_kill} forwarded; \
         upstream stored {stored}, re-sent duplicates {}, sender retries {}",
        stats.duplicates,
        failures.load(Ordering::SeqCst)
    );
}
