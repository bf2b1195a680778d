//! The agent's configuration: a JSON file, `AFORO_*` environment variables and command-line
//! flags (flags win over the file, the file over the environment). Errors name the field.

use aforo_core::config::Endpoint;
use aforo_core::environment::ApiKey;
use aforo_core::event::IngestFormat;
use aforo_core::keys::{hash_key, KeyHash};
use aforo_core::strict_json::{describe, FieldError, ObjReader};
use aforo_core::Environment;
use serde_json::{Map, Value};
use std::net::SocketAddr;
use std::path::PathBuf;

/// One agent option: JSON name, environment variable, default, doc (the last two are for the
/// README, checked by a test).
#[allow(dead_code)]
pub struct AgentOption {
    /// JSON field (and `--flag` with `-` for `_`).
    pub name: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// Default, as documented.
    pub default: &'static str,
    /// What it is for.
    pub doc: &'static str,
}

const fn o(
    name: &'static str,
    env: &'static str,
    default: &'static str,
    doc: &'static str,
) -> AgentOption {
    AgentOption {
        name,
        env,
        default,
        doc,
    }
}

/// Every agent option, in the README's order.
pub const AGENT_OPTIONS: &[AgentOption] = &[
    o("listen", "AFORO_AGENT_LISTEN", "127.0.0.1:8787", "address the HTTP API listens on"),
    o("data_dir", "AFORO_AGENT_DATA_DIR", "./aforo-data", "where the SQLite stores live (one per environment, plus control.db)"),
    o("environments", "AFORO_AGENT_ENVIRONMENTS", "sandbox", "environments served (sandbox, production or both, comma-separated); keys of others get 403"),
    o("api_keys", "AFORO_API_KEYS", "[]", "sk_ keys accepted from gateways (comma-separated); empty accepts any well-formed key of a served environment"),
    o("tenant_keys", "AFORO_AGENT_TENANT_KEYS", "[]", "sk_ keys that may name the customer with tenantId in /v1/canAccess (comma-separated), for gateways that authenticate callers themselves; every other key must pass the caller's consumer key (README: Security model). Each is also an accepted gateway key"),
    o("admin_key", "AFORO_AGENT_ADMIN_KEY", "none", "adm_ key for the admin API; without it the admin API is off"),
    o("product_id", "AFORO_PRODUCT_ID", "default", "product_id of events built by /v1/meter"),
    o("catalog", "AFORO_AGENT_CATALOG", "none", "catalog JSON file: customers, their features and quotas, consumer keys, the pricing plan"),
    o("component", "AFORO_AGENT_COMPONENT", "next to the binary", "path of aforo_policy.wasm"),
    o("upstream_url", "AFORO_UPSTREAM_URL", "none", "forward stored events to this ingest (without it the agent is the local ledger)"),
    o("upstream_format", "AFORO_UPSTREAM_FORMAT", "aforo", "aforo (ingest v1) or cloudevents"),
    o("upstream_sandbox_key", "AFORO_UPSTREAM_SANDBOX_KEY", "none", "sk_test_ key for forwarding sandbox events"),
    o("upstream_production_key", "AFORO_UPSTREAM_PRODUCTION_KEY", "none", "sk_live_ key for forwarding production events"),
    o("batch_size", "AFORO_BATCH_SIZE", "100", "events per upstream request"),
    o("flush_interval_ms", "AFORO_FLUSH_INTERVAL_MS", "1000", "longest wait before forwarding"),
    o("max_retry_time_ms", "AFORO_MAX_RETRY_TIME_MS", "300000", "time a batch is retried before it is dead-lettered"),
    o("sandbox_events_per_hour", "AFORO_SANDBOX_EVENTS_PER_HOUR", "10000", "ingest rate limit per sandbox key"),
    o("production_events_per_hour", "AFORO_PRODUCTION_EVENTS_PER_HOUR", "1000000", "ingest rate limit per production key"),
    o("max_body_bytes", "AFORO_AGENT_MAX_BODY_BYTES", "1048576", "largest request body of /v1/events (other endpoints: 64 KiB)"),
    o("max_json_depth", "AFORO_AGENT_MAX_JSON_DEPTH", "32", "deepest JSON nesting accepted in any request body"),
    o("pool_size", "AFORO_AGENT_POOL_SIZE", "8", "component instances kept warm"),
    o("fuel_per_call", "AFORO_AGENT_FUEL_PER_CALL", "100000000", "instruction budget of one component call (a runaway module traps, the agent answers 503)"),
    o("state", "AFORO_AGENT_STATE", "embedded", "where quota counters, rate-limit buckets and the dedup window live: embedded (this node), or redis://[user:password@]host:port[/db] (rediss:// for TLS) shared by every agent"),
    o("redis_prefix", "AFORO_REDIS_PREFIX", "aforo:", "prefix of every Redis key (one per deployment sharing a Redis)"),
    o("redis_timeout_ms", "AFORO_REDIS_TIMEOUT_MS", "250", "connect, read and write timeout of a Redis call (10..=2000); past it the agent decides on local state"),
    o("redis_ca_file", "AFORO_REDIS_CA_FILE", "Mozilla roots", "PEM file of the CA that signed Redis's certificate (rediss:// only)"),
    o("redis_dedup_days", "AFORO_REDIS_DEDUP_DAYS", "91", "how long Redis remembers an event id (events older than 90 days are refused anyway; sandbox ids at most 30 days); shorter saves memory, but a retry older than this through another agent counts twice in quotas (the ingest still deduplicates it)"),
    o("failure_mode", "AFORO_AGENT_FAILURE_MODE", "open", "while Redis is unreachable: open decides on this node's counters, closed answers /v1/canAccess with 503"),
    o("node_id", "AFORO_AGENT_NODE_ID", "generated, kept in data_dir", "this agent's name, written with each event it claims in Redis (which agent holds an event)"),
];

