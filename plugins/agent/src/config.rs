//! The agent's configuration: a JSON file, `AFORO_*` environment variables and command-line
//! flags (flags win over the file, the file over the environment). Errors name the field.

use aforo_core::config::Endpoint;
use aforo_core::environment::ApiKey;
use aforo_core::event::IngestFormat;
use aforo_core::keys::{hash_key, KeyHash};
use aforo_core::option_table::{
    choice, find, flag, integer, names, text, text_value, Default, Kind, Merged,
};
use aforo_core::strict_json::{describe, FieldError, ObjReader};
use aforo_core::Environment;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The agent's options, one row each: name, environment variable, type with range, default and
/// doc. Parsing, `--help` and `docs/agent.md`'s table come from these rows (checked by a test).
pub mod options {
    use aforo_core::option_table::{row, Default, Kind, OptionSpec};

    /// `listen`.
    pub static LISTEN: OptionSpec = row(
        "listen",
        Some("AFORO_AGENT_LISTEN"),
        Kind::Text,
        Default::Text("127.0.0.1:8787"),
        "address the HTTP API listens on",
    );
    /// `data_dir`.
    pub static DATA_DIR: OptionSpec = row(
        "data_dir",
        Some("AFORO_AGENT_DATA_DIR"),
        Kind::Text,
        Default::Text("./aforo-data"),
        "where the SQLite stores live (one per environment, plus control.db)",
    );
    /// `environments`.
    pub static ENVIRONMENTS: OptionSpec = row(
        "environments",
        Some("AFORO_AGENT_ENVIRONMENTS"),
        Kind::List,
        Default::Text("sandbox"),
        "environments served (sandbox, production or both, comma-separated); keys of others get 403",
    );
    /// `api_keys`.
    pub static API_KEYS: OptionSpec = row(
        "api_keys",
        Some("AFORO_API_KEYS"),
        Kind::List,
        Default::Unset("[]"),
        "sk_ keys accepted from gateways (comma-separated); empty accepts any well-formed key of a served environment",
    );
    /// `tenant_keys`.
    pub static TENANT_KEYS: OptionSpec = row(
        "tenant_keys",
        Some("AFORO_AGENT_TENANT_KEYS"),
        Kind::List,
        Default::Unset("[]"),
        "sk_ keys that may name the customer with tenantId in /v1/canAccess (comma-separated), for gateways that authenticate callers themselves; every other key must pass the caller's consumer key (docs/security.md). Each is also an accepted gateway key",
    );
    /// `admin_key`.
    pub static ADMIN_KEY: OptionSpec = row(
        "admin_key",
        Some("AFORO_AGENT_ADMIN_KEY"),
        Kind::Text,
        Default::Unset("none"),
        "adm_ key for the admin API; without it the admin API is off",
    );
    /// `product_id`.
    pub static PRODUCT_ID: OptionSpec = row(
        "product_id",
        Some("AFORO_PRODUCT_ID"),
        Kind::Text,
        Default::Text("default"),
        "product_id of events built by /v1/meter, and of filters' events that name none (served in the snapshot)",
    );
    /// `catalog`.
    pub static CATALOG: OptionSpec = row(
        "catalog",
        Some("AFORO_AGENT_CATALOG"),
        Kind::Text,
        Default::Unset("none"),
        "catalog JSON file: customers, their features and quotas, consumer keys, the pricing plan",
    );
    /// `component`.
    pub static COMPONENT: OptionSpec = row(
        "component",
        Some("AFORO_AGENT_COMPONENT"),
        Kind::Text,
        Default::Unset("next to the binary"),
        "path of aforo_policy.wasm",
    );
    /// `upstream_url`.
    pub static UPSTREAM_URL: OptionSpec = row(
        "upstream_url",
        Some("AFORO_UPSTREAM_URL"),
        Kind::Text,
        Default::Unset("none"),
        "forward stored events to this ingest (without it the agent is the local ledger)",
    );
    /// `upstream_format`.
    pub static UPSTREAM_FORMAT: OptionSpec = row(
        "upstream_format",
        Some("AFORO_UPSTREAM_FORMAT"),
        Kind::Choice(&["aforo", "cloudevents"]),
        Default::Text("aforo"),
        "aforo (ingest v1) or cloudevents",
    );
    /// `upstream_sandbox_key`.
    pub static UPSTREAM_SANDBOX_KEY: OptionSpec = row(
        "upstream_sandbox_key",
        Some("AFORO_UPSTREAM_SANDBOX_KEY"),
        Kind::Text,
        Default::Unset("none"),
        "sk_test_ key for forwarding sandbox events",
    );
    /// `upstream_production_key`.
    pub static UPSTREAM_PRODUCTION_KEY: OptionSpec = row(
        "upstream_production_key",
        Some("AFORO_UPSTREAM_PRODUCTION_KEY"),
        Kind::Text,
        Default::Unset("none"),
        "sk_live_ key for forwarding production events",
    );
    /// `batch_size`.
    pub static BATCH_SIZE: OptionSpec = row(
        "batch_size",
        Some("AFORO_BATCH_SIZE"),
        Kind::Integer { min: 1, max: 1_000 },
        Default::Integer(100),
        "events per upstream request",
    );
    /// `flush_interval_ms`.
    pub static FLUSH_INTERVAL_MS: OptionSpec = row(
        "flush_interval_ms",
        Some("AFORO_FLUSH_INTERVAL_MS"),
        Kind::Integer {
            min: 10,
            max: 3_600_000,
        },
        Default::Integer(1000),
        "longest wait before forwarding",
    );
    /// `max_retry_time_ms`.
    pub static MAX_RETRY_TIME_MS: OptionSpec = row(
        "max_retry_time_ms",
        Some("AFORO_MAX_RETRY_TIME_MS"),
        Kind::Integer {
            min: 0,
            max: 86_400_000,
        },
        Default::Integer(300000),
        "time a batch is retried before it is dead-lettered",
    );
    /// `sandbox_events_per_hour`.
    pub static SANDBOX_EVENTS_PER_HOUR: OptionSpec = row(
        "sandbox_events_per_hour",
        Some("AFORO_SANDBOX_EVENTS_PER_HOUR"),
        Kind::Integer {
            min: 1,
            max: 1 << 40,
        },
        Default::Integer(10000),
        "ingest rate limit per sandbox key",
    );
    /// `production_events_per_hour`.
    pub static PRODUCTION_EVENTS_PER_HOUR: OptionSpec = row(
        "production_events_per_hour",
        Some("AFORO_PRODUCTION_EVENTS_PER_HOUR"),
        Kind::Integer {
            min: 1,
            max: 1 << 40,
        },
        Default::Integer(1000000),
        "ingest rate limit per production key",
    );
    /// `max_body_bytes`.
    pub static MAX_BODY_BYTES: OptionSpec = row(
        "max_body_bytes",
        Some("AFORO_AGENT_MAX_BODY_BYTES"),
        Kind::Integer {
            min: 1_024,
            max: 64 << 20,
        },
        Default::Integer(1048576),
        "largest request body of /v1/events (other endpoints: 64 KiB)",
    );
    /// `max_json_depth`.
    pub static MAX_JSON_DEPTH: OptionSpec = row(
        "max_json_depth",
        Some("AFORO_AGENT_MAX_JSON_DEPTH"),
        Kind::Integer { min: 2, max: 128 },
        Default::Integer(32),
        "deepest JSON nesting accepted in any request body",
    );
    /// `pool_size`.
    pub static POOL_SIZE: OptionSpec = row(
        "pool_size",
        Some("AFORO_AGENT_POOL_SIZE"),
        Kind::Integer { min: 1, max: 256 },
        Default::Integer(8),
        "component instances kept warm",
    );
    /// `fuel_per_call`.
    pub static FUEL_PER_CALL: OptionSpec = row(
        "fuel_per_call",
        Some("AFORO_AGENT_FUEL_PER_CALL"),
        Kind::Integer {
            min: 1_000_000,
            max: u64::MAX,
        },
        Default::Integer(100000000),
        "instruction budget of one component call (a runaway module traps, the agent answers 503)",
    );
    /// `state`.
    pub static STATE: OptionSpec = row(
        "state",
        Some("AFORO_AGENT_STATE"),
        Kind::Text,
        Default::Text("embedded"),
        "where quota counters, rate-limit buckets and the dedup window live: embedded (this node), or redis://[user:password@]host:port[/db] (rediss:// for TLS) shared by every agent",
    );
    /// `redis_prefix`.
    pub static REDIS_PREFIX: OptionSpec = row(
        "redis_prefix",
        Some("AFORO_REDIS_PREFIX"),
        Kind::Text,
        Default::Text("aforo:"),
        "prefix of every Redis key (one per deployment sharing a Redis)",
    );
    /// `redis_timeout_ms`.
    pub static REDIS_TIMEOUT_MS: OptionSpec = row(
        "redis_timeout_ms",
        Some("AFORO_REDIS_TIMEOUT_MS"),
        Kind::Integer { min: 10, max: 2_000 },
        Default::Integer(250),
        "connect, read and write timeout of a Redis call (10..=2000); past it the agent decides on local state",
    );
    /// `redis_ca_file`.
    pub static REDIS_CA_FILE: OptionSpec = row(
        "redis_ca_file",
        Some("AFORO_REDIS_CA_FILE"),
        Kind::Text,
        Default::Unset("Mozilla roots"),
        "PEM file of the CA that signed Redis's certificate (rediss:// only)",
    );
    /// `redis_dedup_days`.
    pub static REDIS_DEDUP_DAYS: OptionSpec = row(
        "redis_dedup_days",
        Some("AFORO_REDIS_DEDUP_DAYS"),
        Kind::Integer { min: 1, max: 730 },
        Default::Integer(91),
        "how long Redis remembers an event id (events older than 90 days are refused anyway; sandbox ids at most 30 days); shorter saves memory, but a retry older than this through another agent counts twice in quotas (the ingest still deduplicates it)",
    );
    /// `redis_cluster`.
    pub static REDIS_CLUSTER: OptionSpec = row(
        "redis_cluster",
        Some("AFORO_REDIS_CLUSTER"),
        Kind::Bool,
        Default::Bool(false),
        "Redis only: state names a Redis Cluster by some of its nodes (comma-separated: redis://h1:6379,redis://h2:6379); each customer's counters and event ids then share a hash slot (ids are deduplicated per customer), feature names must not contain ':', and the client follows the cluster's redirects and failovers",
    );
    /// `redis_wait_replicas`.
    pub static REDIS_WAIT_REPLICAS: OptionSpec = row(
        "redis_wait_replicas",
        Some("AFORO_REDIS_WAIT_REPLICAS"),
        Kind::Integer { min: 0, max: 5 },
        Default::Integer(0),
        "Redis only: replicas of a primary that must have an event's claim or a quota lease (WAIT, up to redis_timeout_ms) before the agent counts it; with 1 and a replica per primary, a failover loses no claim or lease (unacknowledged ones are retried: never counted twice). 0: a failover may lose the last writes (under-counted for their window)",
    );
    /// `max_overshoot`.
    pub static MAX_OVERSHOOT: OptionSpec = row(
        "max_overshoot",
        Some("AFORO_AGENT_MAX_OVERSHOOT"),
        Kind::Integer {
            min: 0,
            max: 1 << 53,
        },
        Default::Unset("off"),
        "Redis only: reserve quota (/v1/canAccess with a quantity) from leases, slices of the remaining quota each agent takes from Redis and spends locally, so a hot counter costs a Redis call per many requests; a window passes its quota by at most this many units across every agent (0: strict). Unset: each reservation is one compare-and-swap in Redis (exact, slow on a hot counter)",
    );
    /// `failure_mode`.
    pub static FAILURE_MODE: OptionSpec = row(
        "failure_mode",
        Some("AFORO_AGENT_FAILURE_MODE"),
        Kind::Choice(&["open", "closed"]),
        Default::Text("open"),
        "while Redis is unreachable: open decides on this node's counters, closed answers /v1/canAccess with 503",
    );
    /// `node_id`.
    pub static NODE_ID: OptionSpec = row(
        "node_id",
        Some("AFORO_AGENT_NODE_ID"),
        Kind::Text,
        Default::Unset("generated, kept in data_dir"),
        "this agent's name, written with each event it claims in Redis (which agent holds an event)",
    );

