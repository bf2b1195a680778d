//! `aforo-replay` run as a process, as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_host_tests::artifacts::{binary, filter_module, repo_root};
use serde_json::Value;
use std::process::Command;

fn replay(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("aforo-replay").unwrap())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sample(name: &str) -> String {
    repo_root()
        .join("host-tests/samples")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn rate_prints_the_expected_invoice_for_the_shipped_sample() {
    let (code, out, err) = replay(&[
        "rate",
        "--plan",
        &sample("plan.json"),
        "--events",
        &sample("events.jsonl"),
        "--now",
        "2026-03-15T12:00:00Z",
    ]);
    assert_eq!(code, 0, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    let want: Value =
        serde_json::from_slice(&std::fs::read(sample("expected-invoice.json")).unwrap()).unwrap();
    assert_eq!(got, want);
}

#[test]
fn rate_as_a_table_shows_totals() {
    let (code, out, _) = replay(&[
        "rate",
        "--plan",
        &sample("plan.json"),
        "--events",
        &sample("events.jsonl"),
        "--now",
        "2026-03-15T12:00:00Z",
        "--format",
        "table",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("total 205.66"), "{out}");
    assert!(out.contains("sandbox: preview, never billed"), "{out}");
    assert!(out.contains("timestamp_in_future 1"), "{out}");
}

#[test]
fn invalid_inputs_exit_2_and_say_where() {
    let dir = std::env::temp_dir().join(format!("aforo-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_plan = dir.join("bad-plan.json");
    std::fs::write(&bad_plan, r#"{"currency":"USD","charges":[{"id":"a","metric":"m","model":"graduated","tiers":[{"up_to":"10","unit_amount":"1"},{"up_to":"5","unit_amount":"1"},{"up_to":null,"unit_amount":"1"}]}]}"#).unwrap();
    let (code, _, err) = replay(&[
        "rate",
        "--plan",
        bad_plan.to_str().unwrap(),
        "--events",
        &sample("events.jsonl"),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("charges[0].tiers[1].up_to: must be greater than 10"),
        "{err}"
    );

    let bad_events = dir.join("bad.jsonl");
    std::fs::write(&bad_events, "{\"id\": \"a\"}\n{\"id\": \n").unwrap();
    let (code, _, err) = replay(&[
        "rate",
        "--plan",
        &sample("plan.json"),
        "--events",
        bad_events.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.jsonl:2"), "{err}");

    let truncated = dir.join("t.jsonl");
    std::fs::write(
        &truncated,
        "{\"request\": {\"path\": \"/a\"}}\n{\"request\": {\"path\": \"/a\"\n",
    )
    .unwrap();
    let module = filter_module().unwrap();
    let config = repo_root().join("host-tests/scenarios/minimum-spend/config.json");
    let (code, _, err) = replay(&[
        "run",
        "--module",
        module.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--traffic",
        truncated.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("t.jsonl: line 2"), "{err}");

    let empty_har = dir.join("e.har");
    std::fs::write(&empty_har, r#"{"log": {"version": "1.2", "entries": []}}"#).unwrap();
    let (code, _, err) = replay(&[
        "run",
        "--module",
        module.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--traffic",
        empty_har.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("the HAR has no entries"), "{err}");

    let bad_config = dir.join("c.json");
    std::fs::write(
        &bad_config,
        r#"{"api_key": "sk_test_x", "product_id": "p", "flush_interval_ms": 1}"#,
    )
    .unwrap();
    let traffic = repo_root().join("host-tests/scenarios/minimum-spend/traffic.jsonl");
    let (code, _, err) = replay(&[
        "run",
        "--module",
        module.to_str().unwrap(),
        "--config",
        bad_config.to_str().unwrap(),
        "--traffic",
        traffic.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("flush_interval_ms: must be 10..=3600000, got 1"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_prints_a_report_and_scenario_checks_expectations() {
    let dir = repo_root().join("host-tests/scenarios/minimum-spend");
    let (code, out, err) = replay(&[
        "scenario",
        dir.to_str().unwrap(),
        "--format",
        "table",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("minimum true-up 75.00   total 100.00"),
        "{out}"
    );
    assert!(err.contains("as expected"), "{err}");
}

#[test]
fn every_command_answers_help_and_version_and_lists_its_flags() {
    let (code, out, _) = replay(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("aforo-replay "), "{out}");
    let (code, out, _) = replay(&["--help"]);
    assert_eq!(code, 0);
    for c in ["run", "rate", "send", "scenario", "upstream"] {
        assert!(out.contains(c), "{c} in\n{out}");
    }
    // Every flag each command accepts is in its --help (once --seed and --chunk were accepted
    // but not listed).
    for (cmd, flags) in [
        (
            "run",
            &[
                "--module",
                "--config",
                "--traffic",
                "--plan",
                "--profile",
                "--workers",
                "--ingest-faults",
                "--snapshot",
                "--env",
                "--drain",
                "--seed",
                "--chunk",
                "--format",
                "--log-module",
                "--quiet",
            ][..],
        ),
        ("rate", &["--plan", "--events", "--now", "--format"][..]),
        (
            "send",
            &[
                "--target",
                "--traffic",
                "--concurrency",
                "--format",
                "--quiet",
            ][..],
        ),
        ("scenario", &["--module", "--format", "--quiet"][..]),
        ("upstream", &["--port"][..]),
    ] {
        let (code, out, err) = replay(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd} --help: {err}");
        for f in flags {
            assert!(out.contains(f), "{cmd} --help lacks {f}:\n{out}");
        }
    }
    // A wrong value names the flag and what it accepts; exit status 2.
    let (code, _, err) = replay(&[
        "run",
        "--module",
        "m",
        "--config",
        "c",
        "--traffic",
        "t",
        "--profile",
        "nginx",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--profile") && err.contains("envoy") && err.contains("kong"),
        "{err}"
    );
    let (code, _, err) = replay(&["run", "--modul", "m"]);
    assert_eq!(code, 2);
    assert!(err.contains("--module"), "a suggestion: {err}");
}
