//! Quota leases in Redis (`max_overshoot` set): reservations are spent from slices of the
//! remaining quota this agent takes from Redis, so a hot counter costs one Redis call per many
//! requests and a window passes its quota by at most `max_overshoot` across every agent. The
//! rule is the core's (`aforo_core::entitlement::lease`): this agent's book behind a lock, the
//! store's side run by `lease.lua` in the counter's own hash (where claims count too).

use super::{RedisLink, StateError};
use crate::clock::SharedClock;
use crate::redis_state::counters::{redis_key, RedisCounters};
use aforo_core::entitlement::{
    gateway_node, GiveBack, LeaseGrant, LeasePolicy, Leased, NodeLeases, Renewal, Take,
};
use aforo_core::Timestamp;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A day, in ms: a counter's hash outlives its window by this much (as the claims set it).
const DAY_MS: i64 = 86_400_000;

/// How often leases whose time is up are given back (a lease lives 2 s).
const GIVE_BACK_EVERY: Duration = Duration::from_millis(200);

/// Gives back leases whose time is up, on a thread of its own, while the agent runs.
pub fn start(counters: Arc<RedisCounters>, clock: SharedClock) {
    if counters.leases().is_none() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("aforo-leases".into())
        .spawn(move || loop {
            if let Some(l) = counters.leases() {
                l.give_back_due(clock.now());
            }
            std::thread::sleep(GIVE_BACK_EVERY);
        });
    if let Err(e) = spawned {
        eprintln!("aforo-agent: cannot start the lease give-backs: {e}");
    }
}

/// This agent's quota leases.
pub struct RedisLeases {
    link: Arc<RedisLink>,
    book: Mutex<NodeLeases>,
    /// Signalled when an ask is answered (requests that waited on it take again).
    answered: Condvar,
    /// Longest wait for another request's ask (then the request counts without a lease).
    wait: Duration,
    /// Counters whose leases are off until a time, after Redis refused their lease script (an
    /// ACL without `+time`, a slot whose replica did not acknowledge): their reservations are
    /// counted by compare-and-swap meanwhile, without a failing script per request.
    off_until: Mutex<HashMap<String, Instant>>,
    /// When a refused lease script was last logged (at most once per `OFF_FOR`).
    logged: Mutex<Option<Instant>>,
    /// Units out of the book and on their way back to Redis: still held until Redis has them,
    /// so the gauge reaches 0 only once another agent can lease them.
    returning: AtomicU64,
}

/// How long leases stay off after Redis refused the lease script.
const OFF_FOR: Duration = Duration::from_secs(30);

impl RedisLeases {
    /// Leases under `policy` through `link`; a request waits at most `wait` for an ask out.
    pub fn new(link: Arc<RedisLink>, policy: LeasePolicy, wait: Duration) -> RedisLeases {
        RedisLeases {
            link,
            book: Mutex::new(NodeLeases::new(policy)),
            answered: Condvar::new(),
            wait,
            off_until: Mutex::new(HashMap::new()),
            logged: Mutex::new(None),
            returning: AtomicU64::new(0),
        }
    }