    /// `rotation_grace_secs`.
    pub static ROTATION_GRACE_SECS: OptionSpec = row(
        "rotation_grace_secs",
        Some("AFORO_AGENT_ROTATION_GRACE_SECS"),
        Kind::Integer {
            min: 0,
            max: 2_592_000,
        },
        Default::Integer(86_400),
        "how long a rotated key keeps working beside its replacement (0: revoked at once); a rotation may ask for another with grace_period_secs",
    );

    /// `retention_interval_secs`.
    pub static RETENTION_INTERVAL_SECS: OptionSpec = row(
        "retention_interval_secs",
        Some("AFORO_AGENT_RETENTION_INTERVAL_SECS"),
        Kind::Integer {
            min: 60,
            max: 604_800,
        },
        Default::Integer(3_600),
        "how often events past their retention (sandbox 30 days, production 730) are removed; also once at start",
    );

    /// `margin_check_interval_secs`.
    pub static MARGIN_CHECK_INTERVAL_SECS: OptionSpec = row(
        "margin_check_interval_secs",
        Some("AFORO_AGENT_MARGIN_CHECK_INTERVAL_SECS"),
        Kind::Integer { min: 1, max: 86_400 },
        Default::Integer(60),
        "how often each customer's margin this month is checked against its plan's min_margin_percent (margin_action block refuses production requests margin_guard)",
    );

