//! aforo-replay: the pre-production sandbox on the command line.
//!
//! ```text
//! aforo-replay run  --module M.wasm --config C.json --traffic T [--plan P.json] [--profile envoy|kong]
//!                   [--workers N] [--ingest-faults SPEC] [--snapshot S.json] [--env K=V]...
//!                   [--drain DUR] [--format json|table] [--log-module] [--quiet]
//! aforo-replay rate --plan PLAN.json --events EVENTS.jsonl [--now RFC3339] [--format json|table]
//! aforo-replay send --target URL --traffic T [--concurrency N] [--format json|table]
//! aforo-replay scenario DIR [--module M.wasm] [--format json|table]
//! aforo-replay upstream --port N
//! ```
//! Exit status: 0 success, 2 invalid input (with a message that says where), 1 other failures.

use aforo_core::rating::Plan;
use aforo_core::time::parse_rfc3339;
use aforo_core::Timestamp;
use aforo_host_tests::abi::{Profile, VmError};
use aforo_host_tests::faults::{parse_duration_ms, parse_faults};
use aforo_host_tests::replay::{rate::rate, run, RunError, RunOptions};
use aforo_host_tests::{send, traffic};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage:
  aforo-replay run  --module M.wasm --config C.json --traffic T [--plan P.json] [--profile envoy|kong]
                    [--workers N] [--ingest-faults SPEC] [--snapshot S.json] [--env KEY=VALUE]...
                    [--drain DURATION] [--format json|table] [--log-module] [--quiet]
  aforo-replay rate --plan PLAN.json --events EVENTS.jsonl [--now RFC3339] [--format json|table]
  aforo-replay send --target URL --traffic T [--concurrency N] [--format json|table]
  aforo-replay scenario DIR [--module M.wasm] [--format json|table]
  aforo-replay upstream --port N      (a demo API on 127.0.0.1:N until stopped)";

/// A failure and its exit status.
struct Fail(u8, String);

fn invalid(msg: impl Into<String>) -> Fail {
    Fail(2, msg.into())
}

struct Args {
    values: HashMap<String, Vec<String>>,
    flags: Vec<String>,
}

impl Args {
    fn parse(args: &[String], with_value: &[&str], flags: &[&str]) -> Result<Args, Fail> {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut seen_flags = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (a.clone(), None),
            };
            if flags.contains(&name.as_str()) {
                seen_flags.push(name);
                i += 1;
                continue;
            }
            if !with_value.contains(&name.as_str()) {
                return Err(invalid(format!("unknown argument {a:?}\n{USAGE}")));
            }
            let v = match inline {
                Some(v) => v,
                None => {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| invalid(format!("{name} needs a value")))?
                }
            };
            values.entry(name).or_default().push(v);
            i += 1;
        }
        Ok(Args {
            values,
            flags: seen_flags,
        })
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    fn required(&self, name: &str) -> Result<&str, Fail> {
        self.one(name)
            .ok_or_else(|| invalid(format!("{name} is required\n{USAGE}")))
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    fn table(&self) -> Result<bool, Fail> {
        match self.one("--format") {
            None | Some("json") => Ok(false),
            Some("table") => Ok(true),
            Some(f) => Err(invalid(format!(
                "--format must be json or table, got {f:?}"
            ))),
        }
    }
}

fn read(path: &str, what: &str) -> Result<Vec<u8>, Fail> {
    std::fs::read(path).map_err(|e| invalid(format!("{what} {path}: {e}")))
}

fn load_plan(path: &str) -> Result<Plan, Fail> {
    Plan::from_json(&read(path, "plan")?).map_err(|e| invalid(format!("{path}: {e}")))
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), Fail> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Fail(1, e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn cmd_run(args: &[String]) -> Result<(), Fail> {
    let a = Args::parse(
        args,
        &[
            "--module",
            "--config",
            "--traffic",
            "--plan",
            "--profile",
            "--workers",
            "--ingest-faults",
            "--format",
            "--snapshot",
            "--env",
            "--drain",
            "--seed",
            "--chunk",
        ],
        &["--log-module", "--quiet"],
    )?;
    let module = PathBuf::from(a.required("--module")?);
    let config_path = a.required("--config")?;
    let config = read(config_path, "configuration")?;
    let traffic = traffic::load(&PathBuf::from(a.required("--traffic")?))
        .map_err(|e| invalid(e.to_string()))?;
    let mut opts = RunOptions::new(module, config, traffic);
    opts.plan = a.one("--plan").map(load_plan).transpose()?;
    if let Some(p) = a.one("--profile") {
        opts.profile = Profile::parse(p)
            .ok_or_else(|| invalid(format!("--profile must be envoy or kong, got {p:?}")))?;
    }
    if let Some(w) = a.one("--workers") {
        opts.workers = w
            .parse()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| invalid(format!("--workers must be 1..=64, got {w:?}")))?;
    }
    if let Some(f) = a.one("--ingest-faults") {
        opts.faults = parse_faults(f).map_err(|e| invalid(e.to_string()))?;
    }
    if let Some(s) = a.one("--snapshot") {
        opts.snapshot = Some(read(s, "snapshot")?);
    }
    if let Some(d) = a.one("--drain") {
        opts.drain_ms = parse_duration_ms(d)
            .ok_or_else(|| invalid(format!("--drain must be a duration like 10m, got {d:?}")))?;
    }
    if let Some(s) = a.one("--seed") {
        opts.seed = s
            .parse()
            .map_err(|_| invalid(format!("--seed must be a number, got {s:?}")))?;
    }
    if let Some(c) = a.one("--chunk") {
        opts.body_chunk = c
            .parse()
            .map_err(|_| invalid(format!("--chunk must be a byte count, got {c:?}")))?;
    }
    // The module sees AFORO_* from this process, as Envoy passes host variables it is told to.
    opts.env = std::env::vars()
        .filter(|(k, _)| k.starts_with("AFORO_"))
        .collect();
    for kv in a.all("--env") {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| invalid(format!("--env must be KEY=VALUE, got {kv:?}")))?;
        opts.env.retain(|(x, _)| x != k);
        opts.env.push((k.to_string(), v.to_string()));
    }
    opts.echo_logs = a.flag("--log-module");
    opts.quiet = a.flag("--quiet");
    let table = a.table()?;
    let report = run(&opts).map_err(|e| match e {
        RunError::Vm(VmError::ConfigRefused(m)) => invalid(format!(
            "{config_path}: the module refused this configuration: {m}"
        )),
        RunError::Vm(VmError::Load(m)) => invalid(format!("cannot load the module: {m}")),
        other => Fail(1, other.to_string()),
    })?;
    if table {
        print!("{}", report.to_table());
        Ok(())
    } else {
        print_json(&report)
    }
}

