//! libaforo_envoy.so: the aforo-gateway core as an Envoy dynamic module
//! (`envoy.filters.http.dynamic_modules`), for Envoy 1.40.
//!
//! The same configuration JSON and the same rules as the Wasm filter, without the Wasm
//! boundary: one engine per Envoy worker, quota counters in a process-wide store, the snapshot
//! sync and the ingest flush started from Envoy's main thread. All `unsafe` code is in `abi`.

mod abi;
mod counter_store;
mod filter;
mod handoff;
mod host;
mod metrics;
mod module;
mod ticker;

use aforo_core::config::Config as FilterConfig;
use aforo_core::host::LogLevel;
use std::sync::Arc;

/// Parses a configuration Envoy passed and starts its module; `None` (Envoy then refuses the
/// configuration) with the reason in Envoy's log.
fn configure(
    config: abi::Config,
    name: &[u8],
    bytes: &[u8],
    workers: usize,
    validating: bool,
) -> Option<Arc<module::Module>> {
    let env = |var: &str| {
        std::env::var(var)
            .ok()
            .or_else(|| (var == "AFORO_SOURCE").then(host_name).flatten())
    };
    let parsed = match FilterConfig::parse(bytes, &env).and_then(|c| match c.quota_leases {
        // A paused request waiting for the agent needs a per-request callout, which this
        // module does not make yet.
        Some(_) => Err(aforo_core::strict_json::FieldError::new(
            "quota_leases",
            "is not available in the native module yet: use the Wasm filter for quota leases",
        )),
        None => Ok(c),
    }) {
        Ok(c) => c,
        Err(e) => {
            host::write_log(
                LogLevel::Error,
                &format!(
                    "aforo: invalid configuration of filter {:?}: {e} — the filter refuses to start (see docs/configuration.md)",
                    String::from_utf8_lossy(name)
                ),
            );
            return None;
        }
    };
    host::write_log(
        LogLevel::Info,
        &format!(
            "aforo: configured ({} engines, one per worker): {}",
            workers.max(1),
            parsed.summary()
        ),
    );
    Some(module::Module::start(config, parsed, workers, !validating))
}

/// This machine's host name as a source name (nodes sharing quotas must differ), when
/// neither `source` nor `AFORO_SOURCE` names it.
fn host_name() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    aforo_core::config::source_name(&raw)
}
