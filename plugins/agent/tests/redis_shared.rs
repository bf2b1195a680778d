//! Several nodes, one quota: a real redis-server, two aforo-agents with `state = redis://…`
//! and (for the gateway tests) two real Envoys with the filter, each syncing from and reporting
//! to its own agent. Every process is stopped when its guard drops, also when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_host_tests::envoy::Envoy;
use aforo_host_tests::http1::Client;
use aforo_host_tests::servers::Upstream;
use common::gateway::{envoy_with_agent, search, wait_for_sync};
use common::redis_cluster::RedisCluster;
use common::redis_server::{example, RedisServer, SharedState};
use common::{body, Agent, SANDBOX};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SYNC_MS: u64 = 500;
const FLUSH_MS: u64 = 100;

fn catalog(quota: u64) -> Value {
    json!({
        "customers": {
            "globex": {"features": {
                "search": {"metric": "api_calls", "quota": quota},
                "burst": {"metric": "burst_calls", "rate_limit": {"limit": 3, "per": "minute"}}
            }},
            "acme": {"features": {"search": {"metric": "api_calls", "quota": 5}}}
        },
        "consumer_keys": [
            {"key_id": "globex-static", "key": "ck_static_globex_key", "customer_id": "globex"},
            {"key_id": "acme-static", "key": "ck_static_acme_key", "customer_id": "acme"}
        ]
    })
}

/// An agent configured by the deploy example's `agent.json`, pointed at `redis`.
fn agent(tag: &str, redis: &dyn SharedState, quota: u64, node: &str) -> Agent {
    agent_with(tag, redis, quota, node, &[])
}

/// `agent` with more flags.
fn agent_with(tag: &str, redis: &dyn SharedState, quota: u64, node: &str, extra: &[&str]) -> Agent {
    let config = example("agent.json").display().to_string();
    let shared = redis.agent_flags();
    // The tests ask /v1/canAccess by customer id, as a gateway that authenticates callers.
    let mut flags = vec![
        "--config",
        &config,
        "--node-id",
        node,
        "--tenant-keys",
        SANDBOX,
    ];
    flags.extend(shared.iter().map(String::as_str));
    flags.extend(extra);
    Agent::start(tag, &catalog(quota), &flags)
}

fn event(id: &str, n: u64) -> Value {
    json!({"id": id, "customer_id": "globex", "metric": "api_calls", "quantity": n,
           "timestamp": aforo_core::Timestamp::from_unix_nanos(
               std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
           ).to_rfc3339(),
           "product_id": "prod_redis", "environment": "sandbox"})
}

fn ingest(a: &Agent, events: &[Value]) -> Value {
    let r = a.call("POST", "/v1/events", SANDBOX, &json!({ "events": events }));
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    body(&r)
}

/// `used` of globex's search quota in the snapshot `a` serves (as node `source`).
fn used(a: &Agent, source: &str) -> (u64, u64) {
    let r = a.call(
        "GET",
        &format!("/v1/entitlements?source={source}"),
        SANDBOX,
        &Value::Null,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let f = &body(&r)["customers"]["globex"]["features"]["search"];
    (
        f["used"].as_u64().unwrap(),
        f["used_by_source"].as_u64().unwrap(),
    )
}

/// The agent's Prometheus counters, by full series name.
fn metrics(a: &Agent) -> HashMap<String, u64> {
    let r = a.call("GET", "/metrics", SANDBOX, &Value::Null);
    String::from_utf8_lossy(&r.body)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| v.parse::<f64>().ok().map(|v| (k.to_string(), v as u64)))
        .collect()
}

fn m(a: &Agent, series: &str) -> u64 {
    metrics(a).get(series).copied().unwrap_or(0)
}

/// Ids of globex's events this agent holds as its own (claimed), and how many wait.
fn stored(a: &Agent) -> (Vec<String>, i64) {
    let db = rusqlite::Connection::open(a.dir.join("data").join("sandbox.db")).unwrap();
    let mut st = db
        .prepare("SELECT id FROM events WHERE customer_id = 'globex' AND claimed = 1")
        .unwrap();
    let ids = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let waiting = db
        .query_row("SELECT COUNT(*) FROM events WHERE claimed = 0", [], |r| {
            r.get(0)
        })
        .unwrap();
    (ids, waiting)
}

/// The distinct `source` values of globex's events in an agent's store.
fn sources(a: &Agent) -> Vec<String> {
    let db = rusqlite::Connection::open(a.dir.join("data").join("sandbox.db")).unwrap();
    let mut st = db
        .prepare("SELECT DISTINCT source FROM events WHERE customer_id = 'globex'")
        .unwrap();
    st.query_map([], |r| r.get::<_, Option<String>>(0))
        .unwrap()
        .map(|r| r.unwrap().unwrap_or_default())
        .collect()
}

