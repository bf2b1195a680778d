//! The README's first command: `scripts/demo.sh` runs the agent, Envoy with the filter and a demo
//! API, prints the tables, exits 0, and leaves no process or port behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_host_tests::artifacts::repo_root;
use std::net::TcpListener;
use std::process::Command;

fn alive(pid: u32) -> bool {
    // A zombie is gone for our purposes; /proc/<pid>/stat's third field says which.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").split_whitespace().next();
            state != Some("Z")
        })
        .unwrap_or(false)
}

#[test]
fn the_demo_runs_prints_its_tables_and_cleans_up() {
    let state = std::env::temp_dir().join(format!("aforo-demo-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/demo.sh"))
        .env("AFORO_DEMO_SKIP_SETUP", "1")
        .env("AFORO_DEMO_STATE", &state)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");

    // The decisions: acme runs out of its 40 searches, initech is suspended, an unknown key and
    // no key are refused.
    for needle in [
        "Decisions by customer",
        "quota_exhausted",
        "customer_suspended",
        "invalid_key",
        "no_access",
        "delivered to the agent",
        "dead letters in the agent: 0",
        "Invoice preview",
        "minimum true-up",
    ] {
        assert!(
            stdout.contains(needle),
            "the demo output lacks {needle:?}:\n{stdout}"
        );
    }
    let line = |label: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(label)
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("no {label:?} line:\n{stdout}"))
    };
    let metered = line("metered by the filter");
    assert!(metered > 0);
    assert_eq!(
        line("delivered to the agent"),
        metered,
        "every metered event reached the agent"
    );
    assert_eq!(line("dead-lettered"), 0);

    // Nothing left behind.
    let pids = std::fs::read_to_string(state.join("pids")).unwrap();
    for pid in pids.split_whitespace().map(|p| p.parse::<u32>().unwrap()) {
        assert!(!alive(pid), "process {pid} outlived the demo");
    }
    let ports = std::fs::read_to_string(state.join("ports")).unwrap();
    for port in ports.split_whitespace() {
        TcpListener::bind(format!("127.0.0.1:{port}"))
            .unwrap_or_else(|e| panic!("port {port} is still taken after the demo: {e}"));
    }
    let _ = std::fs::remove_dir_all(&state);
}
