//! Scenarios: a directory with `traffic.jsonl`, `config.json`, an optional `plan.json`, a
//! `scenario.json` of run options, and `expected.json`, a subset of the report that must match.
//!
//! `scenario.json`: `{"description": "…", "workers": 1, "profile": "envoy", "ingest_faults": "…",
//! "gateway_clock_skew": "6m", "drain": "1h", "env": {"AFORO_API_KEY": "…"}}` (all optional).

use super::report::RunReport;
use super::run::RunOptions;
use crate::abi::Profile;
use crate::faults::{parse_duration_ms, parse_faults, parse_skew_ms};
use crate::traffic;
use aforo_core::rating::Plan;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A loaded scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Its directory.
    pub dir: PathBuf,
    /// What it shows.
    pub description: String,
    /// How to run it.
    pub options: RunOptions,
    /// What the report must contain.
    pub expected: Value,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Loads the scenario in `dir`, to run with `module`.
pub fn load(dir: &Path, module: &Path) -> Result<Scenario, String> {
    let spec_path = dir.join("scenario.json");
    let spec: Value = if spec_path.exists() {
        serde_json::from_slice(&read(&spec_path)?)
            .map_err(|e| format!("{}: {e}", spec_path.display()))?
    } else {
        Value::Object(Default::default())
    };
    let entries = traffic::load(&dir.join("traffic.jsonl")).map_err(|e| e.to_string())?;
    let mut opts = RunOptions::new(
        module.to_path_buf(),
        read(&dir.join("config.json"))?,
        entries,
    );
    let plan_path = dir.join("plan.json");
    if plan_path.exists() {
        opts.plan = Some(
            Plan::from_json(&read(&plan_path)?)
                .map_err(|e| format!("{}: {e}", plan_path.display()))?,
        );
    }
    let field = |k: &str| spec.get(k);
    if let Some(w) = field("workers").and_then(Value::as_u64) {
        opts.workers = w as usize;
    }
    if let Some(p) = field("profile").and_then(Value::as_str) {
        opts.profile = Profile::parse(p).ok_or(format!(
            "{}: profile must be envoy or kong",
            spec_path.display()
        ))?;
    }
    if let Some(f) = field("ingest_faults").and_then(Value::as_str) {
        opts.faults = parse_faults(f).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    }
    if let Some(s) = field("gateway_clock_skew").and_then(Value::as_str) {
        opts.gateway_skew_ms = parse_skew_ms(s).ok_or(format!(
            "{}: gateway_clock_skew {s:?} is not a duration like +6m or -90s",
            spec_path.display()
        ))?;
    }
    if let Some(d) = field("drain").and_then(Value::as_str) {
        opts.drain_ms = parse_duration_ms(d).ok_or(format!(
            "{}: drain {d:?} is not a duration",
            spec_path.display()
        ))?;
    }
    if let Some(Value::Object(env)) = field("env") {
        opts.env = env
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
    }
    let expected: Value = serde_json::from_slice(&read(&dir.join("expected.json"))?)
        .map_err(|e| format!("{}/expected.json: {e}", dir.display()))?;
    Ok(Scenario {
        dir: dir.to_path_buf(),
        description: field("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        options: opts,
        expected,
    })
}

/// Differences between the expected subset and the report (empty when it matches).
pub fn check(report: &RunReport, expected: &Value) -> Vec<String> {
    let actual = serde_json::to_value(report.totals()).unwrap_or(Value::Null);
    let mut out = Vec::new();
    compare("", expected, &actual, &mut out);
    out
}

fn compare(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match g.get(k) {
                    Some(gv) => compare(&p, wv, gv, out),
                    None if wv == &Value::from(0) => {}
                    None => out.push(format!("{p}: expected {wv}, missing")),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                compare(&format!("{path}[{i}]"), wv, gv, out);
            }
        }
        _ if want == got => {}
        _ => out.push(format!("{path}: expected {want}, got {got}")),
    }
}
