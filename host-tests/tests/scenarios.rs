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
