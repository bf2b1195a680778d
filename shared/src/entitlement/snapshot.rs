//! The entitlement snapshot: what each customer may use, how much, and which keys are theirs.
//! Gateways decide from it locally, with no network call on the request path.

use super::features::{FeatureNames, Features};
use super::window::{Period, QuotaWindow};
use crate::environment::Environment;
use crate::keys::{Cidr, ConsumerKey, ConsumerKeyTable, KeyHash};
use crate::ratelimit::{Per, RateLimit};
use crate::strict_json::{index, join, FieldError, ObjReader};
use crate::time::{parse_rfc3339, Timestamp};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// One customer's right to one feature.
#[derive(Clone, Debug, PartialEq)]
pub struct Entitlement {
    /// `false` means the feature is in the catalogue but not in this customer's plan.
    pub allowed: bool,
    /// Units per window; `None` is unlimited.
    pub quota: Option<u64>,
    /// Units used in `used_window_start`'s window, as of the snapshot.
    pub used: u64,
    /// The part of `used` that this gateway node reported itself (so it is not counted twice).
    pub used_by_source: Option<u64>,
    /// Start of the window `used` refers to; `None` means the window current at decision time.
    pub used_window_start: Option<Timestamp>,
    /// How the quota renews.
    pub window: QuotaWindow,
    /// Requests per short window, on top of the quota.
    pub rate_limit: Option<RateLimit>,
}

impl Entitlement {
    /// Units used in the window containing `now` according to the snapshot, and this node's
    /// reported share of them when the issuer tracks it.
    pub fn snapshot_used(&self, now: Timestamp) -> (u64, Option<u64>) {
        self.snapshot_used_in(self.window.current(now).0)
    }

    /// As `snapshot_used`, for the window starting at `window_start` (already computed).
    pub fn snapshot_used_in(&self, window_start: Timestamp) -> (u64, Option<u64>) {
        match self.used_window_start {
            Some(start) if start != window_start => (0, self.used_by_source.map(|_| 0)),
            _ => (self.used, self.used_by_source),
        }
    }
}

/// A customer (partner) in the snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Customer {
    /// Suspended customers are refused everything.
    pub active: bool,
    /// Usage is tracked, tagged sandbox, and never billed.
    pub sandbox_mode: bool,
    /// Client networks allowed for every key of this customer; empty means any.
    pub ip_allowlist: Vec<Cidr>,
    /// Feature name → entitlement.
    pub features: Features,
    /// Credits per UTC day (every unit of every metered feature counts one), enforced in
    /// production only: a quota on [`DAILY_CREDITS`](super::DAILY_CREDITS). Boxed: most
    /// customers have none, and a snapshot holds one `Customer` per customer inline.
    pub daily_credits: Option<Box<Entitlement>>,
    /// Its margin this period is below its plan's floor and the plan blocks: production
    /// requests are refused `margin_guard` (the agent sets it; the sandbox is never refused).
    pub margin_guard: bool,
}

/// Everything a gateway needs to decide locally.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Monotonic version from the issuer, for logs and staleness reports.
    pub version: u64,
    /// When the issuer produced it.
    pub generated_at: Option<Timestamp>,
    /// The environment it describes, when stated.
    pub environment: Option<Environment>,
    /// The product the issuer meters for: stamped on events when the gateway names none.
    pub product_id: Option<String>,
    /// Customer id → customer.
    pub customers: HashMap<String, Customer>,
    /// Consumer keys by hash.
    pub keys: ConsumerKeyTable,
    /// Whether any customer or key has an IP allowlist (otherwise the client address is not needed).
    pub uses_ip_allowlists: bool,
}

pub(super) const TOP: &[&str] = &[
    "version",
    "generated_at",
    "environment",
    "product_id",
    "customers",
    "consumer_keys",
];
const CUSTOMER: &[&str] = &[
    "status",
    "sandbox_mode",
    "ip_allowlist",
    "features",
    "daily_credits",
    "margin_guard",
];
const DAILY: &[&str] = &["limit", "used", "used_by_source", "window_start"];
const FEATURE: &[&str] = &[
    "allowed",
    "quota",
    "used",
    "used_by_source",
    "window",
    "anchor",
    "window_start",
    "rate_limit",
];
const KEY: &[&str] = &[
    "key_id",
    "hash",
    "customer_id",
    "scopes",
    "expires_at",
    "revoked",
    "ip_allowlist",
    "rate_limit",
];
const RATE: &[&str] = &["limit", "per"];

