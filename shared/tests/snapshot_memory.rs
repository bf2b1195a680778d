//! How much memory a large snapshot takes, counted by the allocator: a proxy VM holds one per
//! engine, and Wasm linear memory keeps its high-water mark, so both what a snapshot keeps and
//! what reading it peaks at are bounded here (a 6 MiB regression once went unnoticed:
//! BENCHMARKS.md, "Memory of one filter VM"; the VM's own figures come from
//! `scripts/bench-memory.sh`). Counts bytes requested, native 64-bit sizes: deterministic.

#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use aforo_core::config::{Config, EntitlementSource};
use aforo_core::entitlement::Snapshot;
use aforo_core::keys::hash_key;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::sync::Mutex;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// One measurement at a time (the test harness runs tests on several threads).
static ONE: Mutex<()> = Mutex::new(());

struct Counting;

fn grew(by: isize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grew(l.size() as isize);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, size: usize) -> *mut u8 {
        grew(size as isize - l.size() as isize);
        unsafe { System.realloc(p, l, size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const CUSTOMERS: usize = 10_000;

/// The snapshot `scripts/bench-memory.sh` uses: a consumer key and two features each.
fn snapshot_json() -> String {
    let mut customers = serde_json::Map::new();
    let mut keys = Vec::new();
    for i in 0..CUSTOMERS {
        customers.insert(
            format!("cust_{i:05}"),
            serde_json::json!({"features": {"search": {"quota": 1_000_000, "window": "month"}, "chat": {}}}),
        );
        keys.push(serde_json::json!({"key_id": format!("k{i}"),
            "hash": hash_key(&format!("ck_bench_{i:05}_0123456789")).to_text(),
            "customer_id": format!("cust_{i:05}")}));
    }
    serde_json::json!({"customers": customers, "consumer_keys": keys}).to_string()
}

/// (bytes kept by what `f` returns, peak bytes while it ran), both above what was live before.
fn measure<T>(f: impl FnOnce() -> T) -> (T, isize, isize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let out = f();
    (out, LIVE.load(Relaxed) - base, PEAK.load(Relaxed) - base)
}

#[test]
fn a_synced_snapshot_keeps_little_per_customer_and_reading_it_peaks_near_that() {
    let _one = ONE.lock().unwrap();
    let doc = snapshot_json();
    let (s, kept, peak) = measure(|| Snapshot::from_json(doc.as_bytes()).unwrap());
    assert_eq!(s.customers.len(), CUSTOMERS);
    let per = kept / CUSTOMERS as isize;
    eprintln!("synced: {per} B per customer kept, peak {peak} B while reading");
    // 565 B per customer on 2026-12-02; 1,081 B with a hash map per customer.
    assert!(per <= 640, "{per} B per customer");
    // No tree of the whole document, no second copy of a table while reading.
    assert!(peak <= kept * 5 / 4, "peak {peak} B for {kept} B kept");
}

#[test]
fn an_inline_snapshot_is_read_without_a_tree_of_the_configuration() {
    let _one = ONE.lock().unwrap();
    let doc = format!(
        r#"{{"api_key": "sk_test_abc", "product_id": "p", "entitlements": {}}}"#,
        snapshot_json()
    );
    let (c, kept, peak) = measure(|| Config::parse(doc.as_bytes(), &|_| None).unwrap());
    let EntitlementSource::Inline(s) = &c.entitlements else {
        panic!("not inline")
    };
    assert_eq!(s.customers.len(), CUSTOMERS);
    eprintln!("inline: {kept} B kept, peak {peak} B while reading");
    // A tree of the 2.2 MB document alone was over 20 MB.
    assert!(peak <= kept * 5 / 4, "peak {peak} B for {kept} B kept");
}
