//! Quota leases at N nodes, simulated: the core's lease book in every node, a virtual clock, and
//! the store's rule (`StoredLeases::renew`, `give_back`) as an in-memory model of the store's
//! atomic script. Skewed traffic: one hot customer spread over every node, many small ones on
//! random nodes, and one that stays under its quota; a store answering at once or a round trip
//! away (requests arriving meanwhile wait for the node's one ask), clocks that differ. Asserts, in every window, that no customer
//! is admitted more than its quota plus `max_overshoot`, whatever N; prints the store calls per
//! request and how much of each quota was used (BENCHMARKS.md, "Quota leases, simulated").
//!
//!   cargo test --release -p aforo-core --test lease_simulation -- --nocapture

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use aforo_core::entitlement::{LeaseGrant, LeasePolicy, NodeLeases, Renewal, StoredLeases, Take};
use aforo_core::Timestamp;
use std::collections::HashMap;

const MS: i64 = 1_000_000;
const WINDOW_MS: i64 = 60_000;

/// A small deterministic generator (xorshift64*), so every run sees the same traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hot,
    Cold,
    Under,
}

struct Customer {
    key: String,
    kind: Kind,
    quota: u64,
    /// Requests per second over all nodes.
    rate: f64,
}

/// The store: the script's rule per counter, the calls it served, and whether it answers.
struct Store {
    counters: HashMap<String, StoredLeases>,
    calls: HashMap<String, u64>,
    up: bool,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    requests: u64,
    admitted: u64,
    refused: u64,
}

struct Outcome {
    /// Per customer kind: the worst overshoot of any window (admitted − quota).
    worst_over: HashMap<u8, i64>,
    /// Store calls per request, per kind.
    calls_per_request: HashMap<u8, f64>,
    /// Share of the quota admitted in windows where demand exceeded it, per kind (min).
    min_used: HashMap<u8, f64>,
    /// Requests refused for customers that stayed under their quota.
    under_refused: u64,
    under_requests: u64,
}

struct Setup {
    nodes: usize,
    policy: LeasePolicy,
    windows: i64,
    cold: usize,
    /// The store does not answer from..to (ms of the run).
    outage_ms: Option<(i64, i64)>,
    /// Round trip to the store: an ask runs in the store half-way and its answer arrives
    /// after the whole (requests arriving meanwhile at the node ask too: concurrent asks).
    rtt_ms: i64,
    /// Each node's clock is off by up to this much, either way (windows turn at different
    /// moments on different nodes; the store's clock is the true one).
    skew_ms: i64,
}

/// An ask on its way: run in the store at `run_at`, answered at `reply_at`.
struct InFlight {
    node: usize,
    customer: usize,
    window: i64,
    renewal: Renewal,
    run_at: i64,
    reply_at: i64,
    answer: Option<LeaseGrant>,
}

fn customers(cold: usize) -> Vec<Customer> {
    let mut v = vec![
        Customer {
            key: "hot".into(),
            kind: Kind::Hot,
            quota: 100_000,
            rate: 3_000.0,
        },
        Customer {
            key: "under".into(),
            kind: Kind::Under,
            quota: 1_000,
            rate: 10.0,
        },
    ];
    for i in 0..cold {
        v.push(Customer {
            key: format!("cold{i}"),
            kind: Kind::Cold,
            quota: 60,
            rate: 2.0,
        });
    }
    v
}