fn names() -> Vec<&'static str> {
    AGENT_OPTIONS.iter().map(|o| o.name).collect()
}

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

fn env_value(name: &str, text: &str) -> Value {
    let list = ["environments", "api_keys", "tenant_keys"];
    if list.contains(&name) {
        return Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Value::from)
                .collect(),
        );
    }
    match text.parse::<u64>() {
        Ok(n)
            if name.ends_with("_ms")
                || name.ends_with("_size")
                || name.ends_with("_hour")
                || name.ends_with("_bytes")
                || name.ends_with("_depth")
                || name.ends_with("_call")
                || name.ends_with("_days") =>
        {
            Value::from(n)
        }
        _ => Value::from(text),
    }
}

/// Parses the configuration from a file's JSON (or nothing), environment variables and flags.
pub fn parse(
    file: Option<&[u8]>,
    env: &dyn Fn(&str) -> Option<String>,
    flags: &[(String, String)],
) -> Result<AgentConfig, FieldError> {
    let mut merged = Map::new();
    let mut origin: Vec<(&'static str, String)> = Vec::new();
    for o in AGENT_OPTIONS {
        if let Some(v) = env(o.env).filter(|v| !v.trim().is_empty()) {
            merged.insert(o.name.to_string(), env_value(o.name, v.trim()));
            origin.push((o.name, o.env.to_string()));
        }
    }
    if let Some(bytes) = file {
        let v = aforo_core::strict_json::parse_json("the agent configuration", bytes)?;
        let obj = v.as_object().ok_or_else(|| {
            FieldError::new(
                "",
                format!(
                    "the agent configuration must be a JSON object, got {}",
                    describe(&v)
                ),
            )
        })?;
        for (k, v) in obj {
            origin.retain(|(n, _)| n != k);
            merged.insert(k.clone(), v.clone());
        }
    }
    for (k, v) in flags {
        let name = k.trim_start_matches("--").replace('-', "_");
        let Some(o) = AGENT_OPTIONS.iter().find(|o| o.name == name) else {
            let suggestion = aforo_core::strict_json::closest(&name, &names())
                .map(|s| format!(" (did you mean --{}?)", s.replace('_', "-")))
                .unwrap_or_default();
            return Err(FieldError::new(
                k.clone(),
                format!("unknown flag{suggestion}"),
            ));
        };
        origin.retain(|(n, _)| *n != o.name);
        origin.push((o.name, k.clone()));
        merged.insert(o.name.to_string(), env_value(o.name, v));
    }
    let all = names();
    let allowed: &'static [&'static str] = Box::leak(all.into_boxed_slice());
    from_value(&Value::Object(merged), allowed).map_err(|e| {
        let field = e.path.split(['.', '[']).next().unwrap_or("").to_string();
        match origin.iter().find(|(n, _)| *n == field) {
            Some((_, source)) => FieldError::new(source.clone(), e.message),
            None => e,
        }
    })
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

fn from_value(v: &Value, allowed: &'static [&'static str]) -> Result<AgentConfig, FieldError> {
    let r = ObjReader::new("", v, allowed)?;
    let listen_text = r.string("listen")?.unwrap_or("127.0.0.1:8787");
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        FieldError::new(
            "listen",
            format!("must be an address like 127.0.0.1:8787, got {listen_text:?}"),
        )
    })?;
    let data_dir = PathBuf::from(r.non_empty_string("data_dir")?.unwrap_or("./aforo-data"));
    let environments = match r.array("environments")? {
        None => vec![Environment::Sandbox],
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
            format: match r.choice("upstream_format", &["aforo", "cloudevents"])? {
                Some("cloudevents") => IngestFormat::CloudEvents,
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
    let product_id = r
        .non_empty_string("product_id")?
        .unwrap_or("default")
        .to_string();
    if !aforo_core::config::is_name(&product_id) {
        return Err(FieldError::new(
            "product_id",
            format!("must be 1..=128 letters, digits or _-.: characters, got {product_id:?}"),
        ));
    }
    let state = match r.non_empty_string("state")? {
        None | Some("embedded") => StateBackend::Embedded,
        Some(url)
            if url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("redis+unix://") =>
        {
            let prefix = r.string("redis_prefix")?.unwrap_or("aforo:").to_string();
            if prefix.len() > 64 || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(FieldError::new(
                    "redis_prefix",
                    "must be at most 64 characters without spaces",
                ));
            }
            StateBackend::Redis {
                url: url.to_string(),
                prefix,
                timeout_ms: r.u64_in("redis_timeout_ms", 10, 2_000)?.unwrap_or(250),
                dedup_days: r.u64_in("redis_dedup_days", 1, 730)?.unwrap_or(91),
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
        ] {
            if r.get(only).is_some() {
                return Err(FieldError::new(
                    only,
                    "applies to the Redis backend only: set state to a redis:// URL, or remove it",
                ));
            }
        }
    }
    let fail_closed = matches!(
        r.choice("failure_mode", &["open", "closed"])?,
        Some("closed")
    );
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
        batch_size: r.u64_in("batch_size", 1, 1000)?.unwrap_or(100) as usize,
        flush_interval_ms: r
            .u64_in("flush_interval_ms", 10, 3_600_000)?
            .unwrap_or(1_000),
        max_retry_time_ms: r
            .u64_in("max_retry_time_ms", 0, 86_400_000)?
            .unwrap_or(300_000),
        events_per_hour: [
            r.u64_in("sandbox_events_per_hour", 1, 1 << 40)?
                .unwrap_or(10_000),
            r.u64_in("production_events_per_hour", 1, 1 << 40)?
                .unwrap_or(1_000_000),
        ],
        max_body_bytes: r
            .u64_in("max_body_bytes", 1024, 64 << 20)?
            .unwrap_or(1 << 20) as usize,
        max_json_depth: r.u64_in("max_json_depth", 2, 128)?.unwrap_or(32) as usize,
        pool_size: r.u64_in("pool_size", 1, 256)?.unwrap_or(8) as usize,
        fuel_per_call: r
            .u64_in("fuel_per_call", 1_000_000, u64::MAX)?
            .unwrap_or(100_000_000),
    })
}

