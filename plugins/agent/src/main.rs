//! aforo-agent: the sidecar for gateways that cannot run proxy-wasm filters (Apigee, Azure API
//! Management, Kong 3.10+), the local ingest proxy-wasm filters can send to, and the sandbox
//! ledger (events kept, deduplicated and rated locally when no upstream is configured).

mod app;
mod catalog;
mod clock;
mod component;
mod config;
mod counters;
mod forwarder;
mod histogram;
mod http;
mod ingest;
mod keys;
mod metrics;
mod node_id;
mod notifier;
mod reconcile;
mod redis_state;
mod replay;
mod retention;
mod store;
mod usage;
mod webhooks;

use aforo_core::Environment;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, RwLock};

/// The command line: `--config FILE` and a `--<option> VALUE` for every agent option (flags win
/// over the file, the file over `AFORO_*` variables).
fn command() -> clap::Command {
    let mut cmd = clap::Command::new("aforo-agent")
        .version(env!("CARGO_PKG_VERSION"))
        .about("The sidecar for gateways without proxy-wasm (Apigee, Azure APIM, Kong 3.10+), the local ingest proxy-wasm filters can send to, and the sandbox ledger")
        .after_help("Every option also reads its AFORO_* environment variable; docs/agent.md has the table.")
        .arg(
            clap::Arg::new("config")
                .long("config")
                .value_name("FILE")
                .help("the agent configuration (JSON)"),
        );
    for o in config::AGENT_OPTIONS {
        cmd = cmd.arg(
            clap::Arg::new(o.name)
                .long(o.name.replace('_', "-"))
                .value_name("VALUE")
                .help(format!(
                    "{} [env: {}] [default: {}]",
                    o.doc,
                    o.env.unwrap_or_default(),
                    o.default.to_doc()
                )),
        );
    }
    cmd
}

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("aforo-agent: {msg}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    // clap prints --help and --version (exit 0) and usage errors naming the flag (exit 2).
    let matches = command().get_matches();
    let file = match matches.get_one::<String>("config") {
        None => None,
        Some(path) => match std::fs::read(path) {
            Ok(b) => Some(b),
            Err(e) => return fail(2, format!("--config {path}: {e}")),
        },
    };
    let flags: Vec<(String, String)> = config::AGENT_OPTIONS
        .iter()
        .filter_map(|o| {
            matches
                .get_one::<String>(o.name)
                .map(|v| (format!("--{}", o.name.replace('_', "-")), v.clone()))
        })
        .collect();
    let config = match config::parse(file.as_deref(), &|k| std::env::var(k).ok(), &flags) {
        Ok(c) => c,
        Err(e) => return fail(2, format!("invalid configuration: {e}")),
    };
    let catalog = match &config.catalog {
        None => catalog::Catalog::empty(),
        Some(p) => match catalog::Catalog::load(p) {
            Ok(c) => c,
            Err(e) => return fail(2, format!("invalid catalog: {e}")),
        },
    };
    let component_path = match config.component.clone().or_else(component::default_component_path) {
        Some(p) => p,
        None => return fail(2, "aforo_policy.wasm not found next to the binary: set --component (build it with: cargo build -p aforo-wasi --target wasm32-wasip2 --profile wasm-release)"),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(serve(config, catalog, component_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, e),
    }
}

async fn serve(
    config: config::AgentConfig,
    catalog: catalog::Catalog,
    component_path: std::path::PathBuf,
) -> Result<(), String> {
    let catalog = Arc::new(RwLock::new(catalog));
    let clock: clock::SharedClock = Arc::new(clock::SystemClock);
    let backend = match &config.state {
        config::StateBackend::Embedded => {
            usage::Backend::Embedded(Arc::new(counters::LocalCounters::default()))
        }
        config::StateBackend::Redis {
            url,
            prefix,
            timeout_ms,
            ca_file,
            max_overshoot,
            cluster,
            wait_replicas,
            ..
        } => {
            if *cluster {
                catalog
                    .read()
                    .map_err(|_| "catalog lock poisoned".to_string())?
                    .check_cluster_names()?;
            }
            let node = node_id::load_or_create(&config.data_dir, config.node_id.as_deref())?;
            let link = Arc::new(redis_state::RedisLink::new(
                url,
                ca_file.as_deref(),
                prefix,
                std::time::Duration::from_millis(*timeout_ms),
                &node,
                *cluster,
                *wait_replicas,
            )?);
            eprintln!(
                "aforo-agent: shared state in Redis at {} (prefix {prefix:?}, node {node})",
                link.display
            );
            let leases = max_overshoot.map(|budget| {
                eprintln!(
                    "aforo-agent: reservations taken from quota leases (max_overshoot {budget} per window across every agent)"
                );
                redis_state::leases::RedisLeases::new(
                    link.clone(),
                    aforo_core::entitlement::LeasePolicy {
                        max_overshoot: budget,
                        ..aforo_core::entitlement::LeasePolicy::STRICT
                    },
                    // Another request's ask: at most two round trips at the timeout.
                    std::time::Duration::from_millis(timeout_ms.saturating_mul(2)),
                )
            });
            let counters = Arc::new(redis_state::counters::RedisCounters::new(
                link.clone(),
                clock.clone(),
                leases,
            ));
            redis_state::leases::start(counters.clone(), clock.clone());
            usage::Backend::Redis { counters, link }
        }
    };
    let shared = matches!(backend, usage::Backend::Redis { .. });
    let usage = Arc::new(usage::Usage::new(catalog.clone(), backend));
    let (u, c) = (usage.clone(), clock.clone());
    let on_stored: store::OnStored = Arc::new(move |env, events| u.record(env, events, c.now()));
    let stores = store::Stores::open(&config.data_dir, &Environment::ALL, shared, on_stored)
        .map_err(|e| e.to_string())?;
    let t = clock.now();
    for env in Environment::ALL {
        // Counters of the current windows, from what is stored (at most a year back).
        let since = t.plus_nanos(-366 * aforo_core::time::NANOS_PER_DAY);
        let events = stores
            .events_between(
                env,
                since,
                t.plus_nanos(aforo_core::time::NANOS_PER_DAY),
                None,
            )
            .map_err(|e| e.to_string())?;
        usage.rebuild(env, &events, t);
    }
    let policy = component::PolicyHost::load(
        &component_path,
        config.pool_size,
        config.fuel_per_call,
        deadline_ticks(&config.state),
        usage.counters.clone(),
    )
    .map_err(|e| e.to_string())?;
    let wake = Arc::new((Mutex::new(false), Condvar::new()));
    let forward_wake = config.upstream.as_ref().map(|_| wake.clone());
    let app = Arc::new(app::App::new(
        config,
        stores,
        usage,
        catalog,
        policy,
        clock,
        forward_wake,
    ));
    app.refresh_policy_snapshot()?;
    retention::start(app.clone())?;
    webhooks::start(app.clone())?;
    forwarder::start(app.clone(), wake);
    reconcile::start(app.clone());
    let listener = tokio::net::TcpListener::bind(app.config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", app.config.listen))?;
    let mode = match &app.config.upstream {
        None => "local ledger (no upstream)".to_string(),
        Some(u) => format!("forwarding to {}", u.endpoint.to_url()),
    };
    let envs: Vec<&str> = app.config.environments.iter().map(|e| e.as_str()).collect();
    eprintln!(
        "aforo-agent: listening on {} — serving {} — {mode} — data in {}",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        envs.join(" and "),
        app.config.data_dir.display()
    );
    let at = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if http::CONSOLE_BUILT {
        eprintln!("aforo-agent: console at http://{at}/console/ (sign in with an environment's key; changes need the admin key)");
    } else {
        eprintln!(
            "aforo-agent: this build has no console (Node was not run): scripts/setup.sh builds it"
        );
    }
    if app.config.api_keys.is_empty() {
        eprintln!("aforo-agent: no api_keys configured: any well-formed key of a served environment is accepted");
    }
    let served = axum::serve(listener, http::router(app.clone()))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| e.to_string());
    if let Some(l) = app.usage.leases() {
        // What this agent holds goes back, so the other agents can use it this window.
        tokio::task::block_in_place(|| l.give_back_all());
    }
    served
}

/// A component call's deadline in 10 ms epochs: 1 s of computing, plus, with Redis, room for
/// the round trips of one decision (a rate limit and a quota, each read then written, and a
/// reconnect) at the configured timeout, so a slow Redis falls back instead of trapping. With
/// quota leases, each of two leased quotas (a feature's, the daily credits') may wait for
/// another request's ask (2 timeouts), ask (a timeout and its WAIT) and fall back (2 more).
fn deadline_ticks(state: &config::StateBackend) -> u64 {
    match state {
        config::StateBackend::Embedded => 100,
        config::StateBackend::Redis {
            timeout_ms,
            max_overshoot,
            ..
        } => {
            let leases = if max_overshoot.is_some() { 12 } else { 0 };
            100 + (8 + leases) * timeout_ms.div_ceil(10)
        }
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    eprintln!("aforo-agent: shutting down");
}
