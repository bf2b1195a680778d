//! Gateway configuration: host JSON (an object, or a string holding one, as Kong passes it)
//! merged over `AFORO_*` environment variables, with the defaults of the product docs.
//! Explicit JSON wins over the environment; unknown fields are refused; every error names the
//! field (or the variable) and says what is allowed.

mod decode;
pub mod options;
mod route;
mod url;

pub use decode::{decode_host_config, HostConfig};
#[cfg(not(target_arch = "wasm32"))]
pub use options::reference_table;
pub use options::{option, Default, Kind, OptionSpec, FIELD_NAMES, OPTIONS};
pub use route::{
    is_name, path_has_prefix, BodyNeeds, BodySide, Meter, MethodMatch, OnMissing, Property,
    QuantitySource, Route, StatusRanges, MAX_METERS, MAX_PROPERTY_BYTES,
};
pub use url::{Endpoint, UrlError};

use crate::delivery::DeliveryConfig;
use crate::entitlement::{FailureMode, Snapshot};
use crate::environment::{ApiKey, Environment};
use crate::event::IngestFormat;
use crate::keys::Cidr;
use crate::option_table::{choice, flag, integer, text, Merged};
use crate::strict_json::{describe, index, FieldError, ObjReader};
use options as o;
use serde_json::Value;

/// The product stamped on events when neither the configuration nor the snapshot names one.
pub const DEFAULT_PRODUCT_ID: &str = "default";

/// Feature and metric of the built-in route, when no routes are configured.
pub const DEFAULT_METRIC: &str = "api_calls";

/// How outbound calls name their upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchMode {
    /// An Envoy cluster name (Envoy, Istio, MuleSoft Flex).
    Cluster,
    /// `host:port` taken from the URL (Kong's ngx_wasm_module).
    Authority,
}

/// Requests that no route matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmatched {
    /// Pass through, not metered.
    Allow,
    /// Refuse with 403 `no_access`.
    Deny,
}

/// Enforce decisions, or only observe them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnforcementMode {
    /// Deny what the rules deny.
    Enforce,
    /// Decide, count and tag, but let every request through.
    Shadow,
}

/// Where an HTTP call goes and how it is addressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The `upstream` argument of the outbound call.
    pub upstream: String,
    /// `:authority` header.
    pub authority: String,
    /// `:path` header.
    pub path: String,
    /// `:scheme` is https.
    pub tls: bool,
    /// `host:port` of the URL: the upstream under `DispatchMode::Authority`.
    pub address: String,
}

impl Target {
    fn new(endpoint: &Endpoint, path: String, dispatch: DispatchMode, cluster: &str) -> Self {
        let address = endpoint.host_port();
        Target {
            upstream: match dispatch {
                DispatchMode::Cluster => cluster.to_string(),
                DispatchMode::Authority => address.clone(),
            },
            authority: endpoint.authority(),
            path,
            tls: endpoint.tls,
            address,
        }
    }
}

/// Where entitlements come from.
#[derive(Clone, Debug)]
pub enum EntitlementSource {
    /// No snapshot: every identified customer is allowed and metered (metering only).
    None,
    /// A fixed snapshot from the configuration (never stale).
    Inline(Box<Snapshot>),
    /// Synced in the background from a URL.
    Sync(Target),
}

