//! Quota leases through the agent (`quota_leases`): this worker is a lease node (the core's
//! `NodeLeases`), and spends units from slices the agent takes for it from the shared store.
//! A request that finds no units held pauses while one call asks the agent (`/v1/leases`);
//! when the answer comes, the host runs the decision again. Unspent units go back on the tick.
//!
//! The agent unreachable (no answer, an error): units held are still spent; past them, for a
//! second, requests decide as without leases under `failure_mode` (open: this node's counters
//! and the snapshot; closed: 503), then the agent is asked again.

use super::{CallKind, Gateway};
use crate::config::Target;
use crate::entitlement::{
    grant_from_json, CounterBackend, FailureMode, LeaseAsk, LeasePolicy, Leased, ModifyFn,
    NodeLeases, Renewal, Take,
};
use crate::environment::{ApiKey, Environment};
use crate::host::{CallResponse, Host, LogLevel, OutboundRequest, SharedSetError};
use crate::time::Timestamp;
use std::collections::HashMap;

/// Longest wait for the agent's answer to an ask (the request waits on it).
const ASK_TIMEOUT_MS: u64 = 1_000;

/// How long requests decide without leases after an ask got no answer.
const UNREACHABLE_NS: i64 = 1_000_000_000;

/// How long a counter the agent refused to lease is counted without leases.
const REFUSED_NS: i64 = 30_000_000_000;

/// This worker's leases and the asks out.
#[derive(Debug)]
pub(crate) struct GatewayLeases {
    book: NodeLeases,
    target: Target,
    /// Asks out, by call token: the counter, the renewal sent and when.
    asks: HashMap<u32, (String, Renewal, Timestamp)>,
    /// Until when the agent counts as unreachable (no answer, a 5xx, or it does not lease):
    /// requests that would ask decide under the failure mode meanwhile.
    unreachable_until: Option<Timestamp>,
    /// Counters the agent refused to lease (a 4xx: not in its catalog, a window it does not
    /// serve), and until when they are counted here as without leases.
    refused: HashMap<String, Timestamp>,
    /// Asks that got no answer (logged at powers of two).
    failures: u64,
}

impl GatewayLeases {
    pub(crate) fn new(target: Target) -> Self {
        GatewayLeases {
            // The store's side (the agent's max_overshoot) decides the bound; a node's book
            // uses the lease times the agent uses.
            book: NodeLeases::new(LeasePolicy::STRICT),
            target,
            asks: HashMap::new(),
            unreachable_until: None,
            refused: HashMap::new(),
            failures: 0,
        }
    }
}

/// What taking from the leases needs before the request can be decided.
#[derive(Debug, Default)]
pub(crate) enum LeaseNeed {
    /// Nothing: decided.
    #[default]
    None,
    /// Ask the agent for `key` with this renewal, then decide again.
    Ask(String, Renewal),
    /// The agent did not answer a moment ago and the failure mode is closed: 503.
    Unreachable,
}

/// The counter store a decision runs on, with leases for quota reservations.
pub(crate) struct LeasingCounters<'a> {
    pub(crate) inner: &'a mut dyn CounterBackend,
    pub(crate) leases: &'a mut GatewayLeases,
    pub(crate) failure_mode: FailureMode,
    /// Whether the gateway has a key of each environment (its agent leases a counter only to
    /// a key of the counter's environment).
    pub(crate) keys: [bool; 2],
    pub(crate) need: LeaseNeed,
}

/// The environment of a quota counter key (`aforo:q:<env>:…`).
fn env_of(key: &str) -> Option<Environment> {
    let rest = key.strip_prefix("aforo:q:")?;
    Environment::from_wire(rest.split_once(':')?.0)
}

