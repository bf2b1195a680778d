//! The request phase: identify, match the route, decide locally, reserve quota. No network.

use super::exchange::Exchange;
use super::leases::{LeaseNeed, LeasingCounters};
use super::Gateway;
use crate::config::{EnforcementMode, EntitlementSource, Unmatched};
use crate::entitlement::{
    admit, deny_reply, release, AccessRequest, Credential, Deny, DenyCode, FailureMode, Freshness,
    HostCounters, Identity, Reservation,
};
use crate::host::{Host, LogLevel, Metric};
use crate::keys::{client_ip, parse_peer};
use crate::time::Timestamp;

/// Lazy access to the request, so only what a decision needs is read from the host.
pub trait RequestView {
    /// A request header by lower-case name (`:method` and `:path` included).
    fn header(&self, name: &str) -> Option<String>;
    /// The downstream peer address (`ip:port` or `ip`).
    fn peer_address(&self) -> Option<String>;
    /// Whether the host is nginx (Kong's ngx_wasm_module, which answers `ngx.*` properties).
    /// Asked once, on the first request: those properties exist only inside a request.
    fn runs_in_nginx(&self) -> bool {
        false
    }
}

/// What the host must do with the request.
#[derive(Debug)]
pub enum RequestVerdict {
    /// Forward it; meter it at the end when an exchange is given.
    Continue {
        /// State to carry to the response phase.
        exchange: Option<Box<Exchange>>,
        /// Headers to add to the upstream request (shadow-mode tags).
        upstream_headers: Vec<(String, String)>,
    },
    /// A local reply was sent; stop.
    Denied(u16),
    /// Pause the request: it waits for the agent's answer to a quota lease ask (`quota_leases`),
    /// which comes back with this token. Give the answer to `Gateway::on_lease_answer`, then
    /// call `on_request` again for the same request.
    Asking(u32),
}

impl Gateway {
    /// Decides a request. On denial the local reply is sent through the host. A request that
    /// will not be metered (refused, or on no route) reads its share of a loading snapshot
    /// here; a metered one when it ends (`finish`).
    pub fn on_request(&mut self, host: &mut dyn Host, req: &dyn RequestView) -> RequestVerdict {
        self.requests_since_tick = self.requests_since_tick.saturating_add(1);
        self.served_requests = true;
        self.finish_overdue_snapshot(host);
        let verdict = self.decide(host, req);
        if matches!(
            verdict,
            RequestVerdict::Denied(_) | RequestVerdict::Continue { exchange: None, .. }
        ) {
            self.load_snapshot_share(host);
        }
        verdict
    }

