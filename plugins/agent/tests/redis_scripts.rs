//! The counter contract between the core and the agent's Redis scripts: `cas.lua` and
//! `claim.lua` run on a real redis-server against values `aforo-core` encodes, and what they
//! write decodes with `aforo-core`, so the two byte layouts cannot drift apart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use aforo_core::entitlement::{quota_key, CounterKey, CounterValue, MAX_UNITS};
use aforo_core::{Environment, Timestamp};
use common::redis_server::RedisServer;

const CAS: &str = include_str!("../src/redis_state/cas.lua");
const CLAIM: &str = include_str!("../src/redis_state/claim.lua");

fn stored(con: &mut redis::Connection, rkey: &str) -> Vec<u8> {
    redis::cmd("HGET").arg(rkey).arg("v").query(con).unwrap()
}

/// Claims one event adding `units` to `key` in the window starting at `ws`; returns the
/// script's answer for it.
fn claim(
    con: &mut redis::Connection,
    id: &str,
    token: &str,
    key: &str,
    ws: Timestamp,
    units: u64,
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
        .arg(token)
        .arg(1)
        .arg(1)
        .arg(units)
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
