//! The counter contract between the core and the agent's Redis scripts: `cas.lua` and
//! `claim.lua` run on a real redis-server against values `aforo-core` encodes, and what they
//! write decodes with `aforo-core`, so the two byte layouts cannot drift apart; `lease.lua`
//! answers every renewal and give-back as the core's lease rule does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_core::entitlement::{
    quota_key, CounterKey, CounterValue, LeaseGrant, LeasePolicy, Renewal, StoredLeases, MAX_UNITS,
};
use aforo_core::{Environment, Timestamp};
use common::redis_server::RedisServer;

// Each script as the agent sends it: the shared helpers, then the script.
const CAS: &str = concat!(
    include_str!("../src/redis_state/counter_value.lua"),
    include_str!("../src/redis_state/cas.lua")
);
const CLAIM: &str = concat!(
    include_str!("../src/redis_state/counter_value.lua"),
    include_str!("../src/redis_state/claim.lua")
);
const LEASE: &str = concat!(
    include_str!("../src/redis_state/counter_value.lua"),
    include_str!("../src/redis_state/lease.lua")
);

fn stored(con: &mut redis::Connection, rkey: &str) -> Vec<u8> {
    redis::cmd("HGET").arg(rkey).arg("v").query(con).unwrap()
}

/// Claims one event of the gateway `gw1` adding `units` to `key` in the window starting at
/// `ws`; returns the script's answer for it.
fn claim(
    con: &mut redis::Connection,
    id: &str,
    token: &str,
    key: &str,
    ws: Timestamp,
    units: u64,
) -> i64 {
    claim_marked(con, id, token, key, ws, units, false)
}

/// As `claim`, with the event marked as admitted from a lease of `gw1` (`prepaid`).
fn claim_marked(
    con: &mut redis::Connection,
    id: &str,
    token: &str,
    key: &str,
    ws: Timestamp,
    units: u64,
    prepaid: bool,
) -> i64 {
    let rkey = format!("t:{}", CounterKey::parse(key).unwrap().unprefixed);
    let out: Vec<i64> = redis::cmd("EVAL")
        .arg(CLAIM)
        .arg(3)
        .arg(format!("t:d:{id}"))
        .arg(&rkey)
        .arg(format!("t:s:{}", CounterKey::parse(key).unwrap().rest))
        .arg(60_000)
        .arg(1)
        .arg(1)
        .arg(key)
        .arg(&ws.unix_nanos().to_le_bytes()[..])
        .arg(4_102_444_800_000u64)
        .arg("gw1")
        .arg(ws.unix_millis())
        .arg(token)
        .arg(1)
        .arg(1)
        .arg(units)
        .arg(u8::from(prepaid))
        .query(con)
        .unwrap();
    out[0]
}

#[test]
fn the_redis_scripts_read_and_write_the_cores_counter_values() {
    let server = RedisServer::start("scripts");
    let mut con = server.connection().expect("redis answers");
    let key = quota_key(Environment::Sandbox, "acme", "search");
    let rkey = format!("t:{}", CounterKey::parse(&key).unwrap().unprefixed);
    let ws = Timestamp::from_unix_nanos(1_767_225_600_000_000_000);

    // The CAS script stores the core's bytes as given.
    let v5 = CounterValue {
        window_start: ws,
        count: 5,
    }
    .encode(&key);
    let ok: i64 = redis::cmd("EVAL")
        .arg(CAS)
        .arg(1)
        .arg(&rkey)
        .arg(&v5[..])
        .arg(0)
        .arg(4_102_444_800_000u64)
        .query(&mut con)
        .unwrap();
    assert_eq!(ok, 1);
    assert_eq!(stored(&mut con, &rkey), v5);
    // It reads the core's window start exactly: a value of a window older by a nanosecond is
    // refused (Lua's doubles alone would round today's nanosecond times to 256 ns).
    let older = CounterValue {
        window_start: Timestamp::from_unix_nanos(ws.unix_nanos() - 1),
        count: 1,
    }
    .encode(&key);
    let token: i64 = redis::cmd("HGET")
        .arg(&rkey)
        .arg("c")
        .query(&mut con)
        .unwrap();
    let refused: i64 = redis::cmd("EVAL")
        .arg(CAS)
        .arg(1)
        .arg(&rkey)
        .arg(&older[..])
        .arg(token)
        .arg(4_102_444_800_000u64)
        .query(&mut con)
        .unwrap();
    assert_eq!(refused, 0);

    // The claim script adds to the count the core wrote, in the core's layout.
    assert_eq!(claim(&mut con, "e1", "n1@100", &key, ws, 3), 1);
    assert_eq!(
        CounterValue::decode(&key, &stored(&mut con, &rkey)),
        Some(CounterValue {
            window_start: ws,
            count: 8
        })
    );
    // The same event again (the same stored copy): not counted twice.
    assert_eq!(claim(&mut con, "e1", "n2@100", &key, ws, 3), 2);
    assert_eq!(claim(&mut con, "e1", "n1@999", &key, ws, 3), 0);
    assert_eq!(
        CounterValue::decode(&key, &stored(&mut con, &rkey))
            .unwrap()
            .count,
        8
    );
    // A later window starts from zero; an earlier one is left alone.
    let next = Timestamp::from_unix_nanos(ws.unix_nanos() + 86_400_000_000_000);
    assert_eq!(claim(&mut con, "e2", "n1@101", &key, next, 4), 1);
    assert_eq!(claim(&mut con, "e3", "n1@102", &key, ws, 7), 1);
    let just_before = Timestamp::from_unix_nanos(next.unix_nanos() - 1);
    assert_eq!(claim(&mut con, "e5", "n1@104", &key, just_before, 7), 1);
    assert_eq!(
        CounterValue::decode(&key, &stored(&mut con, &rkey)),
        Some(CounterValue {
            window_start: next,
            count: 4
        })
    );
    // Counts saturate at the largest quota, exactly (Lua numbers are doubles).
    assert_eq!(claim(&mut con, "e4", "n1@103", &key, next, MAX_UNITS), 1);
    assert_eq!(
        CounterValue::decode(&key, &stored(&mut con, &rkey))
            .unwrap()
            .count,
        MAX_UNITS
    );
}