fn cmd_rate(args: &[String]) -> Result<(), Fail> {
    let a = Args::parse(args, &["--plan", "--events", "--now", "--format"], &[])?;
    let plan = load_plan(a.required("--plan")?)?;
    let events_path = a.required("--events")?;
    let text = String::from_utf8(read(events_path, "events")?)
        .map_err(|_| invalid(format!("{events_path}: the file is not UTF-8")))?;
    let now = match a.one("--now") {
        Some(n) => parse_rfc3339(n).map_err(|e| invalid(format!("--now: {e}")))?,
        None => now_wall(),
    };
    let table = a.table()?;
    let report = rate(plan, events_path, &text, now).map_err(invalid)?;
    if table {
        print!("{}", report.to_table());
        Ok(())
    } else {
        print_json(&report)
    }
}

fn now_wall() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix_nanos(d.as_nanos() as i64)
}

fn cmd_send(args: &[String]) -> Result<(), Fail> {
    let a = Args::parse(
        args,
        &["--target", "--traffic", "--concurrency", "--format"],
        &["--quiet"],
    )?;
    let target = a.required("--target")?;
    let traffic = traffic::load(&PathBuf::from(a.required("--traffic")?))
        .map_err(|e| invalid(e.to_string()))?;
    let concurrency = match a.one("--concurrency") {
        None => 1,
        Some(c) => c
            .parse()
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or_else(|| invalid(format!("--concurrency must be 1..=256, got {c:?}")))?,
    };
    let table = a.table()?;
    let report = send::send(target, &traffic, concurrency).map_err(|e| Fail(1, e))?;
    if table {
        print!("{}", report.to_table());
        Ok(())
    } else {
        print_json(&report)
    }
}

/// Serves the demo API (JSON answers with LLM-style token usage) until the process is stopped.
fn cmd_upstream(args: &[String]) -> Result<(), Fail> {
    let a = Args::parse(args, &["--port"], &[])?;
    let port: u16 = a
        .required("--port")?
        .parse()
        .map_err(|_| invalid("--port must be a port number"))?;
    let up = aforo_host_tests::servers::Upstream::start_on(port)
        .map_err(|e| Fail(1, format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    eprintln!("demo upstream listening on 127.0.0.1:{}", up.port());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn cmd_scenario(args: &[String]) -> Result<(), Fail> {
    let dir = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .ok_or_else(|| invalid(format!("a scenario directory is required\n{USAGE}")))?;
    let a = Args::parse(&args[1..], &["--module", "--format"], &["--quiet"])?;
    let module = match a.one("--module") {
        Some(m) => PathBuf::from(m),
        None => aforo_host_tests::artifacts::filter_module().map_err(invalid)?,
    };
    let table = a.table()?;
    let mut sc = aforo_host_tests::replay::scenario::load(std::path::Path::new(dir), &module)
        .map_err(invalid)?;
    sc.options.quiet = a.flag("--quiet");
    let report = run(&sc.options).map_err(|e| Fail(1, e.to_string()))?;
    if table {
        println!("Scenario {dir}: {}\n", sc.description);
        print!("{}", report.to_table());
    } else {
        print_json(&report)?;
    }
    let diffs = aforo_host_tests::replay::scenario::check(&report, &sc.expected);
    if diffs.is_empty() {
        eprintln!("scenario {dir}: as expected");
        Ok(())
    } else {
        Err(Fail(
            1,
            format!(
                "scenario {dir} differs from expected.json:\n  {}",
                diffs.join("\n  ")
            ),
        ))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => cmd_run(&args[1..]),
        Some("rate") => cmd_rate(&args[1..]),
        Some("send") => cmd_send(&args[1..]),
        Some("scenario") => cmd_scenario(&args[1..]),
        Some("upstream") => cmd_upstream(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(invalid(USAGE)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("aforo-replay: {msg}");
            ExitCode::from(code)
        }
    }
}
