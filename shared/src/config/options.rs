//! The filter's option table: one row per option, from which the parser takes names, types,
//! ranges and defaults, the environment its variables, and `docs/configuration.md` its
//! reference (checked by a test), so the docs and the code cannot drift apart.

use crate::option_table::{names, row};
pub use crate::option_table::{Default, Kind, OptionSpec};

/// `api_key`.
pub static API_KEY: OptionSpec = row(
    "api_key",
    Some("AFORO_API_KEY"),
    Kind::Text,
    Default::Required,
    "sk_test_… (sandbox) or sk_live_… (production); decides the environment",
);
/// `endpoint`.
pub static ENDPOINT: OptionSpec = row(
    "endpoint",
    Some("AFORO_ENDPOINT"),
    Kind::Text,
    Default::Unset("per environment"),
    "base URL of the aforo agent or API: events go to /v1/events, the snapshot comes from /v1/entitlements (ingest_url and entitlements_url override either half)",
);
/// `sandbox_api_key`.
pub static SANDBOX_API_KEY: OptionSpec = row(
    "sandbox_api_key",
    Some("AFORO_SANDBOX_API_KEY"),
    Kind::Text,
    Default::Unset("none"),
    "sk_test_… key for partners in sandbox_mode when api_key is live",
);
/// `product_id`.
pub static PRODUCT_ID: OptionSpec = row(
    "product_id",
    Some("AFORO_PRODUCT_ID"),
    Kind::Text,
    Default::Unset("from the snapshot, else default"),
    "product_id stamped on every event (a route may override it); unset, the snapshot's product_id, else default",
);
/// `ingest_url`.
pub static INGEST_URL: OptionSpec = row(
    "ingest_url",
    Some("AFORO_INGEST_URL"),
    Kind::Text,
    Default::Unset("per environment"),
    "base URL of the ingest, when not endpoint; /v1/events is appended",
);
/// `ingest_format`.
pub static INGEST_FORMAT: OptionSpec = row(
    "ingest_format",
    Some("AFORO_INGEST_FORMAT"),
    Kind::Choice(&["aforo", "cloudevents"]),
    Default::Text("aforo"),
    "aforo (ingest v1 JSON) or cloudevents (CloudEvents 1.0 batch)",
);
/// `batch_size`.
pub static BATCH_SIZE: OptionSpec = row(
    "batch_size",
    Some("AFORO_BATCH_SIZE"),
    Kind::Integer { min: 1, max: 1_000 },
    Default::Integer(100),
    "events per ingest request, 1..=1000",
);
/// `flush_interval_ms`.
pub static FLUSH_INTERVAL_MS: OptionSpec = row(
    "flush_interval_ms",
    Some("AFORO_FLUSH_INTERVAL_MS"),
    Kind::Integer {
        min: 10,
        max: 3_600_000,
    },
    Default::Integer(5000),
    "longest wait of the oldest buffered event before a flush",
);
/// `debug`.
pub static DEBUG: OptionSpec = row(
    "debug",
    Some("AFORO_DEBUG"),
    Kind::Bool,
    Default::Bool(false),
    "log every outbound event (keys redacted)",
);
/// `dispatch`.
pub static DISPATCH: OptionSpec = row(
    "dispatch",
    Some("AFORO_DISPATCH"),
    Kind::Choice(&["cluster", "authority"]),
    Default::Text("cluster"),
    "cluster (Envoy, Istio, MuleSoft) or authority (Kong: host:port of the URL)",
);
/// `ingest_cluster`.
pub static INGEST_CLUSTER: OptionSpec = row(
    "ingest_cluster",
    Some("AFORO_INGEST_CLUSTER"),
    Kind::Text,
    Default::Unset("none"),
    "one Envoy cluster for both environments (overrides the two below)",
);
/// `sandbox_cluster`.
pub static SANDBOX_CLUSTER: OptionSpec = row(
    "sandbox_cluster",
    Some("AFORO_SANDBOX_CLUSTER"),
    Kind::Text,
    Default::Text("aforo_ingest_sandbox"),
    "Envoy cluster of the sandbox ingest",
);
/// `production_cluster`.
pub static PRODUCTION_CLUSTER: OptionSpec = row(
    "production_cluster",
    Some("AFORO_PRODUCTION_CLUSTER"),
    Kind::Text,
    Default::Text("aforo_ingest_production"),
    "Envoy cluster of the production ingest",
);
/// `request_timeout_ms`.
pub static REQUEST_TIMEOUT_MS: OptionSpec = row(
    "request_timeout_ms",
    Some("AFORO_REQUEST_TIMEOUT_MS"),
    Kind::Integer {
        min: 10,
        max: 600_000,
    },
    Default::Integer(5000),
    "timeout of one ingest or sync call",
);
/// `max_buffer_events`.
pub static MAX_BUFFER_EVENTS: OptionSpec = row(
    "max_buffer_events",
    Some("AFORO_MAX_BUFFER_EVENTS"),
    Kind::Integer {
        min: 1,
        max: 10_000_000,
    },
    Default::Integer(10000),
    "events held per environment before overflow is dead-lettered",
);
/// `max_buffer_bytes`.
pub static MAX_BUFFER_BYTES: OptionSpec = row(
    "max_buffer_bytes",
    Some("AFORO_MAX_BUFFER_BYTES"),
    Kind::Integer {
        min: 4_096,
        max: 4_294_967_295,
    },
    Default::Integer(8388608),
    "bytes held per environment before overflow is dead-lettered",
);
/// `max_dead_letters`.
pub static MAX_DEAD_LETTERS: OptionSpec = row(
    "max_dead_letters",
    Some("AFORO_MAX_DEAD_LETTERS"),
    Kind::Integer {
        min: 0,
        max: 10_000_000,
    },
    Default::Integer(10000),
    "dead letters kept in memory for replay; older ones spill to the log",
);
/// `initial_backoff_ms`.
pub static INITIAL_BACKOFF_MS: OptionSpec = row(
    "initial_backoff_ms",
    Some("AFORO_INITIAL_BACKOFF_MS"),
    Kind::Integer {
        min: 1,
        max: 3_600_000,
    },
    Default::Integer(500),
    "first retry delay; doubles per attempt, with jitter",
);
/// `max_backoff_ms`.
pub static MAX_BACKOFF_MS: OptionSpec = row(
    "max_backoff_ms",
    Some("AFORO_MAX_BACKOFF_MS"),
    Kind::Integer {
        min: 1,
        max: 3_600_000,
    },
    Default::Integer(30000),
    "longest retry delay",
);
/// `max_retry_time_ms`.
pub static MAX_RETRY_TIME_MS: OptionSpec = row(
    "max_retry_time_ms",
    Some("AFORO_MAX_RETRY_TIME_MS"),
    Kind::Integer {
        min: 0,
        max: 86_400_000,
    },
    Default::Integer(120000),
    "time a batch is retried before it is dead-lettered",
);
/// `customer_header`.
pub static CUSTOMER_HEADER: OptionSpec = row(
    "customer_header",
    Some("AFORO_CUSTOMER_HEADER"),
    Kind::Text,
    Default::Unset("none"),
    "header carrying a customer id set by a trusted auth filter",
);
/// `consumer_key_header`.
pub static CONSUMER_KEY_HEADER: OptionSpec = row(
    "consumer_key_header",
    Some("AFORO_CONSUMER_KEY_HEADER"),
    Kind::Text,
    Default::Text("x-api-key"),
    "header carrying a consumer key, looked up by hash",
);
/// `request_id_header`.
pub static REQUEST_ID_HEADER: OptionSpec = row(
    "request_id_header",
    Some("AFORO_REQUEST_ID_HEADER"),
    Kind::Text,
    Default::Unset("none"),
    "header event ids derive from, so a retry counts once; set it only to a header your edge sets itself, never one a client controls (docs/security.md)",
);
/// `trusted_proxies`.
pub static TRUSTED_PROXIES: OptionSpec = row(
    "trusted_proxies",
    Some("AFORO_TRUSTED_PROXIES"),
    Kind::List,
    Default::Unset("[]"),
    "CIDRs whose X-Forwarded-For is believed (env: comma-separated)",
);
/// `routes`.
pub static ROUTES: OptionSpec = row(
    "routes",
    None,
    Kind::Json,
    Default::Unset("none"),
    "method + path prefix to feature, metrics and quantities; first match wins; unset: every request is feature and metric api_calls, quantity 1 ([]: nothing is metered)",
);
/// `unmatched`.
pub static UNMATCHED: OptionSpec = row(
    "unmatched",
    Some("AFORO_UNMATCHED"),
    Kind::Choice(&["allow", "deny"]),
    Default::Text("allow"),
    "requests no route matches: allow (not metered) or deny (403)",
);
/// `entitlements_url`.
pub static ENTITLEMENTS_URL: OptionSpec = row(
    "entitlements_url",
    Some("AFORO_ENTITLEMENTS_URL"),
    Kind::Text,
    Default::Unset("{endpoint}/v1/entitlements"),
    "URL of the entitlement snapshot (GET), synced in the background; unset, from endpoint (else ingest_url, else the environment's ingest host), except with customer_header or inline entitlements (then none: metering only)",
);
/// `entitlements_cluster`.
pub static ENTITLEMENTS_CLUSTER: OptionSpec = row(
    "entitlements_cluster",
    Some("AFORO_ENTITLEMENTS_CLUSTER"),
    Kind::Text,
    Default::Text("aforo_agent"),
    "Envoy cluster serving entitlements_url, and the events too when endpoint is set and ingest_url and ingest_cluster are not",
);
/// `sync_interval_ms`.
pub static SYNC_INTERVAL_MS: OptionSpec = row(
    "sync_interval_ms",
    Some("AFORO_SYNC_INTERVAL_MS"),
    Kind::Integer {
        min: 100,
        max: 86_400_000,
    },
    Default::Integer(5000),
    "how often the snapshot is refreshed (in a VM that has served no request yet: every max_snapshot_age_ms / 2 up to 30 s, if longer)",
);
/// `max_snapshot_age_ms`.
pub static MAX_SNAPSHOT_AGE_MS: OptionSpec = row(
    "max_snapshot_age_ms",
    Some("AFORO_MAX_SNAPSHOT_AGE_MS"),
    Kind::Integer {
        min: 1_000,
        max: 604_800_000,
    },
    Default::Integer(60000),
    "snapshot age past which failure_mode applies",
);
/// `failure_mode`.
pub static FAILURE_MODE: OptionSpec = row(
    "failure_mode",
    Some("AFORO_FAILURE_MODE"),
    Kind::Choice(&["open", "closed"]),
    Default::Text("open"),
    "open (allow, still meter) or closed (503) without a fresh snapshot",
);
/// `quota_slice`.
pub static QUOTA_SLICE: OptionSpec = row(
    "quota_slice",
    Some("AFORO_QUOTA_SLICE"),
    Kind::Integer {
        min: 0,
        max: 1_000_000,
    },
    Default::Integer(0),
    "units of a counter a worker may hold before merging them into shared data (and on every tick); 0 is exact; a window may pass its quota by less than workers × this",
);
/// `quota_leases`.
pub static QUOTA_LEASES: OptionSpec = row(
    "quota_leases",
    Some("AFORO_QUOTA_LEASES"),
    Kind::Bool,
    Default::Bool(false),
    "take quota units from leases the agent of entitlements_url grants (agent on Redis with max_overshoot set): a window passes its quota by at most the agent's max_overshoot across every node; a request finding no units left waits for one call to the agent",
);
/// `entitlements`.
pub static ENTITLEMENTS: OptionSpec = row(
    "entitlements",
    None,
    Kind::Json,
    Default::Unset("none"),
    "an inline snapshot, for static plans and tests (never stale)",
);
/// `mode`.
pub static MODE: OptionSpec = row(
    "mode",
    Some("AFORO_MODE"),
    Kind::Choice(&["enforce", "shadow"]),
    Default::Text("enforce"),
    "enforce, or shadow (decide and count, never block)",
);
/// `rate_limit_headers`.
pub static RATE_LIMIT_HEADERS: OptionSpec = row(
    "rate_limit_headers",
    Some("AFORO_RATE_LIMIT_HEADERS"),
    Kind::Bool,
    Default::Bool(true),
    "send RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset on allowed responses and 429s; false keeps a quota's state from clients (a 429 keeps Retry-After) and saves three header writes a request",
);
/// `billable_status`.
pub static BILLABLE_STATUS: OptionSpec = row(
    "billable_status",
    Some("AFORO_BILLABLE_STATUS"),
    Kind::Text,
    Default::Text("200-399"),
    "upstream statuses that are metered, e.g. 200-299,304",
);
/// `max_body_bytes`.
pub static MAX_BODY_BYTES: OptionSpec = row(
    "max_body_bytes",
    Some("AFORO_MAX_BODY_BYTES"),
    Kind::Integer {
        min: 0,
        max: 64 << 20,
    },
    Default::Integer(1048576),
    "largest response body read for a JSON-pointer quantity",
);
/// `source`.
pub static SOURCE: OptionSpec = row(
    "source",
    Some("AFORO_SOURCE"),
    Kind::Text,
    Default::Text("gateway"),
    "name of this gateway node, stamped on events and used in usage sync; unset, Envoy's node id (--service-node) when it has one, the host name in the native module",
);

