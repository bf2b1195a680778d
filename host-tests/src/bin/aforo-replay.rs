//! aforo-replay: the pre-production sandbox on the command line. `aforo-replay --help` and
//! `aforo-replay <command> --help` list every flag.
//!
//! Exit status: 0 success, 2 invalid input (with a message that says where), 1 other failures.

use aforo_core::entitlement::{Period, QuotaWindow};
use aforo_core::rating::Plan;
use aforo_core::rating::Terms;
use aforo_core::time::parse_rfc3339;
use aforo_core::Timestamp;
use aforo_host_tests::abi::{Profile, VmError};
use aforo_host_tests::faults::{parse_duration_ms, parse_faults, parse_skew_ms};
use aforo_host_tests::replay::rate::{rate_for, Billing};
use aforo_host_tests::replay::{run, RunError, RunOptions, RunReport};
use aforo_host_tests::{send, traffic};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than glibc's allocator: the replay allocates for every request and event
/// (BENCHMARKS.md, "The replay harness").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Replays recorded traffic through the real aforo_metering.wasm with a virtual clock and a
/// simulated ingest, rates events with a pricing plan, or sends traffic to a running gateway.
#[derive(Parser)]
#[command(name = "aforo-replay", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replays traffic through the module and reports decisions, events, the ingest and invoices.
    Run(RunArgs),
    /// Rates a JSONL file of events with a pricing plan.
    Rate(RateArgs),
    /// Sends traffic to a running gateway and reports the statuses.
    Send(SendArgs),
    /// Runs a scenario directory (traffic, config, plan, expected report) and checks it.
    Scenario(ScenarioArgs),
    /// Serves the demo API on 127.0.0.1:PORT until stopped.
    Upstream(UpstreamArgs),
}

/// How a report is printed.
#[derive(Clone, Copy, Default, ValueEnum)]
enum Format {
    /// JSON (for tools).
    #[default]
    Json,
    /// A table (for people).
    Table,
}

/// How a replay's report is printed.
#[derive(Clone, Copy, Default, ValueEnum)]
enum RunFormat {
    /// One JSON document with every request and stored event (for tools).
    #[default]
    Json,
    /// A table of totals (for people).
    Table,
    /// JSON lines: every request, every stored event, then the summary (for streams and jq).
    Jsonl,
}

