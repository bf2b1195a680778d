//! `aforo-agent` on the command line: --help lists every option the configuration accepts,
//! --version answers, a mistyped flag is named with a suggestion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn agent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aforo-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The options of `docs/agent.md`'s reference (a unit test keeps it equal to the parser's).
fn documented_options() -> Vec<String> {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/agent.md"),
    )
    .unwrap();
    let start = readme.find("<!-- agent-options:begin -->").unwrap();
    let end = readme.find("<!-- agent-options:end -->").unwrap();
    readme[start..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn help_lists_every_option_and_version_answers() {
    let (code, out, err) = agent(&["--help"]);
    assert_eq!(code, 0, "{err}");
    let options = documented_options();
    assert!(options.len() > 20, "{options:?}");
    for o in options.iter().chain(std::iter::once(&"config".to_string())) {
        let flag = format!("--{}", o.replace('_', "-"));
        assert!(out.contains(&flag), "--help lacks {flag}:\n{out}");
    }
    let (code, out, _) = agent(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("aforo-agent "), "{out}");
}

#[test]
fn a_mistyped_flag_is_named_with_the_likely_one() {
    let (code, _, err) = agent(&["--listn", "127.0.0.1:1"]);
    assert_eq!(code, 2);
    assert!(err.contains("--listn") && err.contains("--listen"), "{err}");
    // A value the configuration refuses names the flag and the range.
    let (code, _, err) = agent(&["--batch-size", "0"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--batch-size: must be 1..=1000, got 0"),
        "{err}"
    );
}