    /// Every agent option, in `docs/agent.md`'s order.
    pub const AGENT_OPTIONS: &[&OptionSpec] = &[
        &LISTEN,
        &DATA_DIR,
        &ENVIRONMENTS,
        &API_KEYS,
        &TENANT_KEYS,
        &ADMIN_KEY,
        &ROTATION_GRACE_SECS,
        &RETENTION_INTERVAL_SECS,
        &MARGIN_CHECK_INTERVAL_SECS,
        &PRODUCT_ID,
        &CATALOG,
        &COMPONENT,
        &UPSTREAM_URL,
        &UPSTREAM_FORMAT,
        &UPSTREAM_SANDBOX_KEY,
        &UPSTREAM_PRODUCTION_KEY,
        &BATCH_SIZE,
        &FLUSH_INTERVAL_MS,
        &MAX_RETRY_TIME_MS,
        &SANDBOX_EVENTS_PER_HOUR,
        &PRODUCTION_EVENTS_PER_HOUR,
        &MAX_BODY_BYTES,
        &MAX_JSON_DEPTH,
        &POOL_SIZE,
        &FUEL_PER_CALL,
        &STATE,
        &REDIS_PREFIX,
        &REDIS_TIMEOUT_MS,
        &REDIS_CA_FILE,
        &REDIS_DEDUP_DAYS,
        &REDIS_CLUSTER,
        &REDIS_WAIT_REPLICAS,
        &MAX_OVERSHOOT,
        &FAILURE_MODE,
        &NODE_ID,
    ];
}