/// The counter the lease walk uses: its core key, and its hash in Redis.
const LEASED: &str = "aforo:q:production:acme:search";
const LEASED_HASH: &str = "t:q:production:acme:search";

/// One renewal through `lease.lua` (window start and now in ms).
fn lease_script(
    con: &mut redis::Connection,
    node: &str,
    r: &Renewal,
    p: &LeasePolicy,
    now_ms: i64,
) -> LeaseGrant {
    let (back, unspent) = r.give_back.unwrap_or((0, 0));
    let out: Vec<u64> = redis::cmd("EVAL")
        .arg(LEASE)
        .arg(1)
        .arg(LEASED_HASH)
        .arg(node)
        .arg(r.window_start.unix_millis())
        .arg(r.window_end.unix_millis())
        .arg(r.quota)
        .arg(p.max_overshoot)
        .arg(back)
        .arg(unspent)
        .arg(r.want)
        .arg(r.need)
        .arg(now_ms)
        .arg(p.open_ns() / 1_000_000)
        .arg(p.max_ahead_ns / 1_000_000)
        .arg(4_102_444_800_000u64)
        .arg(&r.window_start.unix_nanos().to_le_bytes()[..])
        .arg(LEASED)
        .query(con)
        .unwrap();
    LeaseGrant {
        lease: out[0],
        units: out[1],
        left: out[2],
        returning: out[3],
        current: out[4] == 1,
    }
}