/// Every option of the gateway filter, in the order `docs/configuration.md` lists them.
pub const OPTIONS: &[&OptionSpec] = &[
    &API_KEY,
    &ENDPOINT,
    &SANDBOX_API_KEY,
    &PRODUCT_ID,
    &INGEST_URL,
    &INGEST_FORMAT,
    &BATCH_SIZE,
    &FLUSH_INTERVAL_MS,
    &DEBUG,
    &DISPATCH,
    &INGEST_CLUSTER,
    &SANDBOX_CLUSTER,
    &PRODUCTION_CLUSTER,
    &REQUEST_TIMEOUT_MS,
    &MAX_BUFFER_EVENTS,
    &MAX_BUFFER_BYTES,
    &MAX_DEAD_LETTERS,
    &INITIAL_BACKOFF_MS,
    &MAX_BACKOFF_MS,
    &MAX_RETRY_TIME_MS,
    &CUSTOMER_HEADER,
    &CONSUMER_KEY_HEADER,
    &REQUEST_ID_HEADER,
    &TRUSTED_PROXIES,
    &ROUTES,
    &UNMATCHED,
    &ENTITLEMENTS_URL,
    &ENTITLEMENTS_CLUSTER,
    &SYNC_INTERVAL_MS,
    &MAX_SNAPSHOT_AGE_MS,
    &FAILURE_MODE,
    &QUOTA_SLICE,
    &QUOTA_LEASES,
    &ENTITLEMENTS,
    &MODE,
    &RATE_LIMIT_HEADERS,
    &BILLABLE_STATUS,
    &MAX_BODY_BYTES,
    &SOURCE,
];

