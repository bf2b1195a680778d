//! The shared decision table (`host-tests/decisions/access-table.json`): a catalog and ordered
//! cases every host must answer alike.

use aforo_host_tests::artifacts::repo_root;
use serde_json::Value;
use std::path::PathBuf;

/// One request of the table and the answer it must get.
pub struct Case {
    pub name: String,
    pub key: Option<String>,
    pub tenant: Option<String>,
    pub feature: String,
    pub client_ip: Option<String>,
    pub status: u16,
    /// `allowed` or the error code.
    pub decision: String,
}

pub fn path() -> PathBuf {
    repo_root().join("host-tests/decisions/access-table.json")
}

/// The catalog and the cases.
pub fn load() -> (Value, Vec<Case>) {
    let v: Value = serde_json::from_slice(&std::fs::read(path()).unwrap()).unwrap();
    let s = |c: &Value, k: &str| c[k].as_str().map(str::to_string);
    let cases = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: s(c, "name").unwrap(),
            key: s(c, "key"),
            tenant: s(c, "tenant"),
            feature: s(c, "feature").unwrap(),
            client_ip: s(c, "client_ip"),
            status: c["expect"]["status"].as_u64().unwrap() as u16,
            decision: s(&c["expect"], "code").unwrap_or_else(|| "allowed".into()),
        })
        .collect();
    (v["catalog"].clone(), cases)
}

/// The metric a feature counts (the catalog's, or the feature's own name).
pub fn metric_of(catalog: &Value, feature: &str) -> String {
    catalog["customers"]
        .as_object()
        .unwrap()
        .values()
        .find_map(|c| c["features"][feature]["metric"].as_str())
        .unwrap_or(feature)
        .to_string()
}