impl CounterBackend for LeasingCounters<'_> {
    fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.read(key)
    }
    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
        self.inner.write(key, value, cas)
    }
    fn warn(&self, message: &str) {
        self.inner.warn(message)
    }
    fn read_current(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.inner.read_current(key)
    }
    fn modify(&mut self, key: &str, f: &mut ModifyFn<'_>) -> Option<Result<(), SharedSetError>> {
        self.inner.modify(key, f)
    }
    fn take_leased(
        &mut self,
        key: &str,
        window: (Timestamp, Timestamp),
        quota: u64,
        cost: u64,
        now: Timestamp,
    ) -> Option<Leased> {
        let l = &mut *self.leases;
        if !env_of(key).is_some_and(|e| self.keys[e.index()])
            || l.refused.get(key).is_some_and(|t| now < *t)
        {
            // A partner in sandbox mode behind a gateway with no sandbox key, or a counter the
            // agent will not lease (logged): counted here, as without leases.
            return None;
        }
        Some(match l.book.take_or_ask(key, window, quota, cost, now) {
            Take::Admit => l.book.leased(key, true, window.1),
            Take::Refuse => l.book.leased(key, false, window.1),
            Take::Ask(_) if l.unreachable_until.is_some_and(|t| now < t) => {
                // What is held was spent above; the agent did not answer a moment ago, so no
                // ask now (what was left of the lease, fewer units than needed, is lost for
                // the window: under-admission).
                l.book.unanswered(key);
                if self.failure_mode == FailureMode::Open {
                    // This node's counters and the snapshot decide, as without leases.
                    return None;
                }
                self.need = LeaseNeed::Unreachable;
                return Some(Leased::Refused {
                    remaining: 0,
                    retry_at: now,
                });
            }
            Take::Ask(r) => {
                self.need = LeaseNeed::Ask(key.to_string(), r);
                // Refused for now: the admission gives back what it reserved, and the
                // decision runs again with the answer.
                l.book.leased(key, false, window.1)
            }
            Take::Wait => l.book.leased(key, false, window.1),
        })
    }
    fn give_leased(&mut self, key: &str, window_start: Timestamp, units: u64) {
        self.leases.book.refund(key, window_start, units);
    }
}

impl Gateway {
    /// Sends an ask for `key`; the token the answer comes back with, or `None` when the host
    /// refused the call (then the agent counts as unreachable for a moment).
    pub(crate) fn send_lease_ask(
        &mut self,
        host: &mut dyn Host,
        key: String,
        renewal: Renewal,
        now: Timestamp,
    ) -> Option<u32> {
        let api_key = env_of(&key).and_then(|e| self.config.key_for(e))?;
        let leases = self.leases.as_mut()?;
        let body = LeaseAsk {
            source: self.config.source.clone(),
            key: key.clone(),
            renewal: renewal.clone(),
        }
        .to_json();
        let request = lease_request(&leases.target, &self.config, api_key, body);
        match host.http_call(&request) {
            Ok(token) => {
                leases.asks.insert(token, (key, renewal, now));
                Some(token)
            }
            Err(why) => {
                leases.book.unanswered(&key);
                self.lease_unanswered(
                    host,
                    &key,
                    None,
                    &format!("cannot call {:?}: {why}", request.upstream),
                    now,
                );
                None
            }
        }
    }

    /// Applies the agent's answer to an ask; false when `token` is not an ask of this worker.
    /// The host then runs the paused request's decision again.
    pub fn on_lease_answer(
        &mut self,
        host: &mut dyn Host,
        token: u32,
        response: CallResponse,
    ) -> bool {
        let now = host.now();
        let Some(leases) = self.leases.as_mut() else {
            return false;
        };
        let Some((key, asked, _)) = leases.asks.remove(&token) else {
            return false;
        };
        let grant = match response.status {
            Some(200) => grant_from_json(&response.body),
            Some(s) => Err(format!(
                "answered {s}: {}",
                String::from_utf8_lossy(&response.body[..response.body.len().min(300)])
            )),
            None => Err("no answer (timeout, reset or no upstream)".to_string()),
        };
        match grant {
            Ok(g) => {
                leases.unreachable_until = None;
                if leases.book.granted(&key, &asked, g, now) {
                    // The decision runs again and takes the request's units itself.
                    leases
                        .book
                        .refund(&key, asked.window_start, asked.need.max(1));
                }
            }
            Err(why) => {
                leases.book.unanswered(&key);
                self.lease_unanswered(host, &key, response.status, &why, now);
            }
        }
        true
    }

    /// The request waiting on ask `token` went away before its answer: the host drops the
    /// answer with it, so the ask is forgotten now (whatever it was granted stays counted in the
    /// store until the lease closes there: under-admission for the window, never over).
    pub fn abandon_lease_ask(&mut self, token: u32) {
        if let Some(leases) = self.leases.as_mut() {
            if let Some((key, _, _)) = leases.asks.remove(&token) {
                leases.book.unanswered(&key);
            }
        }
    }

