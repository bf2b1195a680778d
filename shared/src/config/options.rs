//! The one table of configuration options: names, environment variables and defaults.
//!
//! The parser takes its allowed field names from here and the README's configuration
//! reference is checked against it by a test, so the docs and the code cannot drift apart.

/// One configuration option as a user sees it.
#[derive(Clone, Copy, Debug)]
pub struct OptionSpec {
    /// JSON field name.
    pub name: &'static str,
    /// Environment variable that sets it when the JSON does not (`None`: JSON only).
    pub env: Option<&'static str>,
    /// The default, as written in the docs (`required` when there is none).
    pub default: &'static str,
    /// One line on what it is for.
    pub doc: &'static str,
    /// How an environment variable's text becomes a JSON value.
    pub kind: Kind,
}

/// The JSON type of an option, which says how its environment variable is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Text as is.
    Text,
    /// An unsigned integer.
    Integer,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
    Bool,
    /// A comma-separated list.
    List,
    /// JSON only, no environment variable.
    Json,
}

const fn opt(
    name: &'static str,
    env: Option<&'static str>,
    default: &'static str,
    doc: &'static str,
) -> OptionSpec {
    let kind = if env.is_none() {
        Kind::Json
    } else if is_integer(name) {
        Kind::Integer
    } else if eq(name, "debug") {
        Kind::Bool
    } else if eq(name, "trusted_proxies") {
        Kind::List
    } else {
        Kind::Text
    };
    // Defaults and docs are for people and for the tests that check the README; the Wasm
    // builds never read them, so they are left out there (a few KB of a proxy module).
    let docs = !cfg!(target_arch = "wasm32");
    OptionSpec {
        name,
        env,
        default: if docs { default } else { "" },
        doc: if docs { doc } else { "" },
        kind,
    }
}