#[test]
fn the_lease_script_answers_every_renewal_as_the_cores_rule() {
    let server = RedisServer::start("leases");
    let mut con = server.connection().expect("redis answers");
    // A deterministic walk: nodes (one with a '|' in its name) renewing, giving back (their
    // own leases, others', twice), time passing past the open time, windows turning, lagging,
    // and events claimed into the same counter (current, older and newer windows).
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // `gw/gw1` is the gateway whose events are claimed below: some marked as admitted from its
    // leases, which the claim takes from its prepaid units.
    let nodes = ["a", "gw/gw1", "node|c"];
    // Not current, refused, granted: each must happen.
    let mut outcomes = [0u32; 3];
    let mut pools_seen = 0u32;
    for (quota, budget) in [
        (100u64, 0u64),
        (37, 5),
        (MAX_UNITS, 0),
        (MAX_UNITS, 3),
        (1, 3),
    ] {
        redis::cmd("DEL")
            .arg(LEASED_HASH)
            .query::<()>(&mut con)
            .unwrap();
        let p = LeasePolicy {
            max_overshoot: budget,
            ..LeasePolicy::STRICT
        };
        let mut model = StoredLeases::default();
        let mut held: Vec<(usize, u64, u64)> = Vec::new(); // node, lease, units
        let mut claimed = 0u64;
        let base: i64 = 1_767_225_600_000;
        let mut now_ms = base + 1_000;
        for step in 0..400 {
            let node = next(3) as usize;
            match next(10) {
                0 => now_ms += p.open_ns() / 1_000_000, // every open lease closes
                1 => now_ms += 100,
                2 => now_ms += 60_000 - (now_ms - base) % 60_000, // the next window starts
                _ => {}
            }
            let window_ms = base + (now_ms - base) / 60_000 * 60_000;
            // Lagging a window behind, running a window ahead (more than the allowance or
            // just within it), or asking for a window that ended by the store's clock.
            let ahead = p.max_ahead_ns / 1_000_000;
            let start = match next(20) {
                0 => window_ms - 60_000,
                1 => now_ms + ahead + 1,
                2 => now_ms + ahead,
                3 => now_ms - 60_000 - 1,
                _ => window_ms,
            };
            // Mostly its own leases (the only ones a give-back returns), sometimes another's.
            let own: Vec<(u64, u64)> = held
                .iter()
                .filter(|(n, _, _)| *n == node || next(4) == 0)
                .map(|&(_, id, units)| (id, units))
                .collect();
            let give_back = match next(3) {
                0 if !own.is_empty() => {
                    let (id, units) = own[next(own.len() as u64) as usize];
                    Some((id, next(units + 2)))
                }
                _ => None,
            };
            let want = match next(3) {
                0 => 0,
                1 => 1 + next(8),
                _ => 1 + next(1_000_000),
            };
            let r = Renewal {
                window_start: Timestamp::from_unix_millis(start),
                window_end: Timestamp::from_unix_millis(start + 60_000),
                quota,
                give_back,
                want,
                need: next(3).min(want),
            };
            if next(6) == 0 {
                // An event claimed into the counter, in this window, the one before or after.
                let ws = Timestamp::from_unix_millis(match next(6) {
                    0 => window_ms - 60_000,
                    1 => window_ms + 60_000,
                    _ => window_ms,
                });
                let units = if next(10) == 0 { quota } else { next(30) };
                let id = format!("e{quota}-{budget}-{step}");
                let marked = next(2) == 0;
                assert_eq!(
                    claim_marked(&mut con, &id, "gw@1", LEASED, ws, units, marked),
                    1
                );
                if marked {
                    model.count_prepaid(ws, units, "gw/gw1");
                } else {
                    model.count(ws, units);
                }
                claimed = claimed.saturating_add(units);
            }
            let expected = model.renew(nodes[node], &r, Timestamp::from_unix_millis(now_ms), &p);
            let got = lease_script(&mut con, nodes[node], &r, &p, now_ms);
            assert_eq!(
                got, expected,
                "quota {quota} budget {budget}, step {step}: {r:?}"
            );
            // The counter's value is the model's count, in the model's window.
            let v: Option<Vec<u8>> = redis::cmd("HGET")
                .arg(LEASED_HASH)
                .arg("v")
                .query(&mut con)
                .unwrap();
            match v.map(|v| CounterValue::decode(LEASED, &v).expect("a core counter value")) {
                Some(v) => assert_eq!(
                    (v.window_start, v.count),
                    (model.window_start, model.counted),
                    "step {step}"
                ),
                None => assert_eq!(model.counted, 0, "step {step}"),
            }
            // The gateway's prepaid units are the model's, while the leases serve its window.
            let (w, pool): (Option<i64>, Option<u64>) = redis::cmd("HMGET")
                .arg(LEASED_HASH)
                .arg("w")
                .arg("p:gw/gw1")
                .query(&mut con)
                .unwrap();
            if w == Some(model.window_start.unix_millis()) {
                let modelled = model
                    .prepaid
                    .iter()
                    .find(|(n, _)| n == "gw/gw1")
                    .map_or(0, |(_, u)| *u);
                assert_eq!(pool.unwrap_or(0), modelled, "step {step}");
                pools_seen += u32::from(modelled > 0);
            }
            outcomes[usize::from(got.current) + usize::from(got.units > 0)] += 1;
            // The hash forgotten (expired) mid-window: a window that is over stays over.
            if next(50) == 0 {
                redis::cmd("DEL")
                    .arg(LEASED_HASH)
                    .query::<()>(&mut con)
                    .unwrap();
                model = StoredLeases::default();
            }
            if got.lease > 0 {
                held.push((node, got.lease, got.units));
            }
        }
        assert!(model.counted <= quota.saturating_add(budget).saturating_add(claimed));
    }
    assert!(outcomes.iter().all(|&n| n > 20), "{outcomes:?}");
    assert!(
        pools_seen > 50,
        "the walk held prepaid units {pools_seen} times"
    );
    // With no clock given, the script reads Redis's own.
    let p = LeasePolicy::STRICT;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let out: Vec<u64> = redis::cmd("EVAL")
        .arg(LEASE)
        .arg(1)
        .arg("t:l:clock")
        .arg("a")
        .arg(now - 1_000)
        .arg(now + 60_000)
        .arg(10)
        .arg(0)
        .arg(0)
        .arg(0)
        .arg(4)
        .arg(1)
        .arg("")
        .arg(p.open_ns() / 1_000_000)
        .arg(p.max_ahead_ns / 1_000_000)
        .arg(4_102_444_800_000u64)
        .arg(
            &Timestamp::from_unix_millis(now - 1_000)
                .unix_nanos()
                .to_le_bytes()[..],
        )
        .arg(LEASED)
        .query(&mut con)
        .unwrap();
    assert_eq!(
        out[1..],
        [4, 6, 0, 1],
        "4 of 10 granted (half is 5, 4 wanted), 6 left"
    );
    // The window's first lease id follows Redis's clock in ms times 1,024.
    let started_ms = (out[0] - 1) / 1_024;
    assert!(
        started_ms.abs_diff(now as u64) < 10_000,
        "lease {} is not dated by Redis's clock ({now} ms)",
        out[0]
    );
}