/// The whole, validated configuration of a gateway filter.
#[derive(Clone, Debug)]
pub struct Config {
    /// The key that sends events; its prefix decides the default environment.
    pub api_key: ApiKey,
    /// A sandbox key for partners in sandbox mode when `api_key` is live.
    pub sandbox_api_key: Option<ApiKey>,
    /// Product id stamped on events; `None`: the snapshot's, else [`DEFAULT_PRODUCT_ID`].
    pub product_id: Option<String>,
    /// Ingest target per environment (index by `Environment::index`).
    pub ingest: [Target; 2],
    /// Delivery limits and timings (shared by both environments).
    pub delivery: DeliveryConfig,
    /// Log every outbound event (keys redacted).
    pub debug: bool,
    /// How upstreams are named.
    pub dispatch: DispatchMode,
    /// Whether `dispatch` was set by the operator (otherwise the host may choose it).
    pub dispatch_explicit: bool,
    /// Header with a customer id set by a trusted auth layer.
    pub customer_header: Option<String>,
    /// Header with a consumer key.
    pub consumer_key_header: Option<String>,
    /// Header whose value event ids derive from, when the operator trusts it (the edge sets
    /// it; a client cannot): a retry of one request then counts once. `None` (the default):
    /// every served request is its own event, whatever the client sends.
    pub request_id_header: Option<String>,
    /// Proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Routes, first match wins.
    pub routes: Vec<Route>,
    /// Whether `routes` is the built-in one (none configured: every request is `api_calls`).
    pub routes_defaulted: bool,
    /// Requests no route matches.
    pub unmatched: Unmatched,
    /// Where the snapshot comes from.
    pub entitlements: EntitlementSource,
    /// Snapshot refresh period.
    pub sync_interval_ms: u64,
    /// Snapshot age past which `failure_mode` applies.
    pub max_snapshot_age_ms: u64,
    /// Behaviour without a fresh snapshot.
    pub failure_mode: FailureMode,
    /// Units of a counter a worker counts before merging them into shared data (0: exact).
    pub quota_slice: u64,
    /// Where quota leases are asked for (the agent's `/v1/leases`), when `quota_leases` is on.
    pub quota_leases: Option<Target>,
    /// Enforce or shadow.
    pub mode: EnforcementMode,
    /// Whether clients see a quota's state in `RateLimit-*` headers (`rate_limit_headers`).
    pub rate_limit_headers: bool,
    /// Upstream statuses that are metered.
    pub billable_status: StatusRanges,
    /// Largest response body read for a JSON-pointer quantity.
    pub max_body_bytes: usize,
    /// Name of this gateway node.
    pub source: String,
}

impl Config {
    /// Switches every outbound call to `host:port` of its URL: the only upstream naming an
    /// nginx host (Kong's ngx_wasm_module) resolves; Envoy cluster names fail there.
    pub fn dispatch_by_address(&mut self) {
        self.dispatch = DispatchMode::Authority;
        for t in &mut self.ingest {
            t.upstream = t.address.clone();
        }
        if let EntitlementSource::Sync(t) = &mut self.entitlements {
            t.upstream = t.address.clone();
        }
        if let Some(t) = &mut self.quota_leases {
            t.upstream = t.address.clone();
        }
    }

    /// The environment of the main key.
    pub fn environment(&self) -> Environment {
        self.api_key.environment()
    }

    /// The key that sends `env`'s events, if there is one.
    pub fn key_for(&self, env: Environment) -> Option<&ApiKey> {
        if self.api_key.environment() == env {
            Some(&self.api_key)
        } else {
            self.sandbox_api_key
                .as_ref()
                .filter(|k| k.environment() == env)
        }
    }

    /// One line for the startup log; never contains a secret.
    pub fn summary(&self) -> String {
        let env = self.environment();
        let source = match &self.entitlements {
            EntitlementSource::None => "none (metering only)".to_string(),
            EntitlementSource::Inline(s) => format!("inline ({} customers)", s.customers.len()),
            EntitlementSource::Sync(t) => format!(
                "sync from {} every {} ms",
                t.upstream, self.sync_interval_ms
            ),
        };
        format!(
            "environment={env} product_id={} ingest={}{} ({}) routes={} entitlements={source} failure_mode={:?} mode={:?} batch_size={} flush_interval_ms={}",
            self.product_id.as_deref().unwrap_or("(from the snapshot, else default)"),
            self.ingest[env.index()].upstream,
            self.ingest[env.index()].path,
            self.delivery.format.content_type(),
            self.routes.len(),
            self.failure_mode,
            self.mode,
            self.delivery.batch_size,
            self.delivery.flush_interval_ms,
        ) + if self.routes_defaulted {
            "; no routes: every request is metered as api_calls (feature api_calls, quantity 1)"
        } else {
            ""
        }
    }

    /// Parses host configuration bytes merged over environment variables (`env` looks one up).
    ///
    /// Empty bytes mean "everything from the environment".
    pub fn parse(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, FieldError> {
        let HostConfig { fields, inline } = decode_host_config(bytes)?;
        let mut merged = Merged::from_env(OPTIONS, env);
        merged.json(fields);
        // Name the variable when the bad value came from the environment.
        parse_merged(&Value::Object(std::mem::take(&mut merged.values)), inline)
            .map_err(|e| merged.blame(e))
    }
}

/// A node name a host gives (Envoy's node id, a host name) as a `source`: characters outside
/// `[A-Za-z0-9_.:-]` become `_` (Istio's `sidecar~10.0.0.1~pod.ns~…`), at most 128 of them;
/// `None` when nothing is left.
pub fn source_name(raw: &str) -> Option<String> {
    let name: String = raw
        .trim()
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!name.is_empty()).then_some(name)
}

