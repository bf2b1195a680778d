//! The event log and the overview: every event offered to the agent appears once with what
//! became of it, pages cover the log without overlap, the live tail reads forward, and a key
//! of one environment never reads the other's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{body, catalog, code, field, Agent, LIVE, SANDBOX};
use serde_json::{json, Value};

fn ev(id: &str, customer: &str, env: &str, age_ms: i64) -> Value {
    let t = aforo_host_tests::servers::wall_now().plus_millis(-age_ms);
    json!({"id": id, "customer_id": customer, "metric": "api_calls", "quantity": 1, "timestamp": t.to_rfc3339(), "product_id": "p", "environment": env})
}

fn log(a: &Agent, key: &str, query: &str) -> Value {
    let r = a.call("GET", &format!("/v1/event-log{query}"), key, &Value::Null);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    body(&r)
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_outcome_is_logged_once_and_searchable() {
    let a = Agent::start(
        "event-log",
        &catalog(),
        &["--environments", "sandbox,production"],
    );
    let mut future = ev("future", "acme", "sandbox", 0);
    future["timestamp"] = json!(aforo_host_tests::servers::wall_now()
        .plus_millis(10 * 60_000)
        .to_rfc3339());
    let batch = json!({"events": [
        ev("ok-1", "acme", "sandbox", 0),
        ev("ok-2", "globex", "sandbox", 0),
        ev("old", "acme", "sandbox", 25 * 3_600_000),
        future,
        "not an event",
    ]});
    let r = a.call("POST", "/v1/events", SANDBOX, &batch);
    assert_eq!(r.status, 202);
    let r = a.call(
        "POST",
        "/v1/events",
        SANDBOX,
        &json!({"events": [ev("ok-1", "acme", "sandbox", 0)]}),
    );
    assert_eq!(body(&r)["duplicates"], 1);
    // The same customer id in production.
    let r = a.call(
        "POST",
        "/v1/events",
        LIVE,
        &json!({"events": [ev("live-1", "acme", "production", 0)]}),
    );
    assert_eq!(body(&r)["accepted"], 1);

    let all = log(&a, SANDBOX, "");
    let rows = all["data"].as_array().unwrap();
    let outcome_of = |id: &str| -> Vec<(String, Value)> {
        rows.iter()
            .filter(|r| r["event_id"] == id)
            .map(|r| {
                (
                    r["outcome"].as_str().unwrap().to_string(),
                    r["code"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(rows.len(), 6, "{all}");
    assert_eq!(
        outcome_of("ok-1"),
        [
            ("duplicate".into(), Value::Null),
            ("accepted".into(), Value::Null)
        ]
    );
    assert_eq!(outcome_of("ok-2"), [("accepted".into(), Value::Null)]);
    assert_eq!(outcome_of("old"), [("late".into(), Value::Null)]);
    assert_eq!(
        outcome_of("future"),
        [("rejected".into(), json!("timestamp_in_future"))]
    );
    let unparsable: Vec<_> = rows.iter().filter(|r| r["event_id"] == "").collect();
    assert_eq!(unparsable.len(), 1);
    assert_eq!(unparsable[0]["outcome"], "rejected");
    assert!(
        rows.iter().all(|r| r["event_id"] != "live-1"),
        "production is not in the sandbox log"
    );
    // Newest first.
    let seqs: Vec<i64> = rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");

    // Search.
    assert_eq!(ids(&log(&a, SANDBOX, "?customer=globex")), ["ok-2"]);
    assert_eq!(ids(&log(&a, SANDBOX, "?outcome=late")), ["old"]);
    assert_eq!(
        ids(&log(&a, SANDBOX, "?outcome=rejected&customer=acme")),
        ["future"]
    );
    assert_eq!(ids(&log(&a, LIVE, "?customer=acme")), ["live-1"]);
    let later = aforo_host_tests::servers::wall_now()
        .plus_millis(60_000)
        .to_rfc3339();
    assert!(ids(&log(&a, SANDBOX, &format!("?from={later}"))).is_empty());

    // A rejected event's details are the event as given, with a dead letter to replay.
    let future_row = rows.iter().find(|r| r["event_id"] == "future").unwrap();
    let dl = future_row["dead_letter_seq"].as_i64().unwrap();
    let r = a.call(
        "GET",
        &format!("/v1/event-log/{}", future_row["seq"]),
        SANDBOX,
        &Value::Null,
    );
    assert_eq!(r.status, 200);
    assert_eq!(body(&r)["data"]["event"]["id"], "future");
    assert_eq!(body(&r)["data"]["dead_letter_seq"], dl);
    // An accepted event's details are the stored event.
    let ok = rows.iter().find(|r| r["event_id"] == "ok-2").unwrap();
    let r = a.call(
        "GET",
        &format!("/v1/event-log/{}", ok["seq"]),
        SANDBOX,
        &Value::Null,
    );
    assert_eq!(body(&r)["data"]["event"]["customer_id"], "globex");
    // Another environment's row is not found with this key, nor is an unknown one.
    let live_seq = log(&a, LIVE, "")["data"][0]["seq"].clone();
    let r = a.call(
        "GET",
        &format!("/v1/event-log/{live_seq}?environment=production"),
        SANDBOX,
        &Value::Null,
    );
    assert_eq!((r.status, code(&r).as_str()), (403, "wrong_environment"));
    let r = a.call("GET", "/v1/event-log/99999", SANDBOX, &Value::Null);
    assert_eq!((r.status, code(&r).as_str()), (404, "not_found"));

    // Bad queries name their parameter.
    for (q, f) in [
        ("?outcome=lost", "outcome"),
        ("?limit=0", "limit"),
        ("?limit=abc", "limit"),
        ("?cursor=-1", "cursor"),
        ("?from=yesterday", "from"),
        ("?custmer=acme", "custmer"),
        ("?cursor=5&after=1", "after"),
    ] {
        let r = a.call("GET", &format!("/v1/event-log{q}"), SANDBOX, &Value::Null);
        assert_eq!(
            (r.status, field(&r)),
            (422, json!(f)),
            "{q}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[test]
fn pages_cover_the_log_without_overlap_and_the_tail_reads_forward() {
    let a = Agent::start("event-log-pages", &catalog(), &[]);
    for i in 0..7 {
        let r = a.call(
            "POST",
            "/v1/events",
            SANDBOX,
            &json!({"events": [ev(&format!("e{i}"), "acme", "sandbox", 0)]}),
        );
        assert_eq!(body(&r)["accepted"], 1);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            None => "?limit=3".to_string(),
            Some(c) => format!("?limit=3&cursor={c}"),
        };
        let page = log(&a, SANDBOX, &q);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(seen.len() <= 9, "pages do not end: {seen:?}");
    }
    assert_eq!(seen, ["e6", "e5", "e4", "e3", "e2", "e1", "e0"]);
    // A page that holds exactly what is left says there is no more.
    let whole = log(&a, SANDBOX, "?limit=7");
    assert_eq!(
        (whole["next_cursor"].clone(), whole["has_more"].clone()),
        (Value::Null, json!(false))
    );

    // The tail: rows after the newest seen, oldest first.
    let newest = log(&a, SANDBOX, "?limit=1")["data"][0]["seq"]
        .as_i64()
        .unwrap();
    assert!(ids(&log(&a, SANDBOX, &format!("?after={newest}"))).is_empty());
    for i in 7..9 {
        a.call(
            "POST",
            "/v1/events",
            SANDBOX,
            &json!({"events": [ev(&format!("e{i}"), "acme", "sandbox", 0)]}),
        );
    }
    assert_eq!(
        ids(&log(&a, SANDBOX, &format!("?after={newest}"))),
        ["e7", "e8"]
    );
}

#[test]
fn a_replayed_dead_letter_is_logged_again_and_its_old_row_no_longer_offers_it() {
    let a = Agent::start("event-log-replay", &catalog(), &[]);
    // Refused for being ahead of the clock by a few seconds past the allowed 5 minutes; a
    // replay once it is due stores it.
    let mut soon = ev("soon", "acme", "sandbox", 0);
    soon["timestamp"] = json!(aforo_host_tests::servers::wall_now()
        .plus_millis(5 * 60_000 + 3_000)
        .to_rfc3339());
    let r = a.call("POST", "/v1/events", SANDBOX, &json!({"events": [soon]}));
    assert_eq!(body(&r)["rejected"][0]["code"], "timestamp_in_future");
    let row = log(&a, SANDBOX, "?outcome=rejected")["data"][0].clone();
    let dl = row["dead_letter_seq"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = a.call(
            "POST",
            "/v1/dead-letters/replay",
            SANDBOX,
            &json!({"seqs": [dl]}),
        );
        if body(&r)["stored"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", body(&r));
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let page = log(&a, SANDBOX, "");
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows[0]["event_id"], "soon");
    assert_eq!(rows[0]["outcome"], "accepted");
    let old = rows.iter().find(|r| r["seq"] == row["seq"]).unwrap();
    assert_eq!(old["outcome"], "rejected", "history is kept");
    assert_eq!(
        old["dead_letter_seq"],
        Value::Null,
        "nothing left to replay there"
    );
}

#[test]
fn the_overview_counts_today_by_outcome_and_bounds_the_ingest_p95() {
    let a = Agent::start("overview", &catalog(), &[]);
    let r = a.call("GET", "/v1/overview", SANDBOX, &Value::Null);
    assert_eq!(r.status, 200);
    let o = body(&r);
    assert_eq!(
        (o["events_today"].clone(), o["ingest_p95_ms"].clone()),
        (json!(0), Value::Null)
    );
    let mut future = ev("f", "acme", "sandbox", 0);
    future["timestamp"] = json!(aforo_host_tests::servers::wall_now()
        .plus_millis(10 * 60_000)
        .to_rfc3339());
    a.call(
        "POST",
        "/v1/events",
        SANDBOX,
        &json!({"events": [ev("a", "acme", "sandbox", 0), ev("b", "acme", "sandbox", 0), future]}),
    );
    a.call(
        "POST",
        "/v1/events",
        SANDBOX,
        &json!({"events": [ev("a", "acme", "sandbox", 0)]}),
    );
    let o = body(&a.call("GET", "/v1/overview", SANDBOX, &Value::Null));
    assert_eq!(o["events_today"], 4, "{o}");
    assert_eq!(
        o["by_outcome"],
        json!({"accepted": 2, "late": 0, "duplicate": 1, "rejected": 1, "dead_lettered": 0})
    );
    assert_eq!(o["ingest_requests"], 2);
    // The bound of a bucket of the ingest histogram, and within it.
    let p95 = o["ingest_p95_ms"].as_f64().unwrap();
    assert!(
        [0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0].contains(&p95),
        "{o}"
    );
    assert_eq!(o["ingest_p95_above"], false, "{o}");
    // The same histogram is on /metrics.
    let m = a.call("GET", "/metrics", "", &Value::Null);
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("aforo_agent_ingest_seconds_count{environment=\"sandbox\"} 2"),
        "{text}"
    );
    let r = a.call(
        "GET",
        "/v1/overview?environment=production",
        SANDBOX,
        &Value::Null,
    );
    assert_eq!((r.status, code(&r).as_str()), (403, "wrong_environment"));
}
