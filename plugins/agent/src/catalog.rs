//! The catalog: customers, the features of their plans (metric, quota, window), static
//! consumer keys, and the pricing plan. The agent builds entitlement snapshots from it.
//!
//! ```json
//! {"customers": {"acme": {"features": {"search": {"metric": "api_calls", "quota": 1000, "window": "month"}}}},
//!  "consumer_keys": [{"key_id": "acme-1", "key": "ck_…", "customer_id": "acme"}],
//!  "plan": "plan.json"}
//! ```
//! A key may be given as `key` (hashed at load, for local demos) or as `hash` (`sha256:…`).
//! `plan` is a pricing plan object or a path relative to the catalog file.

use aforo_core::entitlement::{QuotaWindow, Snapshot, DAILY_CREDITS};
use aforo_core::keys::hash_key;
use aforo_core::rating::{Plan, Terms};
use aforo_core::strict_json::{parse_json, FieldError};
use aforo_core::Environment;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// One feature of a customer, as the usage counters need it.
#[derive(Clone, Debug)]
pub struct FeatureUse {
    /// Feature name.
    pub feature: String,
    /// Metric whose events count against it.
    pub metric: String,
    /// Its quota window.
    pub window: QuotaWindow,
    /// Whether it has a quota at all.
    pub has_quota: bool,
    /// The quota, when it has one (for the leases gateways ask for).
    pub quota: Option<u64>,
    /// The customer's daily credits (`DAILY_CREDITS`): every metric counts.
    pub every_metric: bool,
}

/// The loaded catalog.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// Snapshot JSON of the catalog alone (customers, static keys), without usage.
    pub base: Value,
    /// Customer → features (for counting usage).
    pub features: HashMap<String, Vec<FeatureUse>>,
    /// The pricing plan, for invoice previews.
    pub plan: Option<Plan>,
    /// Customers' billing terms (`customers.<id>.billing`: coupons, tax, credits, service
    /// period), validated; invoice previews bill them, with or without events.
    pub billing: HashMap<String, Value>,
}

fn fail(path: &str, msg: impl Into<String>) -> FieldError {
    FieldError::new(path, msg)
}

impl Catalog {
    /// An empty catalog (every customer is unknown).
    pub fn empty() -> Catalog {
        Catalog {
            base: json!({"customers": {}, "consumer_keys": []}),
            features: HashMap::new(),
            plan: None,
            billing: HashMap::new(),
        }
    }