fn header_name(r: &ObjReader<'_>, spec: &OptionSpec) -> Result<Option<String>, FieldError> {
    let key = spec.name;
    let v = match r.get(key) {
        None => return Ok(text(r, spec)?.map(str::to_string)),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(other) => {
            return Err(FieldError::new(
                r.field_path(key),
                format!(
                    "must be a header name or \"\" to disable, got {}",
                    describe(other)
                ),
            ))
        }
    };
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(FieldError::new(
            r.field_path(key),
            format!("must be a header name (letters, digits, '-', '_'), got {v:?}"),
        ));
    }
    Ok(Some(v.to_ascii_lowercase()))
}

fn key_field(r: &ObjReader<'_>, key: &str) -> Result<Option<ApiKey>, FieldError> {
    match r.string(key)? {
        None => Ok(None),
        Some(s) => ApiKey::parse(s)
            .map(Some)
            .map_err(|e| FieldError::new(r.field_path(key), e.to_string())),
    }
}

fn endpoint(r: &ObjReader<'_>, key: &str) -> Result<Option<Endpoint>, FieldError> {
    match r.non_empty_string(key)? {
        None => Ok(None),
        Some(s) => Endpoint::parse(s)
            .map(Some)
            .map_err(|e| FieldError::new(r.field_path(key), e.to_string())),
    }
}

fn cluster(r: &ObjReader<'_>, spec: &OptionSpec) -> Result<Option<String>, FieldError> {
    let Some(v) = text(r, spec)? else {
        return Ok(None);
    };
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(FieldError::new(
            r.field_path(spec.name),
            format!("must be a cluster name without spaces, got {v:?}"),
        ));
    }
    Ok(Some(v.to_string()))
}

