//! Quota leases across agents (`max_overshoot`): a real redis-server and two aforo-agents
//! reserving through `/v1/canAccess` from many threads at once. The quota holds exactly with a
//! budget of 0 and within the budget otherwise, events claimed into the same counter leave less
//! to lease, and unspent units go back to Redis. Every process stops when its guard drops.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_core::entitlement::{quota_key, CounterValue};
use aforo_core::{Environment, Timestamp};
use common::redis_server::{example, RedisServer};
use common::{body, Agent, SANDBOX};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn catalog(quota: u64) -> Value {
    json!({
        "customers": {
            "globex": {"features": {"search": {"metric": "api_calls", "quota": quota}}}
        }
    })
}

/// An agent configured by the multi-node example's `agent.json`, leasing with `budget`.
fn agent(tag: &str, redis: &RedisServer, quota: u64, node: &str, budget: &str) -> Agent {
    let config = example("agent.json").display().to_string();
    let url = redis.url();
    Agent::start(
        tag,
        &catalog(quota),
        &[
            "--config",
            &config,
            "--state",
            &url,
            "--node-id",
            node,
            "--tenant-keys",
            SANDBOX,
            "--max-overshoot",
            budget,
        ],
    )
}

/// One reservation of `quantity` for globex's search: the status and the answer.
fn reserve(a: &Agent, quantity: u64) -> (u16, Value) {
    let r = a.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"tenantId": "globex", "featureKey": "search", "quantity": quantity}),
    );
    (r.status, body(&r))
}