    fn decide(&mut self, host: &mut dyn Host, req: &dyn RequestView) -> RequestVerdict {
        if !self.host_checked {
            self.check_host(host, req);
        }
        let now = host.now();
        let method = req.header(":method").unwrap_or_default();
        let path = req.header(":path").unwrap_or_default();
        let Some(route_index) = self
            .config
            .routes
            .iter()
            .position(|r| r.matches(&method, &path))
        else {
            return match self.config.unmatched {
                Unmatched::Allow => RequestVerdict::Continue {
                    exchange: None,
                    upstream_headers: Vec::new(),
                },
                Unmatched::Deny => {
                    let deny = Deny {
                        code: DenyCode::NoAccess,
                        message: "no route of this gateway matches the request".into(),
                        allowance: None,
                        retry_after_secs: None,
                    };
                    self.refuse(host, &deny, now, None)
                }
            };
        };
        let consumer_key = self
            .config
            .consumer_key_header
            .as_deref()
            .and_then(|h| req.header(h))
            .filter(|v| !v.is_empty());
        let customer = self
            .config
            .customer_header
            .as_deref()
            .and_then(|h| req.header(h))
            .filter(|v| !v.is_empty());
        let credential = match (&consumer_key, &customer) {
            (Some(k), _) => Credential::HashedKey(self.key_hashes.hash(k)),
            (None, Some(c)) => Credential::Customer(c),
            (None, None) => Credential::Missing,
        };
        let request_id = self
            .config
            .request_id_header
            .as_deref()
            .and_then(|h| req.header(h))
            .filter(|v| !v.is_empty());
        let route = &self.config.routes[route_index];
        let cost = route.first().and_then(|m| m.quantity.constant_units());
        let default_env = self.config.environment();

        let fresh = self.snapshot_freshness(now) == Freshness::Fresh;
        let source_none = matches!(self.config.entitlements, EntitlementSource::None);
        let mut exchange = Exchange::new(route_index, now, request_id, method, path);

        // Metering only (no entitlement source): a trusted customer id is enough.
        if source_none || (!fresh && self.config.failure_mode == FailureMode::Open) {
            if !fresh && !source_none {
                self.count_decision(Metric::DecisionsFailOpen);
            }
            let customer_id = match (credential, self.snapshot.snapshot.as_ref()) {
                (Credential::Customer(c), _) => Some(c.to_string()),
                (Credential::HashedKey(h), Some(s)) => s
                    .keys
                    .authenticate_hash(&h, now)
                    .ok()
                    .map(|k| k.customer_id.clone()),
                _ => None,
            };
            return match customer_id {
                Some(c) => {
                    let env = self.environment_of(&c);
                    exchange.identify(c, env, None);
                    self.count_decision(Metric::DecisionsAllowed);
                    self.continue_with(exchange, Vec::new())
                }
                None if source_none => {
                    let deny = Deny {
                        code: DenyCode::InvalidKey,
                        message: "a customer could not be identified for metering".into(),
                        allowance: None,
                        retry_after_secs: None,
                    };
                    self.refuse(host, &deny, now, None)
                }
                None => {
                    self.count_decision(Metric::DecisionsAllowed);
                    match (credential, self.snapshot.snapshot.is_none()) {
                        // Never synced yet: meter it once the first snapshot resolves the key.
                        (Credential::HashedKey(h), true) => {
                            exchange.pending_key = Some(h);
                            self.continue_with(exchange, Vec::new())
                        }
                        _ => {
                            // Fail open without an identity: served, but not attributable.
                            host.log(LogLevel::Warn, "aforo: request served without a fresh snapshot and without a resolvable customer; not metered");
                            RequestVerdict::Continue {
                                exchange: None,
                                upstream_headers: Vec::new(),
                            }
                        }
                    }
                }
            };
        }
        if !fresh {
            let retry = self.config.sync_interval_ms.div_ceil(1000);
            return self.refuse(host, &Deny::unavailable(retry), now, None);
        }

        let Some(snapshot) = self.snapshot.snapshot.as_ref() else {
            return RequestVerdict::Continue {
                exchange: None,
                upstream_headers: Vec::new(),
            };
        };
        // The client address costs host calls: read it only when an allowlist needs it.
        let ip = if snapshot.uses_ip_allowlists {
            req.peer_address().and_then(|p| parse_peer(&p)).map(|p| {
                let xff = req.header("x-forwarded-for");
                client_ip(p, xff.as_deref(), &self.config.trusted_proxies)
            })
        } else {
            None
        };
        let access = AccessRequest {
            credential,
            feature: &self.config.routes[route_index].feature,
            client_ip: ip,
            cost,
            default_environment: default_env,
        };
        let mut shared = HostCounters(host);
        let mut need = LeaseNeed::None;
        let decided = match self.leases.as_mut() {
            None => admit(snapshot, &access, now, &mut self.slices.over(&mut shared)),
            Some(leases) => {
                let mut over = self.slices.over(&mut shared);
                let mut counters = LeasingCounters {
                    inner: &mut over,
                    leases,
                    failure_mode: self.config.failure_mode,
                    keys: keys_of(&self.config),
                    need: LeaseNeed::None,
                };
                let d = admit(snapshot, &access, now, &mut counters);
                need = std::mem::take(&mut counters.need);
                d
            }
        };
        match need {
            LeaseNeed::None => {}
            LeaseNeed::Ask(key, renewal) => {
                return match self.send_lease_ask(host, key, renewal, now) {
                    Some(token) => RequestVerdict::Asking(token),
                    // The agent counts as unreachable for a moment: decided without leases.
                    None => self.on_request(host, req),
                };
            }
            LeaseNeed::Unreachable => {
                // In shadow mode the request is served: meter it as its customer's.
                let shadow = decided.err().and_then(|r| r.identity).map(|i| {
                    exchange.identify(i.customer_id, i.environment, i.key_id);
                    exchange
                });
                return self.refuse(host, &Deny::unavailable(1), now, shadow);
            }
        }
        match decided {
            Ok(a) => {
                let Identity {
                    customer_id,
                    environment,
                    key_id,
                } = a.identity;
                exchange.identify(customer_id, environment, key_id);
                // Only what becomes `RateLimit-*` headers reads it (the Lambda authorizer's
                // context too): none, when clients are not to see a quota's state.
                exchange.allowance = a.allowance.filter(|_| self.config.rate_limit_headers);
                exchange.reservations = a.reservations;
                exchange.usage_counters = a.usage_counters;
                exchange.leased = a.leased;
                exchange.counts_after_response = cost.is_none();
                self.count_decision(Metric::DecisionsAllowed);
                self.continue_with(exchange, Vec::new())
            }
            Err(refusal) => {
                let shadow = refusal.identity.map(|i| {
                    exchange.identify(i.customer_id, i.environment, i.key_id);
                    exchange
                });
                self.refuse(host, &refusal.deny, now, shadow)
            }
        }
    }

