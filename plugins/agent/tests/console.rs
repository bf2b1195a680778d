//! The web console as a person uses it, in Debian's Chromium driven by playwright-core
//! (`console/test/drive.mjs`), against the real agent fed by two real Envoys with the filter:
//! one with a sandbox key, one with a live key. Outcomes are checked where they land: the
//! agent's stores, Envoy's answers, a webhook receiver. With `AFORO_SCREENSHOTS=1` the audit
//! also writes a screenshot of every page to `docs/console/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_core::webhook_signature::verify;
use aforo_host_tests::artifacts::repo_root;
use aforo_host_tests::envoy::Envoy;
use aforo_host_tests::http1::Client;
use aforo_host_tests::servers::{wall_now, Received, Upstream, WebhookReceiver};
use common::gateway::{envoy_with_agent, wait_for_sync};
use common::{body, catalog, Agent, ADMIN, LIVE, SANDBOX};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn console_dir() -> PathBuf {
    repo_root().join("plugins/agent/console")
}

/// Runs one action of the driver; its JSON answer.
fn drive(agent: &Agent, action: &str, extra: Value) -> Value {
    let dir = console_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "the console's npm packages are missing: run scripts/setup.sh"
    );
    let chromium = std::env::var("AFORO_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: apt install chromium (scripts/setup.sh does), or set AFORO_CHROMIUM"
    );
    let mut args = json!({
        "url": format!("{}/console/", agent.url()),
        "keys": {"sandbox": SANDBOX, "production": LIVE, "admin": ADMIN},
    });
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    let out = std::process::Command::new("node")
        .arg("test/drive.mjs")
        .arg(action)
        .arg(args.to_string())
        .current_dir(&dir)
        .output()
        .expect("node is required (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{action}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log()
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{action}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A request through `envoy` with consumer key `key` and request id `id`: its status.
fn request(envoy: &Envoy, key: &str, id: &str) -> u16 {
    let h = vec![
        ("x-api-key".to_string(), key.to_string()),
        ("x-request-id".to_string(), id.to_string()),
    ];
    Client::new(&format!("127.0.0.1:{}", envoy.port))
        .request("GET", "/v1/search", &h, &[])
        .map(|r| r.status)
        .unwrap_or(0)
}

/// The event-log rows of `customer` in the key's environment.
fn logged(agent: &Agent, key: &str, customer: &str) -> Vec<Value> {
    let r = agent.call(
        "GET",
        &format!("/v1/event-log?customer={customer}&limit=500"),
        key,
        &Value::Null,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    body(&r)["data"].as_array().unwrap().clone()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn event_ids(rows: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

/// Production usage of `customer` as the usage report gives it.
fn production_usage(agent: &Agent, customer: &str) -> u64 {
    let r = agent.call(
        "GET",
        &format!("/v1/usage?customer={customer}"),
        LIVE,
        &Value::Null,
    );
    body(&r)["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["quantity"].as_str().unwrap().parse::<u64>().unwrap())
        .sum()
}

struct Stack {
    agent: Agent,
    sandbox: Envoy,
    live: Envoy,
    /// The `acme` probes each Envoy answered while it waited for its snapshot (all metered).
    probes: (usize, usize),
    _upstream: Upstream,
}

fn stack() -> Stack {
    let mut cat = catalog();
    let customers = cat["customers"].as_object_mut().unwrap();
    customers.insert(
        "initech".into(),
        json!({"features": {"search": {"metric": "api_calls", "quota": 10}}}),
    );
    customers.insert(
        "umbrella".into(),
        json!({"features": {"search": {"metric": "api_calls", "quota": 1000}}}),
    );
    cat["customers"]["acme"]["features"]["search"]["quota"] = json!(1000);
    let keys = cat["consumer_keys"].as_array_mut().unwrap();
    for c in ["globex", "initech"] {
        keys.push(json!({"key_id": format!("{c}-static"), "key": format!("ck_static_{c}_key"), "customer_id": c}));
    }
    let agent = Agent::start("console", &cat, &["--environments", "sandbox,production"]);
    let r = agent.call("GET", "/healthz", "", &Value::Null);
    assert_eq!(
        body(&r)["console"],
        true,
        "this agent was built without the console: run scripts/setup.sh"
    );
    let upstream = Upstream::start().unwrap();
    let envoy = |key: &str| {
        let mut config = json!({
            "api_key": key,
            "product_id": "prod_console",
            "ingest_url": agent.url(),
            "ingest_cluster": "aforo_agent",
            "entitlements_url": format!("{}/v1/entitlements", agent.url()),
            "entitlements_cluster": "aforo_agent",
            "sync_interval_ms": 300,
            "flush_interval_ms": 100,
            "initial_backoff_ms": 200,
            "max_backoff_ms": 1000,
            "routes": [{"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"}]
        });
        if key == LIVE {
            // Partners in sandbox mode are metered to the sandbox, with a sandbox key.
            config["sandbox_api_key"] = json!(SANDBOX);
            config["sandbox_cluster"] = json!("aforo_agent");
        }
        let (yaml, port, admin) = envoy_with_agent(&config, agent.port, upstream.port());
        let e = Envoy::start(&yaml, port, admin, 1).unwrap_or_else(|e| panic!("{e}"));
        let probes = wait_for_sync(&e);
        (e, probes)
    };
    let (sandbox, sandbox_probes) = envoy(SANDBOX);
    let (live, live_probes) = envoy(LIVE);
    Stack {
        agent,
        sandbox,
        live,
        probes: (sandbox_probes, live_probes),
        _upstream: upstream,
    }
}

#[test]
fn the_console_shows_each_environment_its_own_and_its_changes_reach_envoy() {
    let mut s = stack();
    let a = &s.agent;

    // 1. The same customer id in both environments: the sandbox tab shows only what the
    //    sk_test_ Envoy sent, the production tab only what the sk_live_ one sent.
    for i in 0..3 {
        assert_eq!(
            request(&s.sandbox, "ck_static_acme_key", &format!("sb-{i}")),
            200
        );
    }
    for i in 0..2 {
        assert_eq!(
            request(&s.live, "ck_static_acme_key", &format!("lv-{i}")),
            200
        );
    }
    // The probes that waited for each Envoy's snapshot are acme's too: every one is stored
    // before the ids are taken (more than one probe would otherwise pass for the last request).
    let (sandbox_probes, live_probes) = s.probes;
    wait_until("acme's events in both stores", || {
        logged(a, SANDBOX, "acme").len() >= sandbox_probes + 3
            && logged(a, LIVE, "acme").len() >= live_probes + 2
    });
    let sandbox_ids = event_ids(&logged(a, SANDBOX, "acme"));
    let live_ids = event_ids(&logged(a, LIVE, "acme"));
    assert!(sandbox_ids.iter().all(|id| !live_ids.contains(id)));
    for (env, want, other) in [
        ("sandbox", &sandbox_ids, &live_ids),
        ("production", &live_ids, &sandbox_ids),
    ] {
        let shown = drive(a, "event-log", json!({"env": env, "customer": "acme"}));
        let rows = shown["rows"].as_array().unwrap();
        assert!(rows.iter().all(|r| r["customer_id"] == "acme"), "{shown}");
        assert_eq!(&event_ids(rows), want, "the {env} tab shows its own events");
        assert!(
            event_ids(rows).iter().all(|id| !other.contains(id)),
            "{env}: {shown}"
        );
    }

    // 2. Toggling globex to sandbox in the console: the live Envoy's next decisions put its
    //    events in the sandbox, and production usage stops growing.
    assert_eq!(request(&s.live, "ck_static_globex_key", "gx-before"), 200);
    wait_until("globex's production event", || {
        production_usage(a, "globex") == 1
    });
    let t = drive(
        a,
        "toggle-sandbox",
        json!({"env": "production", "customer": "globex"}),
    );
    assert_eq!(t["message"], "Sandbox mode enabled.", "{t}");
    let mut n = 0;
    wait_until(
        "a globex request through the live Envoy to land in the sandbox",
        || {
            n += 1;
            assert_eq!(
                request(&s.live, "ck_static_globex_key", &format!("gx-after-{n}")),
                200
            );
            std::thread::sleep(Duration::from_millis(300));
            !logged(a, SANDBOX, "globex").is_empty()
        },
    );
    let sandboxed = logged(a, SANDBOX, "globex");
    let r = a.call(
        "GET",
        &format!("/v1/event-log/{}", sandboxed[0]["seq"]),
        SANDBOX,
        &Value::Null,
    );
    assert_eq!(body(&r)["data"]["event"]["environment"], "sandbox");
    let before = production_usage(a, "globex");
    for i in 0..3 {
        assert_eq!(
            request(&s.live, "ck_static_globex_key", &format!("gx-sb-{i}")),
            200
        );
    }
    wait_until("globex's next events in the sandbox", || {
        logged(a, SANDBOX, "globex").len() >= sandboxed.len() + 3
    });
    assert_eq!(production_usage(a, "globex"), before, "no longer billed");

    // 3. A dead letter replayed from the console is stored and shows in usage.
    let mut soon = json!({"id": "dl-soon", "customer_id": "acme", "metric": "api_calls", "quantity": 7, "product_id": "p", "environment": "sandbox"});
    let due = wall_now().plus_millis(2_000);
    soon["timestamp"] = json!(due.plus_millis(5 * 60_000).to_rfc3339());
    let r = a.call("POST", "/v1/events", SANDBOX, &json!({"events": [soon]}));
    assert_eq!(body(&r)["rejected"][0]["code"], "timestamp_in_future");
    let sandbox_usage = |a: &Agent| -> u64 {
        let r = a.call(
            "GET",
            "/v1/usage?environment=sandbox&customer=acme",
            SANDBOX,
            &Value::Null,
        );
        body(&r)["usage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["quantity"].as_str().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    let usage_before = sandbox_usage(a);
    wait_until(
        "its timestamp to come within the 5 minutes allowed ahead",
        || wall_now() > due,
    );
    let r = drive(
        a,
        "replay",
        json!({"env": "sandbox", "event_id": "dl-soon", "outcome": "rejected"}),
    );
    assert!(
        r["status"]
            .as_str()
            .unwrap()
            .starts_with("Replayed 1: 1 stored"),
        "{r}"
    );
    assert_eq!(sandbox_usage(a), usage_before + 7);

    // 4. A key created and rotated in the console works through Envoy during its grace
    //    period, then answers 401; the new one keeps working.
    let k = drive(a, "create-key", json!({"customer": "umbrella"}));
    let old_key = k["api_key"].as_str().unwrap().to_string();
    let key_id = k["key_id"].as_str().unwrap().to_string();
    wait_until("the new key in the sandbox Envoy's snapshot", || {
        request(
            &s.sandbox,
            &old_key,
            &format!("um-{}", wall_now().unix_nanos()),
        ) == 200
    });
    let r = drive(a, "rotate-key", json!({"key_id": key_id, "grace_secs": 20}));
    let new_key = r["api_key"].as_str().unwrap().to_string();
    let ends = aforo_core::time::parse_rfc3339(r["old_expires_at"].as_str().unwrap()).unwrap();
    assert!(
        wall_now() < ends,
        "the driver took longer than the grace period"
    );
    assert_eq!(
        request(&s.sandbox, &old_key, "um-grace"),
        200,
        "old key in its grace period"
    );
    wait_until("the new key in the snapshot", || {
        request(
            &s.sandbox,
            &new_key,
            &format!("um-new-{}", wall_now().unix_nanos()),
        ) == 200
    });
    wait_until("the old key to stop", || {
        request(
            &s.sandbox,
            &old_key,
            &format!("um-old-{}", wall_now().unix_nanos()),
        ) == 401
    });
    assert!(wall_now() >= ends, "refused before its grace period ended");
    assert_eq!(request(&s.sandbox, &new_key, "um-after"), 200);

    // 5. A webhook endpoint made in the console gets initech's 80% and 100% notices exactly
    //    once each, signed, also across an agent restart between them.
    let hooks = WebhookReceiver::start().unwrap();
    let w = drive(
        a,
        "create-webhook",
        json!({"env": "sandbox", "webhook_url": hooks.url()}),
    );
    let secret = w["secret"].as_str().unwrap().to_string();
    for i in 0..8 {
        assert_eq!(
            request(&s.sandbox, "ck_static_initech_key", &format!("in-{i}")),
            200
        );
    }
    let threshold = |g: &[Received], pct: u64| {
        g.iter().any(|r| {
            let n: Value = serde_json::from_slice(&r.body).unwrap();
            n["type"] == "quota.threshold_reached" && n["data"]["threshold_percent"] == pct
        })
    };
    hooks.wait_until(WAIT, |g| threshold(g, 80));
    s.agent.restart();
    let a = &s.agent;
    let mut i = 8;
    wait_until(
        "initech's quota to run out through the sandbox Envoy",
        || {
            let st = request(&s.sandbox, "ck_static_initech_key", &format!("in-{i}"));
            i += 1;
            st == 429
        },
    );
    hooks.wait_until(WAIT, |g| threshold(g, 100));
    // A dead letter queued after everything else: once it is in, whatever came before is too.
    let mut marker = json!({"id": "hook-marker", "customer_id": "initech", "metric": "api_calls", "quantity": 1, "product_id": "p", "environment": "sandbox"});
    marker["timestamp"] = json!(wall_now().plus_millis(10 * 60_000).to_rfc3339());
    a.call("POST", "/v1/events", SANDBOX, &json!({"events": [marker]}));
    let got = hooks.wait_until(WAIT, |g| {
        g.iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("hook-marker"))
    });
    let now = wall_now().unix_nanos() / 1_000_000_000;
    // Delivered at least once: the agent killed after the receiver answered the 80% notice but
    // before it recorded the answer sends it again once restarted, as documented. A repeat must
    // be the same notice (same id, same body); counted by id, each threshold is noticed once.
    let mut notices: Vec<(String, Vec<u8>)> = Vec::new();
    let mut thresholds = Vec::new();
    for r in got.iter().filter(|r| r.status == 200) {
        let sig = r.signature.as_deref().unwrap();
        assert_eq!(verify(sig, &secret, &r.body, now, 300), Ok(()), "{sig}");
        let n: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(n["environment"], "sandbox");
        let id = n["id"].as_str().unwrap().to_string();
        assert_eq!(
            r.webhook_id.as_deref(),
            Some(id.as_str()),
            "header and body"
        );
        if let Some((_, first)) = notices.iter().find(|(seen, _)| *seen == id) {
            assert_eq!(first, &r.body, "a repeat of {id} is the same notice");
            continue;
        }
        notices.push((id, r.body.clone()));
        if n["type"] == "quota.threshold_reached" {
            assert_eq!(n["data"]["customer_id"], "initech");
            thresholds.push(n["data"]["threshold_percent"].as_u64().unwrap());
        }
    }
    assert_eq!(thresholds, [80, 100], "each noticed once, counted by id");

    // 6. Every page of both tabs: keyboard reachable, no accessibility violations, and a
    //    screenshot for the docs when asked for.
    let mut extra = json!({});
    if std::env::var("AFORO_SCREENSHOTS").as_deref() == Ok("1") {
        let dir = repo_root().join("docs/console");
        std::fs::create_dir_all(&dir).unwrap();
        extra["screenshots"] = json!(dir.display().to_string());
    }
    let audit = drive(a, "audit", extra);
    let pages = audit["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 12, "six pages in each tab: {audit}");
    for p in pages {
        assert_eq!(p["violations"], json!([]), "{}", p);
    }
}
