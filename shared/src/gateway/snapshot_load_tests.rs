//! A resync read between requests: the old snapshot decides until the new one is whole, each
//! request reads a bounded share, and an idle worker reads it at once.

use super::test_host::TestHost;
use super::tests::{answer_first_sync_with, config, exchange, get_search, snapshot_json};
use super::*;
use crate::host::CallResponse;
use crate::keys::hash_key;
use serde_json::{json, Value};

/// `snapshot_json()` with cust_a's search unlimited (so requests keep being allowed).
fn first_snapshot() -> Value {
    let mut s = snapshot_json();
    s["customers"]["cust_a"]["features"]["search"] = json!({});
    s
}

/// The first snapshot, plus `filler` customers with a key each, and a key `ck_new` of cust_a.
fn large_resync(filler: usize) -> Value {
    let mut s = first_snapshot();
    for i in 0..filler {
        s["customers"][format!("cust_fill_{i:05}")] =
            json!({"features": {"search": {"quota": 10}}});
        s["consumer_keys"].as_array_mut().unwrap().push(json!({
            "key_id": format!("fill_{i}"),
            "hash": hash_key(&format!("ck_fill_{i}")).to_text(),
            "customer_id": format!("cust_fill_{i:05}"),
        }));
    }
    s["consumer_keys"].as_array_mut().unwrap().push(json!({
        "key_id": "key_new", "hash": hash_key("ck_new").to_text(), "customer_id": "cust_a",
    }));
    s
}

fn synced() -> Gateway {
    let sync = json!({"entitlements": null, "entitlements_url": "http://127.0.0.1:9/v1/entitlements", "sync_interval_ms": 1000});
    Gateway::new(config(sync), 1)
}

/// Ticks after the sync interval and answers the sync the tick starts with `snapshot`;
/// `before_answer` runs between the tick and the answer (requests that come meanwhile).
fn resync(
    gw: &mut Gateway,
    host: &mut TestHost,
    snapshot: &Value,
    before_answer: impl FnOnce(&mut Gateway, &mut TestHost),
) {
    host.advance_ms(1_000);
    gw.on_tick(host);
    let token = sync_call(host).expect("the tick starts a sync");
    before_answer(gw, host);
    answer(gw, host, token, 200, snapshot);
}

/// Answers sync call `token` with `status` and `snapshot` as its body.
fn answer(gw: &mut Gateway, host: &mut TestHost, token: u32, status: u16, snapshot: &Value) {
    gw.on_call_response(
        host,
        token,
        CallResponse {
            status: Some(status),
            headers: vec![],
            body: snapshot.to_string().into_bytes(),
        },
    );
}

/// The token of the sync call the engine asked for, if any.
fn sync_call(host: &mut TestHost) -> Option<u32> {
    host.take_calls()
        .into_iter()
        .find(|(_, c)| {
            c.headers
                .iter()
                .any(|(k, v)| k == ":path" && v.starts_with("/v1/entitlements"))
        })
        .map(|(t, _)| t)
}

fn allowed(gw: &mut Gateway, host: &mut TestHost, key: &str, rid: &str) -> bool {
    exchange(gw, host, &get_search(key, rid), 200, b"").is_ok()
}

/// Runs `n` allowed requests of cust_a.
fn traffic(gw: &mut Gateway, host: &mut TestHost, n: usize, tag: &str) {
    for i in 0..n {
        assert!(allowed(gw, host, "ck_live_alpha", &format!("{tag}{i}")));
    }
}

/// The bytes of a snapshot document as the test sends it.
fn len(v: &Value) -> usize {
    v.to_string().len()
}

