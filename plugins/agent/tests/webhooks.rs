//! Webhooks per environment: quota thresholds once per window (across restarts), dead
//! letters, sandbox toggles; signed so a receiver can verify them; retried until answered, and
//! sent again with the same id when the agent died before it recorded the answer;
//! a sandbox endpoint never hears of production, nor the reverse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_core::webhook_signature::verify;
use aforo_host_tests::servers::{wall_now, Received, WebhookReceiver};
use common::{body, catalog, code, field, Agent, ADMIN, LIVE, SANDBOX};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn ev(id: &str, env: &str) -> Value {
    json!({"id": id, "customer_id": "acme", "metric": "api_calls", "quantity": 1, "timestamp": wall_now().to_rfc3339(), "product_id": "p", "environment": env})
}

fn future(id: &str, env: &str) -> Value {
    let mut e = ev(id, env);
    e["timestamp"] = json!(wall_now().plus_millis(10 * 60_000).to_rfc3339());
    e
}

/// Adds an endpoint for `url` in `env`; its secret.
fn endpoint(a: &Agent, env: &str, url: &str) -> String {
    let r = a.call(
        "POST",
        &format!("/v1/webhooks/endpoints?environment={env}"),
        ADMIN,
        &json!({"url": url}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let secret = body(&r)["data"]["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    secret
}

fn notice(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// Notices answered 2xx, with their signatures checked against `secret`.
fn delivered(got: &[Received], secret: &str) -> Vec<Value> {
    got.iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            let sig = r.signature.as_deref().expect("Aforo-Signature is sent");
            let now = wall_now().unix_nanos() / 1_000_000_000;
            assert_eq!(verify(sig, secret, &r.body, now, 300), Ok(()), "{sig}");
            assert!(verify(sig, "whsec_other", &r.body, now, 300).is_err());
            let n = notice(r);
            assert_eq!(r.webhook_id.as_deref(), n["id"].as_str());
            n
        })
        .collect()
}

fn of_type<'a>(notices: &'a [Value], kind: &str) -> Vec<&'a Value> {
    notices.iter().filter(|n| n["type"] == kind).collect()
}

/// The webhook delivery log once no delivery is pending (the agent has recorded every answer
/// the receiver gave), or as it is after `WAIT`.
fn recorded_deliveries(a: &Agent) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let r = a.call("GET", "/v1/webhooks/deliveries", SANDBOX, &Value::Null);
        let rows = body(&r)["data"].as_array().unwrap().clone();
        let recorded = rows.iter().all(|d| d["state"] != "pending");
        if recorded || std::time::Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn quota_thresholds_are_sent_once_each_signed_also_across_a_restart() {
    let hooks = WebhookReceiver::start().unwrap();
    let mut a = Agent::start("webhook-thresholds", &catalog(), &[]);
    let secret = endpoint(&a, "sandbox", &hooks.url());
    // acme's search quota is 5: the 4th event reaches 80%.
    for i in 0..4 {
        let r = a.call(
            "POST",
            "/v1/events",
            SANDBOX,
            &json!({"events": [ev(&format!("t{i}"), "sandbox")]}),
        );
        assert_eq!(body(&r)["accepted"], 1);
    }
    let got = hooks.wait_until(WAIT, |g| !g.is_empty());
    let n = delivered(&got, &secret);
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0]["type"], "quota.threshold_reached");
    assert_eq!(n[0]["environment"], "sandbox");
    assert_eq!(
        (
            n[0]["data"]["customer_id"].clone(),
            n[0]["data"]["feature"].clone(),
            n[0]["data"]["threshold_percent"].clone(),
            n[0]["data"]["used"].clone(),
            n[0]["data"]["quota"].clone()
        ),
        (
            json!("acme"),
            json!("search"),
            json!(80),
            json!(4),
            json!(5)
        )
    );

    // The receiver has the notice as soon as it is sent, a moment before the agent records its
    // answer: a restart in between sends it again, with the same id (docs/agent.md: at least
    // once). Wait for the record, so the restart tests what was recorded.
    assert_eq!(recorded_deliveries(&a).len(), 1);
    // A restart forgets nothing: the 5th event sends 100% and not 80% again; the 6th nothing.
    a.restart();
    for i in 4..6 {
        a.call(
            "POST",
            "/v1/events",
            SANDBOX,
            &json!({"events": [ev(&format!("t{i}"), "sandbox")]}),
        );
    }
    // A dead letter is queued after anything those events queued: once it arrives, whatever
    // they sent has arrived before it.
    a.call(
        "POST",
        "/v1/events",
        SANDBOX,
        &json!({"events": [future("late-marker", "sandbox")]}),
    );
    let got = hooks.wait_until(WAIT, |g| {
        g.iter().any(|r| notice(r)["type"] == "dead_letter.created")
    });
    let n = delivered(&got, &secret);
    let thresholds: Vec<u64> = of_type(&n, "quota.threshold_reached")
        .iter()
        .map(|x| x["data"]["threshold_percent"].as_u64().unwrap())
        .collect();
    assert_eq!(thresholds, [80, 100], "each once: {n:?}");
    let dl = of_type(&n, "dead_letter.created");
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["data"]["event_id"], "late-marker");
    assert_eq!(dl[0]["data"]["reason"], "rejected:timestamp_in_future");
    // Each delivery is in the log the console shows.
    let rows = recorded_deliveries(&a);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.iter()
            .all(|d| d["state"] == "delivered" && d["attempts"] == 1 && d["last_status"] == 200),
        "{rows:?}"
    );
    let o = body(&a.call("GET", "/v1/overview", SANDBOX, &Value::Null));
    assert_eq!(
        o["webhooks"],
        json!({"pending": 0, "delivered": 3, "failed": 0})
    );
}

