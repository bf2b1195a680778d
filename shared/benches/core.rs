//! Criterion benchmarks of the core's request-path rules: the entitlement decision, one event
//! built + validated + encoded, a batch of 100 encoded, the dedup check, and rating 1,000,000
//! events. Figures and the command are in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use aforo_core::dedup::DedupWindow;
use aforo_core::entitlement::{admit, AccessRequest, Credential, MemoryCounters, Snapshot};
use aforo_core::event::{derive_event_id, encode_v1, IngestFormat, Quantity, UsageEvent};
use aforo_core::keys::hash_key;
use aforo_core::rating::{Plan, Rater};
use aforo_core::validate::validate_event;
use aforo_core::{Environment, Timestamp};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

const NOW: i64 = 1_773_576_000_000_000_000; // 2026-03-15T12:00:00Z

fn snapshot(customers: usize) -> Snapshot {
    let mut c = serde_json::Map::new();
    let mut keys = Vec::new();
    for i in 0..customers {
        c.insert(
            format!("cust_{i}"),
            serde_json::json!({"features": {"search": {"quota": 1_000_000_000u64}, "chat": {}}}),
        );
        keys.push(serde_json::json!({"key_id": format!("k{i}"), "hash": hash_key(&format!("ck_bench_{i}")).to_text(), "customer_id": format!("cust_{i}")}));
    }
    let v = serde_json::json!({"customers": c, "consumer_keys": keys});
    Snapshot::from_json(v.to_string().as_bytes()).unwrap()
}

fn event(i: u64) -> UsageEvent {
    UsageEvent {
        id: derive_event_id(
            Environment::Sandbox,
            "cust_1",
            "api_calls",
            &format!("req-{i}"),
        ),
        customer_id: "cust_1".into(),
        metric: "api_calls".into(),
        quantity: Quantity::parse("1").unwrap(),
        timestamp: Timestamp::from_unix_nanos(NOW),
        product_id: "prod_bench".into(),
        environment: Environment::Sandbox,
        properties: serde_json::Map::new(),
    }
}

fn decision(c: &mut Criterion) {
    let snap = snapshot(10_000);
    let now = Timestamp::from_unix_nanos(NOW);
    let mut counters = MemoryCounters::new();
    c.bench_function(
        "entitlement decision (consumer key, quota reserve, 10k customers)",
        |b| {
            b.iter(|| {
                let req = AccessRequest {
                    credential: Credential::ConsumerKey(black_box("ck_bench_4242")),
                    feature: "search",
                    client_ip: None,
                    cost: Some(1),
                    default_environment: Environment::Sandbox,
                };
                black_box(admit(&snap, &req, now, &mut counters).is_ok())
            })
        },
    );
}

fn one_event(c: &mut Criterion) {
    let now = Timestamp::from_unix_nanos(NOW);
    let mut i = 0u64;
    c.bench_function("event: build + validate + encode (ingest v1)", |b| {
        b.iter(|| {
            i += 1;
            let e = event(i);
            validate_event(&e, now, Environment::Sandbox).unwrap();
            black_box(encode_v1(&e))
        })
    });
}

fn batch(c: &mut Criterion) {
    let encoded: Vec<Vec<u8>> = (0..100).map(|i| encode_v1(&event(i))).collect();
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(100));
    g.bench_function("encode a batch of 100 (ingest v1 body)", |b| {
        b.iter(|| black_box(IngestFormat::Aforo.batch_body(encoded.iter().map(Vec::as_slice))))
    });
    g.finish();
}

fn dedup(c: &mut Criterion) {
    let now = Timestamp::from_unix_nanos(NOW);
    let ids: Vec<String> = (0..100_000u64).map(|i| event(i).id).collect();
    c.bench_function("dedup check_and_insert (100k-id window)", |b| {
        b.iter_batched(
            || {
                let mut w = DedupWindow::new(100_000, 86_400_000_000_000);
                for id in &ids[..50_000] {
                    w.check_and_insert(id, now);
                }
                w
            },
            |mut w| {
                for id in &ids[49_000..51_000] {
                    black_box(w.check_and_insert(id, now));
                }
                w
            },
            BatchSize::LargeInput,
        )
    });
}

fn rating(c: &mut Criterion) {
    let plan_json = std::fs::read(format!(
        "{}/../host-tests/samples/plan.json",
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
    ))
    .unwrap();
    let events: Vec<UsageEvent> = (0..1_000_000u64)
        .map(|i| {
            let mut e = event(i);
            e.customer_id = format!("cust_{}", i % 100);
            e
        })
        .collect();
    let mut g = c.benchmark_group("rating");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("rate 1,000,000 events (sample plan, 100 customers)", |b| {
        b.iter(|| {
            let mut r = Rater::new(Plan::from_json(&plan_json).unwrap());
            for e in &events {
                r.add(e);
            }
            black_box(r.invoices().unwrap().len())
        })
    });
    g.finish();
}

criterion_group!(benches, decision, one_event, batch, dedup, rating);
criterion_main!(benches);