#[test]
fn a_large_resync_is_shared_out_over_the_requests_and_replaces_the_snapshot_in_one_step() {
    let mut host = TestHost::new();
    let mut gw = synced();
    answer_first_sync_with(&mut gw, &mut host, first_snapshot());
    assert_eq!(
        gw.snapshot_loading(),
        None,
        "a first snapshot is read at once"
    );

    // 2,000 more customers and 2,001 more keys, about 400 KB; 100 requests in the tick period
    // before the sync: the load is shared out over about 100 requests (the tick period is
    // 500 ms, half the sync interval).
    let big = large_resync(2_000);
    traffic(&mut gw, &mut host, 100, "a");
    resync(&mut gw, &mut host, &big, |gw, host| {
        traffic(gw, host, 1, "b")
    });
    let (read, all) = gw
        .snapshot_loading()
        .expect("a busy worker reads it in shares");
    assert_eq!(all, len(&big));
    assert!(
        read <= SNAPSHOT_BYTES_PER_TICK + 300,
        "the answer read {read} bytes"
    );
    assert_eq!(host.metric(Metric::SnapshotSyncs), 1, "not installed yet");
    // The old snapshot decides meanwhile: the new key is unknown to it (and the refused request
    // reads its share too).
    let refused = exchange(&mut gw, &mut host, &get_search("ck_new", "n0"), 200, b"").unwrap_err();
    assert_eq!(refused.status, 401);

    let share = all.div_ceil(100);
    let mut requests = 0;
    let mut longest = 0;
    while let Some((before, _)) = gw.snapshot_loading() {
        assert!(allowed(
            &mut gw,
            &mut host,
            "ck_live_alpha",
            &format!("s{requests}")
        ));
        let after = gw.snapshot_loading().map_or(all, |(r, _)| r);
        longest = longest.max(after - before);
        requests += 1;
        assert!(requests < 1_000, "the load never ends");
    }
    assert!(
        longest <= share + 300,
        "one request read {longest} bytes, its share is {share}"
    );
    assert!(
        (80..=100).contains(&requests),
        "{requests} requests read it"
    );
    assert_eq!(host.metric(Metric::SnapshotSyncs), 2);
    // The snapshot it replaced (2 customers, 3 keys) is freed by the request that installed the
    // new one and those that follow.
    assert!(matches!(gw.retiring_left(), Some(1..=4)));
    traffic(&mut gw, &mut host, 5, "t");
    assert_eq!(gw.retiring_left(), None);
    assert!(
        allowed(&mut gw, &mut host, "ck_new", "n1"),
        "the new snapshot decides"
    );
    assert!(allowed(&mut gw, &mut host, "ck_fill_1999", "f1"));
    // And the next sync starts once it is read.
    host.advance_ms(1_000);
    gw.on_tick(&mut host);
    assert!(sync_call(&mut host).is_some());
}

#[test]
fn with_little_traffic_a_request_reads_at_most_its_cap() {
    let mut host = TestHost::new();
    let mut gw = synced();
    answer_first_sync_with(&mut gw, &mut host, first_snapshot());
    traffic(&mut gw, &mut host, 1, "a");
    let big = large_resync(2_000);
    resync(&mut gw, &mut host, &big, |gw, host| {
        traffic(gw, host, 1, "b")
    });
    let (before, all) = gw.snapshot_loading().unwrap();
    traffic(&mut gw, &mut host, 1, "c");
    let (after, _) = gw.snapshot_loading().unwrap();
    let read = after - before;
    assert!(
        (SNAPSHOT_MAX_BYTES_PER_REQUEST..SNAPSHOT_MAX_BYTES_PER_REQUEST + 300).contains(&read),
        "one request of few read {read} of {all} bytes"
    );
}

#[test]
fn an_idle_worker_reads_a_resync_at_once() {
    let mut host = TestHost::new();
    let mut gw = synced();
    answer_first_sync_with(&mut gw, &mut host, first_snapshot());
    traffic(&mut gw, &mut host, 1, "a");
    // Two tick periods without a request.
    host.advance_ms(1_000);
    gw.on_tick(&mut host);
    resync(&mut gw, &mut host, &large_resync(2_000), |_, _| {});
    assert_eq!(gw.snapshot_loading(), None);
    assert_eq!(host.metric(Metric::SnapshotSyncs), 2);
    assert!(allowed(&mut gw, &mut host, "ck_new", "n1"));
}

#[test]
fn refused_traffic_alone_reads_a_resync_as_metered_traffic_does() {
    let mut host = TestHost::new();
    let mut gw = synced();
    answer_first_sync_with(&mut gw, &mut host, first_snapshot());
    let refuse = |gw: &mut Gateway, host: &mut TestHost| {
        let r = exchange(gw, host, &get_search("ck_unknown", "u"), 200, b"").unwrap_err();
        assert_eq!(r.status, 401);
    };
    for _ in 0..100 {
        refuse(&mut gw, &mut host);
    }
    let big = large_resync(2_000);
    resync(&mut gw, &mut host, &big, refuse);
    let mut requests = 0;
    while gw.snapshot_loading().is_some() {
        refuse(&mut gw, &mut host);
        requests += 1;
        assert!(requests < 1_000, "the load never ends");
    }
    assert!(
        (80..=100).contains(&requests),
        "{requests} refused requests read it"
    );
    assert!(allowed(&mut gw, &mut host, "ck_new", "n1"));
}

