//! The deploy examples users copy: every Envoy config passes `envoy --mode validate` with the
//! real module (validation loads it and runs its configuration), every JSON and YAML file
//! parses, the filter accepts each filter configuration they contain, and Kong's meta.json
//! schema lists exactly the options the filter accepts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aforo_core::config::{Kind, OPTIONS};
use aforo_core::Timestamp;
use aforo_host_tests::abi::Profile;
use aforo_host_tests::artifacts::{filter_module, native_module, repo_root};
use aforo_host_tests::envoy::validate_with_env;
use aforo_host_tests::replay::{run, RunOptions};
use aforo_host_tests::traffic::parse_jsonl;
use serde_json::{json, Map, Value};
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
            p.starts_with(examples().join("envoy"))
                || p.starts_with(examples().join("multi-node"))
                || p.starts_with(examples().join("quickstart"))
        })
        .collect::<Vec<_>>();
    assert!(configs.len() >= 5, "{configs:?}");
    for p in configs {
        let text = std::fs::read_to_string(&p).unwrap();
        // The quick start runs from the clone, with the module setup.sh puts in bin/.
        let (placeholder, module) = if p.starts_with(examples().join("quickstart")) {
            ("bin/aforo_metering.wasm", module.clone())
        } else if text.contains("envoy.filters.http.dynamic_modules") {
            ("/etc/envoy/libaforo_envoy.so", native_module().unwrap())
        } else {
            ("/etc/envoy/aforo_metering.wasm", module.clone())
        };
        assert!(
            text.contains(placeholder),
            "{}: the module path the docs tell users to replace",
            p.display()
        );
        let text = text.replace(placeholder, &module.display().to_string());
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
        // The multi-node example turns quota leases on from Envoy's environment (unset, as
        // above, the key is skipped): a value reaches the filter, a bad one is named.
        if text.contains("AFORO_QUOTA_LEASES") {
            validate_with_env(
                &text,
                &[("AFORO_API_KEY", KEY), ("AFORO_QUOTA_LEASES", "true")],
            )
            .unwrap_or_else(|e| panic!("{}: with quota leases: {e}", p.display()));
            let err = validate_with_env(
                &text,
                &[("AFORO_API_KEY", KEY), ("AFORO_QUOTA_LEASES", "maybe")],
            )
            .unwrap_err();
            assert!(err.contains("AFORO_QUOTA_LEASES"), "{}: {err}", p.display());
        }
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
    // The ingest hosts of the ServiceEntry are the ones the cluster names point at
    // (`outbound|<ServiceEntry port>||<host>`, istio pilot/pkg/model/service.go BuildSubsetKey).
    let se = docs.iter().find(|d| d["kind"] == "ServiceEntry").unwrap();
    let hosts: Vec<&str> = se["spec"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ports: Vec<u64> = se["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    for c in ["sandbox_cluster", "production_cluster"] {
        let name = config[c].as_str().unwrap();
        let (port, host) = istio_cluster(name);
        assert!(
            hosts.contains(&host) && ports.contains(&port),
            "{c} {name} vs {hosts:?} {ports:?}"
        );
        // TLS to it is originated and verified: SIMPLE, with the SNI and the name pinned
        // (with `sni` set Istio no longer checks the name by itself; SOURCES.md).
        let dr = docs
            .iter()
            .find(|d| d["kind"] == "DestinationRule" && d["spec"]["host"] == host)
            .unwrap_or_else(|| panic!("no DestinationRule for {host}"));
        let tls = &dr["spec"]["trafficPolicy"]["portLevelSettings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["port"]["number"].as_u64() == Some(port))
            .unwrap_or_else(|| panic!("{host}: no TLS settings for port {port}"))["tls"];
        assert_eq!(tls["mode"], "SIMPLE", "{host}");
        assert_eq!(tls["sni"], host, "{host}");
        assert_eq!(tls["subjectAltNames"], serde_json::json!([host]), "{host}");
        assert!(tls.get("insecureSkipVerify").is_none(), "{host}");
    }
    // The selector matches the gateway the README installs: Istio's Helm chart labels its pods
    // `istio: <release name without "istio-">` (manifests/charts/gateway/templates/_helpers.tpl).
    let readme = std::fs::read_to_string(examples().join("istio/README.md")).unwrap();
    let install = readme
        .lines()
        .find(|l| l.contains("helm install") && l.contains("istio/gateway"))
        .expect("the README names the gateway install");
    let words: Vec<&str> = install.split_whitespace().collect();
    let release = words[words.iter().position(|w| *w == "install").unwrap() + 1];
    let namespace = words[words.iter().position(|w| *w == "-n").unwrap() + 1];
    assert_eq!(
        plugin["spec"]["selector"]["matchLabels"]["istio"],
        release.trim_start_matches("istio-"),
        "{install}"
    );
    assert_eq!(plugin["metadata"]["namespace"], namespace);
    // The agent the snapshot comes from is in the example, where the cluster name points.
    let (port, host) = istio_cluster(config["entitlements_cluster"].as_str().unwrap());
    let agent = yaml_docs(&examples().join("istio/agent.yaml"));
    let svc = agent.iter().find(|d| d["kind"] == "Service").unwrap();
    let fqdn = format!(
        "{}.{}.svc.cluster.local",
        svc["metadata"]["name"].as_str().unwrap(),
        svc["metadata"]["namespace"].as_str().unwrap()
    );
    assert_eq!(host, fqdn);
    assert!(svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["port"].as_u64() == Some(port)));
    let url = config["entitlements_url"].as_str().unwrap();
    assert!(url.contains(&format!("//{fqdn}:{port}/")), "{url}");
    let deploy = agent.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(
        deploy["spec"]["template"]["metadata"]["labels"], svc["spec"]["selector"],
        "the Service selects the agent's pods"
    );
    // The agent's flags are ones aforo-agent accepts.
    let args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap();
    for a in args
        .iter()
        .filter_map(Value::as_str)
        .filter(|a| a.starts_with("--"))
    {
        let name = a.trim_start_matches("--").replace('-', "_");
        let reference = std::fs::read_to_string(repo_root().join("docs/agent.md")).unwrap();
        assert!(
            reference.contains(&format!("| `{name}` |")),
            "aforo-agent has no {a}"
        );
    }
    // The key reaches the gateway's proxy container, whose name the Helm chart gives it.
    let env = yaml_docs(&examples().join("istio/gateway-env.yaml"));
    assert_eq!(env[0]["metadata"]["name"], release);
    assert_eq!(env[0]["metadata"]["namespace"], namespace);
}

/// `outbound|<port>||<host>` → (port, host).
fn istio_cluster(name: &str) -> (u64, &str) {
    let parts: Vec<&str> = name.split('|').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[2]),
        (4, "outbound", ""),
        "{name}"
    );
    (parts[1].parse().unwrap(), parts[3])
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
    // Flex names a Service's Envoy cluster <name>.<namespace>.svc, namespace `default` when
    // unset (pdk-classy's Service::from; SOURCES.md): the clusters the binding calls are the
    // agent Service's, or every ingest and sync call fails.
    let service = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    let cluster = format!(
        "{}.{}.svc",
        service["metadata"]["name"].as_str().unwrap(),
        service["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
    );
    assert_eq!(config["ingest_cluster"], Value::from(cluster.as_str()));
    assert_eq!(
        config["entitlements_cluster"],
        Value::from(cluster.as_str())
    );
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
    // Kong refuses a configuration without a required field: exactly the filter's.
    let required: Vec<&str> = meta["config_schema"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let filter_required: Vec<&str> = OPTIONS
        .iter()
        .filter(|o| matches!(o.default, aforo_core::config::Default::Required))
        .map(|o| o.name)
        .collect();
    assert_eq!(required, filter_required);
    for o in OPTIONS {
        let t = props[o.name]["type"].as_str().unwrap();
        let expected = match o.kind {
            Kind::Integer { .. } => "integer",
            Kind::Bool => "boolean",
            Kind::List => "array",
            Kind::Text | Kind::Choice(_) => "string",
            Kind::Json => t, // routes (array), entitlements (object)
        };
        assert_eq!(t, expected, "{}", o.name);
        // Kong checks a configuration against this schema before the filter sees it: the same
        // ranges and words as the filter's table, so Kong's error and the filter's agree.
        match o.kind {
            Kind::Integer { min, max } => {
                assert_eq!(props[o.name]["minimum"], min, "{}", o.name);
                assert_eq!(props[o.name]["maximum"], max, "{}", o.name);
            }
            Kind::Choice(words) => assert_eq!(props[o.name]["enum"], json!(words), "{}", o.name),
            _ => {}
        }
    }
}

/// Renders `kong.conf` the way each Kong line the example claims (3.7, 3.8, 3.9) does, from
/// the facts read in Kong's and ngx_wasm_module's source (`kong/ngx_wasm_facts.json`): every
/// key is one Kong knows and every rendered directive is one ngx_wasm_module has in that block,
/// so nginx starts.
#[test]
fn kong_conf_renders_only_directives_that_kong_3_7_to_3_9_have() {
    let facts: Value = serde_json::from_slice(
        &std::fs::read(examples().join("kong/ngx_wasm_facts.json")).unwrap(),
    )
    .unwrap();
    let conf = std::fs::read_to_string(examples().join("kong/kong.conf")).unwrap();
    let lines: Vec<(String, String)> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not key = value: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let prefixes: Vec<&str> = facts["rendering"]["wasm_prefixes_in_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let versions = facts["kong"].as_object().unwrap();
    assert_eq!(versions.keys().collect::<Vec<_>>(), ["3.7", "3.8", "3.9"]);
    for (version, f) in versions {
        let has = |block: &str, d: &str| {
            f["directives"][block]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == d)
        };
        let mut rendered = Vec::new();
        for (k, v) in &lines {
            if let Some(d) = k.strip_prefix("nginx_http_") {
                assert!(has("http", d), "Kong {version}: {k} renders `{d} {v};` in http {{}}, which ngx_wasm_module {} does not have", f["ngx_wasm_module"]);
                rendered.push(format!("http {{ {d} {v}; }}"));
            } else if k.starts_with("nginx_wasm_") {
                let prefix = prefixes.iter().find(|p| k.starts_with(**p)).unwrap();
                let rest = &k[prefix.len()..];
                let directive = match *prefix {
                    "nginx_wasm_shm_kv_" => format!("shm_kv {rest} {v}"),
                    "nginx_wasm_" if rest == "shm_kv" => format!("shm_kv * {v}"),
                    "nginx_wasm_" => format!("{rest} {v}"),
                    other => panic!("{k}: runtime block {other} is not used by the example"),
                };
                let name = directive.split(' ').next().unwrap();
                assert!(has("wasm", name), "Kong {version}: {k} renders `{directive};` in wasm {{}}, which ngx_wasm_module does not have");
                rendered.push(format!("wasm {{ {directive}; }}"));
            } else {
                assert!(
                    f["kong_keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x == k.as_str()),
                    "Kong {version} has no property {k}"
                );
            }
        }
        // The filter's counter keys (`aforo:q:…`, no '/') resolve to the '*' zone: it must
        // be declared, or every shared-data call traps.
        assert!(
            rendered.iter().any(|r| r.starts_with("wasm { shm_kv * ")),
            "Kong {version}: no `shm_kv *` zone: {rendered:?}"
        );
        // Where Kong turns the Lua resolver off, dispatches would ignore dns_resolver.
        if f["proxy_wasm_lua_resolver_default"] == "off"
            && lines.iter().any(|(k, _)| k == "dns_resolver")
        {
            assert!(
                lines.iter().any(|(k, v)| k == "nginx_http_proxy_wasm_lua_resolver" && v == "on"),
                "Kong {version}: dns_resolver does not apply to Wasm dispatches unless proxy_wasm_lua_resolver is on"
            );
        }
    }
    // The filter's shared-data keys really have no '/' (else they would name another zone).
    let key =
        aforo_core::entitlement::quota_key(aforo_core::Environment::Sandbox, "cust_a", "search");
    assert!(key.starts_with("aforo:") && !key.contains('/'), "{key}");
}

/// `render-implementation.sh` with a `base64` that takes no options (macOS's has no `-w`): the
/// extension it writes carries the module's exact bytes on one line.
#[test]
fn the_mulesoft_renderer_runs_with_a_base64_that_takes_no_options() {
    let dir = std::env::temp_dir().join(format!("aforo-mulesoft-{}", std::process::id()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let shim = bin.join("base64");
    let real = ["/usr/bin/base64", "/bin/base64"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    std::fs::write(
        &shim,
        format!("#!/bin/sh\n[ $# -eq 0 ] || {{ echo \"base64: invalid option -- $1\" >&2; exit 64; }}\nexec {real}\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let module = dir.join("m.wasm");
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&module, &bytes).unwrap();
    let script_dir = dir.join("mulesoft");
    std::fs::create_dir_all(&script_dir).unwrap();
    std::fs::copy(
        examples().join("mulesoft/render-implementation.sh"),
        script_dir.join("render-implementation.sh"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .arg(script_dir.join("render-implementation.sh"))
        .arg(&module)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = std::fs::read_to_string(script_dir.join("aforo-implementation.yaml")).unwrap();
    let line = yaml.lines().find(|l| l.contains("base64://")).unwrap();
    let b64 = line.split("base64://").nth(1).unwrap().trim();
    let decoded = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{b64}' | {real} -d"))
        .output()
        .unwrap();
    assert_eq!(decoded.stdout, bytes, "the module, byte for byte");
    let _ = std::fs::remove_dir_all(&dir);
}

/// AWS's own linter passes on the SAM template (scripts/setup.sh installs cfn-lint).
#[test]
fn cfn_lint_passes_on_the_aws_template() {
    let lint = std::env::var("AFORO_CFN_LINT").unwrap_or_else(|_| {
        let venv = aforo_host_tests::envoy::envoy_binary()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("cfn-lint")));
        venv.filter(|p| p.exists())
            .map_or_else(|| "cfn-lint".to_string(), |p| p.display().to_string())
    });
    let template = examples().join("aws/template.json");
    let out = std::process::Command::new(&lint)
        .arg(&template)
        .output()
        .unwrap_or_else(|e| {
            panic!("{lint}: {e} (scripts/setup.sh installs cfn-lint into its venv)")
        });
    assert!(
        out.status.success(),
        "cfn-lint {}:\n{}{}",
        template.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The template itself: no key in any environment, a current runtime, no reservation by
    // default.
    let t: Value = serde_json::from_slice(&std::fs::read(&template).unwrap()).unwrap();
    let text = t.to_string();
    assert!(
        !text.contains("\"AFORO_API_KEY\""),
        "the key is never an environment variable"
    );
    assert_eq!(t["Globals"]["Function"]["Runtime"], "nodejs22.x");
    assert_eq!(t["Parameters"]["UsageReservedConcurrency"]["Default"], 0);
    let usage = &t["Resources"]["AforoUsageFunction"]["Properties"];
    assert_eq!(
        usage["ReservedConcurrentExecutions"]["Fn::If"][2],
        serde_json::json!({"Ref": "AWS::NoValue"})
    );
    for f in ["AforoAuthorizerFunction", "AforoUsageFunction"] {
        let p = &t["Resources"][f]["Properties"];
        assert_eq!(
            p["Environment"]["Variables"]["AFORO_API_KEY_SECRET_ARN"],
            serde_json::json!({"Ref": "AforoApiKeySecretArn"}),
            "{f}"
        );
        assert!(
            p["Policies"]
                .to_string()
                .contains("AWSSecretsManagerGetSecretValuePolicy"),
            "{f}"
        );
    }
    assert!(t["Resources"]["SearchFunction"]["Properties"]
        .get("Environment")
        .is_none());
}

/// Every cluster that reaches an ingest over TLS verifies it: a trusted CA and the ingest's name
/// (without a validation_context Envoy does not verify the server, and the gateway key goes to
/// whoever answers); the edge example takes the client's address from the connection.
#[test]
fn every_envoy_tls_cluster_verifies_the_ingest_and_the_edge_uses_the_remote_address() {
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(m) => {
                if m.get("@type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with(".UpstreamTlsContext"))
                {
                    out.push(v);
                }
                m.values().for_each(|x| walk(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut seen = 0;
    for p in files("yaml").into_iter().filter(|p| {
        p.starts_with(examples().join("envoy")) || p.starts_with(examples().join("multi-node"))
    }) {
        for doc in yaml_docs(&p) {
            let mut tls = Vec::new();
            walk(&doc, &mut tls);
            for t in tls {
                seen += 1;
                let sni = t["sni"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: no sni", p.display()));
                let v = &t["common_tls_context"]["validation_context"];
                assert!(
                    v["trusted_ca"]["filename"].as_str().is_some(),
                    "{}: {sni}: no trusted_ca",
                    p.display()
                );
                let sans = v["match_typed_subject_alt_names"]
                    .as_array()
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: {sni}: the certificate's name is not checked",
                            p.display()
                        )
                    });
                assert!(
                    sans.iter()
                        .any(|s| s["san_type"] == "DNS" && s["matcher"]["exact"] == sni),
                    "{}: {sni}: {sans:?}",
                    p.display()
                );
            }
        }
    }
    assert!(seen >= 2, "the ingest clusters of envoy.yaml");
    let edge = yaml_docs(&examples().join("envoy/envoy.yaml"));
    let text = edge[0].to_string();
    assert!(
        text.contains(r#""use_remote_address":true"#),
        "envoy.yaml is the edge"
    );
}