fn run(s: &Setup) -> Outcome {
    let cs = customers(s.cold);
    let names: Vec<String> = (0..s.nodes).map(|i| format!("node-{i}")).collect();
    let mut books: Vec<NodeLeases> = (0..s.nodes).map(|_| NodeLeases::new(s.policy)).collect();
    let mut store = Store {
        counters: HashMap::new(),
        calls: HashMap::new(),
        up: true,
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let start = Timestamp::from_unix_secs(1_773_576_000);
    let mut per_window: HashMap<(i64, usize), Tally> = HashMap::new();
    let total_ms = s.windows * WINDOW_MS;
    let skew: Vec<i64> = (0..s.nodes)
        .map(|_| {
            if s.skew_ms == 0 {
                0
            } else {
                rng.below(2 * s.skew_ms as u64 + 1) as i64 - s.skew_ms
            }
        })
        .collect();
    let mut in_flight: Vec<InFlight> = Vec::new();
    // Requests waiting at a node for the answer to its ask for a customer: their windows.
    let mut waiting: HashMap<(usize, usize), Vec<i64>> = HashMap::new();
    for ms in 0..total_ms {
        let now = start.plus_nanos(ms * MS);
        store.up = !s.outage_ms.is_some_and(|(a, b)| ms >= a && ms < b);
        // Asks reaching the store now run there; answers arriving now are applied.
        for f in in_flight.iter_mut().filter(|f| f.run_at == ms) {
            if store.up {
                *store.calls.entry(cs[f.customer].key.clone()).or_default() += 1;
                f.answer = Some(
                    store
                        .counters
                        .entry(cs[f.customer].key.clone())
                        .or_default()
                        .renew(&names[f.node], &f.renewal, now, &s.policy),
                );
            }
        }
        let mut i = 0;
        while i < in_flight.len() {
            if in_flight[i].reply_at != ms {
                i += 1;
                continue;
            }
            let f = in_flight.swap_remove(i);
            let node_now = now.plus_nanos(skew[f.node] * MS);
            let key = &cs[f.customer].key;
            let admitted = match f.answer {
                Some(g) => books[f.node].granted(key, &f.renewal, g, node_now),
                None => {
                    books[f.node].unanswered(key);
                    false // the store did not answer: failure_mode closed
                }
            };
            let t = per_window.entry((f.window, f.customer)).or_default();
            if admitted {
                t.admitted += 1;
            } else {
                t.refused += 1;
            }
            // The requests that waited on this ask take again (an unanswered ask refuses them:
            // failure_mode closed).
            let waiters = waiting.remove(&(f.node, f.customer)).unwrap_or_default();
            for window in waiters {
                let t = per_window.entry((window, f.customer)).or_default();
                if f.answer.is_none() {
                    t.refused += 1;
                    continue;
                }
                let window_start = start.plus_nanos(window * WINDOW_MS * MS);
                let window_end = window_start.plus_nanos(WINDOW_MS * MS);
                match books[f.node].take(
                    key,
                    (window_start, window_end),
                    cs[f.customer].quota,
                    1,
                    node_now,
                ) {
                    Take::Admit => t.admitted += 1,
                    Take::Refuse => t.refused += 1,
                    Take::Wait => waiting
                        .entry((f.node, f.customer))
                        .or_default()
                        .push(window),
                    Take::Ask(r) => in_flight.push(InFlight {
                        node: f.node,
                        customer: f.customer,
                        window,
                        renewal: r,
                        run_at: ms + s.rtt_ms / 2,
                        reply_at: ms + s.rtt_ms,
                        answer: None,
                    }),
                }
            }
        }
        // Every node gives back what is due every 100 ms (one call per lease, counted).
        if ms % 100 == 0 {
            for (n, book) in books.iter_mut().enumerate() {
                for (key, back) in book.due(now.plus_nanos(skew[n] * MS)) {
                    if !store.up {
                        continue; // lost for the window: under-admission only
                    }
                    *store.calls.entry(key.clone()).or_default() += 1;
                    store.counters.entry(key).or_default().give_back(
                        &names[n],
                        back.window_start,
                        back.lease,
                        back.unspent,
                    );
                }
            }
        }
        for (ci, c) in cs.iter().enumerate() {
            // Requests this millisecond: the whole part of rate/1000, plus one by chance.
            let per_ms = c.rate / 1000.0;
            let n = per_ms.floor() as u64 + u64::from(rng.chance(per_ms.fract()));
            for _ in 0..n {
                let node = rng.below(s.nodes as u64) as usize;
                // The node's own clock decides its window.
                let node_ms = ms + skew[node];
                let window = node_ms.div_euclid(WINDOW_MS);
                let window_start = start.plus_nanos(window * WINDOW_MS * MS);
                let window_end = window_start.plus_nanos(WINDOW_MS * MS);
                let node_now = start.plus_nanos(node_ms * MS);
                let t = per_window.entry((window, ci)).or_default();
                t.requests += 1;
                match books[node].take(&c.key, (window_start, window_end), c.quota, 1, node_now) {
                    Take::Admit => t.admitted += 1,
                    Take::Refuse => t.refused += 1,
                    Take::Wait => waiting.entry((node, ci)).or_default().push(window),
                    Take::Ask(r) if s.rtt_ms == 0 => {
                        let g = if store.up {
                            *store.calls.entry(c.key.clone()).or_default() += 1;
                            Some(store.counters.entry(c.key.clone()).or_default().renew(
                                &names[node],
                                &r,
                                now,
                                &s.policy,
                            ))
                        } else {
                            None
                        };
                        let admitted = match g {
                            Some(g) => books[node].granted(&c.key, &r, g, node_now),
                            None => {
                                books[node].unanswered(&c.key);
                                false
                            }
                        };
                        if admitted {
                            t.admitted += 1;
                        } else {
                            t.refused += 1;
                        }
                    }
                    Take::Ask(r) => in_flight.push(InFlight {
                        node,
                        customer: ci,
                        window,
                        renewal: r,
                        run_at: ms + s.rtt_ms / 2,
                        reply_at: ms + s.rtt_ms,
                        answer: None,
                    }),
                }
            }
        }
    }
    let mut out = Outcome {
        worst_over: HashMap::new(),
        calls_per_request: HashMap::new(),
        min_used: HashMap::new(),
        under_refused: 0,
        under_requests: 0,
    };
    let mut requests: HashMap<u8, u64> = HashMap::new();
    let mut calls: HashMap<u8, u64> = HashMap::new();
    for (ci, c) in cs.iter().enumerate() {
        let k = c.kind as u8;
        *calls.entry(k).or_default() += store.calls.get(&c.key).copied().unwrap_or(0);
        for w in -1..=s.windows {
            let t = per_window.get(&(w, ci)).copied().unwrap_or_default();
            *requests.entry(k).or_default() += t.requests;
            let over = t.admitted as i64 - c.quota as i64;
            let worst = out.worst_over.entry(k).or_insert(i64::MIN);
            *worst = (*worst).max(over);
            if t.requests as f64 > c.quota as f64 * 1.2 {
                let used = t.admitted as f64 / c.quota as f64;
                let m = out.min_used.entry(k).or_insert(f64::MAX);
                *m = m.min(used);
            }
            if c.kind == Kind::Under {
                out.under_refused += t.refused;
                out.under_requests += t.requests;
            }
        }
    }
    for (k, r) in requests {
        out.calls_per_request.insert(
            k,
            calls.get(&k).copied().unwrap_or(0) as f64 / r.max(1) as f64,
        );
    }
    out
}

impl Outcome {
    /// The worst overshoot of any window for `k`'s customers.
    fn over(&self, k: Kind) -> i64 {
        self.worst_over.get(&(k as u8)).copied().unwrap_or(0)
    }

    /// Store calls per request for `k`'s customers.
    fn calls(&self, k: Kind) -> f64 {
        self.calls_per_request
            .get(&(k as u8))
            .copied()
            .unwrap_or(0.0)
    }

    /// The least share of the quota admitted in a window where demand exceeded it.
    fn used(&self, k: Kind) -> f64 {
        self.min_used.get(&(k as u8)).copied().unwrap_or(0.0)
    }

    /// No window of any customer passed its quota by more than `budget`.
    fn assert_within(&self, budget: u64, run: &str) {
        for k in [Kind::Hot, Kind::Cold, Kind::Under] {
            let over = self.over(k);
            assert!(
                over <= budget as i64,
                "{run}: a window passed its quota by {over}"
            );
        }
    }
}

fn policy(max_overshoot: u64) -> LeasePolicy {
    LeasePolicy {
        max_overshoot,
        ..LeasePolicy::STRICT
    }
}

#[test]
fn no_window_passes_its_quota_by_more_than_the_budget_at_any_number_of_nodes() {
    println!(
        "{:>5} {:>6} | {:>10} {:>10} {:>10} | {:>9} {:>9} {:>9} | {:>8} {:>8} | under: refused",
        "nodes",
        "budget",
        "hot c/req",
        "cold c/req",
        "under c/r",
        "hot over",
        "cold over",
        "under ovr",
        "hot used",
        "cold used"
    );
    for nodes in [2, 10, 50, 100] {
        for budget in [0, 5] {
            let o = run(&Setup {
                nodes,
                policy: policy(budget),
                windows: 2,
                cold: 50,
                outage_ms: None,
                rtt_ms: 0,
                skew_ms: 0,
            });
            println!(
                "{:>5} {:>6} | {:>10.4} {:>10.4} {:>10.4} | {:>9} {:>9} {:>9} | {:>8.3} {:>8.3} | {} of {}",
                nodes,
                budget,
                o.calls(Kind::Hot),
                o.calls(Kind::Cold),
                o.calls(Kind::Under),
                o.over(Kind::Hot),
                o.over(Kind::Cold),
                o.over(Kind::Under),
                o.used(Kind::Hot),
                o.used(Kind::Cold),
                o.under_refused,
                o.under_requests,
            );
            o.assert_within(budget, &format!("{nodes} nodes, budget {budget}"));
            // A hot customer costs the store a call per many requests.
            assert!(o.calls(Kind::Hot) < 0.05, "{nodes} nodes");
            // A cold one at most an ask per request and a give-back per lease.
            assert!(o.calls(Kind::Cold) <= 2.0, "{nodes} nodes");
            // The quota is used, not stranded in other nodes' leases.
            assert!(o.used(Kind::Hot) > 0.99, "{nodes} nodes");
        }
    }
}

#[test]
fn a_store_outage_spends_the_leases_held_and_then_refuses() {
    for nodes in [2, 10, 100] {
        let o = run(&Setup {
            nodes,
            policy: policy(0),
            windows: 1,
            cold: 20,
            outage_ms: Some((20_000, 40_000)),
            rtt_ms: 2,
            skew_ms: 0,
        });
        o.assert_within(0, &format!("{nodes} nodes, the store down for 20 s"));
    }
}

#[test]
fn a_store_a_round_trip_away_and_clocks_that_differ_keep_the_bound() {
    println!(
        "{:>5} {:>6} {:>4} {:>5} | {:>10} {:>10} | {:>9} {:>9} | {:>8} {:>8}",
        "nodes",
        "budget",
        "rtt",
        "skew",
        "hot c/req",
        "cold c/req",
        "hot over",
        "cold over",
        "hot used",
        "cold used"
    );
    for nodes in [2, 10, 100] {
        for budget in [0, 5] {
            for (rtt_ms, skew_ms) in [(2, 0), (2, 300), (20, 300)] {
                let o = run(&Setup {
                    nodes,
                    policy: policy(budget),
                    windows: 2,
                    cold: 20,
                    outage_ms: None,
                    rtt_ms,
                    skew_ms,
                });
                println!(
                    "{:>5} {:>6} {:>4} {:>5} | {:>10.4} {:>10.4} | {:>9} {:>9} | {:>8.3} {:>8.3}",
                    nodes,
                    budget,
                    rtt_ms,
                    skew_ms,
                    o.calls(Kind::Hot),
                    o.calls(Kind::Cold),
                    o.over(Kind::Hot),
                    o.over(Kind::Cold),
                    o.used(Kind::Hot),
                    o.used(Kind::Cold),
                );
                o.assert_within(
                    budget,
                    &format!("{nodes} nodes, budget {budget}, rtt {rtt_ms}, skew {skew_ms}"),
                );
            }
        }
    }
}