/// Reservations of one unit from `threads` threads per agent, `each` per thread: how many were
/// admitted. Every other answer must be a 429 `quota_exhausted`.
fn hammer(agents: &[&Agent], threads: usize, each: usize) -> usize {
    std::thread::scope(|s| {
        let handles: Vec<_> = agents
            .iter()
            .flat_map(|a| (0..threads).map(move |_| *a))
            .map(|a| {
                s.spawn(move || {
                    let mut admitted = 0;
                    for _ in 0..each {
                        match reserve(a, 1) {
                            (200, _) => admitted += 1,
                            (429, b) => assert_eq!(b["error"]["code"], "quota_exhausted", "{b}"),
                            (status, b) => panic!("{status}: {b}"),
                        }
                    }
                    admitted
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// The count Redis holds for globex's search quota this month.
fn counted(redis: &RedisServer) -> u64 {
    let mut con = redis.connection().unwrap();
    let key = quota_key(Environment::Sandbox, "globex", "search");
    let v: Option<Vec<u8>> = redis::cmd("HGET")
        .arg("aforo:q:sandbox:globex:search")
        .arg("v")
        .query(&mut con)
        .unwrap();
    v.map_or(0, |v| CounterValue::decode(&key, &v).unwrap().count)
}

/// Scripts Redis has run (`EVALSHA` calls) since it started.
fn scripts_run(redis: &RedisServer) -> u64 {
    let mut con = redis.connection().unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// The units an agent holds unspent, from its `/metrics`.
fn held(a: &Agent) -> u64 {
    let r = a.call("GET", "/metrics", SANDBOX, &Value::Null);
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix("aforo_agent_lease_units_held "))
        .expect("the lease gauge")
        .trim()
        .parse()
        .unwrap()
}

/// Waits (bounded) until both agents have given their leases back.
fn wait_given_back(agents: &[&Agent]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while agents.iter().any(|a| held(a) > 0) {
        assert!(Instant::now() < deadline, "leases still held after 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn event(id: &str, n: u64) -> Value {
    json!({"id": id, "customer_id": "globex", "metric": "api_calls", "quantity": n,
           "timestamp": Timestamp::from_unix_nanos(
               std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
           ).to_rfc3339(),
           "product_id": "prod_redis", "environment": "sandbox"})
}

#[test]
fn strict_leases_admit_exactly_the_quota_across_two_agents_and_give_back_what_is_unspent() {
    let redis = RedisServer::start("leases-strict");
    let a = agent("leases-a", &redis, 60, "node-a", "0");
    let b = agent("leases-b", &redis, 60, "node-b", "0");
    // Events claimed into the quota's counter leave less to lease: 10 of 60 used.
    let r = a.call(
        "POST",
        "/v1/events",
        SANDBOX,
        &json!({"events": [event("evt-before-1", 4), event("evt-before-2", 6)]}),
    );
    assert_eq!(body(&r)["accepted"], 2);
    // 4 threads per agent, 20 reservations each: 160 asks for the 50 units left.
    let before = scripts_run(&redis);
    let admitted = hammer(&[&a, &b], 4, 20);
    assert_eq!(admitted, 50, "exactly the quota, less what the events used");
    // Taken from leases, not one compare-and-swap each (that is at least one script per
    // request: 160).
    let calls = scripts_run(&redis) - before;
    assert!(calls < 60, "{calls} scripts run for 160 reservations");
    let (status, answer) = reserve(&b, 1);
    assert_eq!((status, answer["remaining"].as_u64()), (429, Some(0)));
    // What was leased and not spent goes back; Redis then counts exactly what was used.
    wait_given_back(&[&a, &b]);
    assert_eq!(counted(&redis), 60);
}

#[test]
fn a_budget_bounds_the_overshoot_and_unspent_leases_serve_the_other_agent() {
    let redis = RedisServer::start("leases-budget");
    let a = agent("budget-a", &redis, 60, "node-a", "5");
    let b = agent("budget-b", &redis, 60, "node-b", "5");
    let admitted = hammer(&[&a, &b], 4, 20);
    assert!(
        (60..=65).contains(&admitted),
        "{admitted} admitted: at least the quota, at most quota + 5"
    );
    wait_given_back(&[&a, &b]);
    assert_eq!(counted(&redis), admitted as u64);

    // One agent takes a lease and stops spending: after the lease's time its units go back and
    // the other agent can use them (quota 8, no budget).
    let redis = RedisServer::start("leases-return");
    let a = agent("return-a", &redis, 8, "node-a", "0");
    let b = agent("return-b", &redis, 8, "node-b", "0");
    // A first lease is of one unit; the next asks for twice as much and keeps the rest.
    assert_eq!((reserve(&a, 1).0, reserve(&a, 1).0), (200, 200));
    assert!(held(&a) > 0, "a holds the rest of its lease");
    let spent_by_b = hammer(&[&b], 1, 12);
    // b is refused while a's units may still come back: told to retry in seconds (when b asks
    // Redis again, at most 8 lease times), not at the month's reset.
    let r = b.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"tenantId": "globex", "featureKey": "search", "quantity": 1}),
    );
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry <= 16, "Retry-After {retry} s");
    assert_eq!(r.header("ratelimit-limit"), Some("8"));
    wait_given_back(&[&a]);
    let after = hammer(&[&b], 1, 12);
    assert_eq!(
        2 + spent_by_b + after,
        8,
        "what a leased and did not spend came back to b"
    );
    assert!(
        after > 0,
        "a's unspent units served b after the lease ended"
    );
}

#[test]
fn with_redis_down_an_agent_spends_at_most_the_lease_it_holds_then_fails_closed() {
    let mut redis = RedisServer::start("leases-down");
    let config = example("agent.json").display().to_string();
    let url = redis.url();
    let a = Agent::start(
        "leases-down",
        &catalog(1_000),
        &[
            "--config",
            &config,
            "--state",
            &url,
            "--node-id",
            "node-a",
            "--tenant-keys",
            SANDBOX,
            "--max-overshoot",
            "0",
            "--failure-mode",
            "closed",
        ],
    );
    // Leases of 1, 2, then 4 units: three left in hand.
    for _ in 0..4 {
        assert_eq!(reserve(&a, 1).0, 200);
    }
    redis.stop();
    let held_at_stop = held(&a);
    // What the agent holds may still be spent (until its lease's time is up); past it, no
    // reservation is made on this agent's own counts: 503, never an admission Redis did not
    // grant.
    let statuses: Vec<u16> = (0..8).map(|_| reserve(&a, 1).0).collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert!(
        admitted <= held_at_stop,
        "{statuses:?}: more than the {held_at_stop} units held"
    );
    let first_refusal = statuses.iter().position(|s| *s != 200).unwrap();
    assert!(
        statuses[first_refusal..].iter().all(|s| *s == 503),
        "{statuses:?}"
    );
}

/// `POST /v1/leases` takes nothing from the caller that could open a window of its own or lease
/// past the plan: the counter must be a catalog customer's feature of the key's environment,
/// the window the counter's current one (or the one before or after) by the agent's clock, and
/// the quota is the catalog's. An agent without leases says so.
#[test]
fn gateway_leases_take_their_window_and_quota_from_the_catalog_not_the_caller() {
    let redis = RedisServer::start("leases-gw");
    let a = agent("leases-gw", &redis, 10, "node-a", "0");
    let now = Timestamp::from_unix_nanos(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64,
    );
    let month =
        aforo_core::entitlement::QuotaWindow::calendar(aforo_core::entitlement::Period::Month);
    let (start, end) = month.current(now);
    let key = quota_key(Environment::Sandbox, "globex", "search");
    let ask = |k: &str, source: &str, ws: Timestamp, quota: u64, want: u64| {
        json!({"source": source, "key": k, "window_start": ws.unix_nanos(),
               "window_end": end.unix_nanos(), "quota": quota, "give_back": null,
               "want": want, "need": 1})
    };
    let lease = |key: &str, body: &Value| a.call("POST", "/v1/leases", key, body);
    // A quota of 10^9 asked: the catalog's 10 is what Redis grants from.
    let r = lease(
        SANDBOX,
        &ask(&key, "envoy-1", start, 1_000_000_000, 1_000_000),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let g = body(&r);
    assert_eq!(
        (g["units"].as_u64(), g["left"].as_u64()),
        (Some(5), Some(5)),
        "{g}"
    );
    // Refused, each naming the field at fault.
    for (k, body, field) in [
        (common::LIVE, ask(&key, "envoy-1", start, 10, 1), "key"),
        (
            SANDBOX,
            ask(
                &quota_key(Environment::Sandbox, "nobody", "search"),
                "envoy-1",
                start,
                10,
                1,
            ),
            "key",
        ),
        (
            SANDBOX,
            ask("aforo:r:sandbox:k:x", "envoy-1", start, 10, 1),
            "key",
        ),
        (SANDBOX, ask(&key, "envoy-1", now, 10, 1), "window_start"),
        (SANDBOX, ask(&key, "a|b", start, 10, 1), "source"),
        (SANDBOX, ask(&key, "gw/../x", start, 10, 1), "source"),
    ] {
        let r = lease(k, &body);
        assert_eq!(
            r.status,
            422,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(body_field(&r), field, "{body}");
    }
    // Nothing of that reached Redis: the count is the one lease granted.
    let v: Vec<u8> = redis::cmd("HGET")
        .arg(&key)
        .arg("v")
        .query(&mut redis.connection().unwrap())
        .unwrap();
    assert_eq!(CounterValue::decode(&key, &v).unwrap().count, 5);
    // An agent that does not lease.
    let plain = Agent::start(
        "leases-gw-off",
        &catalog(10),
        &[
            "--config",
            &example("agent.json").display().to_string(),
            "--state",
            &redis.url(),
        ],
    );
    let r = plain.call(
        "POST",
        "/v1/leases",
        SANDBOX,
        &ask(&key, "envoy-1", start, 10, 1),
    );
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(body(&r)["error"]["code"], "leases_off");
}

fn body_field(r: &aforo_host_tests::http1::Response) -> String {
    body(r)["error"]["field"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A reservation whose feature quota was taken from a lease and whose daily credits then
/// refuse it (production) gives the feature's unit back to the lease: once the leases go back,
/// Redis counts only the reservations admitted.
#[test]
fn a_reservation_refused_after_its_lease_gives_the_unit_back_to_the_lease() {
    let redis = RedisServer::start("leases-refund");
    let config = example("agent.json").display().to_string();
    let mut cat = catalog(100);
    cat["customers"]["globex"]["daily_credits"] = json!({"limit": 3});
    let a = Agent::start(
        "leases-refund",
        &cat,
        &[
            "--config",
            &config,
            "--state",
            &redis.url(),
            "--node-id",
            "node-a",
            "--tenant-keys",
            common::LIVE,
            "--max-overshoot",
            "0",
        ],
    );
    let reserve_live = || {
        a.call(
            "POST",
            "/v1/canAccess",
            common::LIVE,
            &json!({"tenantId": "globex", "featureKey": "search", "quantity": 1}),
        )
    };
    let statuses: Vec<u16> = (0..6).map(|_| reserve_live().status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    wait_given_back(&[&a]);
    let key = quota_key(Environment::Production, "globex", "search");
    let v: Vec<u8> = redis::cmd("HGET")
        .arg(&key)
        .arg("v")
        .query(&mut redis.connection().unwrap())
        .unwrap();
    assert_eq!(
        CounterValue::decode(&key, &v).unwrap().count,
        3,
        "the refused reservations' units came back"
    );
}