/// docs/agent.md: an agent stopped after a receiver answered but before it recorded the answer
/// sends that delivery again once restarted, with the same `id`. Here the receiver holds its
/// answer while the agent is killed: the notice is not lost, its repeat is the same notice
/// (id, body, a valid signature), and the log records one delivery, delivered.
#[test]
fn an_agent_killed_before_it_records_an_answer_sends_the_same_notice_again() {
    let hooks = WebhookReceiver::start().unwrap();
    let mut a = Agent::start("webhook-killed-mid-send", &catalog(), &[]);
    let secret = endpoint(&a, "sandbox", &hooks.url());
    hooks.hold_answers();
    for i in 0..4 {
        a.call(
            "POST",
            "/v1/events",
            SANDBOX,
            &json!({"events": [ev(&format!("k{i}"), "sandbox")]}),
        );
    }
    assert_eq!(hooks.wait_until(WAIT, |g| !g.is_empty()).len(), 1);
    a.restart();
    let got = hooks.wait_until(WAIT, |g| g.len() >= 2);
    hooks.release_answers();
    assert_eq!(got.len(), 2, "sent again once restarted");
    let n = delivered(&got, &secret);
    assert_eq!(n[0]["type"], "quota.threshold_reached");
    assert_eq!(n[0]["data"]["threshold_percent"], 80);
    assert_eq!(got[0].webhook_id, got[1].webhook_id, "the same id");
    assert_eq!(got[0].body, got[1].body, "the same notice");
    let rows = recorded_deliveries(&a);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0]["state"].clone(),
            rows[0]["attempts"].clone(),
            rows[0]["last_status"].clone(),
            rows[0]["event_id"].clone()
        ),
        (
            json!("delivered"),
            json!(1),
            json!(200),
            json!(got[0].webhook_id)
        ),
        "{rows:?}"
    );
}