/// The configuration from the merged object; `inline` is the snapshot the configuration's
/// `entitlements` object was already read into (the object holds `{}` in its place).
fn parse_merged(
    v: &Value,
    mut inline: Option<Result<Snapshot, FieldError>>,
) -> Result<Config, FieldError> {
    let r = ObjReader::new("", v, &FIELD_NAMES)?;
    let api_key = key_field(&r, "api_key")?.ok_or_else(|| {
        FieldError::new(
            "api_key",
            "is required: set api_key in the configuration or AFORO_API_KEY (sk_test_… or sk_live_…)",
        )
    })?;
    let sandbox_api_key = key_field(&r, "sandbox_api_key")?;
    if let Some(k) = &sandbox_api_key {
        if k.environment() != Environment::Sandbox {
            return Err(FieldError::new(
                "sandbox_api_key",
                "must be an sk_test_… key",
            ));
        }
    }
    let product_id = r.optional_name("product_id")?;
    let format = match choice(&r, &o::INGEST_FORMAT)? {
        "cloudevents" => IngestFormat::CloudEvents,
        _ => IngestFormat::Aforo,
    };
    let dispatch = match choice(&r, &o::DISPATCH)? {
        "authority" => DispatchMode::Authority,
        _ => DispatchMode::Cluster,
    };
    let base_url = endpoint(&r, "endpoint")?;
    let ingest_url = endpoint(&r, "ingest_url")?;
    let ingest_cluster = cluster(&r, &o::INGEST_CLUSTER)?;
    let sandbox_cluster = cluster(&r, &o::SANDBOX_CLUSTER)?.unwrap_or_default();
    let production_cluster = cluster(&r, &o::PRODUCTION_CLUSTER)?.unwrap_or_default();
    let sync_cluster = cluster(&r, &o::ENTITLEMENTS_CLUSTER)?.unwrap_or_default();
    // Where an environment's calls go: `endpoint` (one cluster for the agent or API), else the
    // environment's built-in URL and cluster.
    let base_of = |env: Environment| -> (Endpoint, String) {
        match &base_url {
            Some(ep) => (ep.clone(), sync_cluster.clone()),
            None => (
                // The built-in URLs always parse.
                Endpoint::parse(env.default_ingest_url()).unwrap_or(Endpoint {
                    tls: true,
                    host: String::new(),
                    port: 443,
                    path: String::new(),
                }),
                match env {
                    Environment::Sandbox => sandbox_cluster.clone(),
                    Environment::Production => production_cluster.clone(),
                },
            ),
        }
    };
    let ingest = Environment::ALL.map(|env| {
        let (base, base_cluster) = base_of(env);
        let (ep, cl) = match &ingest_url {
            Some(u) => {
                let per_env = match env {
                    Environment::Sandbox => sandbox_cluster.clone(),
                    Environment::Production => production_cluster.clone(),
                };
                (u.clone(), per_env)
            }
            None => (base, base_cluster),
        };
        let cl = ingest_cluster.clone().unwrap_or(cl);
        Target::new(&ep, ep.path_with("/v1/events"), dispatch, &cl)
    });
    let batch_size = integer(&r, &o::BATCH_SIZE)? as usize;
    let flush_interval_ms = integer(&r, &o::FLUSH_INTERVAL_MS)?;
    let request_timeout_ms = integer(&r, &o::REQUEST_TIMEOUT_MS)?;
    let max_buffer_events = integer(&r, &o::MAX_BUFFER_EVENTS)? as usize;
    // At most u32::MAX (the table's maximum), so it fits a Wasm32 usize.
    let max_buffer_bytes =
        usize::try_from(integer(&r, &o::MAX_BUFFER_BYTES)?).unwrap_or(usize::MAX);
    let max_dead_letters = integer(&r, &o::MAX_DEAD_LETTERS)? as usize;
    let initial_backoff_ms = integer(&r, &o::INITIAL_BACKOFF_MS)?;
    let max_backoff_ms = integer(&r, &o::MAX_BACKOFF_MS)?;
    let max_retry_time_ms = integer(&r, &o::MAX_RETRY_TIME_MS)?;
    if max_backoff_ms < initial_backoff_ms {
        return Err(FieldError::new(
            "max_backoff_ms",
            format!("must be >= initial_backoff_ms ({initial_backoff_ms}), got {max_backoff_ms}"),
        ));
    }
    if batch_size > max_buffer_events {
        return Err(FieldError::new(
            "max_buffer_events",
            format!("must be >= batch_size ({batch_size}), got {max_buffer_events}"),
        ));
    }
    let trusted_proxies = match r.array("trusted_proxies")? {
        None => Vec::new(),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let p = index("trusted_proxies", i);
                let s = v.as_str().ok_or_else(|| {
                    FieldError::new(&p, "must be a CIDR string such as 10.0.0.0/8")
                })?;
                Cidr::parse(s).map_err(|e| FieldError::new(&p, e.0))
            })
            .collect::<Result<_, _>>()?,
    };
    // No `routes` at all: the built-in route. An explicit `[]` keeps its meaning: nothing is
    // metered, every request is `unmatched`.
    let (routes, routes_defaulted) = match r.array("routes")? {
        Some(list) => (route::parse_routes("routes", list)?, false),
        None => (vec![Route::every_request(DEFAULT_METRIC)], true),
    };
    let unmatched = match choice(&r, &o::UNMATCHED)? {
        "deny" => Unmatched::Deny,
        _ => Unmatched::Allow,
    };
    let sync_interval_ms = integer(&r, &o::SYNC_INTERVAL_MS)?;
    let max_snapshot_age_ms = integer(&r, &o::MAX_SNAPSHOT_AGE_MS)?;
    if max_snapshot_age_ms < sync_interval_ms {
        return Err(FieldError::new(
            "max_snapshot_age_ms",
            format!("must be >= sync_interval_ms ({sync_interval_ms}), got {max_snapshot_age_ms}"),
        ));
    }
    let failure_mode = match choice(&r, &o::FAILURE_MODE)? {
        "closed" => FailureMode::Closed,
        _ => FailureMode::Open,
    };
    let inline = match (r.get("entitlements"), inline.take()) {
        (None, _) => None,
        (Some(_), Some(read)) => Some(read?),
        (Some(v), None) => Some(Snapshot::from_value("entitlements", v)?),
    };
    let sync_url = endpoint(&r, "entitlements_url")?;
    let customer_header = header_name(&r, &o::CUSTOMER_HEADER)?;
    let entitlements = match (inline, sync_url) {
        (Some(_), Some(_)) => {
            return Err(FieldError::new(
                "entitlements",
                "set either entitlements (inline) or entitlements_url (synced), not both",
            ))
        }
        (Some(s), None) => EntitlementSource::Inline(Box::new(s)),
        (None, Some(ep)) => {
            EntitlementSource::Sync(Target::new(&ep, ep.path.clone(), dispatch, &sync_cluster))
        }
        // A trusted customer id needs no snapshot: metering only, as configured.
        (None, None) if customer_header.is_some() => EntitlementSource::None,
        // Consumer keys are resolved by the snapshot: fetched from where events go.
        (None, None) => {
            let env = api_key.environment();
            let (ep, cl) = match (&base_url, &ingest_url) {
                (None, Some(u)) => (u.clone(), ingest[env.index()].upstream.clone()),
                _ => base_of(env),
            };
            EntitlementSource::Sync(Target::new(
                &ep,
                ep.path_with("/v1/entitlements"),
                dispatch,
                &cl,
            ))
        }
    };
    if let EntitlementSource::Inline(s) = &entitlements {
        if let Some(e) = s.environment {
            if e != api_key.environment() && sandbox_api_key.is_none() {
                return Err(FieldError::new(
                    "entitlements.environment",
                    format!("is {e} but api_key is a {} key", api_key.environment()),
                ));
            }
        }
    }
    let quota_leases = match (flag(&r, &o::QUOTA_LEASES)?, &entitlements) {
        (false, _) => None,
        (true, EntitlementSource::Sync(t)) => match t.path.split_once('?').map_or(t.path.as_str(), |(p, _)| p).strip_suffix("/entitlements") {
            Some(base) => Some(Target {
                path: format!("{base}/leases"),
                ..t.clone()
            }),
            None => {
                return Err(FieldError::new(
                    "quota_leases",
                    format!("leases are asked of the agent that serves the snapshot, but entitlements_url's path {:?} does not end in /entitlements (the agent's /v1/entitlements)", t.path),
                ))
            }
        },
        (true, _) => {
            return Err(FieldError::new(
                "quota_leases",
                "needs a snapshot synced from an agent (entitlements_url, or the agent's base_url): leases are asked of that agent",
            ))
        }
    };
    let mode = match choice(&r, &o::MODE)? {
        "shadow" => EnforcementMode::Shadow,
        _ => EnforcementMode::Enforce,
    };
    let billable_status = match r.string("billable_status")? {
        Some(s) => StatusRanges::parse("billable_status", s)?,
        None => match o::BILLABLE_STATUS.default {
            Default::Text(d) => StatusRanges::parse("billable_status", d)?,
            _ => StatusRanges(vec![(200, 399)]),
        },
    };
    let max_body_bytes = integer(&r, &o::MAX_BODY_BYTES)? as usize;
    let source = text(&r, &o::SOURCE)?.unwrap_or_default().to_string();
    if !is_name(&source) {
        return Err(FieldError::new(
            "source",
            format!("must be 1..=128 letters, digits or _-.: characters, got {source:?}"),
        ));
    }
    Ok(Config {
        api_key,
        sandbox_api_key,
        product_id,
        ingest,
        delivery: DeliveryConfig {
            batch_size,
            flush_interval_ms,
            max_buffer_events,
            max_buffer_bytes,
            max_dead_letters,
            initial_backoff_ms,
            max_backoff_ms,
            max_retry_time_ms,
            request_timeout_ms,
            format,
        },
        debug: flag(&r, &o::DEBUG)?,
        dispatch,
        dispatch_explicit: r.get(o::DISPATCH.name).is_some(),
        customer_header,
        consumer_key_header: header_name(&r, &o::CONSUMER_KEY_HEADER)?,
        request_id_header: header_name(&r, &o::REQUEST_ID_HEADER)?,
        trusted_proxies,
        routes,
        routes_defaulted,
        unmatched,
        entitlements,
        sync_interval_ms,
        max_snapshot_age_ms,
        failure_mode,
        quota_slice: integer(&r, &o::QUOTA_SLICE)?,
        quota_leases,
        mode,
        rate_limit_headers: flag(&r, &o::RATE_LIMIT_HEADERS)?,
        billable_status,
        max_body_bytes,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn parse(json: Value, env: &[(&str, &str)]) -> Result<Config, FieldError> {
        Config::parse(json.to_string().as_bytes(), &env_of(env))
    }

    const MIN: &[(&str, &str)] = &[
        ("AFORO_API_KEY", "sk_test_abc"),
        ("AFORO_PRODUCT_ID", "prod_1"),
    ];

    #[test]
    fn defaults_follow_the_product_docs() {
        let c = parse(json!({}), MIN).unwrap();
        assert_eq!(c.environment(), Environment::Sandbox);
        assert_eq!(c.delivery.batch_size, 100);
        assert_eq!(c.delivery.flush_interval_ms, 5_000);
        assert!(!c.debug);
        assert_eq!(c.ingest[0].upstream, "aforo_ingest_sandbox");
        assert_eq!(c.ingest[0].authority, "ingest-sandbox.aforo.ai");
        assert_eq!(c.ingest[0].path, "/v1/events");
        assert_eq!(c.ingest[1].authority, "ingest.aforo.ai");
        assert_eq!(c.failure_mode, FailureMode::Open);
        assert_eq!(c.consumer_key_header.as_deref(), Some("x-api-key"));
        assert_eq!(c.customer_header, None);
        // Consumer keys need the snapshot: it comes from where the events go.
        match &c.entitlements {
            EntitlementSource::Sync(t) => {
                assert_eq!(t.upstream, "aforo_ingest_sandbox");
                assert_eq!(t.authority, "ingest-sandbox.aforo.ai");
                assert_eq!(t.path, "/v1/entitlements");
            }
            other => panic!("{other:?}"),
        }
        // No routes: every request is one api_calls.
        assert!(c.routes_defaulted);
        assert_eq!(c.routes, vec![Route::every_request("api_calls")]);
        assert!(c
            .summary()
            .contains("no routes: every request is metered as api_calls"));
        // A trusted customer id needs no snapshot: metering only.
        let c = parse(json!({"customer_header": "x-customer-id"}), MIN).unwrap();
        assert!(matches!(c.entitlements, EntitlementSource::None));
    }

    #[test]
    fn a_key_alone_is_a_whole_configuration() {
        let c = parse(json!({}), &[("AFORO_API_KEY", "sk_test_abc")]).unwrap();
        assert_eq!(c.product_id, None);
        assert!(c.routes_defaulted);
        assert!(matches!(c.entitlements, EntitlementSource::Sync(_)));
    }

    #[test]
    fn endpoint_sends_events_and_syncs_the_snapshot_through_one_cluster() {
        let c = parse(
            json!({"api_key": "sk_live_k", "endpoint": "http://127.0.0.1:8787"}),
            &[],
        )
        .unwrap();
        for t in &c.ingest {
            assert_eq!(t.upstream, "aforo_agent");
            assert_eq!(t.authority, "127.0.0.1:8787");
            assert_eq!(t.path, "/v1/events");
        }
        match &c.entitlements {
            EntitlementSource::Sync(t) => {
                assert_eq!(t.upstream, "aforo_agent");
                assert_eq!(t.path, "/v1/entitlements");
            }
            other => panic!("{other:?}"),
        }
        // Each half can still be pointed elsewhere.
        let c = parse(
            json!({"api_key": "sk_test_k", "endpoint": "http://agent:8787/base",
                   "ingest_url": "https://ingest.example", "entitlements_cluster": "agent"}),
            &[],
        )
        .unwrap();
        assert_eq!(c.ingest[0].authority, "ingest.example");
        assert_eq!(c.ingest[0].upstream, "aforo_ingest_sandbox");
        match &c.entitlements {
            EntitlementSource::Sync(t) => {
                assert_eq!(
                    (t.upstream.as_str(), t.path.as_str()),
                    ("agent", "/base/v1/entitlements")
                );
            }
            other => panic!("{other:?}"),
        }
        // No endpoint: the snapshot comes from where ingest_url sends the events.
        let c = parse(
            json!({"api_key": "sk_test_k", "ingest_url": "http://ingest.local:9000", "ingest_cluster": "ing"}),
            &[],
        )
        .unwrap();
        match &c.entitlements {
            EntitlementSource::Sync(t) => {
                assert_eq!(
                    (t.upstream.as_str(), t.authority.as_str(), t.path.as_str()),
                    ("ing", "ingest.local:9000", "/v1/entitlements")
                );
            }
            other => panic!("{other:?}"),
        }
        // An explicit empty list meters nothing (every request is unmatched).
        let c = parse(json!({"api_key": "sk_test_k", "routes": []}), &[]).unwrap();
        assert!(c.routes.is_empty() && !c.routes_defaulted);
        // Kong: host:port of the endpoint.
        let mut c = parse(
            json!({"api_key": "sk_test_k", "endpoint": "http://agent.local:8787", "dispatch": "authority"}),
            &[],
        )
        .unwrap();
        c.dispatch_by_address();
        assert_eq!(c.ingest[0].upstream, "agent.local:8787");
    }

    #[test]
    fn json_wins_over_environment_variables() {
        let env = [
            MIN,
            &[
                ("AFORO_BATCH_SIZE", "50"),
                ("AFORO_DEBUG", "true"),
                ("AFORO_INGEST_URL", "http://127.0.0.1:9000"),
            ],
        ]
        .concat();
        let c = parse(json!({"batch_size": 7}), &env).unwrap();
        assert_eq!(c.delivery.batch_size, 7);
        assert!(c.debug);
        assert_eq!(c.ingest[0].authority, "127.0.0.1:9000");
        let c = parse(json!({"api_key": "sk_live_xyz"}), MIN).unwrap();
        assert_eq!(c.environment(), Environment::Production);
    }

    #[test]
    fn a_json_string_holding_json_is_accepted_as_kong_sends_it() {
        let inner = json!({"api_key": "sk_test_k", "product_id": "p"}).to_string();
        let c = Config::parse(Value::String(inner).to_string().as_bytes(), &env_of(&[])).unwrap();
        assert_eq!(c.product_id.as_deref(), Some("p"));
        assert!(Config::parse(b"", &env_of(MIN)).is_ok());
    }

    #[test]
    fn malformed_configurations_name_the_field() {
        type Case<'a> = (Value, Vec<(&'a str, &'a str)>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (
                json!({"batch_size": 0}),
                MIN.to_vec(),
                "batch_size",
                "batch_size: must be 1..=1000, got 0",
            ),
            (
                json!({"batch_size": "ten"}),
                MIN.to_vec(),
                "batch_size",
                "batch_size: must be 1..=1000, got \"ten\"",
            ),
            (
                json!({"api_key": "sk_prod_123"}),
                MIN.to_vec(),
                "api_key",
                "unknown key prefix \"sk_prod_\"",
            ),
            (
                json!({"batchsize": 5}),
                MIN.to_vec(),
                "batchsize",
                "did you mean \"batch_size\"",
            ),
            (
                json!({"debug": "maybe"}),
                MIN.to_vec(),
                "debug",
                "must be true or false",
            ),
            (
                json!({}),
                vec![("AFORO_PRODUCT_ID", "p")],
                "api_key",
                "is required",
            ),
            (
                json!({"product_id": "prod one"}),
                vec![("AFORO_API_KEY", "sk_test_a")],
                "product_id",
                "must be 1..=128 letters",
            ),
            (
                json!({"endpoint": "ftp://agent"}),
                MIN.to_vec(),
                "endpoint",
                "http",
            ),
            (
                json!({}),
                [MIN, &[("AFORO_BATCH_SIZE", "0")]].concat(),
                "AFORO_BATCH_SIZE",
                "AFORO_BATCH_SIZE: must be 1..=1000, got 0",
            ),
            (
                json!({}),
                [MIN, &[("AFORO_DEBUG", "sometimes")]].concat(),
                "AFORO_DEBUG",
                "must be true or false",
            ),
            (
                json!({"ingest_url": "ftp://x"}),
                MIN.to_vec(),
                "ingest_url",
                "scheme",
            ),
            (
                json!({"failure_mode": "maybe"}),
                MIN.to_vec(),
                "failure_mode",
                "must be one of open, closed",
            ),
            (
                json!({"trusted_proxies": ["10.0.0.1/33"]}),
                MIN.to_vec(),
                "trusted_proxies[0]",
                "prefix",
            ),
            (
                json!({"initial_backoff_ms": 1000, "max_backoff_ms": 10}),
                MIN.to_vec(),
                "max_backoff_ms",
                ">=",
            ),
            (
                json!({"routes": [{"path_prefix": "/x", "feature": "f"}]}),
                MIN.to_vec(),
                "routes[0].metric",
                "is required",
            ),
            (
                json!({"entitlements": {"customers": {"c": {"features": {"f": {"quota": "many"}}}}}}),
                MIN.to_vec(),
                "entitlements.customers.c.features.f.quota",
                "must be",
            ),
            (
                json!({"sandbox_api_key": "sk_live_x"}),
                MIN.to_vec(),
                "sandbox_api_key",
                "sk_test_",
            ),
            (
                json!({"customer_header": "x customer"}),
                MIN.to_vec(),
                "customer_header",
                "header name",
            ),
        ];
        for (json, env, path, text) in cases {
            let e = parse(json.clone(), &env).unwrap_err();
            assert_eq!(e.path, path, "{json} → {e}");
            assert!(
                e.to_string().contains(text),
                "{json} → {e} (wanted {text:?})"
            );
        }
    }

    #[test]
    fn the_secret_never_appears_in_errors_or_summaries() {
        let e = parse(json!({"api_key": "sk_prod_TOPSECRET"}), MIN).unwrap_err();
        assert!(!e.to_string().contains("TOPSECRET"));
        let c = parse(json!({"api_key": "sk_live_TOPSECRET"}), MIN).unwrap();
        assert!(!c.summary().contains("TOPSECRET"));
        assert!(!format!("{c:?}").contains("TOPSECRET"));
    }

    #[test]
    fn kong_dispatches_to_host_and_port() {
        let c = parse(
            json!({"dispatch": "authority", "ingest_url": "http://agent.local:8787",
            "entitlements_url": "http://agent.local:8787/v1/entitlements"}),
            MIN,
        )
        .unwrap();
        assert_eq!(c.ingest[0].upstream, "agent.local:8787");
        match &c.entitlements {
            EntitlementSource::Sync(t) => {
                assert_eq!(t.upstream, "agent.local:8787");
                assert_eq!(t.path, "/v1/entitlements");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_documented_option_is_accepted_with_its_default() {
        for spec in OPTIONS {
            if matches!(spec.default, Default::Required)
                || (matches!(spec.default, Default::Unset(_)) && spec.kind == Kind::Text)
                || spec.default == Default::Unset("none")
            {
                continue;
            }
            let value = match (spec.kind, spec.default) {
                (_, Default::Integer(n)) => Value::from(n),
                (_, Default::Bool(b)) => Value::from(b),
                (Kind::List | Kind::Json, Default::Unset(d)) => serde_json::from_str(d).unwrap(),
                (_, Default::Text(t)) => Value::from(t),
                _ => unreachable!(),
            };
            let mut explicit = parse(json!({ spec.name: value }), MIN)
                .unwrap_or_else(|e| panic!("{}: {e}", spec.name));
            // Whether dispatch was written out is not part of its value (a host may choose
            // the dispatch only when it was not).
            explicit.dispatch_explicit = false;
            let implicit = parse(json!({}), MIN).unwrap();
            assert_eq!(
                format!("{explicit:?}"),
                format!("{implicit:?}"),
                "default of {} differs from the docs",
                spec.name
            );
        }
    }

    /// The largest buffer the table accepts fits a 32-bit `usize` (Wasm): one more is refused,
    /// where it once wrapped to 0 there and dead-lettered every event.
    #[test]
    fn the_largest_buffer_accepted_fits_wasm32() {
        let c = parse(json!({"max_buffer_bytes": 4_294_967_295u64}), MIN).unwrap();
        assert_eq!(c.delivery.max_buffer_bytes as u64, 4_294_967_295);
        let e = parse(json!({"max_buffer_bytes": 4_294_967_296u64}), MIN).unwrap_err();
        assert_eq!(e.path, "max_buffer_bytes");
    }
}

#[cfg(test)]
mod source_name_tests {
    use super::*;

    #[test]
    fn a_host_given_node_name_becomes_a_valid_source() {
        let istio = source_name("sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local").unwrap();
        assert_eq!(istio, "sidecar_10.0.0.1_pod.ns_ns.svc.cluster.local");
        assert!(is_name(&istio));
        assert_eq!(
            source_name("gw-7\n").as_deref(),
            Some("gw-7"),
            "a host name file's newline"
        );
        let long = source_name(&"x".repeat(300)).unwrap();
        assert_eq!(long.len(), 128);
        assert!(is_name(&long));
        assert_eq!(source_name("  \n"), None);
        assert_eq!(source_name("\",\"key\":\"x").as_deref(), Some("___key_:_x"));
    }
}