#[test]
fn a_broken_resync_read_in_shares_fails_once_and_the_old_snapshot_keeps_deciding() {
    let mut host = TestHost::new();
    let mut gw = synced();
    answer_first_sync_with(&mut gw, &mut host, first_snapshot());
    let mut big = large_resync(2_000);
    big["customers"]["cust_fill_01999"]["features"]["search"]["quota"] = json!("lots");
    traffic(&mut gw, &mut host, 100, "a");
    resync(&mut gw, &mut host, &big, |gw, host| {
        traffic(gw, host, 1, "b")
    });
    let mut requests = 0;
    while gw.snapshot_loading().is_some() {
        traffic(&mut gw, &mut host, 1, &format!("s{requests}-"));
        requests += 1;
        assert!(requests < 1_000);
    }
    assert!(requests > 10, "read in shares before the bad entry was met");
    assert_eq!(host.metric(Metric::SnapshotSyncFailures), 1);
    assert_eq!(host.metric(Metric::SnapshotSyncs), 1);
    let refused = exchange(&mut gw, &mut host, &get_search("ck_new", "n0"), 200, b"").unwrap_err();
    assert_eq!(refused.status, 401, "the old snapshot still decides");
    host.advance_ms(1_000);
    gw.on_tick(&mut host);
    assert!(sync_call(&mut host).is_some(), "and the next sync starts");
}

#[test]
fn a_vm_that_never_served_a_request_syncs_at_half_the_staleness_bound_and_reads_on_ticks() {
    // Envoy's main-thread VM: configured and ticking, never given a request.
    let mut host = TestHost::new();
    let mut gw = synced();
    answer_first_sync_with(&mut gw, &mut host, first_snapshot());
    // Not every second (the sync interval) but every 30 s (half of max_snapshot_age_ms).
    for _ in 0..58 {
        host.advance_ms(500);
        gw.on_tick(&mut host);
        assert_eq!(
            sync_call(&mut host),
            None,
            "at {} ms",
            host.now.unix_nanos() / 1_000_000
        );
    }
    host.advance_ms(1_000);
    gw.on_tick(&mut host);
    let token = sync_call(&mut host).expect("a sync within half the staleness bound");
    let big = large_resync(2_000);
    let all = len(&big);
    answer(&mut gw, &mut host, token, 200, &big);
    // Read on ticks, a twentieth (at least 64 KiB) a tick, never at once.
    let share = (all / SNAPSHOT_TICKS_WITHOUT_REQUESTS).max(SNAPSHOT_MAX_BYTES_PER_REQUEST);
    let mut ticks = 0;
    let mut longest = gw.snapshot_loading().map_or(all, |(r, _)| r);
    while let Some((before, _)) = gw.snapshot_loading() {
        host.advance_ms(500);
        gw.on_tick(&mut host);
        let after = gw.snapshot_loading().map_or(all, |(r, _)| r);
        longest = longest.max(after - before);
        ticks += 1;
        assert!(
            ticks <= SNAPSHOT_TICKS_WITHOUT_REQUESTS,
            "read in {ticks} ticks"
        );
    }
    assert!(
        longest <= share + 300,
        "one tick read {longest} bytes of {all}"
    );
    assert!(ticks >= all / share - 1, "{ticks} ticks");
    assert_eq!(host.metric(Metric::SnapshotSyncs), 2);
    // Its first request: decided on that snapshot, and syncs come at the usual interval again.
    assert!(allowed(&mut gw, &mut host, "ck_new", "n1"));
    host.advance_ms(1_000);
    gw.on_tick(&mut host);
    assert!(
        sync_call(&mut host).is_some(),
        "a served VM syncs every sync_interval_ms"
    );
}

#[test]
fn a_large_replaced_snapshot_is_freed_a_share_at_a_time() {
    let mut host = TestHost::new();
    let mut gw = synced();
    answer_first_sync_with(&mut gw, &mut host, first_snapshot());
    traffic(&mut gw, &mut host, 100, "a");
    let big = large_resync(2_000);
    resync(&mut gw, &mut host, &big, |gw, host| {
        traffic(gw, host, 1, "b")
    });
    let mut n = 0;
    while gw.snapshot_loading().is_some() {
        traffic(&mut gw, &mut host, 1, &format!("s{n}-"));
        n += 1;
    }
    // A tick period without the loading's requests, then 100 requests in the next.
    host.advance_ms(500);
    gw.on_tick(&mut host);
    // Replace the large one with a small one: its 4,004 entries are freed over requests.
    traffic(&mut gw, &mut host, 100, "c");
    resync(&mut gw, &mut host, &first_snapshot(), |gw, host| {
        traffic(gw, host, 1, "d")
    });
    assert_eq!(
        gw.snapshot_loading(),
        None,
        "a small snapshot is read in one share"
    );
    let left = gw.retiring_left().expect("the large one is being freed");
    assert!(left > 3_500, "{left} left after the answer");
    // 100 requests a tick period: each frees about a hundredth.
    let mut requests = 0;
    let mut most = 0;
    while let Some(before) = gw.retiring_left() {
        traffic(&mut gw, &mut host, 1, &format!("f{requests}-"));
        most = most.max(before - gw.retiring_left().unwrap_or(0));
        requests += 1;
        assert!(requests < 1_000, "never freed");
    }
    assert!(
        most <= 4_010_usize.div_ceil(100) + 2,
        "{most} freed by one request"
    );
    assert!(
        (90..=110).contains(&requests),
        "{requests} requests freed it"
    );
}