    /// Takes `cost` units of `key` (see `CounterBackend::take_leased`). `None` when Redis did
    /// not answer and nothing is held, or the wait for another request's ask ran out: the
    /// request is then counted by compare-and-swap (or by the failure mode when Redis is down).
    pub fn take(
        &self,
        key: &str,
        window: (Timestamp, Timestamp),
        quota: u64,
        cost: u64,
        now: Timestamp,
    ) -> Option<Leased> {
        let started = Instant::now();
        if let Ok(mut off) = self.off_until.lock() {
            off.retain(|_, until| started < *until);
            if off.contains_key(key) {
                return None;
            }
        }
        let deadline = started + self.wait;
        let mut book = self.book.lock().ok()?;
        loop {
            let asked = match book.take(key, window, quota, cost, now) {
                Take::Admit => return Some(book.leased(key, true, window.1)),
                Take::Refuse => return Some(book.leased(key, false, window.1)),
                Take::Wait => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    let (b, waited) = self.answered.wait_timeout(book, left).ok()?;
                    book = b;
                    if waited.timed_out() {
                        return None;
                    }
                    continue;
                }
                Take::Ask(r) => r,
            };
            drop(book);
            let answer = self.renew(key, &asked);
            let mut book = self.book.lock().ok()?;
            let out = match answer {
                Ok(g) => {
                    let admitted = book.granted(key, &asked, g, now);
                    Some(book.leased(key, admitted, window.1))
                }
                Err(e) => {
                    book.unanswered(key);
                    if let StateError::Failed(_) = e {
                        let now = Instant::now();
                        if let Ok(mut off) = self.off_until.lock() {
                            off.insert(key.to_string(), now + OFF_FOR);
                        }
                        if let Ok(mut logged) = self.logged.lock() {
                            if logged.is_none_or(|t| now >= t + OFF_FOR) {
                                *logged = Some(now);
                                eprintln!(
                                    "aforo-agent: the quota lease script failed for {key} ({e}); its reservations are counted by compare-and-swap for {} s, then leases are tried again (an ACL user needs +time: see deploy-examples/multi-node/redis.conf; logged at most every {} s)",
                                    OFF_FOR.as_secs(),
                                    OFF_FOR.as_secs()
                                );
                            }
                        }
                    }
                    None
                }
            };
            self.answered.notify_all();
            return out;
        }
    }

    /// Gives back the unspent units of leases whose time is up (called on a timer).
    pub fn give_back_due(&self, now: Timestamp) {
        let due = match self.book.lock() {
            Ok(mut b) => self.returning_from(b.due(now)),
            Err(_) => return,
        };
        self.give_back(due);
    }

    /// Gives back every lease held (the agent is stopping), so other agents can use them.
    pub fn give_back_all(&self) {
        let all = match self.book.lock() {
            Ok(mut b) => self.returning_from(b.release_all()),
            Err(_) => return,
        };
        self.give_back(all);
    }

    /// Units this agent holds unspent, those being given back included (for tests and metrics).
    pub fn held(&self) -> u64 {
        // Read under the book's lock, as units move from the book to `returning` under it.
        self.book
            .lock()
            .map(|b| b.held() + self.returning.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    /// Counts `leases`, just taken out of the book (its lock still held), as on their way back.
    fn returning_from(&self, leases: Vec<(String, GiveBack)>) -> Vec<(String, GiveBack)> {
        let total: u64 = leases.iter().map(|(_, g)| g.unspent).sum();
        self.returning.fetch_add(total, Ordering::SeqCst);
        leases
    }

    /// Gives `leases` back to Redis, each off `returning` once Redis has answered.
    fn give_back(&self, leases: Vec<(String, GiveBack)>) {
        for (key, g) in leases {
            // A renewal wanting nothing: the script takes the units back and grants none. A
            // give-back that fails loses those units for the window (under-admission only).
            let r = Renewal {
                window_start: g.window_start,
                window_end: g.window_end,
                quota: 0,
                give_back: Some((g.lease, g.unspent)),
                want: 0,
                need: 0,
            };
            if let Err(e) = self.renew(&key, &r) {
                eprintln!(
                    "aforo-agent: {} unspent units of a quota lease on {key} not given back: {e}",
                    g.unspent
                );
            }
            self.returning.fetch_sub(g.unspent, Ordering::SeqCst);
        }
    }

    /// One renewal for a gateway filter's own book (`POST /v1/leases`): run in Redis under the
    /// node name `gw/<source>`, beside this agent's and every other node's leases.
    pub fn renew_for_gateway(
        &self,
        source: &str,
        key: &str,
        r: &Renewal,
    ) -> Result<LeaseGrant, StateError> {
        self.renew_as(&gateway_node(source), key, r)
    }

    /// Refunds units a reservation took from this agent's lease (a later check refused it).
    pub fn refund(&self, key: &str, window_start: Timestamp, units: u64) {
        if let Ok(mut b) = self.book.lock() {
            b.refund(key, window_start, units);
        }
    }

    /// One renewal of this agent's through `lease.lua`, on Redis's clock.
    fn renew(&self, key: &str, r: &Renewal) -> Result<LeaseGrant, StateError> {
        self.renew_as(self.link.node_id(), key, r)
    }

    fn renew_as(&self, node: &str, key: &str, r: &Renewal) -> Result<LeaseGrant, StateError> {
        let p = self
            .book
            .lock()
            .map(|b| *b.policy())
            .unwrap_or(LeasePolicy::STRICT);
        let (back, unspent) = r.give_back.unwrap_or((0, 0));
        let rkey = redis_key(&self.link, key);
        let end_ms = r.window_end.unix_millis();
        let (replicas, wait_ms) = self.link.wait_replicas();
        let (out, acked): (Vec<u64>, bool) = self.link.with(|c, s| {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&s.lease)
                .arg(1)
                .arg(&rkey)
                .arg(node)
                .arg(r.window_start.unix_millis())
                .arg(end_ms)
                .arg(r.quota)
                .arg(p.max_overshoot)
                .arg(back)
                .arg(unspent)
                .arg(r.want)
                .arg(r.need)
                .arg("")
                .arg(p.open_ns() / 1_000_000)
                .arg(p.max_ahead_ns / 1_000_000)
                .arg(end_ms.saturating_add(DAY_MS))
                .arg(&r.window_start.unix_nanos().to_le_bytes()[..])
                .arg(key);
            c.script_acked(super::LEASE_SCRIPT, &cmd, replicas, wait_ms)
        })?;
        if !acked {
            // Granted on the primary only: a failover could forget it and grant its units
            // again. Not spent, and given back at once (best effort: what does not come back
            // stays counted, under-admission, never over).
            if let [lease, units, ..] = out[..] {
                if lease > 0 {
                    let back = Renewal {
                        give_back: Some((lease, units)),
                        want: 0,
                        need: 0,
                        ..r.clone()
                    };
                    let _ = self.renew_as(node, key, &back);
                }
            }
            return Err(StateError::Failed(format!(
                "{replicas} replica(s) did not acknowledge a quota lease within {wait_ms} ms (redis_wait_replicas)"
            )));
        }
        match out[..] {
            [lease, units, left, returning, current] => Ok(LeaseGrant {
                lease,
                units,
                left,
                returning,
                current: current == 1,
            }),
            _ => Err(StateError::Failed(format!(
                "the lease script answered {out:?}, not 5 numbers"
            ))),
        }
    }
}
