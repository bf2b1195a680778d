//! Every scenario in host-tests/scenarios, replayed through the real module, must match its
//! expected.json.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_host_tests::artifacts::{filter_module, repo_root};
use aforo_host_tests::replay::run;
use aforo_host_tests::replay::scenario::{check, load};

fn scenario(name: &str) {
    let dir = repo_root().join("host-tests/scenarios").join(name);
    let sc = load(&dir, &filter_module().unwrap()).unwrap();
    let report = run(&sc.options).unwrap();
    let diffs = check(&report, &sc.expected);
    assert!(
        diffs.is_empty(),
        "{name} differs from expected.json:\n  {}\n\n{}",
        diffs.join("\n  "),
        report.to_table()
    );
}

#[test]
fn graduated_pricing_over_100_000_events() {
    scenario("graduated-100k");
}

#[test]
fn clock_skew_of_six_minutes_is_rejected() {
    scenario("clock-skew");
}

#[test]
fn a_50_000_event_duplicate_replay_is_billed_once() {
    scenario("duplicate-replay");
}

#[test]
fn minimum_spend_is_topped_up() {
    scenario("minimum-spend");
}

#[test]
fn an_ingest_outage_loses_nothing() {
    scenario("ingest-outage");
}

#[test]
fn every_scenario_directory_has_a_test() {
    let mut dirs: Vec<String> = std::fs::read_dir(repo_root().join("host-tests/scenarios"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(
        dirs,
        [
            "clock-skew",
            "duplicate-replay",
            "graduated-100k",
            "ingest-outage",
            "minimum-spend"
        ]
    );
}

/// The sandbox's limit is real in the replay: the minimum-spend scenario's traffic, packed as
/// 12,000 requests into 20 minutes instead of spread over hours, is answered 429 once the key
/// has sent 10,000 events in the hour (the scenarios spread theirs, and assert no 429).
#[test]
fn the_sandbox_limit_answers_429_past_10_000_events_an_hour() {
    let dir = repo_root().join("host-tests/scenarios/minimum-spend");
    let mut sc = load(&dir, &filter_module().unwrap()).unwrap();
    let packed = r#"{"time": "2026-03-02T09:00:00Z", "repeat": 12000, "interval_ms": 100, "request": {"method": "GET", "path": "/v1/search", "headers": {"x-customer-id": "cust_a", "x-request-id": "packed-{n}"}}, "customer": "cust_a"}"#;
    sc.options.traffic = aforo_host_tests::traffic::parse_jsonl(
        "packed.jsonl",
        packed,
        aforo_core::Timestamp::from_unix_secs(0),
    )
    .unwrap();
    let report = run(&sc.options).unwrap();
    let by_status = &report.ingest.by_status;
    assert!(
        by_status.get(&429).copied().unwrap_or(0) > 0,
        "{by_status:?}\n{}",
        report.to_table()
    );
    assert!(report.ingest.accepted <= 12_000);
}