/// Checks one agent's conservation: stored + resumed = counted + replayed + duplicate + pending.
/// The claim counters' equation: every stored or resumed event was counted, replayed, found
/// a duplicate or is still pending; `Err` names the numbers when it does not hold.
fn balance(a: &Agent) -> Result<(), String> {
    let s = |k: &str| m(a, &format!("aforo_agent_{k}"));
    let stored = s("events_stored_total{environment=\"sandbox\"}");
    let resumed = s("claims_resumed_total{environment=\"sandbox\"}");
    let counted = s("claims_total{environment=\"sandbox\",result=\"counted\"}");
    let replayed = s("claims_total{environment=\"sandbox\",result=\"replayed\"}");
    let duplicate = s("claims_total{environment=\"sandbox\",result=\"duplicate\"}");
    let pending = s("claims_pending{environment=\"sandbox\"}");
    if stored + resumed == counted + replayed + duplicate + pending {
        Ok(())
    } else {
        Err(format!("stored {stored} + resumed {resumed} != counted {counted} + replayed {replayed} + duplicate {duplicate} + pending {pending}"))
    }
}

fn assert_balanced(a: &Agent) {
    if let Err(why) = balance(a) {
        panic!("{why}");
    }
}

#[test]
fn two_agents_share_dedup_quotas_and_rate_limits() {
    let redis = RedisServer::start("share");
    let a = agent("share-a", &redis, 10, "node-a");
    let b = agent("share-b", &redis, 10, "node-b");

    // The same event id through both agents is counted once.
    let first = ingest(&a, &[event("evt-shared-1", 2)]);
    assert_eq!(
        (first["accepted"].as_u64(), first["duplicates"].as_u64()),
        (Some(1), Some(0))
    );
    let second = ingest(&b, &[event("evt-shared-1", 2)]);
    assert_eq!(
        (second["accepted"].as_u64(), second["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{second}"
    );
    // Both agents see the shared count; only A's store keeps the event (forwarded, billed).
    assert_eq!(used(&a, "x").0, 2);
    assert_eq!(used(&b, "x").0, 2);
    assert_eq!(stored(&a).0, vec!["evt-shared-1".to_string()]);
    assert_eq!(stored(&b).0, Vec::<String>::new());
    // A batch mixing new and already-claimed ids, through B.
    let mixed = ingest(&b, &[event("evt-shared-1", 2), event("evt-b-1", 3)]);
    assert_eq!(
        (mixed["accepted"].as_u64(), mixed["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(used(&a, "x").0, 5);
    // Per-source shares come from the events' `source` property.
    let mut e = event("evt-src-1", 1);
    e["properties"] = json!({"source": "gw-1"});
    ingest(&a, &[e]);
    assert_eq!(used(&b, "gw-1"), (6, 1));

    // Quota reservations through /v1/canAccess draw on one counter: 6 used of 10, so two
    // reservations of 2 fit (one on each agent) and the third is refused on either.
    let access = |x: &Agent, q: u64| {
        x.call(
            "POST",
            "/v1/canAccess",
            SANDBOX,
            &json!({"tenantId": "globex", "featureKey": "search", "quantity": q}),
        )
        .status
    };
    assert_eq!(access(&a, 2), 200);
    assert_eq!(access(&b, 2), 200);
    assert_eq!(access(&a, 1), 429);
    assert_eq!(access(&b, 1), 429);

    // The rate-limit bucket (3 per minute) is shared too.
    let burst = |x: &Agent| {
        x.call(
            "POST",
            "/v1/canAccess",
            SANDBOX,
            &json!({"tenantId": "globex", "featureKey": "burst"}),
        )
        .status
    };
    let statuses = [burst(&a), burst(&b), burst(&a), burst(&b), burst(&a)];
    assert_eq!(statuses, [200, 200, 200, 429, 429]);

    // The keys live under the prefix, with expiries (nothing is kept forever).
    let mut con = redis.connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(keys.iter().all(|k| k.starts_with("aforo:")), "{keys:?}");
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL").arg(k).query(&mut con).unwrap();
        assert!(ttl > 0, "{k} has no expiry");
    }
    // The quota counter, written by claims and by reservations, expires a day after its
    // window's real reset (the first of next month), not a year on.
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg("aforo:q:sandbox:globex:search")
        .query(&mut con)
        .unwrap();
    assert!(
        ttl_ms > 86_400_000 && ttl_ms <= 32 * 86_400_000,
        "expires in {} days",
        ttl_ms / 86_400_000
    );
    assert_balanced(&a);
    assert_balanced(&b);
}

struct Node {
    agent: Agent,
    envoy: Envoy,
}

/// Prints what the nodes and Redis logged, and each agent's claim counters, when the test it
/// guards fails: a test that fails once in many runs must explain itself the first time.
struct TellOnFailure<'a> {
    nodes: Vec<&'a Node>,
    redis_log: std::path::PathBuf,
}

impl Drop for TellOnFailure<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // Nothing here may panic: a panic while unwinding aborts the whole test binary.
        let tail = |s: &str, n: usize| {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        for (k, n) in self.nodes.iter().enumerate() {
            let h = [("authorization".to_string(), format!("Bearer {SANDBOX}"))];
            let counters = Client::new(&n.agent.addr())
                .request("GET", "/metrics", &h, &[])
                .map(|r| {
                    String::from_utf8_lossy(&r.body)
                        .lines()
                        .filter(|l| !l.starts_with('#') && l.contains("sandbox"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|e| format!("no metrics: {e}"));
            let rows = rusqlite::Connection::open(n.agent.dir.join("data").join("sandbox.db"))
                .and_then(|db| {
                    db.query_row(
                        "SELECT COUNT(*), COALESCE(SUM(claimed = 0), 0) FROM events",
                        [],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                    )
                })
                .map(|(all, waiting)| format!("{all} events stored, {waiting} unclaimed"))
                .unwrap_or_else(|e| format!("no store: {e}"));
            eprintln!(
                "--- node {k}: {rows}; {counters}\n--- its agent's log:\n{}\n--- its Envoy's log:\n{}",
                tail(&n.agent.log(), 40),
                n.envoy.log_tail(20)
            );
        }
        let redis = std::fs::read_to_string(&self.redis_log).unwrap_or_default();
        eprintln!("--- Redis's log:\n{}", tail(&redis, 30));
    }
}

/// A node: its agent, and an Envoy whose filter reports to it. The filter is named `tag` by its
/// configuration's `source`, or (`by_node_id`) by Envoy's node id, as under Istio.
fn node(
    tag: &str,
    redis: &dyn SharedState,
    quota: u64,
    upstream: &Upstream,
    by_node_id: bool,
) -> Node {
    node_with(tag, redis, quota, upstream, by_node_id, None, json!({}))
}

/// `node`; with `leases = Some(budget)` its agent leases with `max_overshoot` = budget and
/// its filter (two workers) takes units from leases through it (`quota_leases`); `filter`'s
/// fields are added to the filter's configuration.
fn node_with(
    tag: &str,
    redis: &dyn SharedState,
    quota: u64,
    upstream: &Upstream,
    by_node_id: bool,
    leases: Option<u64>,
    filter: Value,
) -> Node {
    let budget = leases.map(|b| b.to_string());
    let extra: Vec<&str> = match &budget {
        Some(b) => vec!["--max-overshoot", b],
        None => Vec::new(),
    };
    let agent = agent_with(tag, redis, quota, tag, &extra);
    let mut config = json!({
        "api_key": SANDBOX,
        "product_id": "prod_redis",
        "ingest_url": agent.url(),
        "ingest_cluster": "aforo_agent",
        "entitlements_url": format!("{}/v1/entitlements", agent.url()),
        "entitlements_cluster": "aforo_agent",
        "sync_interval_ms": SYNC_MS,
        "flush_interval_ms": FLUSH_MS,
        "initial_backoff_ms": 200,
        "max_backoff_ms": 1000,
        // The nodes sit behind a load balancer that sets x-request-id, so a client's retry
        // through another node is the same event (docs/several-nodes.md).
        "request_id_header": "x-request-id",
        "routes": [{"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"}]
    });
    if !by_node_id {
        config["source"] = json!(tag);
    }
    if leases.is_some() {
        config["quota_leases"] = json!(true);
    }
    if let Value::Object(extra) = filter {
        for (k, v) in extra {
            config[k] = v;
        }
    }
    let (yaml, port, admin) = envoy_with_agent(&config, agent.port, upstream.port());
    let yaml = if by_node_id {
        format!("node: {{ id: \"{tag}\", cluster: aforo }}\n{yaml}")
    } else {
        yaml
    };
    let workers = if leases.is_some() { 2 } else { 1 };
    let envoy = Envoy::start(&yaml, port, admin, workers).unwrap_or_else(|e| panic!("{e}"));
    wait_for_sync(&envoy);
    Node { agent, envoy }
}

/// Waits until both agents have settled every claim, hold `want` globex events between them,
/// and have published the metrics of what they settled (a claim is committed before its
/// metric moves); fails with what it saw when that takes longer than a minute.
fn settle(nodes: &[&Node], want: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all: Vec<(Vec<String>, i64)> = nodes.iter().map(|n| stored(&n.agent)).collect();
        let held: usize = all.iter().map(|(ids, _)| ids.len()).sum();
        let waiting: i64 = all.iter().map(|(_, w)| *w).sum();
        let balanced = nodes
            .iter()
            .map(|n| balance(&n.agent))
            .collect::<Result<Vec<_>, _>>();
        if held >= want && waiting == 0 && balanced.is_ok() {
            return all.into_iter().map(|(ids, _)| ids).collect();
        }
        assert!(
            Instant::now() < deadline,
            "not settled in 60 s: {held} of {want} events held, {waiting} claims waiting, metrics {balanced:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn globex_used(redis: &dyn SharedState) -> u64 {
    redis.quota_used("globex", "search")
}

/// `count` nodes share a quota of `q`: they admit at most `q` plus the documented bound.
/// Every node runs at the same pace; each request id is used once, except every tenth round's
/// first request, which is retried through the last node (a client retry landing elsewhere).
/// The last node is named by Envoy's node id, the others by their `source`.
fn quota_across_nodes(tag: &str, count: usize, q: u64, rounds: usize) {
    quota_across_nodes_on(&RedisServer::start(tag), tag, count, q, rounds);
}

/// `quota_across_nodes` with the agents' state in `redis`.
fn quota_across_nodes_on(redis: &dyn SharedState, tag: &str, count: usize, q: u64, rounds: usize) {
    let upstream = Upstream::start().unwrap();
    let nodes: Vec<Node> = (0..count)
        .map(|k| node(&format!("{tag}-{k}"), redis, q, &upstream, k == count - 1))
        .collect();
    let last = &nodes[count - 1];
    let started = Instant::now();
    let mut admitted = 0u64;
    let mut refused = 0u64;
    // Retries admitted: of a request admitted before (a duplicate event), or of one refused
    // before (a new event).
    let (mut retry_dup, mut retry_new) = (0u64, 0u64);
    for i in 0..rounds {
        let mut first = 0;
        for (k, n) in nodes.iter().enumerate() {
            let s = search(&n.envoy, &format!("{tag}-{i}-{k}"));
            match s {
                200 => admitted += 1,
                429 => refused += 1,
                s => panic!("unexpected status {s}: {}", n.envoy.log_tail(20)),
            }
            if k == 0 {
                first = s;
            }
        }
        if i % 10 == 0 && search(&last.envoy, &format!("{tag}-{i}-0")) == 200 {
            if first == 200 {
                retry_dup += 1;
            } else {
                retry_new += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let elapsed = started.elapsed().as_secs_f64();
    // The bound (docs/several-nodes.md): each node can miss what the others admitted during
    // its blind time S = sync interval + flush interval + delivery and claim (~100 ms here),
    // so the overshoot is at most (N - 1) x r x S with r the per-node admission rate.
    let rate = rounds as f64 / elapsed;
    let blind = (SYNC_MS + FLUSH_MS + 100) as f64 / 1000.0;
    let bound = ((count - 1) as f64 * rate * blind).ceil() as u64;
    let events = admitted + retry_new;
    eprintln!(
        "{count} nodes: admitted {admitted} (+{retry_dup} retries of admitted requests, +{retry_new} of refused ones), refused {refused} of {} in {elapsed:.1} s; r = {rate:.1}/s per node; quota {q}, bound {bound}",
        count * rounds
    );
    assert!(events >= q, "the quota was not used up: {events}");
    assert!(
        events <= q + bound,
        "over-admission {} beyond the bound {bound}",
        events - q
    );
    assert!(
        q + bound < count as u64 * q,
        "the test would not tell shared from per-node quotas (each node alone admits {q})"
    );

    // Every admitted request is one event, held by exactly one agent, counted once in Redis;
    // a retry through another node (same request id, same event id) is not counted again.
    let refs: Vec<&Node> = nodes.iter().collect();
    let held = settle(&refs, events as usize);
    let mut all = HashSet::new();
    for ids in &held {
        for id in ids {
            assert!(all.insert(id.clone()), "{id} is held by two agents");
        }
    }
    assert_eq!(
        all.len() as u64,
        events,
        "held per node: {:?}",
        held.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(globex_used(redis), events, "the shared counter");
    // Each node's events carry its name: the configured `source`, or Envoy's node id.
    for (k, n) in nodes.iter().enumerate() {
        assert_eq!(sources(&n.agent), vec![format!("{tag}-{k}")]);
        assert_balanced(&n.agent);
    }
    let dups: u64 = nodes
        .iter()
        .map(|n| {
            m(
                &n.agent,
                "aforo_agent_events_duplicate_total{environment=\"sandbox\"}",
            )
        })
        .sum();
    assert_eq!(
        dups, retry_dup,
        "each retry of an admitted request arrived as a duplicate"
    );
}

/// `count` nodes whose filters take units from leases through their agents (`quota_leases`;
/// agents with `max_overshoot` = `budget`), each Envoy with two workers, under four client
/// threads per node: the quota `q` is admitted exactly with no budget, at most `q + budget`
/// with one, and every admitted request is one event counted once in Redis (by its lease,
/// not again by its claim).
fn leased_quota_across_nodes_on(
    redis: &dyn SharedState,
    tag: &str,
    count: usize,
    q: u64,
    budget: u64,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let upstream = Upstream::start().unwrap();
    let nodes: Vec<Node> = (0..count)
        .map(|k| {
            node_with(
                &format!("{tag}-{k}"),
                redis,
                q,
                &upstream,
                false,
                Some(budget),
                json!({}),
            )
        })
        .collect();
    let admitted = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let per_thread = (3 * q) as usize / (count * 4);
    std::thread::scope(|s| {
        for (k, n) in nodes.iter().enumerate() {
            for t in 0..4 {
                let (admitted, refused) = (&admitted, &refused);
                s.spawn(move || {
                    for i in 0..per_thread {
                        match search(&n.envoy, &format!("{tag}-{k}-{t}-{i}")) {
                            200 => admitted.fetch_add(1, Ordering::Relaxed),
                            429 => refused.fetch_add(1, Ordering::Relaxed),
                            st => panic!("unexpected status {st}: {}", n.envoy.log_tail(20)),
                        };
                    }
                });
            }
        }
    });
    let concurrent = admitted.load(Ordering::Relaxed);
    // Units held by workers that stopped asking come back within a lease's time (2 s): ask
    // on until nothing more has been admitted for 3 s.
    let started = Instant::now();
    let mut last = Instant::now();
    let mut late = 0u64;
    for i in 0.. {
        let n = &nodes[i % count];
        match search(&n.envoy, &format!("{tag}-late-{i}")) {
            200 => {
                late += 1;
                last = Instant::now();
            }
            429 => {}
            st => panic!("unexpected status {st}: {}", n.envoy.log_tail(20)),
        }
        if last.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "still admitting after 40 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let events = concurrent + late;
    eprintln!(
        "{count} nodes with leases (budget {budget}): {concurrent} admitted under {} concurrent requests ({} refused), {late} after; quota {q}",
        count * 4 * per_thread,
        refused.load(Ordering::Relaxed)
    );
    if budget == 0 {
        assert_eq!(events, q, "exactly the quota");
    } else {
        assert!(
            (q..=q + budget).contains(&events),
            "{events} admitted: not within the quota plus the budget {budget}"
        );
    }
    // Each admitted request is one event, held by one agent; Redis counted each unit once.
    let refs: Vec<&Node> = nodes.iter().collect();
    let held = settle(&refs, events as usize);
    let total: usize = held.iter().map(Vec::len).sum();
    assert_eq!(total as u64, events);
    assert_eq!(globex_used(redis), events, "the shared counter");
    for n in &nodes {
        assert_balanced(&n.agent);
    }
}

#[test]
fn three_envoys_with_quota_leases_admit_exactly_the_quota_and_at_most_the_budget_more() {
    leased_quota_across_nodes_on(&RedisServer::start("leased3"), "leased3", 3, 60, 0);
    leased_quota_across_nodes_on(&RedisServer::start("leased3b"), "leased3b", 3, 60, 5);
}

/// Redis stopped under a leasing filter with `failure_mode: closed`: the workers spend the
/// units they hold (never more than Redis granted), then answer 503; with Redis back, leases
/// are granted again.
#[test]
fn with_redis_down_a_leasing_filter_spends_what_it_holds_then_fails_closed() {
    let mut redis = RedisServer::start("leased-down");
    let upstream = Upstream::start().unwrap();
    let n = node_with(
        "leased-down",
        &redis,
        1_000,
        &upstream,
        false,
        Some(0),
        json!({"failure_mode": "closed"}),
    );
    for i in 0..12 {
        assert_eq!(search(&n.envoy, &format!("before-{i}")), 200);
    }
    // Granted so far: what the workers may still spend.
    let granted = globex_used(&redis);
    let held = granted - 12;
    redis.stop();
    let statuses: Vec<u16> = (0..12)
        .map(|i| search(&n.envoy, &format!("down-{i}")))
        .collect();
    let admitted = statuses.iter().filter(|s| **s == 200).count() as u64;
    eprintln!("Redis stopped with {held} units held by the workers: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        admitted <= held,
        "{statuses:?}: more than the {held} units the workers held"
    );
    assert!(statuses.contains(&503), "{statuses:?}: never failed closed");
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    while search(&n.envoy, &format!("after-{i}")) != 200 {
        assert!(
            Instant::now() < deadline,
            "no lease granted after Redis came back"
        );
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A request with a body that waits for its lease goes upstream only once admitted, body and
/// all (the filter holds the body meanwhile, and reads what Envoy buffered when the answer
/// comes): a refused one never reaches the upstream, and each admitted one's event carries a
/// property read from its body. (Envoy 1.40 also kept a request whose body callback answered
/// `Continue` while its headers were paused; the filter does not rely on that.)
#[test]
fn a_request_body_waits_with_its_request_for_the_lease_answer() {
    let redis = RedisServer::start("leased-body");
    let upstream = Upstream::start().unwrap();
    let routes = json!([{"method": "POST", "path_prefix": "/v1/search", "feature": "search",
        "metric": "api_calls", "properties": {"model": {"from": "request_json", "pointer": "/model"}}},
        {"method": "GET", "path_prefix": "/v1/search", "feature": "search", "metric": "api_calls"}]);
    let n = node_with(
        "leased-body",
        &redis,
        3,
        &upstream,
        false,
        Some(0),
        json!({ "routes": routes }),
    );
    let before = upstream.hits();
    let statuses: Vec<u16> = (0..6)
        .map(|i| {
            let h = vec![
                ("x-api-key".to_string(), "ck_static_globex_key".to_string()),
                ("x-request-id".to_string(), format!("body-{i}")),
                ("content-type".to_string(), "application/json".to_string()),
            ];
            Client::new(&format!("127.0.0.1:{}", n.envoy.port))
                .request("POST", "/v1/search", &h, br#"{"model": "m-1", "q": "x"}"#)
                .map(|r| r.status)
                .unwrap_or(0)
        })
        .collect();
    eprintln!(
        "statuses {statuses:?}, upstream hits {}",
        upstream.hits() - before
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(
        upstream.hits() - before,
        3,
        "only admitted requests reach the upstream"
    );
    let held = settle(&[&n], 3);
    assert_eq!(held[0].len(), 3);
    let db = rusqlite::Connection::open(n.agent.dir.join("data").join("sandbox.db")).unwrap();
    let mut st = db
        .prepare("SELECT body FROM events WHERE customer_id = 'globex'")
        .unwrap();
    let bodies: Vec<Value> = st
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 3);
    for b in &bodies {
        assert_eq!(b["properties"]["model"], "m-1", "{b}");
        assert_eq!(b["properties"]["leased"], json!(["search"]), "{b}");
    }
    assert_eq!(globex_used(&redis), 3);
}

/// The same on a Redis Cluster of three primaries and three replicas.
#[test]
fn three_envoys_with_quota_leases_on_a_redis_cluster_admit_exactly_the_quota() {
    let cluster = RedisCluster::start("leased3c");
    leased_quota_across_nodes_on(&cluster, "leased3c", 3, 60, 0);
}

#[test]
fn two_envoys_and_two_agents_admit_at_most_the_quota_plus_the_documented_bound() {
    quota_across_nodes("quota2", 2, 60, 100);
}

#[test]
fn three_envoys_and_three_agents_admit_at_most_the_quota_plus_the_documented_bound() {
    quota_across_nodes("quota3", 3, 90, 80);
}

/// The same with the agents on a Redis Cluster of three primaries and three replicas.
#[test]
fn three_envoys_and_three_agents_on_a_redis_cluster_admit_at_most_the_quota_plus_the_bound() {
    let cluster = RedisCluster::start("quota3c");
    quota_across_nodes_on(&cluster, "quota3c", 3, 90, 80);
}

#[test]
fn redis_stopped_for_30_s_loses_nothing_and_counts_nothing_twice() {
    let mut redis = RedisServer::start("outage");
    let upstream = Upstream::start().unwrap();
    let n1 = node("outage-a", &redis, 100_000, &upstream, false);
    let n2 = node("outage-b", &redis, 100_000, &upstream, false);
    let _tell = TellOnFailure {
        nodes: vec![&n1, &n2],
        redis_log: redis.dir.join("redis.log"),
    };
    let mut admitted = 0usize;
    let mut i = 0;
    let mut send = |until: Instant, admitted: &mut usize| {
        while Instant::now() < until {
            for n in [&n1, &n2] {
                i += 1;
                let s = search(&n.envoy, &format!("outage-{i}"));
                assert_eq!(s, 200, "request {i}: {}", n.envoy.log_tail(20));
                *admitted += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    send(Instant::now() + Duration::from_secs(2), &mut admitted);
    let before = admitted;

    // Wait until every event so far is claimed in Redis, then note the count it must keep.
    // (Not a fixed pause: on a loaded machine the last flush and its claim can take longer than
    // the 500 ms once waited here; a claim landing after the count was read makes the restart
    // check below see more than "kept".)
    let deadline = Instant::now() + Duration::from_secs(30);
    while globex_used(&redis) < before as u64 {
        assert!(
            Instant::now() < deadline,
            "claimed {} of {before}",
            globex_used(&redis)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kept = globex_used(&redis);
    assert_eq!(
        kept, before as u64,
        "every admitted request is one claimed event"
    );
    redis.stop();
    let outage = Instant::now();
    // During the outage: traffic goes on (the filters decide on their snapshots and count
    // locally), the agents keep accepting events durably; the same ids sent straight to both
    // agents are accepted by both, for now.
    let shared_ids: Vec<String> = (0..20).map(|k| format!("outage-dup-{k}")).collect();
    for id in &shared_ids {
        for n in [&n1, &n2] {
            let r = ingest(&n.agent, &[event(id, 1)]);
            assert_eq!(r["accepted"].as_u64(), Some(1), "{r}");
        }
    }
    send(outage + Duration::from_secs(30), &mut admitted);
    let snapshot = n1
        .agent
        .call("GET", "/v1/entitlements", SANDBOX, &Value::Null);
    assert_eq!(
        snapshot.status, 503,
        "no usage is invented while Redis is away"
    );
    assert!(
        m(
            &n1.agent,
            "aforo_agent_claims_pending{environment=\"sandbox\"}"
        ) > 0
    );
    redis.restart();
    // Redis kept its counters across the restart. At least `kept`, not exactly: the agents'
    // reconcilers may already be claiming what waited by the time this reads (that race failed
    // this check in CI: 328 read for 40 kept, every waiting event already claimed). That the
    // kept counts were not lost is proved exactly below: the final counter is every event once.
    let after_restart = globex_used(&redis);
    assert!(
        after_restart >= kept,
        "Redis lost counters across the restart: {after_restart} < {kept}"
    );

    send(Instant::now() + Duration::from_secs(3), &mut admitted);
    eprintln!(
        "admitted {admitted} requests, {} during the 30 s outage",
        admitted - before
    );
    // Reconciled: every request's event is held once, each shared id by one agent only, and
    // the Redis counter is the number of distinct events.
    let held = settle(&[&n1, &n2], admitted + shared_ids.len());
    let a: HashSet<&String> = held[0].iter().collect();
    let b: HashSet<&String> = held[1].iter().collect();
    assert!(a.is_disjoint(&b), "an event is held by both agents");
    assert_eq!(
        a.len() + b.len(),
        admitted + shared_ids.len(),
        "events lost or doubled"
    );
    for id in &shared_ids {
        assert!(
            a.contains(id) ^ b.contains(id),
            "{id} is held by exactly one agent"
        );
    }
    assert_eq!(globex_used(&redis) as usize, admitted + shared_ids.len());
    assert_eq!(used(&n1.agent, "x").0 as usize, admitted + shared_ids.len());
    for n in [&n1, &n2] {
        assert_eq!(
            m(
                &n.agent,
                "aforo_agent_claims_pending{environment=\"sandbox\"}"
            ),
            0
        );
        assert_balanced(&n.agent);
    }
    let late_dups: u64 = [&n1, &n2]
        .iter()
        .map(|n| {
            m(
                &n.agent,
                "aforo_agent_claims_total{environment=\"sandbox\",result=\"duplicate\"}",
            )
        })
        .sum();
    assert_eq!(
        late_dups,
        shared_ids.len() as u64,
        "each id sent twice was found once as a duplicate"
    );
    assert!(n1.agent.log().contains("unreachable"), "{}", n1.agent.log());
    assert!(
        n1.agent.log().contains("reachable again"),
        "{}",
        n1.agent.log()
    );
}

#[test]
fn agents_reach_redis_over_tls_only_with_the_right_ca() {
    let redis = RedisServer::start_tls("tls");
    let a = agent("tls-a", &redis, 10, "tls-a");
    let r = ingest(&a, &[event("evt-tls-1", 3)]);
    assert_eq!(r["accepted"].as_u64(), Some(1), "{r}");
    assert_eq!(used(&a, "x").0, 3);
    assert_eq!(stored(&a), (vec!["evt-tls-1".to_string()], 0));

    // Without the CA the certificate is not trusted: the agent keeps the event (accepted,
    // unclaimed), and serves no snapshot rather than one without the shared usage.
    let url = redis.url();
    let b = Agent::start(
        "tls-b",
        &catalog(10),
        &["--state", &url, "--node-id", "tls-b"],
    );
    let r = ingest(&b, &[event("evt-tls-2", 1)]);
    assert_eq!(r["accepted"].as_u64(), Some(1), "{r}");
    assert_eq!(stored(&b), (vec![], 1));
    let snap = b.call("GET", "/v1/entitlements", SANDBOX, &Value::Null);
    assert_eq!(snap.status, 503);
    assert_eq!(body(&snap)["error"]["code"], "state_unavailable");
    assert!(b.log().contains("unreachable"), "{}", b.log());
    assert!(
        !b.log().contains(common::redis_server::AFORO_PASSWORD),
        "the password is never logged"
    );
}

#[test]
fn an_agent_killed_mid_ingest_counts_every_stored_event_once() {
    let redis = RedisServer::start("crash");
    let mut a = agent("crash-a", &redis, 1_000_000, "crash-a");
    let addr = a.addr();
    // A writer posting batches of 50 until it fails (the kill), recording what was acked.
    let batches_acked = Arc::new(AtomicUsize::new(0));
    let progress = batches_acked.clone();
    let writer = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for batch in 0..400 {
            let events: Vec<Value> = (0..50)
                .map(|k| event(&format!("crash-{batch}-{k}"), 1))
                .collect();
            let h = vec![
                ("authorization".to_string(), format!("Bearer {SANDBOX}")),
                ("content-type".to_string(), "application/json".to_string()),
            ];
            let b = json!({ "events": events }).to_string().into_bytes();
            match Client::new(&addr).request("POST", "/v1/events", &h, &b) {
                Ok(r) if r.status == 202 => {
                    acked.extend((0..50).map(|k| format!("crash-{batch}-{k}")));
                    progress.fetch_add(1, Ordering::SeqCst);
                }
                _ => break,
            }
        }
        acked
    });
    // Killed once 20 of the 400 batches are acknowledged: mid-ingest on a fast disk or a slow
    // one alike (a fixed sleep was either past the end or before the first answer).
    let deadline = Instant::now() + Duration::from_secs(60);
    while batches_acked.load(Ordering::SeqCst) < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    a.kill9();
    let acked = writer.join().unwrap();
    assert!(
        !acked.is_empty() && acked.len() < 20_000,
        "the kill landed mid-ingest: {}",
        acked.len()
    );
    a.restart();
    // After the restart the reconciler settles whatever the kill left unclaimed; a claim the
    // killed process made but had not noted is found as this node's own, not counted again.
    let deadline = Instant::now() + Duration::from_secs(30);
    // A claim is committed before its metric moves: wait for both.
    let held = loop {
        let (ids, waiting) = stored(&a);
        if (waiting == 0 && balance(&a).is_ok()) || Instant::now() > deadline {
            assert_eq!(waiting, 0, "claims left unsettled: {}", a.log());
            break ids;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let held: HashSet<String> = held.into_iter().collect();
    for id in &acked {
        assert!(held.contains(id), "acknowledged {id} was lost");
    }
    assert_eq!(
        globex_used(&redis),
        held.len() as u64,
        "each stored event counted once"
    );
    assert_balanced(&a);
}

#[test]
fn with_redis_down_can_access_follows_the_failure_mode() {
    let mut redis = RedisServer::start("failmode");
    let open = agent("failmode-open", &redis, 5, "failmode-open");
    let url = redis.url();
    let config = example("agent.json").display().to_string();
    let closed = Agent::start(
        "failmode-closed",
        &catalog(5),
        &[
            "--config",
            &config,
            "--state",
            &url,
            "--node-id",
            "failmode-closed",
            "--failure-mode",
            "closed",
            "--tenant-keys",
            SANDBOX,
        ],
    );
    let reserve = |x: &Agent| {
        x.call(
            "POST",
            "/v1/canAccess",
            SANDBOX,
            &json!({"tenantId": "globex", "featureKey": "search", "quantity": 1}),
        )
    };
    for _ in 0..3 {
        assert_eq!(reserve(&open).status, 200);
    }
    assert_eq!(
        reserve(&closed).status,
        200,
        "4 of 5 reserved, through both agents"
    );
    // The open agent sees the shared count on its next decision (a check, reserving nothing).
    let check = open.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"tenantId": "globex", "featureKey": "search"}),
    );
    assert_eq!(
        (check.status, check.header("ratelimit-remaining")),
        (200, Some("1"))
    );
    redis.stop();
    // Open: decides on the counters it last saw (4 of 5) plus its own use since.
    assert_eq!(reserve(&open).status, 200);
    let r = reserve(&open);
    assert_eq!(r.status, 429, "the local copy still enforces the quota");
    // Closed: no decision without the shared state.
    let r = reserve(&closed);
    assert_eq!(
        (r.status, common::code(&r)),
        (503, "state_unavailable".to_string())
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    redis.restart();
    // Back on the shared counter (4 of 5: what the open agent reserved during the outage was
    // its own), both agents decide again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = reserve(&closed);
        if r.status != 503 || Instant::now() > deadline {
            assert_eq!(r.status, 200, "{}", closed.log());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(reserve(&open).status, 429, "5 of 5 reserved");
}

#[test]
fn a_huge_quantity_exhausts_the_quota_without_breaking_its_batch() {
    let redis = RedisServer::start("huge");
    let a = agent("huge-a", &redis, 10, "huge-a");
    let mut small = event("evt-small", 2);
    small["properties"] = json!({"source": "gw-1"});
    let mut huge = event("evt-huge", 1);
    huge["quantity"] = json!("100000000000000000000");
    huge["properties"] = json!({"source": "gw-1"});
    let r = ingest(&a, &[small, huge]);
    assert_eq!(r["accepted"].as_u64(), Some(2), "{r}");
    // Both claimed in one script; the count saturates at 2^53 (no quota is larger), as the
    // embedded counters saturate, instead of wrapping to a small number.
    assert_eq!(stored(&a).1, 0, "nothing left unclaimed: {}", a.log());
    assert_eq!(used(&a, "gw-1"), (1 << 53, 1 << 53));
    let r = a.call(
        "POST",
        "/v1/canAccess",
        SANDBOX,
        &json!({"tenantId": "globex", "featureKey": "search"}),
    );
    assert_eq!(r.status, 429);
}

/// Marks every event of an agent's store unclaimed, as a crash between the claim in Redis and
/// its settlement leaves them.
fn unsettle(a: &Agent) {
    let db = rusqlite::Connection::open(a.dir.join("data").join("sandbox.db")).unwrap();
    db.execute("UPDATE events SET claimed = 0", []).unwrap();
}

#[test]
fn unsettled_claims_survive_a_new_node_id_and_a_switch_back_to_embedded() {
    let redis = RedisServer::start("unsettled");
    let mut a = agent("unsettled-a", &redis, 100, "first-name");
    ingest(&a, &[event("evt-u-1", 3), event("evt-u-2", 4)]);
    assert_eq!(used(&a, "x").0, 7);
    // Crashed before settling, restarted under another node id: the claims in Redis are still
    // recognised as this store's own (their token holds the time the copy was stored).
    a.kill9();
    unsettle(&a);
    a.set_flag("--node-id", Some("second-name"));
    a.restart();
    // A claim is committed before its metric moves: wait for both.
    let deadline = Instant::now() + Duration::from_secs(15);
    while (stored(&a).1 > 0 || balance(&a).is_err()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ids, waiting) = stored(&a);
    assert_eq!((ids.len(), waiting), (2, 0), "{}", a.log());
    assert_eq!(used(&a, "x").0, 7, "not counted again");
    assert_balanced(&a);
    // Another agent with the first name (a copied configuration) is still another copy.
    let b = agent("unsettled-b", &redis, 100, "first-name");
    let r = ingest(&b, &[event("evt-u-1", 3)]);
    assert_eq!(r["duplicates"].as_u64(), Some(1), "{r}");

    // Back to the embedded state: what waited for a claim is this agent's, not stranded.
    a.kill9();
    unsettle(&a);
    a.set_flag("--state", None);
    a.set_flag("--config", None);
    a.set_flag("--node-id", None);
    a.restart();
    let (ids, waiting) = stored(&a);
    assert_eq!((ids.len(), waiting), (2, 0));
    assert!(
        a.log().contains("were waiting for their claim in Redis"),
        "{}",
        a.log()
    );
}