/// The agent's configuration reference as a Markdown table, as the README carries it.
#[cfg(test)]
fn reference_table() -> String {
    let mut out = String::from(
        "| option | environment variable | default | what it is for |\n|---|---|---|---|\n",
    );
    for o in AGENT_OPTIONS {
        out.push_str(&format!(
            "| `{}` | `{}` | `{}` | {} |\n",
            o.name, o.env, o.default, o.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    /// The package directory at run time (cargo sets it), not the one baked in at compile time:
    /// a build cache shared between clones must not read another clone's README.
    fn manifest_dir() -> String {
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
    }

    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_readme_documents_every_agent_option() {
        let readme =
            std::fs::read_to_string(format!("{}/../../README.md", manifest_dir())).unwrap();
        let start = readme
            .find("<!-- agent-options:begin -->")
            .expect("README lacks <!-- agent-options:begin -->");
        let end = readme
            .find("<!-- agent-options:end -->")
            .expect("README lacks <!-- agent-options:end -->");
        let documented = readme[start + "<!-- agent-options:begin -->".len()..end].trim();
        let expected = reference_table();
        assert_eq!(
            documented,
            expected.trim(),
            "update the README's agent reference to:\n{expected}"
        );
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
            ],
        )
        .unwrap();
        match &c.state {
            StateBackend::Redis {
                url,
                prefix,
                timeout_ms,
                dedup_days,
                ..
            } => {
                assert!(url.starts_with("rediss://"));
                assert_eq!(
                    (prefix.as_str(), *timeout_ms, *dedup_days),
                    ("shop1:", 250, 40)
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