    /// Loads a catalog file; errors name the file and the JSON path.
    pub fn load(path: &Path) -> Result<Catalog, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Catalog::from_bytes(&bytes, dir).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses catalog JSON; plan paths are relative to `dir`.
    pub fn from_bytes(bytes: &[u8], dir: &Path) -> Result<Catalog, FieldError> {
        let mut v = parse_json("the catalog", bytes)?;
        let obj = v
            .as_object_mut()
            .ok_or_else(|| fail("", "the catalog must be a JSON object"))?;
        for k in obj.keys() {
            if !["customers", "consumer_keys", "plan"].contains(&k.as_str()) {
                return Err(fail(
                    k,
                    "unknown field; allowed fields: customers, consumer_keys, plan",
                ));
            }
        }
        let plan = match obj.remove("plan") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => {
                let file = dir.join(&p);
                let bytes = std::fs::read(&file)
                    .map_err(|e| fail("plan", format!("{}: {e}", file.display())))?;
                Some(
                    Plan::from_json(&bytes)
                        .map_err(|e| fail("plan", format!("{}: {e}", file.display())))?,
                )
            }
            Some(p) => Some(
                Plan::from_json(p.to_string().as_bytes())
                    .map_err(|e| fail(&format!("plan.{}", e.path), e.message))?,
            ),
        };
        let mut features: HashMap<String, Vec<FeatureUse>> = HashMap::new();
        let mut metrics: Vec<(String, String, String)> = Vec::new();
        let mut billing = HashMap::new();
        if let Some(Value::Object(customers)) = obj.get_mut("customers") {
            for (cid, c) in customers.iter_mut() {
                if let Some(b) = c.as_object_mut().and_then(|o| o.remove("billing")) {
                    // Checked now, with the catalog's path; billed per environment later.
                    Terms::from_billing(
                        &format!("customers.{cid}.billing"),
                        cid,
                        Environment::Production,
                        &b,
                    )?;
                    billing.insert(cid.clone(), b);
                }
                let Some(Value::Object(fs)) = c.get_mut("features") else {
                    continue;
                };
                for (fname, f) in fs.iter_mut() {
                    let Some(fo) = f.as_object_mut() else {
                        continue;
                    };
                    let metric = match fo.remove("metric") {
                        None => fname.clone(),
                        Some(Value::String(m)) if aforo_core::config::is_name(&m) => m,
                        Some(other) => {
                            return Err(fail(
                                &format!("customers.{cid}.features.{fname}.metric"),
                                format!("must be a metric name, got {other}"),
                            ))
                        }
                    };
                    metrics.push((cid.clone(), fname.clone(), metric));
                }
            }
        }
        if let Some(Value::Array(keys)) = obj.get_mut("consumer_keys") {
            for (i, k) in keys.iter_mut().enumerate() {
                let Some(ko) = k.as_object_mut() else {
                    continue;
                };
                if let Some(plain) = ko.remove("key") {
                    let Some(secret) = plain.as_str() else {
                        return Err(fail(&format!("consumer_keys[{i}].key"), "must be a string"));
                    };
                    if ko.contains_key("hash") {
                        return Err(fail(
                            &format!("consumer_keys[{i}].key"),
                            "set key or hash, not both",
                        ));
                    }
                    ko.insert("hash".into(), Value::from(hash_key(secret).to_text()));
                }
            }
        }
        // Validate with the core's snapshot rules (paths are the catalog's).
        let snapshot = Snapshot::from_value("", &v)?;
        for (cid, fname, metric) in metrics {
            let Some(ent) = snapshot
                .customers
                .get(&cid)
                .and_then(|c| c.features.get(&fname))
            else {
                continue;
            };
            features.entry(cid).or_default().push(FeatureUse {
                feature: fname,
                metric,
                window: ent.window,
                has_quota: ent.quota.is_some(),
                quota: ent.quota,
                every_metric: false,
            });
        }
        // A daily credit limit counts every unit of every metric of the customer, in a quota
        // counter of the UTC day (the core's `DAILY_CREDITS`).
        for (cid, c) in &snapshot.customers {
            if let Some(daily) = &c.daily_credits {
                features.entry(cid.clone()).or_default().push(FeatureUse {
                    feature: DAILY_CREDITS.to_string(),
                    metric: String::new(),
                    window: daily.window,
                    has_quota: true,
                    quota: daily.quota,
                    every_metric: true,
                });
            }
        }
        Ok(Catalog {
            base: v,
            features,
            plan,
            billing,
        })
    }

    /// Customer ids in the catalog.
    pub fn has_customer(&self, id: &str) -> bool {
        self.base.get("customers").and_then(|c| c.get(id)).is_some()
    }

    /// A customer's `sandbox_mode` as the catalog sets it (false when it does not).
    pub fn sandbox_default(&self, id: &str) -> bool {
        self.customer_field(id, "sandbox_mode")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether the catalog gives the customer consumer keys of its own.
    pub fn has_keys_for(&self, id: &str) -> bool {
        self.base
            .get("consumer_keys")
            .and_then(Value::as_array)
            .is_some_and(|keys| {
                keys.iter()
                    .any(|k| k.get("customer_id").and_then(Value::as_str) == Some(id))
            })
    }

    /// The mode a new partner starts in: sandbox, unless the catalog sets `sandbox_mode`
    /// (`false` marks a customer that is live from its first key).
    pub fn new_partner_sandbox(&self, id: &str) -> bool {
        self.customer_field(id, "sandbox_mode")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// A customer's status as the catalog sets it (`active` when it does not).
    pub fn status(&self, id: &str) -> String {
        self.customer_field(id, "status")
            .and_then(Value::as_str)
            .unwrap_or("active")
            .to_string()
    }

    /// A customer's quota of a feature, as the catalog sets it.
    pub fn quota(&self, id: &str, feature: &str) -> Option<u64> {
        self.customer_field(id, "features")?
            .get(feature)?
            .get("quota")?
            .as_u64()
    }

    fn customer_field(&self, id: &str, field: &str) -> Option<&Value> {
        self.base.get("customers")?.get(id)?.get(field)
    }

    /// In a Redis Cluster a quota's counter finds its customer's hash slot by the last `:` of
    /// its key (`<env>:<customer>:<feature>`), so no feature name may hold one there.
    pub fn check_cluster_names(&self) -> Result<(), String> {
        let customers = self.base.get("customers").and_then(Value::as_object);
        for (id, c) in customers.into_iter().flatten() {
            let features = c.get("features").and_then(Value::as_object);
            if let Some(name) = features
                .into_iter()
                .flatten()
                .map(|(n, _)| n)
                .find(|n| n.contains(':'))
            {
                return Err(format!(
                    "catalog: customers.{id}.features.{name}: a feature name must not contain ':' with redis_cluster (each customer's counters share a hash slot found by the key's last ':'); rename the feature"
                ));
            }
        }
        Ok(())
    }

    /// The quota and window of the counter `<customer>:<feature>` (a quota counter key after
    /// `aforo:q:<env>:`), as the catalog sets them; `None` when no customer's feature makes that
    /// key. Customer ids may hold `:`, so every split is tried.
    pub fn quota_terms(&self, counter: &str) -> Option<(u64, QuotaWindow)> {
        counter
            .match_indices(':')
            .filter_map(|(i, _)| {
                let (customer, feature) = (&counter[..i], &counter[i + 1..]);
                let f = self
                    .features
                    .get(customer)?
                    .iter()
                    .find(|f| f.feature == feature)?;
                Some((f.quota?, f.window))
            })
            .next()
    }

    /// The features of `customer` that count `metric`.
    pub fn features_for<'a>(
        &'a self,
        customer: &str,
        metric: &'a str,
    ) -> impl Iterator<Item = &'a FeatureUse> + 'a {
        self.features
            .get(customer)
            .into_iter()
            .flatten()
            .filter(move |f| f.every_metric || f.metric == metric)
    }

    /// The snapshot JSON with partners' sandbox flags and extra keys applied.
    pub fn snapshot_value(
        &self,
        partners: &HashMap<String, bool>,
        extra_keys: &[Value],
        margin_blocked: &std::collections::HashSet<String>,
        version: u64,
    ) -> Value {
        let mut v = self.base.clone();
        if let Some(Value::Object(customers)) = v.get_mut("customers") {
            for cid in margin_blocked {
                if let Some(Value::Object(c)) = customers.get_mut(cid) {
                    c.insert("margin_guard".into(), Value::from(true));
                }
            }
            for (cid, sandbox) in partners {
                if let Some(Value::Object(c)) = customers.get_mut(cid) {
                    c.insert("sandbox_mode".into(), Value::from(*sandbox));
                }
            }
        }
        if let Some(obj) = v.as_object_mut() {
            let keys = obj
                .entry("consumer_keys")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = keys {
                list.extend(extra_keys.iter().cloned());
            }
            obj.insert("version".into(), Value::from(version));
        }
        v
    }
}