const fn eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn ends_with(a: &str, suffix: &str) -> bool {
    let (a, s) = (a.as_bytes(), suffix.as_bytes());
    if s.len() > a.len() {
        return false;
    }
    let mut i = 0;
    while i < s.len() {
        if a[a.len() - s.len() + i] != s[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn is_integer(name: &str) -> bool {
    ends_with(name, "_ms")
        || ends_with(name, "_size")
        || ends_with(name, "_events")
        || ends_with(name, "_bytes")
        || ends_with(name, "_letters")
}

/// Every option of the gateway filter, in the order the README lists them.
pub const OPTIONS: &[OptionSpec] = &[
    opt(
        "api_key",
        Some("AFORO_API_KEY"),
        "required",
        "sk_test_… (sandbox) or sk_live_… (production); decides the environment",
    ),
    opt(
        "sandbox_api_key",
        Some("AFORO_SANDBOX_API_KEY"),
        "none",
        "sk_test_… key for partners in sandbox_mode when api_key is live",
    ),
    opt(
        "product_id",
        Some("AFORO_PRODUCT_ID"),
        "required",
        "product_id stamped on every event (a route may override it)",
    ),
    opt(
        "ingest_url",
        Some("AFORO_INGEST_URL"),
        "per environment",
        "base URL of the ingest; /v1/events is appended",
    ),
    opt(
        "ingest_format",
        Some("AFORO_INGEST_FORMAT"),
        "aforo",
        "aforo (ingest v1 JSON) or cloudevents (CloudEvents 1.0 batch)",
    ),
    opt(
        "batch_size",
        Some("AFORO_BATCH_SIZE"),
        "100",
        "events per ingest request, 1..=1000",
    ),
    opt(
        "flush_interval_ms",
        Some("AFORO_FLUSH_INTERVAL_MS"),
        "5000",
        "longest wait of the oldest buffered event before a flush",
    ),
    opt(
        "debug",
        Some("AFORO_DEBUG"),
        "false",
        "log every outbound event (keys redacted)",
    ),
    opt(
        "dispatch",
        Some("AFORO_DISPATCH"),
        "cluster",
        "cluster (Envoy, Istio, MuleSoft) or authority (Kong: host:port of the URL)",
    ),
    opt(
        "ingest_cluster",
        Some("AFORO_INGEST_CLUSTER"),
        "none",
        "one Envoy cluster for both environments (overrides the two below)",
    ),
    opt(
        "sandbox_cluster",
        Some("AFORO_SANDBOX_CLUSTER"),
        "aforo_ingest_sandbox",
        "Envoy cluster of the sandbox ingest",
    ),
    opt(
        "production_cluster",
        Some("AFORO_PRODUCTION_CLUSTER"),
        "aforo_ingest_production",
        "Envoy cluster of the production ingest",
    ),
    opt(
        "request_timeout_ms",
        Some("AFORO_REQUEST_TIMEOUT_MS"),
        "5000",
        "timeout of one ingest or sync call",
    ),
    opt(
        "max_buffer_events",
        Some("AFORO_MAX_BUFFER_EVENTS"),
        "10000",
        "events held per environment before overflow is dead-lettered",
    ),
    opt(
        "max_buffer_bytes",
        Some("AFORO_MAX_BUFFER_BYTES"),
        "8388608",
        "bytes held per environment before overflow is dead-lettered",
    ),
    opt(
        "max_dead_letters",
        Some("AFORO_MAX_DEAD_LETTERS"),
        "10000",
        "dead letters kept in memory for replay; older ones spill to the log",
    ),
    opt(
        "initial_backoff_ms",
        Some("AFORO_INITIAL_BACKOFF_MS"),
        "500",
        "first retry delay; doubles per attempt, with jitter",
    ),
    opt(
        "max_backoff_ms",
        Some("AFORO_MAX_BACKOFF_MS"),
        "30000",
        "longest retry delay",
    ),
    opt(
        "max_retry_time_ms",
        Some("AFORO_MAX_RETRY_TIME_MS"),
        "120000",
        "time a batch is retried before it is dead-lettered",
    ),
    opt(
        "customer_header",
        Some("AFORO_CUSTOMER_HEADER"),
        "none",
        "header carrying a customer id set by a trusted auth filter",
    ),
    opt(
        "consumer_key_header",
        Some("AFORO_CONSUMER_KEY_HEADER"),
        "x-api-key",
        "header carrying a consumer key, looked up by hash",
    ),
    opt(
        "request_id_header",
        Some("AFORO_REQUEST_ID_HEADER"),
        "none",
        "header event ids derive from, so a retry counts once; set it only to a header your edge sets itself, never one a client controls (README: Security model)",
    ),
    opt(
        "trusted_proxies",
        Some("AFORO_TRUSTED_PROXIES"),
        "[]",
        "CIDRs whose X-Forwarded-For is believed (env: comma-separated)",
    ),
    opt(
        "routes",
        None,
        "[]",
        "method + path prefix to feature, metric and quantity; first match wins",
    ),
    opt(
        "unmatched",
        Some("AFORO_UNMATCHED"),
        "allow",
        "requests no route matches: allow (not metered) or deny (403)",
    ),
    opt(
        "entitlements_url",
        Some("AFORO_ENTITLEMENTS_URL"),
        "none",
        "URL of the entitlement snapshot (GET), synced in the background",
    ),
    opt(
        "entitlements_cluster",
        Some("AFORO_ENTITLEMENTS_CLUSTER"),
        "aforo_agent",
        "Envoy cluster serving entitlements_url",
    ),
    opt(
        "sync_interval_ms",
        Some("AFORO_SYNC_INTERVAL_MS"),
        "5000",
        "how often the snapshot is refreshed",
    ),
    opt(
        "max_snapshot_age_ms",
        Some("AFORO_MAX_SNAPSHOT_AGE_MS"),
        "60000",
        "snapshot age past which failure_mode applies",
    ),
    opt(
        "failure_mode",
        Some("AFORO_FAILURE_MODE"),
        "open",
        "open (allow, still meter) or closed (503) without a fresh snapshot",
    ),
    opt(
        "entitlements",
        None,
        "none",
        "an inline snapshot, for static plans and tests (never stale)",
    ),
    opt(
        "mode",
        Some("AFORO_MODE"),
        "enforce",
        "enforce, or shadow (decide and count, never block)",
    ),
    opt(
        "billable_status",
        Some("AFORO_BILLABLE_STATUS"),
        "200-399",
        "upstream statuses that are metered, e.g. 200-299,304",
    ),
    opt(
        "max_body_bytes",
        Some("AFORO_MAX_BODY_BYTES"),
        "1048576",
        "largest response body read for a JSON-pointer quantity",
    ),
    opt(
        "source",
        Some("AFORO_SOURCE"),
        "gateway",
        "name of this gateway node, stamped on events and used in usage sync; unset, Envoy's node id (--service-node) when it has one",
    ),
];

/// The JSON field names, for the strict reader.
pub const FIELD_NAMES: &[&str] = &[
    "api_key",
    "sandbox_api_key",
    "product_id",
    "ingest_url",
    "ingest_format",
    "batch_size",
    "flush_interval_ms",
    "debug",
    "dispatch",
    "ingest_cluster",
    "sandbox_cluster",
    "production_cluster",
    "request_timeout_ms",
    "max_buffer_events",
    "max_buffer_bytes",
    "max_dead_letters",
    "initial_backoff_ms",
    "max_backoff_ms",
    "max_retry_time_ms",
    "customer_header",
    "consumer_key_header",
    "request_id_header",
    "trusted_proxies",
    "routes",
    "unmatched",
    "entitlements_url",
    "entitlements_cluster",
    "sync_interval_ms",
    "max_snapshot_age_ms",
    "failure_mode",
    "entitlements",
    "mode",
    "billable_status",
    "max_body_bytes",
    "source",
];

/// The configuration reference as a Markdown table, exactly as the README carries it.
pub fn reference_table() -> String {
    let mut out = String::from(
        "| option | environment variable | default | what it is for |\n|---|---|---|---|\n",
    );
    for o in OPTIONS {
        let env = o.env.map_or("—".to_string(), |e| format!("`{e}`"));
        out.push_str(&format!(
            "| `{}` | {env} | `{}` | {} |\n",
            o.name,
            o.default,
            o.doc.replace('|', "\\|")
        ));
    }
    out
}

/// The spec of one option by name.
pub fn option(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}

#[cfg(test)]
mod tests {
    /// The package directory at run time (cargo sets it), not the one baked in at compile time:
    /// a build cache shared between clones must not read another clone's README.
    fn manifest_dir() -> String {
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
    }

    use super::*;

    /// The README's configuration reference is this table, between its markers; when an option
    /// changes, this test prints the table to paste.
    #[test]
    fn the_readme_documents_exactly_the_options_the_parser_accepts() {
        let readme = std::fs::read_to_string(format!("{}/../README.md", manifest_dir())).unwrap();
        let start = readme
            .find("<!-- options:begin -->")
            .expect("README lacks <!-- options:begin -->");
        let end = readme
            .find("<!-- options:end -->")
            .expect("README lacks <!-- options:end -->");
        let documented = readme[start + "<!-- options:begin -->".len()..end].trim();
        let expected = reference_table();
        assert_eq!(
            documented,
            expected.trim(),
            "update the README's configuration reference to:\n{expected}"
        );
    }

    #[test]
    fn field_names_and_option_table_agree() {
        let names: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        assert_eq!(names, FIELD_NAMES);
        for o in OPTIONS {
            if let Some(env) = o.env {
                assert_eq!(env, format!("AFORO_{}", o.name.to_ascii_uppercase()));
            }
        }
    }
}