use options as o;
pub use options::AGENT_OPTIONS;

/// The JSON field names, for the strict reader.
const FIELD_NAMES: &[&str] = &names::<{ AGENT_OPTIONS.len() }>(AGENT_OPTIONS);

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Environments served.
    pub environments: Vec<Environment>,
    /// Accepted gateway keys (hashes); empty = any well-formed key.
    pub api_keys: Vec<(KeyHash, Environment)>,
    /// Gateway keys (hashes) that may name the customer with `tenantId` in `/v1/canAccess`.
    pub tenant_keys: Vec<KeyHash>,
    /// Admin key hash.
    pub admin_key: Option<KeyHash>,
    /// Product of metered events.
    pub product_id: String,
    /// Catalog file.
    pub catalog: Option<PathBuf>,
    /// Component file.
    pub component: Option<PathBuf>,
    /// Upstream forwarding.
    pub upstream: Option<Upstream>,
    /// Forwarding batch size.
    pub batch_size: usize,
    /// Forwarding flush interval.
    pub flush_interval_ms: u64,
    /// Forwarding retry budget.
    pub max_retry_time_ms: u64,
    /// Ingest rate limits per key, per environment index.
    pub events_per_hour: [u64; 2],
    /// Largest /v1/events body.
    pub max_body_bytes: usize,
    /// Deepest JSON accepted.
    pub max_json_depth: usize,
    /// Warm component instances.
    pub pool_size: usize,
    /// Fuel per component call.
    pub fuel_per_call: u64,
    /// Where the shared state lives.
    pub state: StateBackend,
    /// While Redis is unreachable, refuse decisions (true) or decide locally.
    pub fail_closed: bool,
    /// This agent's name in Redis (none: generated and kept in the data directory).
    pub node_id: Option<String>,
    /// Seconds a rotated key keeps working beside its replacement.
    pub rotation_grace_secs: u64,
    /// Seconds between retention sweeps.
    pub retention_interval_secs: u64,
    /// Seconds between margin checks.
    pub margin_check_interval_secs: u64,
}

/// Where quota counters, rate-limit buckets and the dedup window live.
#[derive(Clone)]
pub enum StateBackend {
    /// In this agent.
    Embedded,
    /// In Redis.
    Redis {
        /// `redis://…` or `rediss://…` (may hold a password: never printed).
        url: String,
        /// Key prefix.
        prefix: String,
        /// Call timeout.
        timeout_ms: u64,
        /// How long event ids are remembered.
        dedup_days: u64,
        /// Reservations taken from quota leases, with this overshoot budget (none: by CAS).
        max_overshoot: Option<u64>,
        /// Whether `url` names a Redis Cluster (comma-separated nodes).
        cluster: bool,
        /// Replicas that must acknowledge a claim or a lease.
        wait_replicas: u8,
        /// CA of Redis's TLS certificate (none: the webpki roots).
        ca_file: Option<PathBuf>,
    },
}

impl std::fmt::Debug for StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateBackend::Embedded => f.write_str("Embedded"),
            StateBackend::Redis { prefix, .. } => write!(f, "Redis {{ prefix: {prefix:?} }}"),
        }
    }
}

/// Where stored events are forwarded.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Base URL.
    pub endpoint: Endpoint,
    /// Wire format.
    pub format: IngestFormat,
    /// Key per environment index.
    pub keys: [Option<ApiKey>; 2],
}

impl AgentConfig {
    /// How long Redis remembers event ids (days; 0 with the embedded backend).
    pub fn redis_dedup_days(&self) -> u64 {
        match &self.state {
            StateBackend::Redis { dedup_days, .. } => *dedup_days,
            StateBackend::Embedded => 0,
        }
    }

    /// Whether the agent serves `env`.
    pub fn serves(&self, env: Environment) -> bool {
        self.environments.contains(&env)
    }
}

