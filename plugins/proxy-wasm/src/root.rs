//! The root context: configuration, ticks, and answers to background calls.

use crate::abi::{self, Buffer, HeaderMap};
use crate::host::{self, ProxyHost};
use crate::http::Http;
use crate::metrics::MetricIds;
use aforo_core::config::Config;
use aforo_core::gateway::Gateway;
use aforo_core::host::{CallResponse, LogLevel};
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;

/// The engine shared by the root context and its HTTP contexts (one VM is single-threaded).
pub type Shared = Rc<RefCell<Gateway>>;

/// One per plugin configuration per worker.
#[derive(Default)]
pub struct Root {
    gateway: Option<Shared>,
    metrics: Rc<MetricIds>,
    /// The tick period last set (short until the first snapshot sync is sent).
    tick_ms: u64,
    /// Whether the host is Envoy (it answers its node's id in a root context): Envoy takes a
    /// new tick period and calls from `on_done`; Kong traps a module that does either.
    envoy: bool,
}

/// A random 64-bit seed from the host (WASI `random_get` behind `RandomState`).
fn seed() -> u64 {
    RandomState::new().hash_one(host::now().unix_nanos())
}

impl Root {
    /// The answer to a call the root sent (a snapshot sync or an event batch).
    pub fn on_call_response(&mut self, token: u32, body_size: usize) {
        let Some(gw) = &self.gateway else { return };
        let response = call_response(body_size);
        let mut h = ProxyHost::new(&self.metrics);
        if let Ok(mut g) = gw.try_borrow_mut() {
            g.on_call_response(&mut h, token, response);
        }
    }

    /// The VM is going away.
    pub fn on_done(&mut self) -> bool {
        // Last chance before the VM goes away: send what is buffered (best effort; an answer
        // may not arrive). Events still inside a VM that dies are the documented loss window.
        // Only Envoy: Kong never calls a root's on_done (only a request's, in its log step),
        // and traps a call from any step but request headers/body, tick and a call's answer.
        if !self.envoy {
            return true;
        }
        if let Some(gw) = &self.gateway {
            let mut h = ProxyHost::new(&self.metrics);
            if let Ok(mut g) = gw.try_borrow_mut() {
                let c = g.counters();
                if c.buffered > 0 {
                    host::log(
                        LogLevel::Warn,
                        &format!(
                            "aforo: shutting down with {} events buffered; flushing",
                            c.buffered
                        ),
                    );
                }
                g.flush_now(&mut h);
            }
        }
        true
    }

    /// Reads and checks the plugin's configuration; `false` refuses it.
    pub fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = abi::buffer(Buffer::PluginConfiguration, 0, usize::MAX);
        // Without `source` (configuration or AFORO_SOURCE), the node is named by Envoy's node id
        // (`--service-node`, set per pod by Istio): nodes sharing quotas must differ.
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .or_else(|| (name == "AFORO_SOURCE").then(node_id).flatten())
        };
        let config = match Config::parse(&bytes, &env) {
            Ok(c) => c,
            Err(e) => {
                host::log(
                    LogLevel::Error,
                    &format!("aforo: invalid configuration: {e} — the plugin refuses to start (see docs/configuration.md)"),
                );
                return false;
            }
        };
        self.metrics = Rc::new(MetricIds::define());
        host::log(
            LogLevel::Info,
            &format!("aforo: configured: {}", config.summary()),
        );
        let gateway = Gateway::new(config, seed());
        self.envoy = host_is_envoy();
        let tick = if self.envoy {
            gateway.tick_period_ms()
        } else {
            gateway.usual_tick_period_ms()
        };
        host::log(
            LogLevel::Info,
            &format!(
                "aforo: ticking every {tick} ms{}",
                if self.envoy {
                    ""
                } else {
                    " (this host takes one tick period)"
                }
            ),
        );
        self.gateway = Some(Rc::new(RefCell::new(gateway)));
        self.tick_ms = tick;
        abi::set_tick_period(tick);
        true
    }

    /// The tick: flushes, syncs, publishes metrics.
    pub fn on_tick(&mut self) {
        let Some(gw) = &self.gateway else { return };
        let mut h = ProxyHost::new(&self.metrics);
        if let Ok(mut g) = gw.try_borrow_mut() {
            g.on_tick(&mut h);
            let period = g.tick_period_ms();
            if period != self.tick_ms && self.envoy {
                self.tick_ms = period;
                abi::set_tick_period(period);
            }
        }
    }

    /// The context of a new request under this configuration.
    pub fn new_http(&self) -> Http {
        Http::new(self.gateway.clone(), self.metrics.clone())
    }
}

/// The answer to an outbound call, read in the callback that delivers it. A call that failed
/// (timeout, reset) has no `:status`.
pub fn call_response(body_size: usize) -> CallResponse {
    // Values as bytes, made text here: an upstream's Latin-1 header must not trap.
    let headers = abi::header_pairs(HeaderMap::CallResponse)
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect::<Vec<_>>();
    let status = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| v.parse::<u16>().ok());
    let body = if body_size > 0 {
        abi::buffer(Buffer::CallResponseBody, 0, body_size)
    } else {
        Vec::new()
    };
    CallResponse {
        status,
        headers,
        body,
    }
}

/// Whether the host is Envoy, which takes more than one tick period and calls from `on_done`.
/// Envoy answers its node's id in a root
/// context (`xds.node.id` in 1.40, `node.id` before; empty without `--service-node`); Kong
/// (ngx_wasm_module, every commit Kong 3.4–3.9 pins) has neither and traps a second
/// `proxy_set_tick_period_milliseconds` ("tick_period already set"). Unknown hosts keep one.
fn host_is_envoy() -> bool {
    abi::property_answered(&["xds", "node", "id"]) || abi::property_answered(&["node", "id"])
}

/// Envoy's node id as a source name: characters outside `[A-Za-z0-9_.:-]` become `_` (Istio's
/// `sidecar~10.0.0.1~pod.ns~…`), at most 128 of them; none when the host has no node id.
fn node_id() -> Option<String> {
    // Envoy: `node` (Wasm attribute) and `xds.node` (newer name); Kong has none.
    let paths: [&[&str]; 2] = [&["node", "id"], &["xds", "node", "id"]];
    let bytes = paths
        .into_iter()
        .find_map(|path| abi::property(path).filter(|b| !b.is_empty()))?;
    aforo_core::config::source_name(&String::from_utf8_lossy(&bytes))
}