/// Largest quota or usage count accepted (2^53, so JSON numbers stay exact everywhere).
pub const MAX_UNITS: u64 = 1 << 53;

/// A snapshot being read: the scalar fields first, then customers and keys one at a time.
pub(super) struct Parts {
    version: u64,
    generated_at: Option<Timestamp>,
    environment: Option<Environment>,
    product_id: Option<String>,
    customers: HashMap<String, Customer>,
    keys: Vec<ConsumerKey>,
    /// Feature names, one copy each.
    pub(super) names: FeatureNames,
}

/// One customer read at `cpath.id`; an empty id is refused.
pub(super) fn customer_at(
    cpath: &str,
    id: &str,
    cv: &Value,
    names: &mut FeatureNames,
) -> Result<Customer, FieldError> {
    if id.is_empty() {
        return Err(FieldError::new(cpath, "a customer id must not be empty"));
    }
    parse_customer(&join(cpath, id), cv, names)
}

impl Parts {
    pub(super) fn read(r: &ObjReader<'_>) -> Result<Self, FieldError> {
        let version = r.u64_in("version", 0, u64::MAX)?.unwrap_or(0);
        let generated_at = opt_time(r, "generated_at")?;
        let environment = match r.choice("environment", &["sandbox", "production"])? {
            Some(e) => Environment::from_wire(e),
            None => None,
        };
        let product_id = r.optional_name("product_id")?;
        Ok(Parts {
            version,
            generated_at,
            environment,
            product_id,
            customers: HashMap::new(),
            keys: Vec::new(),
            names: FeatureNames::default(),
        })
    }

    /// The customers, read elsewhere (the streamed reader fills the table itself).
    pub(super) fn set_customers(&mut self, customers: HashMap<String, Customer>) {
        self.customers = customers;
    }

    /// Keys read elsewhere, from the list at `kpath`, checked in order against the customers.
    pub(super) fn add_keys(
        &mut self,
        kpath: &str,
        keys: Vec<ConsumerKey>,
    ) -> Result<(), FieldError> {
        for (i, k) in keys.iter().enumerate() {
            self.check_customer(&index(kpath, i), k)?;
        }
        self.keys = keys;
        Ok(())
    }

    fn check_customer(&self, p: &str, key: &ConsumerKey) -> Result<(), FieldError> {
        if self.customers.contains_key(&key.customer_id) {
            return Ok(());
        }
        Err(FieldError::new(
            join(p, "customer_id"),
            format!("customer {:?} is not in customers", key.customer_id),
        ))
    }

    fn add_customer(&mut self, cpath: &str, id: &str, cv: &Value) -> Result<(), FieldError> {
        let c = customer_at(cpath, id, cv, &mut self.names)?;
        self.customers.insert(id.to_string(), c);
        Ok(())
    }

    fn add_key(&mut self, p: &str, kv: &Value) -> Result<(), FieldError> {
        let key = parse_key(p, kv)?;
        self.check_customer(p, &key)?;
        self.keys.push(key);
        Ok(())
    }

    pub(super) fn finish(self) -> Snapshot {
        let uses_ip_allowlists = self.customers.values().any(|c| !c.ip_allowlist.is_empty())
            || self.keys.iter().any(|k| !k.ip_allowlist.is_empty());
        Snapshot {
            version: self.version,
            generated_at: self.generated_at,
            environment: self.environment,
            product_id: self.product_id,
            customers: self.customers,
            keys: ConsumerKeyTable::new(self.keys),
            uses_ip_allowlists,
        }
    }
}