/// Parses the configuration from a file's JSON (or nothing), environment variables and flags.
pub fn parse(
    file: Option<&[u8]>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &[(String, String)],
) -> Result<AgentConfig, FieldError> {
    let mut merged = Merged::from_env(AGENT_OPTIONS, env);
    if let Some(bytes) = file {
        let v = aforo_core::strict_json::parse_json("the agent configuration", bytes)?;
        match v {
            Value::Object(obj) => merged.json(obj),
            other => {
                return Err(FieldError::new(
                    "",
                    format!(
                        "the agent configuration must be a JSON object, got {}",
                        describe(&other)
                    ),
                ))
            }
        }
    }
    for (k, v) in flags {
        let name = k.trim_start_matches("--").replace('-', "_");
        let Some(spec) = find(AGENT_OPTIONS, &name) else {
            let suggestion = aforo_core::strict_json::closest(&name, FIELD_NAMES)
                .map(|s| format!(" (did you mean --{}?)", s.replace('_', "-")))
                .unwrap_or_default();
            return Err(FieldError::new(
                k.clone(),
                format!("unknown flag{suggestion}"),
            ));
        };
        merged.flag(spec, k, v);
    }
    from_value(&Value::Object(std::mem::take(&mut merged.values))).map_err(|e| merged.blame(e))
}

fn endpoint(r: &ObjReader<'_>, key: &str) -> Result<Option<Endpoint>, FieldError> {
    match r.non_empty_string(key)? {
        None => Ok(None),
        Some(s) => Endpoint::parse(s)
            .map(Some)
            .map_err(|e| FieldError::new(r.field_path(key), e.to_string())),
    }
}

fn key_of(r: &ObjReader<'_>, key: &str, want: Environment) -> Result<Option<ApiKey>, FieldError> {
    match r.non_empty_string(key)? {
        None => Ok(None),
        Some(s) => {
            let k =
                ApiKey::parse(s).map_err(|e| FieldError::new(r.field_path(key), e.to_string()))?;
            if k.environment() != want {
                return Err(FieldError::new(
                    r.field_path(key),
                    format!("must be a {want} key"),
                ));
            }
            Ok(Some(k))
        }
    }
}

/// A list of `sk_` keys, hashed (never echoed in errors).
fn gateway_keys(r: &ObjReader<'_>, field: &str) -> Result<Vec<(KeyHash, Environment)>, FieldError> {
    let mut out = Vec::new();
    for (i, k) in r.array(field)?.into_iter().flatten().enumerate() {
        let s = k.as_str().ok_or_else(|| {
            FieldError::new(
                format!("{field}[{i}]"),
                "must be an sk_test_… or sk_live_… key",
            )
        })?;
        let key = ApiKey::parse(s)
            .map_err(|e| FieldError::new(format!("{field}[{i}]"), e.to_string()))?;
        out.push((hash_key(key.expose_secret()), key.environment()));
    }
    Ok(out)
}