#[test]
fn a_failing_receiver_gets_the_same_notice_again_until_it_answers() {
    let hooks = WebhookReceiver::start().unwrap();
    hooks.set_status(500);
    let a = Agent::start("webhook-retry", &catalog(), &[]);
    let secret = endpoint(&a, "sandbox", &hooks.url());
    a.call(
        "POST",
        "/v1/events",
        SANDBOX,
        &json!({"events": [future("f1", "sandbox")]}),
    );
    let got = hooks.wait_until(WAIT, |g| g.len() >= 2);
    assert!(got.len() >= 2, "retried after a 500: {got:?}");
    let r = a.call("GET", "/v1/webhooks/deliveries", SANDBOX, &Value::Null);
    let d = body(&r)["data"][0].clone();
    assert_eq!(
        (d["state"].clone(), d["last_status"].clone()),
        (json!("pending"), json!(500)),
        "{d}"
    );
    assert!(d["next_attempt_at"].is_string());
    hooks.set_status(200);
    let got = hooks.wait_until(WAIT, |g| g.iter().any(|r| r.status == 200));
    let n = delivered(&got, &secret);
    assert_eq!(n.len(), 1);
    let ids: std::collections::BTreeSet<String> = got
        .iter()
        .map(|r| notice(r)["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same id");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let d = body(&a.call("GET", "/v1/webhooks/deliveries", SANDBOX, &Value::Null))["data"][0]
            .clone();
        if d["state"] == "delivered" {
            assert_eq!(d["attempts"].as_u64().unwrap(), got.len() as u64);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sandbox_endpoints_never_hear_of_production_nor_the_reverse() {
    let sandbox_hooks = WebhookReceiver::start().unwrap();
    let live_hooks = WebhookReceiver::start().unwrap();
    let a = Agent::start(
        "webhook-envs",
        &catalog(),
        &["--environments", "sandbox,production"],
    );
    let s_secret = endpoint(&a, "sandbox", &sandbox_hooks.url());
    let l_secret = endpoint(&a, "production", &live_hooks.url());
    a.call(
        "POST",
        "/v1/events",
        LIVE,
        &json!({"events": [future("live-dl", "production")]}),
    );
    a.call(
        "POST",
        "/v1/events",
        SANDBOX,
        &json!({"events": [future("sandbox-dl", "sandbox")]}),
    );
    // A toggle moves a partner between the two: both hear of it.
    let r = a.call(
        "POST",
        "/v1/admin/partners/globex/toggle-sandbox",
        ADMIN,
        &json!({"sandbox_mode": true}),
    );
    assert_eq!(r.status, 200);
    let done = |g: &[Received]| g.iter().filter(|r| r.status == 200).count() >= 2;
    let s = delivered(&sandbox_hooks.wait_until(WAIT, done), &s_secret);
    let l = delivered(&live_hooks.wait_until(WAIT, done), &l_secret);
    let dl_ids = |n: &[Value]| -> Vec<String> {
        of_type(n, "dead_letter.created")
            .iter()
            .map(|x| x["data"]["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(dl_ids(&s), ["sandbox-dl"]);
    assert_eq!(dl_ids(&l), ["live-dl"]);
    assert!(s.iter().all(|n| n["environment"] == "sandbox"));
    assert!(l.iter().all(|n| n["environment"] == "production"));
    for n in [&s, &l] {
        let t = of_type(n, "partner.sandbox_mode_changed");
        assert_eq!(t.len(), 1, "{n:?}");
        assert_eq!(
            t[0]["data"],
            json!({"customer_id": "globex", "sandbox_mode": true})
        );
    }
    // Setting the same value again is no change: no notice.
    a.call(
        "POST",
        "/v1/admin/partners/globex/toggle-sandbox",
        ADMIN,
        &json!({"sandbox_mode": true}),
    );
    a.call(
        "POST",
        "/v1/events",
        SANDBOX,
        &json!({"events": [future("marker", "sandbox")]}),
    );
    let got = sandbox_hooks.wait_until(WAIT, |g| {
        g.iter().any(|r| notice(r)["data"]["event_id"] == "marker")
    });
    assert_eq!(
        of_type(&delivered(&got, &s_secret), "partner.sandbox_mode_changed").len(),
        1
    );
    // Each environment's key reads its own delivery log only.
    let r = a.call(
        "GET",
        "/v1/webhooks/deliveries?environment=production",
        SANDBOX,
        &Value::Null,
    );
    assert_eq!((r.status, code(&r).as_str()), (403, "wrong_environment"));
}

#[test]
fn endpoints_are_managed_by_the_admin_with_clear_refusals() {
    let a = Agent::start("webhook-crud", &catalog(), &[]);
    let url = "/v1/webhooks/endpoints?environment=sandbox";
    for (b, f) in [
        (json!({"url": "ftp://x"}), "url"),
        (json!({"url": "http://a b"}), "url"),
        (json!({"url": "http://x", "events": ["nope"]}), "events[0]"),
        (json!({"url": "http://x", "events": []}), "events"),
        (json!({"url": "http://x", "extra": 1}), "extra"),
    ] {
        let r = a.call("POST", url, ADMIN, &b);
        assert_eq!(
            (r.status, field(&r)),
            (422, json!(f)),
            "{b}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = a.call(
        "POST",
        "/v1/webhooks/endpoints",
        ADMIN,
        &json!({"url": "http://x"}),
    );
    assert_eq!((r.status, field(&r)), (422, json!("environment")));
    let r = a.call(
        "POST",
        "/v1/webhooks/endpoints?environment=production",
        ADMIN,
        &json!({"url": "http://x"}),
    );
    assert_eq!(
        (r.status, field(&r)),
        (422, json!("environment")),
        "not served here"
    );
    let r = a.call("POST", url, SANDBOX, &json!({"url": "http://x"}));
    assert_eq!(
        (r.status, code(&r).as_str()),
        (401, "invalid_key"),
        "changes need the admin key"
    );

    let r = a.call(
        "POST",
        url,
        ADMIN,
        &json!({"url": "http://127.0.0.1:9/h", "events": ["dead_letter.created"]}),
    );
    assert_eq!(r.status, 201);
    let created = body(&r)["data"].clone();
    let secret = created["secret"].as_str().unwrap().to_string();
    let list = body(&a.call("GET", url, ADMIN, &Value::Null));
    assert_eq!(list["data"][0]["id"], created["id"]);
    assert_eq!(list["data"][0]["events"], json!(["dead_letter.created"]));
    assert!(
        !list.to_string().contains(&secret),
        "the secret is shown once"
    );
    assert!(!a.log().contains(&secret[6..]), "nor logged");
    let id = created["id"].as_str().unwrap();
    let r = a.call(
        "DELETE",
        &format!("/v1/webhooks/endpoints/{id}?environment=sandbox"),
        ADMIN,
        &Value::Null,
    );
    assert_eq!(
        (r.status, body(&r)["data"]["deleted"].clone()),
        (200, json!(true))
    );
    let r = a.call(
        "DELETE",
        &format!("/v1/webhooks/endpoints/{id}?environment=sandbox"),
        ADMIN,
        &Value::Null,
    );
    assert_eq!((r.status, code(&r).as_str()), (404, "not_found"));
    assert_eq!(
        body(&a.call("GET", url, ADMIN, &Value::Null))["data"],
        json!([])
    );
}

/// The same customer id reaching 80% in the sandbox does not use up its production notice:
/// each environment's threshold is its own.
#[test]
fn each_environment_notices_its_own_thresholds() {
    let sandbox_hooks = WebhookReceiver::start().unwrap();
    let live_hooks = WebhookReceiver::start().unwrap();
    let a = Agent::start(
        "webhook-env-thresholds",
        &catalog(),
        &["--environments", "sandbox,production"],
    );
    let s_secret = endpoint(&a, "sandbox", &sandbox_hooks.url());
    let l_secret = endpoint(&a, "production", &live_hooks.url());
    for i in 0..4 {
        a.call(
            "POST",
            "/v1/events",
            SANDBOX,
            &json!({"events": [ev(&format!("s{i}"), "sandbox")]}),
        );
    }
    let s = delivered(
        &sandbox_hooks.wait_until(WAIT, |g| !g.is_empty()),
        &s_secret,
    );
    assert_eq!(of_type(&s, "quota.threshold_reached").len(), 1);
    for i in 0..4 {
        a.call(
            "POST",
            "/v1/events",
            LIVE,
            &json!({"events": [ev(&format!("p{i}"), "production")]}),
        );
    }
    let l = delivered(&live_hooks.wait_until(WAIT, |g| !g.is_empty()), &l_secret);
    let t = of_type(&l, "quota.threshold_reached");
    assert_eq!(t.len(), 1, "{l:?}");
    assert_eq!(
        (
            t[0]["environment"].clone(),
            t[0]["data"]["threshold_percent"].clone()
        ),
        (json!("production"), json!(80))
    );
    let s_id = of_type(&s, "quota.threshold_reached")[0]["id"].clone();
    assert_ne!(t[0]["id"], s_id, "two notices, two ids");
}

/// Ids and customer ids a client sends reach the event log and a webhook notice as data, never
/// as JSON: quotes, `","key":"x`, backslashes and line breaks come back exactly as sent.
#[test]
fn hostile_values_reach_the_event_log_and_notices_as_data() {
    let hooks = WebhookReceiver::start().unwrap();
    let a = Agent::start("webhook-hostile", &catalog(), &[]);
    let secret = endpoint(&a, "sandbox", &hooks.url());
    let id = "evil\",\"type\":\"quota.threshold_reached\",\"x\":\"\r\n\\";
    let customer = "acme\",\"key\":\"x";
    let mut e = future(id, "sandbox");
    e["customer_id"] = json!(customer);
    let r = a.call("POST", "/v1/events", SANDBOX, &json!({"events": [e]}));
    assert_eq!(r.status, 202, "{}", body(&r));
    let got = hooks.wait_until(WAIT, |g| !g.is_empty());
    let n = delivered(&got, &secret);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0]["type"], "dead_letter.created");
    assert_eq!(n[0]["data"]["event_id"], id);
    let r = a.call("GET", "/v1/event-log", SANDBOX, &Value::Null);
    let row = body(&r)["data"][0].clone();
    assert_eq!(
        (row["event_id"].clone(), row["customer_id"].clone()),
        (json!(id), json!(customer)),
        "{row}"
    );
    let r = a.call(
        "GET",
        &format!("/v1/event-log/{}", row["seq"]),
        SANDBOX,
        &Value::Null,
    );
    assert_eq!(body(&r)["data"]["event"]["customer_id"], customer);
}