/// The proxy the harness imitates.
#[derive(Clone, Copy, ValueEnum)]
enum HostProfile {
    /// Envoy, Istio, MuleSoft Flex.
    Envoy,
    /// Kong with ngx_wasm_module.
    Kong,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The proxy-wasm module (aforo_metering.wasm).
    #[arg(long, value_name = "M.wasm")]
    module: PathBuf,
    /// The filter's JSON configuration.
    #[arg(long, value_name = "C.json")]
    config: PathBuf,
    /// Traffic: JSONL (one request per line) or a HAR 1.2 file.
    #[arg(long, value_name = "T")]
    traffic: PathBuf,
    /// A pricing plan: adds the invoices to the report.
    #[arg(long, value_name = "P.json")]
    plan: Option<PathBuf>,
    /// The host whose behaviour to imitate.
    #[arg(long, value_enum, default_value = "envoy")]
    profile: HostProfile,
    /// Worker VMs sharing shared data, as proxy workers do (1..=64).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    workers: u64,
    /// Ingest faults: windows from the start, e.g. 0s-30s:503,60s-65s:timeout,90s-91s:429/3.
    #[arg(long, value_name = "SPEC")]
    ingest_faults: Option<String>,
    /// The snapshot served at entitlements_url (JSON).
    #[arg(long, value_name = "S.json")]
    snapshot: Option<PathBuf>,
    /// An environment variable for the module (repeatable); AFORO_* of this process pass too.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    envs: Vec<String>,
    /// Virtual time to keep running after the last request, for retries (e.g. 10m).
    #[arg(long, value_name = "DURATION")]
    drain: Option<String>,
    /// How far the gateway's clock runs ahead of the ingest's, e.g. +6m (negative: behind).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    gateway_clock_skew: Option<String>,
    /// Seed of the module's randomness (the same seed gives the same report).
    #[arg(long)]
    seed: Option<u64>,
    /// Deliver request and response bodies in chunks of this many bytes, or `random`: cut at
    /// random places (1 to 64 bytes a chunk, from --seed), as a stream may arrive.
    #[arg(long, value_name = "BYTES|random", value_parser = parse_chunk)]
    chunk: Option<Chunk>,
    /// The report's format.
    #[arg(long, value_enum, default_value = "json")]
    format: RunFormat,
    /// Print the module's log lines to stderr.
    #[arg(long)]
    log_module: bool,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct RateArgs {
    /// The pricing plan.
    #[arg(long, value_name = "PLAN.json")]
    plan: PathBuf,
    /// The events, one ingest v1 event per line.
    #[arg(long, value_name = "EVENTS.jsonl")]
    events: PathBuf,
    /// The time the invoices are made at (RFC 3339; default: now).
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// The customers billed, with their terms (`{"customers": [{"id", "environment", …}]}`):
    /// each is invoiced, with or without events.
    #[arg(long, value_name = "CUSTOMERS.json")]
    customers: Option<PathBuf>,
    /// The invoice period START/END (RFC 3339): only its events are rated, and flat fees with
    /// proration are billed for the part a customer's service period covers (default: the
    /// calendar month of --now, for proration only).
    #[arg(long, value_name = "START/END")]
    period: Option<String>,
    /// The report's format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
}

#[derive(clap::Args)]
struct SendArgs {
    /// The gateway's base URL, e.g. http://127.0.0.1:10000.
    #[arg(long, value_name = "URL")]
    target: String,
    /// Traffic: JSONL or a HAR 1.2 file.
    #[arg(long, value_name = "T")]
    traffic: PathBuf,
    /// Requests in flight at once (1..=256).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
    /// The report's format.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct ScenarioArgs {
    /// The scenario directory (scenario.json, config.json, traffic, expected.json).
    dir: PathBuf,
    /// The module (default: the workspace's build).
    #[arg(long, value_name = "M.wasm")]
    module: Option<PathBuf>,
    /// The report's format.
    #[arg(long, value_enum, default_value = "json")]
    format: RunFormat,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct UpstreamArgs {
    /// The port on 127.0.0.1.
    #[arg(long)]
    port: u16,
}

/// A failure and its exit status.
struct Fail(u8, String);

fn invalid(msg: impl Into<String>) -> Fail {
    Fail(2, msg.into())
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, Fail> {
    std::fs::read(path).map_err(|e| invalid(format!("{what} {}: {e}", path.display())))
}

fn load_plan(path: &std::path::Path) -> Result<Plan, Fail> {
    Plan::from_json(&read(path, "plan")?).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

fn print_report<T: serde::Serialize>(
    format: Format,
    report: &T,
    table: impl FnOnce(&T) -> String,
) -> Result<(), Fail> {
    match format {
        Format::Table => print!("{}", table(report)),
        Format::Json => {
            let s = serde_json::to_string_pretty(report).map_err(|e| Fail(1, e.to_string()))?;
            println!("{s}");
        }
    }
    Ok(())
}

fn cmd_run(a: RunArgs) -> Result<(), Fail> {
    let config = read(&a.config, "configuration")?;
    let traffic = traffic::load(&a.traffic).map_err(|e| invalid(e.to_string()))?;
    let mut opts = RunOptions::new(a.module, config, traffic);
    opts.plan = a.plan.as_deref().map(load_plan).transpose()?;
    opts.profile = match a.profile {
        HostProfile::Envoy => Profile::Envoy,
        HostProfile::Kong => Profile::Kong,
    };
    opts.workers = a.workers as usize;
    if let Some(f) = &a.ingest_faults {
        opts.faults = parse_faults(f).map_err(|e| invalid(format!("--ingest-faults: {e}")))?;
    }
    if let Some(s) = &a.snapshot {
        opts.snapshot = Some(read(s, "snapshot")?);
    }
    if let Some(d) = &a.drain {
        opts.drain_ms = parse_duration_ms(d)
            .ok_or_else(|| invalid(format!("--drain must be a duration like 10m, got {d:?}")))?;
    }
    if let Some(s) = &a.gateway_clock_skew {
        opts.gateway_skew_ms = parse_skew_ms(s).ok_or_else(|| {
            invalid(format!(
                "--gateway-clock-skew must be a duration like +6m or -90s, got {s:?}"
            ))
        })?;
    }
    if let Some(s) = a.seed {
        opts.seed = s;
    }
    match a.chunk {
        Some(Chunk::Every(c)) => opts.body_chunk = c,
        Some(Chunk::Random) => opts.random_chunks = Some(opts.seed),
        None => {}
    }
    // The module sees AFORO_* from this process, as Envoy passes host variables it is told to.
    opts.env = std::env::vars()
        .filter(|(k, _)| k.starts_with("AFORO_"))
        .collect();
    for kv in &a.envs {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| invalid(format!("--env must be KEY=VALUE, got {kv:?}")))?;
        opts.env.retain(|(x, _)| x != k);
        opts.env.push((k.to_string(), v.to_string()));
    }
    opts.echo_logs = a.log_module;
    opts.quiet = a.quiet;
    opts.record_events = !matches!(a.format, RunFormat::Table);
    opts.per_request = per_request(a.format, &opts.traffic);
    let config_path = a.config.display();
    let report = run(&opts).map_err(|e| match e {
        RunError::Vm(VmError::ConfigRefused(m)) => invalid(format!(
            "{config_path}: the module refused this configuration: {m}"
        )),
        RunError::Vm(VmError::Load(m)) => invalid(format!("cannot load the module: {m}")),
        other => Fail(1, other.to_string()),
    })?;
    print_run_report(a.format, report)
}

/// Whether a run lists every request: for JSON (which prints them), and for a table when some
/// request has no customer label (a HAR recording), so its customer comes from what it billed.
fn per_request(format: RunFormat, traffic: &traffic::Traffic) -> bool {
    !matches!(format, RunFormat::Table) || !traffic.all_labelled()
}

/// A replay's report: as a table, one JSON document, or JSON lines.
fn print_run_report(format: RunFormat, report: RunReport) -> Result<(), Fail> {
    match format {
        RunFormat::Jsonl => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            report
                .write_jsonl(&mut out)
                .and_then(|()| std::io::Write::flush(&mut out))
                .map_err(|e| Fail(1, format!("cannot write the report: {e}")))
        }
        RunFormat::Json => print_report(Format::Json, &report, |r| r.to_table()),
        RunFormat::Table => print_report(Format::Table, &report, |r| r.to_table()),
    }
}

fn cmd_rate(a: RateArgs) -> Result<(), Fail> {
    let plan = load_plan(&a.plan)?;
    let events_path = a.events.display().to_string();
    let text = String::from_utf8(read(&a.events, "events")?)
        .map_err(|_| invalid(format!("{events_path}: the file is not UTF-8")))?;
    let now = match &a.now {
        Some(n) => parse_rfc3339(n).map_err(|e| invalid(format!("--now: {e}")))?,
        None => now_wall(),
    };
    let customers = match &a.customers {
        None => Vec::new(),
        Some(p) => Terms::list_from_json(&read(p, "customers")?)
            .map_err(|e| invalid(format!("{}: {e}", p.display())))?,
    };
    let (period, only_in_period) = match &a.period {
        Some(text) => {
            let (s, e) = text.split_once('/').ok_or_else(|| {
                invalid(format!(
                    "--period: expected START/END in RFC 3339, e.g. 2026-11-01T00:00:00Z/2026-12-01T00:00:00Z, got {text:?}"
                ))
            })?;
            let start = parse_rfc3339(s).map_err(|e| invalid(format!("--period start: {e}")))?;
            let end = parse_rfc3339(e).map_err(|e| invalid(format!("--period end: {e}")))?;
            if end <= start {
                return Err(invalid("--period: END must be after START".to_string()));
            }
            (Some((start, end)), true)
        }
        None => (
            Some(QuotaWindow::calendar(Period::Month).current(now)),
            false,
        ),
    };
    let billing = Billing {
        customers,
        period,
        only_in_period,
    };
    let report = rate_for(plan, &events_path, &text, now, &billing).map_err(invalid)?;
    print_report(a.format, &report, |r| r.to_table())
}

fn now_wall() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_unix_nanos(d.as_nanos() as i64)
}

fn cmd_send(a: SendArgs) -> Result<(), Fail> {
    let traffic = traffic::load(&a.traffic).map_err(|e| invalid(e.to_string()))?;
    let report = send::send(&a.target, &traffic, a.concurrency as usize).map_err(|e| Fail(1, e))?;
    print_report(a.format, &report, |r| r.to_table())
}

/// Serves the demo API (JSON answers with LLM-style token usage) until the process is stopped.
fn cmd_upstream(a: UpstreamArgs) -> Result<(), Fail> {
    let up = aforo_host_tests::servers::Upstream::start_on(a.port)
        .map_err(|e| Fail(1, format!("cannot listen on 127.0.0.1:{}: {e}", a.port)))?;
    eprintln!("demo upstream listening on 127.0.0.1:{}", up.port());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn cmd_scenario(a: ScenarioArgs) -> Result<(), Fail> {
    let module = match a.module {
        Some(m) => m,
        None => aforo_host_tests::artifacts::filter_module().map_err(invalid)?,
    };
    let dir = a.dir.display().to_string();
    let mut sc = aforo_host_tests::replay::scenario::load(&a.dir, &module).map_err(invalid)?;
    sc.options.quiet = a.quiet;
    sc.options.record_events |= !matches!(a.format, RunFormat::Table);
    sc.options.per_request = per_request(a.format, &sc.options.traffic);
    let report = run(&sc.options).map_err(|e| Fail(1, e.to_string()))?;
    if let RunFormat::Table = a.format {
        println!("Scenario {dir}: {}\n", sc.description);
    }
    let diffs = aforo_host_tests::replay::scenario::check(&report, &sc.expected);
    print_run_report(a.format, report)?;
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
    // clap prints --help and --version (exit 0) and usage errors naming the flag (exit 2).
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cmd_run(a),
        Command::Rate(a) => cmd_rate(a),
        Command::Send(a) => cmd_send(a),
        Command::Scenario(a) => cmd_scenario(a),
        Command::Upstream(a) => cmd_upstream(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("aforo-replay: {msg}");
            ExitCode::from(code)
        }
    }
}

/// How `--chunk` cuts bodies.
#[derive(Clone, Copy, Debug)]
enum Chunk {
    /// Chunks of this many bytes.
    Every(usize),
    /// Random places.
    Random,
}

fn parse_chunk(s: &str) -> Result<Chunk, String> {
    if s == "random" {
        return Ok(Chunk::Random);
    }
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(Chunk::Every(n)),
        _ => Err(format!(
            "must be a number of bytes (1 or more) or random, got {s:?}"
        )),
    }
}