fn from_value(v: &Value) -> Result<AgentConfig, FieldError> {
    let r = ObjReader::new("", v, FIELD_NAMES)?;
    let listen_text = match r.string(o::LISTEN.name)? {
        Some(t) => t,
        None => text(&r, &o::LISTEN)?.unwrap_or_default(),
    };
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        FieldError::new(
            "listen",
            format!("must be an address like 127.0.0.1:8787, got {listen_text:?}"),
        )
    })?;
    let data_dir = PathBuf::from(text(&r, &o::DATA_DIR)?.unwrap_or_default());
    let default_environments = match o::ENVIRONMENTS.default {
        Default::Text(t) => text_value(Kind::List, t),
        _ => Value::Array(Vec::new()),
    };
    let environments = match r.array("environments")?.or(default_environments.as_array()) {
        None => Vec::new(),
        Some(list) => {
            let mut out = Vec::new();
            for (i, e) in list.iter().enumerate() {
                let env = e.as_str().and_then(Environment::from_wire).ok_or_else(|| {
                    FieldError::new(
                        format!("environments[{i}]"),
                        format!("must be sandbox or production, got {}", describe(e)),
                    )
                })?;
                if !out.contains(&env) {
                    out.push(env);
                }
            }
            if out.is_empty() {
                return Err(FieldError::new(
                    "environments",
                    "must name at least one environment",
                ));
            }
            out
        }
    };
    let mut api_keys = gateway_keys(&r, "api_keys")?;
    let tenant = gateway_keys(&r, "tenant_keys")?;
    let tenant_keys: Vec<KeyHash> = tenant.iter().map(|(h, _)| *h).collect();
    if !api_keys.is_empty() {
        // A key trusted to name customers is a gateway key too.
        let new: Vec<_> = tenant
            .into_iter()
            .filter(|(h, _)| !api_keys.iter().any(|(a, _)| a.ct_eq(h)))
            .collect();
        api_keys.extend(new);
    }
    let admin_key = match r.non_empty_string("admin_key")? {
        None => None,
        Some(k) if k.starts_with("adm_") && k.len() >= 20 => Some(hash_key(k)),
        Some(_) => {
            return Err(FieldError::new(
                "admin_key",
                "must start with adm_ and be at least 20 characters",
            ))
        }
    };
    let upstream = match endpoint(&r, "upstream_url")? {
        None => None,
        Some(ep) => Some(Upstream {
            endpoint: ep,
            format: match choice(&r, &o::UPSTREAM_FORMAT)? {
                "cloudevents" => IngestFormat::CloudEvents,
                _ => IngestFormat::Aforo,
            },
            keys: [
                key_of(&r, "upstream_sandbox_key", Environment::Sandbox)?,
                key_of(&r, "upstream_production_key", Environment::Production)?,
            ],
        }),
    };
    if let Some(u) = &upstream {
        for env in &environments {
            if u.keys[env.index()].is_none() {
                let field = if *env == Environment::Sandbox {
                    "upstream_sandbox_key"
                } else {
                    "upstream_production_key"
                };
                return Err(FieldError::new(
                    field,
                    format!("is required to forward {env} events to upstream_url"),
                ));
            }
        }
    }
    let product_id = text(&r, &o::PRODUCT_ID)?.unwrap_or_default().to_string();
    if !aforo_core::config::is_name(&product_id) {
        return Err(FieldError::new(
            "product_id",
            format!("must be 1..=128 letters, digits or _-.: characters, got {product_id:?}"),
        ));
    }
    let state = match text(&r, &o::STATE)? {
        None | Some("embedded") => StateBackend::Embedded,
        Some(url)
            if url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://") =>
        {
            let prefix = match r.string(o::REDIS_PREFIX.name)? {
                Some(p) => p,
                None => text(&r, &o::REDIS_PREFIX)?.unwrap_or_default(),
            }
            .to_string();
            if prefix.len() > 64 || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(FieldError::new(
                    "redis_prefix",
                    "must be at most 64 characters without spaces",
                ));
            }
            let cluster = flag(&r, &o::REDIS_CLUSTER)?;
            if cluster && prefix.contains(['{', '}']) {
                return Err(FieldError::new(
                    "redis_prefix",
                    "must not contain { or } with redis_cluster (keys carry hash tags after it)",
                ));
            }
            if cluster {
                for node in url.split(',').map(str::trim) {
                    if !(node.starts_with("redis://") || node.starts_with("rediss://")) {
                        let shown: String =
                            node.chars().take_while(|c| *c != ':').take(16).collect();
                        return Err(FieldError::new(
                            "state",
                            format!("with redis_cluster, lists the cluster's nodes as redis://host:port (rediss:// for TLS), comma-separated; got {shown:?}…"),
                        ));
                    }
                }
            }
            StateBackend::Redis {
                url: url.to_string(),
                prefix,
                timeout_ms: integer(&r, &o::REDIS_TIMEOUT_MS)?,
                dedup_days: integer(&r, &o::REDIS_DEDUP_DAYS)?,
                max_overshoot: r.u64_in(o::MAX_OVERSHOOT.name, 0, 1 << 53)?,
                cluster,
                wait_replicas: integer(&r, &o::REDIS_WAIT_REPLICAS)?
                    .try_into()
                    .unwrap_or(5),
                ca_file: match r.non_empty_string("redis_ca_file")? {
                    None => None,
                    Some(_) if !url.starts_with("rediss://") => {
                        return Err(FieldError::new(
                            "redis_ca_file",
                            "applies to TLS connections only: use a rediss:// URL in state",
                        ))
                    }
                    Some(p) => Some(PathBuf::from(p)),
                },
            }
        }
        Some(other) => {
            // Never echo what may be a URL with a password in it.
            let shown: String = other.chars().take_while(|c| *c != ':').take(16).collect();
            return Err(FieldError::new(
                "state",
                format!("must be embedded or a redis://host:port (rediss:// for TLS) URL, got {shown:?}…"),
            ));
        }
    };
    if matches!(state, StateBackend::Embedded) {
        for only in [
            "redis_prefix",
            "redis_timeout_ms",
            "redis_dedup_days",
            "redis_ca_file",
            "redis_cluster",
            "redis_wait_replicas",
            "max_overshoot",
        ] {
            if r.get(only).is_some() {
                return Err(FieldError::new(
                    only,
                    "applies to the Redis backend only: set state to a redis:// URL, or remove it",
                ));
            }
        }
    }
    let fail_closed = choice(&r, &o::FAILURE_MODE)? == "closed";
    let node_id = match r.non_empty_string("node_id")? {
        None => None,
        Some(n) if aforo_core::config::is_name(n) => Some(n.to_string()),
        Some(n) => {
            return Err(FieldError::new(
                "node_id",
                format!("must be 1..=128 letters, digits or _-.: characters, got {n:?}"),
            ))
        }
    };
    Ok(AgentConfig {
        state,
        fail_closed,
        node_id,
        rotation_grace_secs: integer(&r, &o::ROTATION_GRACE_SECS)?,
        retention_interval_secs: integer(&r, &o::RETENTION_INTERVAL_SECS)?,
        margin_check_interval_secs: integer(&r, &o::MARGIN_CHECK_INTERVAL_SECS)?,
        listen,
        data_dir,
        environments,
        api_keys,
        tenant_keys,
        admin_key,
        product_id,
        catalog: r.non_empty_string("catalog")?.map(PathBuf::from),
        component: r.non_empty_string("component")?.map(PathBuf::from),
        upstream,
        batch_size: integer(&r, &o::BATCH_SIZE)? as usize,
        flush_interval_ms: integer(&r, &o::FLUSH_INTERVAL_MS)?,
        max_retry_time_ms: integer(&r, &o::MAX_RETRY_TIME_MS)?,
        events_per_hour: [
            integer(&r, &o::SANDBOX_EVENTS_PER_HOUR)?,
            integer(&r, &o::PRODUCTION_EVENTS_PER_HOUR)?,
        ],
        max_body_bytes: integer(&r, &o::MAX_BODY_BYTES)? as usize,
        max_json_depth: integer(&r, &o::MAX_JSON_DEPTH)? as usize,
        pool_size: integer(&r, &o::POOL_SIZE)? as usize,
        fuel_per_call: integer(&r, &o::FUEL_PER_CALL)?,
    })
}

