//! The deploy examples users copy: every Envoy config passes `envoy --mode validate` with the
//! real module (validation loads it and runs its configuration), every JSON and YAML file
//! parses, the filter accepts each filter configuration they contain, and Kong's meta.json
//! schema lists exactly the options the filter accepts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_core::config::{Kind, OPTIONS};
use aforo_core::Timestamp;
use aforo_host_tests::abi::Profile;
use aforo_host_tests::artifacts::{filter_module, repo_root};
use aforo_host_tests::envoy::validate_with_env;
use aforo_host_tests::replay::{run, RunOptions};
use aforo_host_tests::traffic::parse_jsonl;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

const KEY: &str = "sk_test_deploy_examples";

fn examples() -> PathBuf {
    repo_root().join("deploy-examples")
}

fn files(ext: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, ext: &str, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, ext, out);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&examples(), ext, &mut out);
    out.sort();
    out
}

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => s.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    other => panic!("non-string key {other:?}"),
                };
                m.insert(key, to_json(v));
            }
            Value::Object(m)
        }
        _ => Value::Null,
    }
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .iter()
        .map(to_json)
        .collect()
}

/// Loads the real module with `config` (and `env`) in the harness and sends one request
/// through it; `Err` is the module's refusal.
fn filter_accepts(config: &Value, env: &[(&str, &str)], profile: Profile) -> Result<(), String> {
    let traffic = parse_jsonl(
        "one.jsonl",
        r#"{"time": "2026-03-15T12:00:00Z", "request": {"path": "/v1/search"}}"#,
        Timestamp::EPOCH,
    )
    .unwrap();
    let mut o = RunOptions::new(
        filter_module().unwrap(),
        config.to_string().into_bytes(),
        traffic,
    );
    o.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    o.profile = profile;
    o.quiet = true;
    let r = run(&o).map_err(|e| e.to_string())?;
    assert_eq!(r.traps, 0);
    Ok(())
}