    /// An ask for `key` failed with `status` (none: no answer). A counter the agent refused
    /// (a 4xx other than 409) is counted here for 30 s; otherwise the agent counts as
    /// unreachable for a second, and requests that would ask decide under the failure mode.
    /// Logged at powers of two.
    fn lease_unanswered(
        &mut self,
        host: &mut dyn Host,
        key: &str,
        status: Option<u16>,
        why: &str,
        now: Timestamp,
    ) {
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        let refused = status.is_some_and(|s| (400..500).contains(&s) && s != 409);
        let then = if refused {
            leases
                .refused
                .insert(key.to_string(), now.plus_nanos(REFUSED_NS));
            "for 30 s this counter is counted here, as without leases (does the agent's catalog match the snapshot, and the clocks?)".to_string()
        } else {
            leases.unreachable_until = Some(now.plus_nanos(UNREACHABLE_NS));
            format!(
                "for 1 s requests that need a lease are decided under failure_mode={}",
                match self.config.failure_mode {
                    FailureMode::Open => "open",
                    FailureMode::Closed => "closed",
                }
            )
        };
        leases.failures += 1;
        if leases.failures.is_power_of_two() {
            host.log(
                LogLevel::Warn,
                &format!(
                    "aforo: quota lease ask to {}{} for {key} failed ({why}); {then} ({} failures so far)",
                    leases.target.upstream, leases.target.path, leases.failures
                ),
            );
        }
    }

    /// Gives back leases whose time is up (on the tick), or every lease (`all`: the VM stops).
    pub(crate) fn give_back_leases(&mut self, host: &mut dyn Host, now: Timestamp, all: bool) {
        let Some(leases) = self.leases.as_mut() else {
            return;
        };
        // An answer that never came (its request went away first, and the host dropped the
        // answer with it): the ask is forgotten; what it may have granted stays counted in
        // the store until the lease closes there (under-admission, never over).
        let lost: Vec<u32> = leases
            .asks
            .iter()
            .filter(|(_, (_, _, at))| now.millis_since(*at) > 2 * ASK_TIMEOUT_MS as i64)
            .map(|(t, _)| *t)
            .collect();
        for t in lost {
            if let Some((key, _, _)) = leases.asks.remove(&t) {
                leases.book.unanswered(&key);
            }
        }
        leases.refused.retain(|_, until| now < *until);
        let due = if all {
            leases.book.release_all()
        } else {
            leases.book.due(now)
        };
        for (key, g) in due {
            if now >= g.window_end {
                continue;
            }
            let Some(api_key) = env_of(&key).and_then(|e| self.config.key_for(e)) else {
                continue;
            };
            let body = LeaseAsk {
                source: self.config.source.clone(),
                key,
                renewal: Renewal {
                    window_start: g.window_start,
                    window_end: g.window_end,
                    quota: 0,
                    give_back: Some((g.lease, g.unspent)),
                    want: 0,
                    need: 0,
                },
            }
            .to_json();
            // The answer is not needed: a give-back that fails leaves the units counted for
            // the window (under-admission, never over).
            let request = lease_request(&leases.target, &self.config, api_key, body);
            if let Ok(token) = host.http_call(&request) {
                self.calls.insert(token, CallKind::LeaseBack);
            }
        }
    }

    /// Units this worker holds unspent (for tests).
    pub fn lease_units_held(&self) -> u64 {
        self.leases.as_ref().map_or(0, |l| l.book.held())
    }
}

/// The call to the agent: its lease endpoint, with the gateway's key of the counter's
/// environment.
fn lease_request(
    target: &Target,
    config: &crate::config::Config,
    api_key: &ApiKey,
    body: Vec<u8>,
) -> OutboundRequest {
    let mut headers = super::outbound::base_headers(target, "POST", target.path.clone());
    headers.push(("content-type".to_string(), "application/json".to_string()));
    headers.push((
        "authorization".to_string(),
        format!("Bearer {}", api_key.expose_secret()),
    ));
    OutboundRequest {
        upstream: target.upstream.clone(),
        headers,
        body,
        timeout_ms: config.delivery.request_timeout_ms.min(ASK_TIMEOUT_MS),
    }
}