/// The agent's configuration reference as a Markdown table, as `docs/agent.md` carries it.
#[cfg(test)]
fn reference_table() -> String {
    aforo_core::option_table::reference_table(AGENT_OPTIONS)
}

#[cfg(test)]
mod tests {
    /// The package directory at run time (cargo sets it), not the one baked in at compile time:
    /// a build cache shared between clones must not read another clone's docs.
    fn manifest_dir() -> String {
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
    }

    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_docs_document_every_agent_option() {
        let path = format!("{}/../../docs/agent.md", manifest_dir());
        let docs = std::fs::read_to_string(&path).unwrap();
        let start = docs
            .find("<!-- agent-options:begin -->")
            .expect("docs/agent.md lacks <!-- agent-options:begin -->");
        let end = docs
            .find("<!-- agent-options:end -->")
            .expect("docs/agent.md lacks <!-- agent-options:end -->");
        let documented = docs[start + "<!-- agent-options:begin -->".len()..end].trim();
        let expected = reference_table();
        assert_eq!(
            documented,
            expected.trim(),
            "update the reference in {path} to:\n{expected}"
        );
    }

    /// Every row is read by the parser with the type it declares: its default parses, and a
    /// value past an integer's range is refused naming the option.
    #[test]
    fn every_row_is_read_as_declared() {
        let c = parse(None, &env_of(&[]), &[]).unwrap();
        assert_eq!(c.batch_size, o::BATCH_SIZE.default_integer() as usize);
        for spec in AGENT_OPTIONS {
            if let Kind::Integer { max, .. } = spec.kind {
                if max == u64::MAX {
                    continue;
                }
                let flag = format!("--{}", spec.name.replace('_', "-"));
                let mut flags = vec![(flag.clone(), (max + 1).to_string())];
                if spec.doc.starts_with("Redis only") || spec.name.starts_with("redis_") {
                    flags.push(("--state".into(), "redis://r:6379".into()));
                }
                let e = parse(None, &env_of(&[]), &flags).unwrap_err();
                assert_eq!(e.path, flag, "{e}");
                assert!(e.message.contains(&format!("..={max}")), "{e}");
            }
        }
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_and_precedence() {
        let c = parse(None, &env_of(&[]), &[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8787");
        assert_eq!(c.environments, vec![Environment::Sandbox]);
        assert!(c.upstream.is_none() && c.admin_key.is_none() && c.api_keys.is_empty());
        let c = parse(
            Some(br#"{"listen": "127.0.0.1:9000", "batch_size": 5}"#),
            &env_of(&[
                ("AFORO_AGENT_LISTEN", "127.0.0.1:7000"),
                ("AFORO_AGENT_ENVIRONMENTS", "sandbox,production"),
            ]),
            &[("--batch-size".into(), "7".into())],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000, "the file wins over the environment");
        assert_eq!(c.batch_size, 7, "flags win over the file");
        assert_eq!(c.environments.len(), 2);
    }

    #[test]
    fn a_redis_cluster_is_named_by_its_nodes_and_keeps_hash_tags_out_of_the_prefix() {
        let state = "redis://a:p@10.0.0.1:6379, redis://a:p@10.0.0.2:6379";
        let c = parse(
            None,
            &env_of(&[
                ("AFORO_AGENT_STATE", state),
                ("AFORO_REDIS_CLUSTER", "true"),
            ]),
            &[],
        )
        .unwrap();
        assert!(matches!(c.state, StateBackend::Redis { cluster: true, .. }));
        let refused = |json: &str| parse(Some(json.as_bytes()), &env_of(&[]), &[]).unwrap_err();
        let e = refused(r#"{"state": "redis://h:1,h2:6379", "redis_cluster": true}"#);
        assert_eq!(e.path, "state");
        assert!(e.message.contains("comma-separated"), "{e}");
        let e =
            refused(r#"{"state": "redis://h:1", "redis_cluster": true, "redis_prefix": "{x}"}"#);
        assert_eq!(e.path, "redis_prefix");
        let e = refused(r#"{"redis_cluster": true}"#);
        assert_eq!(e.path, "redis_cluster", "a cluster needs the Redis backend");
        let e = refused(r#"{"state": "redis://h:1", "redis_cluster": "yes please"}"#);
        assert_eq!(e.path, "redis_cluster");
    }

    #[test]
    fn the_state_backend_is_embedded_or_a_redis_url() {
        let c = parse(None, &env_of(&[]), &[]).unwrap();
        assert!(matches!(c.state, StateBackend::Embedded) && !c.fail_closed);
        let c = parse(
            None,
            &env_of(&[(
                "AFORO_AGENT_STATE",
                "rediss://agent:s3cret@redis.internal:6380/2",
            )]),
            &[
                ("--redis-prefix".into(), "shop1:".into()),
                ("--failure-mode".into(), "closed".into()),
                ("--redis-dedup-days".into(), "40".into()),
                ("--max-overshoot".into(), "5".into()),
            ],
        )
        .unwrap();
        match &c.state {
            StateBackend::Redis {
                url,
                prefix,
                timeout_ms,
                dedup_days,
                max_overshoot,
                ..
            } => {
                assert!(url.starts_with("rediss://"));
                assert_eq!(
                    (prefix.as_str(), *timeout_ms, *dedup_days, *max_overshoot),
                    ("shop1:", 250, 40, Some(5))
                );
            }
            StateBackend::Embedded => panic!("not redis"),
        }
        assert!(c.fail_closed);
        assert!(
            !format!("{:?}", c.state).contains("s3cret"),
            "the URL's password is never printed"
        );
        // A mistyped scheme is refused without echoing the rest (it may hold a password).
        let e = parse(
            Some(br#"{"state": "redis:/user:hunter2@host"}"#),
            &env_of(&[]),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.path, "state");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        // Redis settings without Redis are a mistake worth naming.
        let e = parse(Some(br#"{"redis_prefix": "x:"}"#), &env_of(&[]), &[]).unwrap_err();
        assert_eq!(e.path, "redis_prefix");
        assert!(e.to_string().contains("Redis backend only"), "{e}");
        let e = parse(Some(br#"{"max_overshoot": 0}"#), &env_of(&[]), &[]).unwrap_err();
        assert_eq!(e.path, "max_overshoot", "leases need the Redis backend");
        let e = parse(
            Some(br#"{"state": "redis://r:6379", "max_overshoot": -1}"#),
            &env_of(&[]),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.path, "max_overshoot");
        let e = parse(Some(br#"{"failure_mode": "maybe"}"#), &env_of(&[]), &[]).unwrap_err();
        assert_eq!(e.path, "failure_mode");
        let e = parse(Some(br#"{"node_id": "two words"}"#), &env_of(&[]), &[]).unwrap_err();
        assert_eq!(e.path, "node_id");
    }

    #[test]
    fn errors_name_the_field_or_its_source() {
        let e = parse(Some(br#"{"batch_size": 0}"#), &env_of(&[]), &[]).unwrap_err();
        assert_eq!(e.to_string(), "batch_size: must be 1..=1000, got 0");
        let e = parse(
            None,
            &env_of(&[("AFORO_AGENT_ENVIRONMENTS", "staging")]),
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("AFORO_AGENT_ENVIRONMENTS: must be sandbox or production"),
            "{e}"
        );
        let e = parse(None, &env_of(&[]), &[("--listn".into(), "x".into())]).unwrap_err();
        assert!(e.to_string().contains("did you mean --listen?"), "{e}");
        let e = parse(
            Some(br#"{"upstream_url": "http://up:1"}"#),
            &env_of(&[]),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.path, "upstream_sandbox_key");
        let e = parse(Some(br#"{"api_keys": ["sk_prod_x"]}"#), &env_of(&[]), &[]).unwrap_err();
        assert_eq!(e.path, "api_keys[0]");
        assert!(
            !e.to_string().contains("sk_prod_x"),
            "never echo a key: {e}"
        );
        let e = parse(Some(br#"{"admin_key": "short"}"#), &env_of(&[]), &[]).unwrap_err();
        assert_eq!(e.path, "admin_key");
    }
}