#[test]
fn a_load_past_its_deadline_is_read_before_the_next_decision() {
    // Stale 1.5 s after it arrived: a resync answered 1 s later has 0.5 s left, so its load
    // must end within 0.25 s.
    let sync = json!({"entitlements": null, "entitlements_url": "http://127.0.0.1:9/v1/entitlements",
        "sync_interval_ms": 1000, "max_snapshot_age_ms": 1500, "failure_mode": "closed"});
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(sync), 1);
    answer_first_sync_with(&mut gw, &mut host, first_snapshot());
    traffic(&mut gw, &mut host, 100, "a");
    let big = large_resync(2_000);
    resync(&mut gw, &mut host, &big, |gw, host| {
        traffic(gw, host, 1, "b")
    });
    // Shared out over a quarter second's requests (half the time left), not half a second's.
    for i in 0..30 {
        traffic(&mut gw, &mut host, 1, &format!("s{i}-"));
    }
    let (read, all) = gw
        .snapshot_loading()
        .expect("still reading after 30 requests");
    assert!(
        read > all / 2,
        "30 of the 50 requests read {read} of {all} bytes"
    );
    // Traffic pauses past the deadline, not yet past the staleness bound, and no tick comes:
    // the next request reads the rest before it is decided, on the new snapshot.
    host.advance_ms(300);
    assert!(
        allowed(&mut gw, &mut host, "ck_new", "n1"),
        "decided on the new snapshot"
    );
    assert_eq!(gw.snapshot_loading(), None);
}

#[test]
fn ticks_keep_a_load_on_time_when_requests_stop() {
    let sync = json!({"entitlements": null, "entitlements_url": "http://127.0.0.1:9/v1/entitlements",
        "sync_interval_ms": 10_000});
    let mut host = TestHost::new();
    let mut gw = Gateway::new(config(sync), 1);
    answer_first_sync_with(&mut gw, &mut host, first_snapshot());
    traffic(&mut gw, &mut host, 100, "a");
    host.advance_ms(10_000);
    gw.on_tick(&mut host);
    let token = sync_call(&mut host).expect("a sync");
    traffic(&mut gw, &mut host, 1, "b");
    let big = large_resync(2_000);
    answer(&mut gw, &mut host, token, 200, &big);
    // The load may take 5 s (half the sync interval), its shares sized for 100 requests a tick
    // period; traffic drops to one request a period. Ticks every 500 ms read what keeps it on
    // time: it ends by the tenth, and not all at once.
    let all = len(&big);
    let mut ticks = 0;
    let mut most = 0;
    while let Some((before, _)) = gw.snapshot_loading() {
        host.advance_ms(250);
        traffic(&mut gw, &mut host, 1, &format!("t{ticks}-"));
        host.advance_ms(250);
        gw.on_tick(&mut host);
        ticks += 1;
        most = most.max(gw.snapshot_loading().map_or(all, |(r, _)| r) - before);
        assert!(ticks <= 10, "still loading after {ticks} ticks");
    }
    assert!(ticks >= 9, "ended after {ticks} ticks");
    assert!(most < all / 2, "one tick read {most} of {all} bytes");
    assert!(allowed(&mut gw, &mut host, "ck_new", "n1"));
}

#[test]
fn a_vm_that_never_served_a_request_syncs_at_the_usual_interval_after_a_failed_sync() {
    let mut host = TestHost::new();
    let mut gw = synced();
    answer_first_sync_with(&mut gw, &mut host, first_snapshot());
    host.advance_ms(30_000);
    gw.on_tick(&mut host);
    let token = sync_call(&mut host).expect("a sync after 30 s");
    answer(&mut gw, &mut host, token, 503, &json!({}));
    host.advance_ms(1_000);
    gw.on_tick(&mut host);
    assert!(
        sync_call(&mut host).is_some(),
        "retried after sync_interval_ms, not 30 s"
    );
}