impl Snapshot {
    /// Parses snapshot JSON bytes. Customers and keys are read one at a time from the raw
    /// text, so the peak memory is the document plus the typed snapshot, not a JSON tree of the
    /// whole document (about ten times its size: what a proxy VM's linear memory would keep
    /// as its high-water mark). A document of a shape it does not expect is read as a whole
    /// tree: the same result or the same error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FieldError> {
        super::stepped::from_json(bytes)
    }

    /// Parses a snapshot from a JSON value found at `path`.
    pub fn from_value(path: &str, v: &Value) -> Result<Self, FieldError> {
        let r = ObjReader::new(path, v, TOP)?;
        let mut parts = Parts::read(&r)?;
        if let Some(c) = r.get("customers") {
            let cpath = r.field_path("customers");
            let map = c.as_object().ok_or_else(|| {
                FieldError::new(&cpath, "must be an object of customer id → customer")
            })?;
            parts.customers.reserve(map.len());
            for (id, cv) in map {
                parts.add_customer(&cpath, id, cv)?;
            }
        }
        if let Some(list) = r.array("consumer_keys")? {
            let kpath = r.field_path("consumer_keys");
            for (i, kv) in list.iter().enumerate() {
                parts.add_key(&index(&kpath, i), kv)?;
            }
        }
        Ok(parts.finish())
    }

    /// The snapshot as JSON, in the same shape `from_value` reads.
    pub fn to_value(&self) -> Value {
        let mut customers = Map::new();
        let mut ids: Vec<&String> = self.customers.keys().collect();
        ids.sort();
        for id in ids {
            let Some(c) = self.customers.get(id) else {
                continue;
            };
            let mut features = Map::new();
            let mut list: Vec<(&str, &Entitlement)> = c.features.iter().collect();
            list.sort_by_key(|(name, _)| *name);
            for (name, e) in list {
                let mut f = Map::new();
                f.insert("allowed".into(), Value::from(e.allowed));
                f.insert(
                    "quota".into(),
                    e.quota.map(Value::from).unwrap_or(Value::Null),
                );
                f.insert("used".into(), Value::from(e.used));
                if let Some(s) = e.used_by_source {
                    f.insert("used_by_source".into(), Value::from(s));
                }
                f.insert("window".into(), Value::from(e.window.period.as_str()));
                if e.window.anchor != Timestamp::EPOCH {
                    f.insert("anchor".into(), Value::from(e.window.anchor.to_rfc3339()));
                }
                if let Some(ws) = e.used_window_start {
                    f.insert("window_start".into(), Value::from(ws.to_rfc3339()));
                }
                if let Some(rl) = &e.rate_limit {
                    f.insert("rate_limit".into(), rate_value(rl));
                }
                features.insert(name.to_string(), Value::Object(f));
            }
            let mut customer = json!({
                "status": if c.active { "active" } else { "suspended" },
                "sandbox_mode": c.sandbox_mode,
                "ip_allowlist": c.ip_allowlist.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
                "features": features,
            });
            if c.margin_guard {
                customer["margin_guard"] = Value::from(true);
            }
            if let Some(d) = &c.daily_credits {
                let mut v = json!({"limit": d.quota.unwrap_or(0), "used": d.used});
                if let Some(s) = d.used_by_source {
                    v["used_by_source"] = Value::from(s);
                }
                if let Some(ws) = d.used_window_start {
                    v["window_start"] = Value::from(ws.to_rfc3339());
                }
                customer["daily_credits"] = v;
            }
            customers.insert(id.clone(), customer);
        }
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| {
                json!({
                    "key_id": k.key_id,
                    "hash": k.hash.to_text(),
                    "customer_id": k.customer_id,
                    "scopes": k.scopes,
                    "expires_at": k.expires_at.map(|t| t.to_rfc3339()),
                    "revoked": k.revoked,
                    "ip_allowlist": k.ip_allowlist.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
                    "rate_limit": k.rate_limit.as_ref().map(rate_value),
                })
            })
            .collect();
        let mut top = Map::new();
        top.insert("version".into(), Value::from(self.version));
        if let Some(g) = self.generated_at {
            top.insert("generated_at".into(), Value::from(g.to_rfc3339()));
        }
        if let Some(e) = self.environment {
            top.insert("environment".into(), Value::from(e.as_str()));
        }
        if let Some(p) = &self.product_id {
            top.insert("product_id".into(), Value::from(p.as_str()));
        }
        top.insert("customers".into(), Value::Object(customers));
        top.insert("consumer_keys".into(), Value::Array(keys));
        Value::Object(top)
    }
}