/// A `features` entry with usage filled in (for snapshots served to gateways).
pub fn with_usage(
    feature: &mut Map<String, Value>,
    used: u64,
    used_by_source: Option<u64>,
    window_start: &str,
) {
    feature.insert("used".into(), Value::from(used));
    if let Some(s) = used_by_source {
        feature.insert("used_by_source".into(), Value::from(s.min(used)));
    }
    feature.insert("window_start".into(), Value::from(window_start));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogs_parse_with_metrics_plain_keys_and_inline_plans() {
        let c = Catalog::from_bytes(
            br#"{"customers": {"acme": {"features": {"search": {"metric": "api_calls", "quota": 10}, "chat": {}}}},
                 "consumer_keys": [{"key_id": "k", "key": "ck_demo", "customer_id": "acme"}],
                 "plan": {"currency": "USD", "charges": [{"id": "c", "metric": "api_calls", "model": "unit", "unit_amount": "0.01"}]}}"#,
            Path::new("."),
        )
        .unwrap();
        let f: Vec<&str> = c
            .features_for("acme", "api_calls")
            .map(|f| f.feature.as_str())
            .collect();
        assert_eq!(f, vec!["search"]);
        assert_eq!(
            c.features_for("acme", "chat").count(),
            1,
            "the metric defaults to the feature name"
        );
        assert!(c.plan.is_some());
        let v = c.snapshot_value(&HashMap::new(), &[], &Default::default(), 3);
        let s = Snapshot::from_value("", &v).unwrap();
        assert_eq!(s.version, 3);
        assert!(s
            .keys
            .authenticate("ck_demo", aforo_core::Timestamp::EPOCH)
            .is_ok());
        assert!(
            !v.to_string().contains("ck_demo"),
            "the plain key is hashed away"
        );
    }

    #[test]
    fn catalog_errors_name_the_path() {
        let e = Catalog::from_bytes(
            br#"{"customers": {"a": {"features": {"f": {"quota": -1}}}}}"#,
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(e.path, "customers.a.features.f.quota");
        let e = Catalog::from_bytes(
            br#"{"customers": {"a": {"billing": {"coupons": [{"id": "x", "percent_off": 120}]}}}}"#,
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(e.path, "customers.a.billing.coupons[0].percent_off");
        let e = Catalog::from_bytes(
            br#"{"customers": {"a": {"billing": {"id": "b"}}}}"#,
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(e.path, "customers.a.billing.id");
        let e = Catalog::from_bytes(br#"{"customer": {}}"#, Path::new(".")).unwrap_err();
        assert_eq!(e.path, "customer");
        let e = Catalog::from_bytes(
            br#"{"plan": {"currency": "USD", "charges": []}}"#,
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(e.path, "plan.charges");
    }
}
