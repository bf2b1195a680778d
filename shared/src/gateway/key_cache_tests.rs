//! The engine's cache of consumer-key hashes decides nothing: every request is decided by the
//! snapshot in force, whatever the cache holds.

use super::test_host::TestHost;
use super::tests::{answer_first_sync_with, config, exchange, get_search, snapshot_json};
use super::*;
use serde_json::{json, Value};

/// `snapshot_json()` with cust_a's search unlimited (so its key keeps being allowed).
fn snapshot() -> Value {
    let mut s = snapshot_json();
    s["customers"]["cust_a"]["features"]["search"] = json!({});
    s
}

/// An engine that syncs its snapshot every second, synced once with `snapshot()`.
fn synced(host: &mut TestHost) -> Gateway {
    let sync = json!({"entitlements": null, "entitlements_url": "http://127.0.0.1:9/v1/entitlements", "sync_interval_ms": 1000});
    let mut gw = Gateway::new(config(sync), 3);
    answer_first_sync_with(&mut gw, host, snapshot());
    gw
}

/// Syncs `snapshot` one interval later, and reads it to the end.
fn resync_with(gw: &mut Gateway, host: &mut TestHost, snapshot: Value) {
    host.advance_ms(1_000);
    answer_first_sync_with(gw, host, snapshot);
    for _ in 0..10 {
        if gw.snapshot_loading().is_none() {
            return;
        }
        host.advance_ms(100);
        gw.on_tick(host);
    }
    panic!("the resync was not read in ten ticks");
}

fn status(gw: &mut Gateway, host: &mut TestHost, key: &str, rid: &str) -> u16 {
    match exchange(gw, host, &get_search(key, rid), 200, b"") {
        Ok(_) => 200,
        Err(reply) => reply.status,
    }
}

#[test]
fn a_key_revoked_or_moved_by_a_resync_is_decided_by_the_new_snapshot_though_its_hash_is_cached() {
    let mut host = TestHost::new();
    let mut gw = synced(&mut host);
    assert_eq!(status(&mut gw, &mut host, "ck_live_alpha", "r1"), 200);
    assert_eq!(status(&mut gw, &mut host, "ck_live_alpha", "r2"), 200);

    // The same key, now revoked: refused on its next request.
    let mut revoked = snapshot();
    revoked["consumer_keys"][0]["revoked"] = json!(true);
    resync_with(&mut gw, &mut host, revoked);
    assert_eq!(status(&mut gw, &mut host, "ck_live_alpha", "r3"), 401);

    // Gone from the snapshot: refused too; back, and moved to a suspended customer: 403.
    let mut gone = snapshot();
    gone["consumer_keys"].as_array_mut().unwrap().remove(0);
    resync_with(&mut gw, &mut host, gone);
    assert_eq!(status(&mut gw, &mut host, "ck_live_alpha", "r4"), 401);
    let mut moved = snapshot();
    moved["customers"]["cust_b"] = json!({"status": "suspended", "features": {"search": {}}});
    moved["consumer_keys"][0]["customer_id"] = json!("cust_b");
    resync_with(&mut gw, &mut host, moved);
    assert_eq!(status(&mut gw, &mut host, "ck_live_alpha", "r5"), 403);
    // And back as it was: allowed again.
    resync_with(&mut gw, &mut host, snapshot());
    assert_eq!(status(&mut gw, &mut host, "ck_live_alpha", "r6"), 200);
}

#[test]
fn keys_differing_in_one_byte_or_in_length_are_different_keys_cached_or_not() {
    let mut host = TestHost::new();
    let mut gw = synced(&mut host);
    let good = "ck_live_alpha";
    for (i, k) in [
        "ck_live_alphb",
        "ck_live_alph",
        "ck_live_alpha ",
        "ck_live_alpha\0",
        "dk_live_alpha",
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(status(&mut gw, &mut host, good, &format!("g{i}")), 200);
        assert_eq!(
            status(&mut gw, &mut host, k, &format!("b{i}")),
            401,
            "{k:?}"
        );
        assert_eq!(
            status(&mut gw, &mut host, k, &format!("c{i}")),
            401,
            "{k:?} again"
        );
    }
}