    fn continue_with(
        &self,
        exchange: Exchange,
        upstream_headers: Vec<(String, String)>,
    ) -> RequestVerdict {
        RequestVerdict::Continue {
            exchange: Some(Box::new(exchange)),
            upstream_headers,
        }
    }

    /// Sends the denial (or, in shadow mode, tags the request and lets it through metered).
    fn refuse(
        &mut self,
        host: &mut dyn Host,
        deny: &Deny,
        now: Timestamp,
        shadow: Option<Exchange>,
    ) -> RequestVerdict {
        if self.config.mode == EnforcementMode::Shadow {
            self.count_decision(Metric::DecisionsShadowDenied);
            self.count_decision(Metric::DecisionsAllowed);
            return RequestVerdict::Continue {
                exchange: shadow.filter(Exchange::is_identified).map(Box::new),
                upstream_headers: vec![(
                    "x-aforo-would-deny".to_string(),
                    deny.code.as_str().to_string(),
                )],
            };
        }
        let metric = match deny.code.status() {
            401 => Metric::DecisionsDenied401,
            429 => Metric::DecisionsDenied429,
            503 => Metric::DecisionsDenied503,
            _ => Metric::DecisionsDenied403,
        };
        self.count_decision(metric);
        host.send_local_reply(&deny_reply(deny, now, self.config.rate_limit_headers));
        RequestVerdict::Denied(deny.code.status())
    }

    /// Gives reserved units back (the response was not billable).
    pub(crate) fn refund(&mut self, host: &mut dyn Host, reservations: &[Reservation]) {
        let mut shared = HostCounters(host);
        let mut over = self.slices.over(&mut shared);
        match self.leases.as_mut() {
            None => release(&mut over, reservations),
            Some(leases) => release(
                &mut LeasingCounters {
                    inner: &mut over,
                    leases,
                    failure_mode: self.config.failure_mode,
                    keys: keys_of(&self.config),
                    need: LeaseNeed::None,
                },
                reservations,
            ),
        }
    }
}

/// Which environments the gateway has a key of (`LeasingCounters::keys`).
fn keys_of(config: &crate::config::Config) -> [bool; 2] {
    let mut keys = [false; 2];
    for e in crate::environment::Environment::ALL {
        keys[e.index()] = config.key_for(e).is_some();
    }
    keys
}