/// The JSON field names, for the strict reader.
pub static FIELD_NAMES: [&str; OPTIONS.len()] = names::<{ OPTIONS.len() }>(OPTIONS);

/// The configuration reference as a Markdown table, exactly as `docs/configuration.md` carries it.
#[cfg(not(target_arch = "wasm32"))]
pub fn reference_table() -> String {
    crate::option_table::reference_table(OPTIONS)
}

/// The spec of one option by name.
pub fn option(name: &str) -> Option<&'static OptionSpec> {
    crate::option_table::find(OPTIONS, name)
}

#[cfg(test)]
mod tests {
    /// The package directory at run time (cargo sets it), not the one baked in at compile time:
    /// a build cache shared between clones must not read another clone's docs.
    fn manifest_dir() -> String {
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
    }

    use super::*;

    /// `docs/configuration.md`'s reference is this table, between its markers; when an option
    /// changes, this test prints the table to paste.
    #[test]
    fn the_docs_document_exactly_the_options_the_parser_accepts() {
        let path = format!("{}/../docs/configuration.md", manifest_dir());
        let docs = std::fs::read_to_string(&path).unwrap();
        let start = docs
            .find("<!-- options:begin -->")
            .expect("docs/configuration.md lacks <!-- options:begin -->");
        let end = docs
            .find("<!-- options:end -->")
            .expect("docs/configuration.md lacks <!-- options:end -->");
        let documented = docs[start + "<!-- options:begin -->".len()..end].trim();
        let expected = reference_table();
        assert_eq!(
            documented,
            expected.trim(),
            "update the reference in {path} to:\n{expected}"
        );
    }

    #[test]
    fn every_variable_is_its_option_upper_cased() {
        for o in OPTIONS {
            if let Some(env) = o.env {
                assert_eq!(env, format!("AFORO_{}", o.name.to_ascii_uppercase()));
            }
            assert!(o.env.is_some() || o.kind == Kind::Json, "{}", o.name);
        }
        assert_eq!(FIELD_NAMES.len(), OPTIONS.len());
    }
}