#[test]
fn every_json_and_yaml_file_parses() {
    let json = files("json");
    assert!(json.len() >= 2, "{json:?}");
    for p in &json {
        serde_json::from_slice::<Value>(&std::fs::read(p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    let yaml: Vec<PathBuf> = files("yaml").into_iter().chain(files("yml")).collect();
    assert!(yaml.len() >= 4, "{yaml:?}");
    for p in &yaml {
        assert!(!yaml_docs(p).is_empty(), "{} is empty", p.display());
    }
}

#[test]
fn every_envoy_config_passes_envoy_validate_with_the_real_module() {
    let module = filter_module().unwrap();
    let configs = files("yaml")
        .into_iter()
        .filter(|p| {
            p.starts_with(examples().join("envoy")) || p.starts_with(examples().join("multi-node"))
        })
        .collect::<Vec<_>>();
    assert!(configs.len() >= 3, "{configs:?}");
    for p in configs {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("/etc/envoy/aforo_metering.wasm"),
            "{}: the module path the docs tell users to replace",
            p.display()
        );
        let text = text.replace(
            "/etc/envoy/aforo_metering.wasm",
            &module.display().to_string(),
        );
        validate_with_env(&text, &[("AFORO_API_KEY", KEY)])
            .unwrap_or_else(|e| panic!("{}: envoy --mode validate failed:\n{e}", p.display()));
        // Without the key in Envoy's environment the filter refuses to start: validation did
        // load the module and the key really comes from host_env_keys.
        let err = validate_with_env(&text, &[]).unwrap_err();
        assert!(
            err.contains("api_key: is required"),
            "{}: {err}",
            p.display()
        );
    }
}

#[test]
fn the_istio_wasmplugin_configuration_is_accepted_by_the_filter() {
    let docs = yaml_docs(&examples().join("istio/wasmplugin.yaml"));
    let plugin = docs.iter().find(|d| d["kind"] == "WasmPlugin").unwrap();
    assert_eq!(plugin["spec"]["failStrategy"], "FAIL_OPEN");
    let env = plugin["spec"]["vmConfig"]["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "AFORO_API_KEY" && e["valueFrom"] == "HOST"));
    let config = &plugin["spec"]["pluginConfig"];
    filter_accepts(config, &[("AFORO_API_KEY", KEY)], Profile::Envoy).unwrap();
    // The ingest hosts of the ServiceEntry are the ones the cluster names point at.
    let se = docs.iter().find(|d| d["kind"] == "ServiceEntry").unwrap();
    let hosts: Vec<&str> = se["spec"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for c in ["sandbox_cluster", "production_cluster"] {
        let name = config[c].as_str().unwrap();
        assert!(
            hosts.iter().any(|h| name.ends_with(&format!("||{h}"))),
            "{c} {name} vs {hosts:?}"
        );
    }
}

#[test]
fn the_mulesoft_policy_binding_configuration_is_accepted_by_the_filter() {
    let docs = yaml_docs(&examples().join("mulesoft/policy-binding.yaml"));
    let binding = docs.iter().find(|d| d["kind"] == "PolicyBinding").unwrap();
    let mut config = binding["spec"]["config"].clone();
    assert!(config["api_key"].as_str().unwrap().starts_with("sk_live_"));
    config["api_key"] = Value::from(KEY);
    filter_accepts(&config, &[], Profile::Envoy).unwrap();
    // Every option the binding sets is one the definition declares.
    let def = yaml_docs(&examples().join("mulesoft/aforo-definition.yaml"));
    let props = def[0]["spec"]["properties"].as_object().unwrap();
    for k in config.as_object().unwrap().keys() {
        assert!(
            props.contains_key(k),
            "{k} is not declared in aforo-definition.yaml"
        );
    }
}

fn kong_filter_config() -> Value {
    let docs = yaml_docs(&examples().join("kong/kong.yml"));
    let chains = docs[0]["services"][0]["filter_chains"].as_array().unwrap();
    let filter = chains[0]["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "aforo_metering")
        .unwrap();
    let mut config = filter["config"].clone();
    // decK fills the key in from DECK_AFORO_API_KEY.
    assert_eq!(config["api_key"], r#"${{ env "DECK_AFORO_API_KEY" }}"#);
    config["api_key"] = Value::from(KEY);
    config
}

#[test]
fn the_kong_filter_chain_configuration_is_accepted_and_matches_its_schema() {
    let config = kong_filter_config();
    assert_eq!(
        config["dispatch"], "authority",
        "Kong dispatches to host:port"
    );
    // Kong validates the config against meta.json, then passes it as JSON.
    let meta: Value = serde_json::from_slice(
        &std::fs::read(examples().join("kong/filters/aforo_metering.meta.json")).unwrap(),
    )
    .unwrap();
    let schema = &meta["config_schema"];
    for req in schema["required"].as_array().unwrap() {
        assert!(
            config.get(req.as_str().unwrap()).is_some(),
            "kong.yml lacks required {req}"
        );
    }
    for (k, v) in config.as_object().unwrap() {
        let t = schema["properties"][k]["type"]
            .as_str()
            .unwrap_or_else(|| panic!("{k} is not in meta.json"));
        let ok = match t {
            "string" => v.is_string(),
            "integer" => v.is_u64(),
            "boolean" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        };
        assert!(ok, "{k}: {v} is not a {t}");
    }
    filter_accepts(&config, &[], Profile::Kong).unwrap();
    // A configuration the filter refuses is refused in the harness too (the check is real).
    let mut bad = config.clone();
    bad["batch_size"] = Value::from(0);
    let err = filter_accepts(&bad, &[], Profile::Kong).unwrap_err();
    assert!(err.contains("batch_size"), "{err}");
}

#[test]
fn kongs_meta_json_lists_exactly_the_options_the_filter_accepts() {
    let meta: Value = serde_json::from_slice(
        &std::fs::read(examples().join("kong/filters/aforo_metering.meta.json")).unwrap(),
    )
    .unwrap();
    let props = meta["config_schema"]["properties"].as_object().unwrap();
    let mut documented: Vec<&str> = props.keys().map(String::as_str).collect();
    let mut accepted: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
    documented.sort_unstable();
    accepted.sort_unstable();
    assert_eq!(documented, accepted);
    for o in OPTIONS {
        let t = props[o.name]["type"].as_str().unwrap();
        let expected = match o.kind {
            Kind::Integer => "integer",
            Kind::Bool => "boolean",
            Kind::List => "array",
            Kind::Text => "string",
            Kind::Json => t, // routes (array), entitlements (object)
        };
        assert_eq!(t, expected, "{}", o.name);
    }
}