fn rate_value(rl: &RateLimit) -> Value {
    let per = match rl.per {
        Per::Second => "second",
        Per::Minute => "minute",
        Per::Hour => "hour",
        Per::Day => "day",
    };
    json!({"limit": rl.limit, "per": per})
}

fn opt_time(r: &ObjReader<'_>, key: &str) -> Result<Option<Timestamp>, FieldError> {
    match r.string(key)? {
        None => Ok(None),
        Some(s) => parse_rfc3339(s)
            .map(Some)
            .map_err(|e| FieldError::new(r.field_path(key), e.to_string())),
    }
}

fn cidrs(r: &ObjReader<'_>, key: &str) -> Result<Vec<Cidr>, FieldError> {
    let Some(list) = r.array(key)? else {
        return Ok(Vec::new());
    };
    let p = r.field_path(key);
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let s = v.as_str().ok_or_else(|| {
                FieldError::new(index(&p, i), "must be a CIDR string such as 10.0.0.0/8")
            })?;
            Cidr::parse(s).map_err(|e| FieldError::new(index(&p, i), e.0))
        })
        .collect()
}

fn rate_limit(r: &ObjReader<'_>, key: &str) -> Result<Option<RateLimit>, FieldError> {
    let Some(v) = r.get(key) else {
        return Ok(None);
    };
    let rr = ObjReader::new(&r.field_path(key), v, RATE)?;
    let limit = rr
        .u64_in("limit", 0, MAX_UNITS)?
        .ok_or_else(|| FieldError::new(rr.field_path("limit"), "is required"))?;
    let per = rr
        .choice("per", &["second", "minute", "hour", "day"])?
        .and_then(Per::parse)
        .ok_or_else(|| {
            FieldError::new(
                rr.field_path("per"),
                "is required: second, minute, hour or day",
            )
        })?;
    Ok(Some(RateLimit { limit, per }))
}

fn parse_customer(path: &str, v: &Value, names: &mut FeatureNames) -> Result<Customer, FieldError> {
    let r = ObjReader::new(path, v, CUSTOMER)?;
    let active = r
        .choice("status", &["active", "suspended"])?
        .unwrap_or("active")
        == "active";
    let sandbox_mode = r.bool("sandbox_mode")?.unwrap_or(false);
    let ip_allowlist = cidrs(&r, "ip_allowlist")?;
    let mut features = Vec::new();
    if let Some(f) = r.get("features") {
        let fpath = r.field_path("features");
        let map = f
            .as_object()
            .ok_or_else(|| FieldError::new(&fpath, "must be an object of feature → entitlement"))?;
        for (name, fv) in map {
            if name.starts_with('*') {
                return Err(FieldError::new(
                    join(&fpath, name),
                    "feature names starting with * are reserved (daily credits count as *daily_credits)",
                ));
            }
            features.push((names.intern(name), parse_feature(&join(&fpath, name), fv)?));
        }
    }
    let daily_credits = match r.get("daily_credits") {
        None | Some(Value::Null) => None,
        Some(d) => Some(Box::new(parse_daily(&r.field_path("daily_credits"), d)?)),
    };
    Ok(Customer {
        active,
        sandbox_mode,
        ip_allowlist,
        features: features.into_iter().collect(),
        daily_credits,
        margin_guard: r.bool("margin_guard")?.unwrap_or(false),
    })
}

/// `daily_credits`: `{"limit": n, "used"?, "used_by_source"?, "window_start"?}`, a quota whose
/// window is the UTC day.
fn parse_daily(path: &str, v: &Value) -> Result<Entitlement, FieldError> {
    let r = ObjReader::new(path, v, DAILY)?;
    let limit = r.u64_in("limit", 0, MAX_UNITS)?.ok_or_else(|| {
        FieldError::new(r.field_path("limit"), "is required: credits per UTC day")
    })?;
    let used = r.u64_in("used", 0, MAX_UNITS)?.unwrap_or(0);
    let used_by_source = r.u64_in("used_by_source", 0, MAX_UNITS)?;
    if used_by_source.is_some_and(|s| s > used) {
        return Err(FieldError::new(
            r.field_path("used_by_source"),
            format!("must not exceed used ({used})"),
        ));
    }
    Ok(Entitlement {
        allowed: true,
        quota: Some(limit),
        used,
        used_by_source,
        used_window_start: opt_time(&r, "window_start")?,
        window: QuotaWindow {
            period: Period::Day,
            anchor: Timestamp::EPOCH,
        },
        rate_limit: None,
    })
}

fn parse_feature(path: &str, v: &Value) -> Result<Entitlement, FieldError> {
    let r = ObjReader::new(path, v, FEATURE)?;
    let allowed = r.bool("allowed")?.unwrap_or(true);
    let quota = r.u64_in("quota", 0, MAX_UNITS)?;
    let used = r.u64_in("used", 0, MAX_UNITS)?.unwrap_or(0);
    let used_by_source = r.u64_in("used_by_source", 0, MAX_UNITS)?;
    if used_by_source.is_some_and(|s| s > used) {
        return Err(FieldError::new(
            r.field_path("used_by_source"),
            format!("must not exceed used ({used})"),
        ));
    }
    let period = r
        .choice(
            "window",
            &["minute", "hour", "day", "week", "month", "year"],
        )?
        .and_then(Period::parse)
        .unwrap_or(Period::Month);
    let anchor = opt_time(&r, "anchor")?.unwrap_or(Timestamp::EPOCH);
    let used_window_start = opt_time(&r, "window_start")?;
    Ok(Entitlement {
        allowed,
        quota,
        used,
        used_by_source,
        used_window_start,
        window: QuotaWindow { period, anchor },
        rate_limit: rate_limit(&r, "rate_limit")?,
    })
}

pub(super) fn parse_key(path: &str, v: &Value) -> Result<ConsumerKey, FieldError> {
    let r = ObjReader::new(path, v, KEY)?;
    let key_id = r
        .non_empty_string("key_id")?
        .ok_or_else(|| FieldError::new(r.field_path("key_id"), "is required"))?
        .to_string();
    let hash_text = r.required_string("hash")?;
    let hash = KeyHash::parse(hash_text).ok_or_else(|| {
        FieldError::new(
            r.field_path("hash"),
            "must be sha256:<64 hex digits> (the SHA-256 of the key, never the key itself)",
        )
    })?;
    let customer_id = r.required_string("customer_id")?.to_string();
    let scopes = match r.array("scopes")? {
        None => Vec::new(),
        Some(list) => {
            let p = r.field_path("scopes");
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| FieldError::new(index(&p, i), "must be a feature name"))
                })
                .collect::<Result<_, _>>()?
        }
    };
    Ok(ConsumerKey {
        key_id,
        hash,
        customer_id,
        scopes,
        expires_at: opt_time(&r, "expires_at")?,
        revoked: r.bool("revoked")?.unwrap_or(false),
        ip_allowlist: cidrs(&r, "ip_allowlist")?,
        rate_limit: rate_limit(&r, "rate_limit")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot's table holds every customer inline (10,000 customers: 16,384 slots), so a
    /// field most customers lack goes behind a pointer: the daily credits inline once made a
    /// 10,000-customer VM 6 MiB larger (BENCHMARKS.md, "Memory of one filter VM").
    #[test]
    fn a_customer_stays_small_inline() {
        let size = std::mem::size_of::<Customer>();
        assert!(size <= 96, "Customer is {size} bytes inline");
    }

    #[test]
    fn reading_by_parts_gives_what_the_whole_tree_gives_errors_included() {
        let docs = [
            r#"{"version": 3, "customers": {"a": {"features": {"f": {"quota": 5, "used": 2}}}, "b": {"status": "suspended", "features": {}}},
                "consumer_keys": [{"key_id": "k", "hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "customer_id": "a"}]}"#,
            r#"{"customers": {"a": {"features": {"f": {"quota": -1}}}}}"#,
            r#"{"customers": {"a": {"features": {}}}, "consumer_keys": [{"key_id": "k", "hash": "sha256:00", "customer_id": "zz"}]}"#,
            r#"{"customers": {"": {"features": {}}}}"#,
            r#"{"customers": null}"#,
            r#"{"customers": {}, "consumer_keys": null}"#,
            r#"{"custmers": {}}"#,
            r#"{"version": "x"}"#,
            r#"[]"#,
            r#"{"consumer_keys": [{"key_id": "k", "hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "customer_id": "b"}], "customers": {"b": {"features": {}}}}"#,
            r#"{"customers": {"x": 1}, "customers": {"b": {"features": {}}}, "version": 2}"#,
            r#"{"customers": {"z": {"features": {"f": {"quota": "no"}}}, "a": {"features": {"f": {"quota": -2}}}}}"#,
            r#"{"customers": {}} trailing"#,
            r#"{"customers": {"a": {"features": {"f": {"quota": 1}}}}, "consumer_keys": [{"key_id": "k", "hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "customer_id": "zz"}]}"#,
            // Other shapes than expected, at every level.
            r#"{"customers": 5}"#,
            r#"{"customers": [1, {"a": 2}], "version": 1}"#,
            r#"{"customers": null, "consumer_keys": null}"#,
            r#"{"consumer_keys": {"a": [1]}, "customers": {}}"#,
            r#"{"consumer_keys": "none", "customers": {"a": {"features": {"f": {"quota": -1}}}}}"#,
            r#"{"version": "x", "customers": {"a": {"features": {"f": {"quota": -1}}}}}"#,
            r#"[1, 2]"#,
            r#"5"#,
            r#""snapshot""#,
            r#"null"#,
            r#"{"customers": {"a": 1.5}}"#,
            r#"{"customers": {"a": {"features": {"f": {"quota": 1}}}}, "consumer_keys": [true, 2]}"#,
            r#"{"customers": {"a": {}}} trailing"#,
            r#"{"customers": {"a": {}}"#,
            // A customer that fails is reported before a key naming it.
            r#"{"consumer_keys": [{"key_id": "k", "hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "customer_id": "b"}], "customers": {"b": {"features": {"f": {"quota": -1}}}}}"#,
            r#"{"consumer_keys": [{"key_id": "k", "hash": "x", "customer_id": "b"}], "customers": {"b": {"features": {"f": {"quota": -1}}}}}"#,
            r#"{"customers": {"c": {"features": {"f": {"quota": -1}}}, "a": {"features": {"f": {"quota": -2}}}}}"#,
            r#"{"customers": {"a": {}}, "customers": {"a": {"features": {"f": {"quota": -1}}}}, "version": -1}"#,
            // Repeated ids and lists: the last one wins, its errors with it.
            r#"{"customers": {"a": {"features": {"f": {"quota": -1}}}, "a": {"features": {}}}}"#,
            r#"{"customers": {"a": {"features": {}}, "a": {"features": {"f": {"quota": -1}}}}}"#,
            r#"{"customers": {"a": {"features": {"f": {"quota": 1}, "f": {"quota": 2}, "g": {}}}}}"#,
            r#"{"customers": {"a": {}}, "consumer_keys": [{"key_id": "k", "hash": "x", "customer_id": "a"}], "consumer_keys": [{"key_id": "k", "hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "customer_id": "a"}]}"#,
            // The first key that fails is reported, whether it is unreadable or names an unknown customer.
            r#"{"customers": {"a": {}}, "consumer_keys": [{"key_id": "k", "hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "customer_id": "zz"}, {"key_id": "k2", "hash": "x", "customer_id": "a"}]}"#,
            r#"{"customers": {"a": {}}, "consumer_keys": [{"key_id": "k", "hash": "x", "customer_id": "a"}, {"key_id": "k2", "hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "customer_id": "zz"}]}"#,
            r#"{"consumer_keys": [{"key_id": "k", "hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "customer_id": "a"}], "customers": {"b": {"features": {"f": {"quota": -1}}}, "a": {}}}"#,
        ];
        for d in docs {
            let by_parts = Snapshot::from_json(d.as_bytes());
            let tree = serde_json::from_str::<Value>(d)
                .map_err(|e| e.to_string())
                .map(|v| Snapshot::from_value("", &v));
            match (by_parts, tree) {
                (Ok(a), Ok(Ok(b))) => assert_eq!(a.to_value(), b.to_value(), "{d}"),
                (Err(a), Ok(Err(b))) => assert_eq!(a.to_string(), b.to_string(), "{d}"),
                (Err(a), Err(_)) => assert!(a.to_string().contains("not valid JSON"), "{d}"),
                (a, b) => panic!("{d}: by parts {a:?}, whole tree {b:?}"),
            }
        }
    }
    use crate::keys::hash_key;

    fn sample() -> Value {
        json!({
            "version": 7,
            "generated_at": "2026-03-15T12:00:00Z",
            "environment": "sandbox",
            "customers": {
                "cust_a": {
                    "ip_allowlist": ["10.0.0.0/8", "2001:db8::/32"],
                    "features": {
                        "search": {"quota": 1000, "used": 450, "window": "month", "anchor": "2026-01-31T00:00:00Z"},
                        "export": {"allowed": false}
                    }
                },
                "cust_b": {"status": "suspended", "sandbox_mode": true}
            },
            "consumer_keys": [
                {"key_id": "key_1", "hash": hash_key("ck_alpha").to_text(), "customer_id": "cust_a",
                 "scopes": ["search"], "rate_limit": {"limit": 10, "per": "second"}}
            ]
        })
    }

    #[test]
    fn parses_and_round_trips() {
        let s = Snapshot::from_value("", &sample()).unwrap();
        assert_eq!(s.version, 7);
        assert_eq!(s.environment, Some(Environment::Sandbox));
        let a = &s.customers["cust_a"];
        assert_eq!(a.features["search"].quota, Some(1000));
        assert_eq!(a.features["search"].window.period, Period::Month);
        assert!(!a.features["export"].allowed);
        assert!(!s.customers["cust_b"].active && s.customers["cust_b"].sandbox_mode);
        assert_eq!(s.keys.len(), 1);
        let again = Snapshot::from_value("", &s.to_value()).unwrap();
        assert_eq!(again.customers, s.customers);
        assert_eq!(again.keys.iter().next(), s.keys.iter().next());
    }

    #[test]
    fn errors_name_the_path() {
        let mut v = sample();
        v["customers"]["cust_a"]["features"]["search"]["quota"] = json!(-1);
        let e = Snapshot::from_value("", &v).unwrap_err();
        assert_eq!(e.path, "customers.cust_a.features.search.quota");

        let mut v = sample();
        v["consumer_keys"][0]["hash"] = json!("ck_alpha");
        let e = Snapshot::from_value("", &v).unwrap_err();
        assert_eq!(e.path, "consumer_keys[0].hash");

        let mut v = sample();
        v["consumer_keys"][0]["customer_id"] = json!("nobody");
        assert_eq!(
            Snapshot::from_value("", &v).unwrap_err().path,
            "consumer_keys[0].customer_id"
        );

        let mut v = sample();
        v["customers"]["cust_a"]["ip_allowlist"][1] = json!("2001:db8::/200");
        assert_eq!(
            Snapshot::from_value("", &v).unwrap_err().path,
            "customers.cust_a.ip_allowlist[1]"
        );

        let mut v = sample();
        v["customers"]["cust_a"]["features"]["search"]["windw"] = json!("day");
        assert!(Snapshot::from_value("", &v)
            .unwrap_err()
            .message
            .contains("did you mean \"window\""));
    }

    #[test]
    fn usage_of_a_past_window_counts_as_zero() {
        let e = Entitlement {
            allowed: true,
            quota: Some(10),
            used: 8,
            used_by_source: Some(3),
            used_window_start: Some(parse_rfc3339("2026-02-01T00:00:00Z").unwrap()),
            window: QuotaWindow::calendar(Period::Month),
            rate_limit: None,
        };
        assert_eq!(
            e.snapshot_used(parse_rfc3339("2026-02-28T23:00:00Z").unwrap()),
            (8, Some(3))
        );
        assert_eq!(
            e.snapshot_used(parse_rfc3339("2026-03-01T00:00:00Z").unwrap()),
            (0, Some(0))
        );
    }
}
