//! Quota leases across nodes: a node takes a share of a counter's remaining quota from the
//! shared store in one atomic step, spends it locally with no network on the request path, and
//! gives back what it did not spend when the lease ends.
//!
//! The store never grants more than the quota plus `max_overshoot` in a window, and a node
//! admits only units it was granted, so a window passes its quota by at most `max_overshoot`
//! units however many nodes there are (0: strict). Shares shrink as the quota runs out (at most
//! half of what is left, split between the nodes holding leases), and follow each node's
//! demand (a node that spent its lease asks for twice as much next time), so a hot counter
//! costs a store call per many requests and the last units are granted one at a time.
//!
//! Both sides are here, I/O-free: the node's book (`NodeLeases`) and the store's rule
//! (`StoredLeases::renew`, `give_back`), which the store's atomic script implements and the
//! tests' simulation runs as a model.
//!
//! Where the bound ends, stated rather than hidden:
//! - With the store unreachable a node spends the lease it holds; past it, the host's failure
//!   mode decides: closed refuses (the bound holds), open admits without a grant (overshoot
//!   then grows with the nodes and the outage, as without leases).
//! - Units are taken when a request is admitted. A request whose quantity is known only after
//!   its response takes one unit here; what it really used is not taken from leases.
//! - The store serves one window of a counter at a time, by its own clock: a window is asked
//!   for from `max_ahead_ns` before it starts until it ends. A node whose clock is off by more
//!   is refused at each window's turn for that long (never granted twice for a window).
//! - Each ask carries the quota of the asking node's snapshot: nodes on different snapshots
//!   share the window under the quota each believes until they sync.
//! - One ask per counter is out at a time per node: requests that arrive meanwhile are told to
//!   wait for its answer (`Take::Wait`), so a hot counter costs one store call per round trip
//!   however many requests arrive during it. A host that cannot wait may ask anyway: safe, but
//!   each ask takes its own share.

use super::counters::Leased;
use super::snapshot::MAX_UNITS;
use crate::time::Timestamp;
use std::collections::HashMap;

/// How leases are sized and how long they live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeasePolicy {
    /// Units a window may pass its quota by, across all nodes together: 0 for strict quotas.
    pub max_overshoot: u64,
    /// How long a node holds a lease before it gives the unspent units back.
    pub lease_ns: i64,
    /// How long a node refuses after the store said nothing is left, before it asks again
    /// (units come back as other nodes' leases end); twice as long after each refusal.
    pub recheck_ns: i64,
    /// How long before a window starts (by the store's clock) a node may open it.
    pub max_ahead_ns: i64,
}

impl LeasePolicy {
    /// Strict quotas (no overshoot), leases of 2 s, a refused node asking again after 250 ms,
    /// windows opened at most 1 s early.
    pub const STRICT: LeasePolicy = LeasePolicy {
        max_overshoot: 0,
        lease_ns: 2_000_000_000,
        recheck_ns: 250_000_000,
        max_ahead_ns: 1_000_000_000,
    };

    /// How long the store keeps a lease open for its give-back: twice the lease. A node that
    /// never gives back (it died) has its lease counted as spent after that.
    pub const fn open_ns(&self) -> i64 {
        self.lease_ns.saturating_mul(2)
    }
}

/// A node's request to the store: give back what is left of its lease (if any) and take a new
/// one, in one atomic step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// The window the units are for.
    pub window_start: Timestamp,
    /// When that window ends.
    pub window_end: Timestamp,
    /// The quota of the window, as the node's snapshot says.
    pub quota: u64,
    /// The lease given back, and its unspent units.
    pub give_back: Option<(u64, u64)>,
    /// Units the node would like (its demand over a lease's time).
    pub want: u64,
    /// Units the request at hand needs: a grant of fewer is no grant.
    pub need: u64,
}

/// The store's answer to a renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The new lease's id (0: nothing granted).
    pub lease: u64,
    /// Units granted.
    pub units: u64,
    /// Units the store can still grant in this window after this grant.
    pub left: u64,
    /// Units granted with the open leases (spent or not), which may partly come back (0 with
    /// nothing left: the window is spent, a node need not ask again before it ends).
    pub returning: u64,
    /// Whether the window asked for is the store's current one (false: over, or not started
    /// by the store's clock; nothing was given back or granted).
    pub current: bool,
}

impl LeaseGrant {
    /// The answer for a window that is not the store's current one.
    const NOT_CURRENT: LeaseGrant = LeaseGrant {
        lease: 0,
        units: 0,
        left: 0,
        returning: 0,
        current: false,
    };
}

/// One open lease in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenLease {
    /// Its id, unique within the counter.
    pub id: u64,
    /// The node holding it.
    pub node: String,
    /// Units granted with it.
    pub units: u64,
    /// When it was granted (the store's clock).
    pub granted_at: Timestamp,
}

/// One counter's leases in the store for one window: what the store's script keeps, beside
/// the counter's count in the same record (one Redis hash: one key, one Cluster slot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredLeases {
    /// The window the state is for; an ask (or a count) for a later window starts a new one.
    pub window_start: Timestamp,
    /// The counter's count in this window: units granted by leases, spent or held, less those
    /// given back, plus units other writers added (events claimed, reservations made without
    /// leases). Leases are granted from what this leaves of the quota, so every way of using
    /// a quota counts against one number.
    pub counted: u64,
    /// The last lease id handed out. A window's ids start after the store's clock in ms times
    /// 1,024 when its leases start, so a give-back of a lease from before the store lost its
    /// state (a restart without its file, a failover that lost writes) never matches a new one.
    pub last_id: u64,
    /// Leases whose unspent units may still come back.
    pub open: Vec<OpenLease>,
    /// Per node, units granted by its leases and not yet matched: a gateway that admits a
    /// request from a lease reports it as an event, and that event's claim takes its units
    /// from here instead of counting them again (`count_prepaid`). What a node gives back
    /// leaves it too, so a claim can never hide units the node has not spent.
    pub prepaid: Vec<(String, u64)>,
}

impl StoredLeases {
    /// The store's atomic step for `node` at `now` (the store's own clock): the give-back, then
    /// a grant of at most half of what is left split between the nodes holding open leases
    /// (never less than one unit, or `max_overshoot` split between them), never beyond the
    /// node's want (but at least its need), never past `quota + max_overshoot` in the window.
    /// Times are compared in whole milliseconds, as the store's script does.
    pub fn renew(
        &mut self,
        node: &str,
        r: &Renewal,
        now: Timestamp,
        p: &LeasePolicy,
    ) -> LeaseGrant {
        let now_ms = now.unix_millis();
        let ahead_ms = p.max_ahead_ns / 1_000_000;
        if now_ms >= r.window_end.unix_millis()
            || r.window_start.unix_millis() > now_ms.saturating_add(ahead_ms)
            || r.window_start < self.window_start
        {
            // Over, not started yet, or older than the one the store serves: nothing is
            // granted twice for a window, whatever a node's clock says.
            return LeaseGrant::NOT_CURRENT;
        }
        if r.window_start > self.window_start {
            *self = StoredLeases {
                window_start: r.window_start,
                ..StoredLeases::default()
            };
        }
        if self.last_id == 0 {
            // The window's leases start now (below 2^53 until the year 2250: exact in Lua).
            self.last_id = u64::try_from(now_ms).unwrap_or(0).saturating_mul(1_024);
        }
        if let Some((id, unspent)) = r.give_back {
            self.give_back(node, r.window_start, id, unspent);
        }
        let open_ms = p.open_ns() / 1_000_000;
        self.open
            .retain(|l| now_ms - l.granted_at.unix_millis() < open_ms);
        let mut nodes: Vec<&str> = self.open.iter().map(|l| l.node.as_str()).collect();
        nodes.push(node);
        nodes.sort_unstable();
        nodes.dedup();
        let active = nodes.len() as u64;
        let left = r
            .quota
            .saturating_add(p.max_overshoot)
            .min(MAX_UNITS)
            .saturating_sub(self.counted);
        // The budget buys bigger last grants: a share never below budget / nodes.
        let floor = (p.max_overshoot / active).max(1);
        let share = (left / active.saturating_mul(2)).max(floor);
        let units = r.want.min(share).max(r.need).min(left);
        if units == 0 || units < r.need {
            return LeaseGrant {
                lease: 0,
                units: 0,
                left,
                returning: self.open.iter().map(|l| l.units).sum(),
                current: true,
            };
        }
        self.counted = self.counted.saturating_add(units);
        *self.pool(node) += units;
        self.last_id += 1;
        self.open.push(OpenLease {
            id: self.last_id,
            node: node.to_string(),
            units,
            granted_at: now,
        });
        LeaseGrant {
            lease: self.last_id,
            units,
            left: left - units,
            returning: 0,
            current: true,
        }
    }

    /// Takes back the unspent units of `node`'s lease `id` of window `window_start`, once: a
    /// lease that is closed (given back already, or open too long), another node's, or of
    /// another window changes nothing, so a repeated give-back never returns units twice.
    pub fn give_back(&mut self, node: &str, window_start: Timestamp, id: u64, unspent: u64) {
        if window_start != self.window_start {
            return;
        }
        if let Some(i) = self.open.iter().position(|l| l.id == id && l.node == node) {
            let lease = self.open.swap_remove(i);
            // Never more than the node's pool: units its events' claims took from the pool
            // were counted for them, so they do not come back.
            let pool = self.pool(node);
            let back = unspent.min(lease.units).min(*pool);
            *pool -= back;
            self.counted = self.counted.saturating_sub(back);
        }
    }

    /// The prepaid units of `node` (created empty).
    fn pool(&mut self, node: &str) -> &mut u64 {
        let i = match self.prepaid.iter().position(|(n, _)| n == node) {
            Some(i) => i,
            None => {
                self.prepaid.push((node.to_string(), 0));
                self.prepaid.len() - 1
            }
        };
        &mut self.prepaid[i].1
    }

    /// A claimed event's units that `node` admitted from its leases: taken from the node's
    /// prepaid units (counted when its lease was granted), and counted only for what the pool
    /// does not cover. A pool of another window is empty.
    pub fn count_prepaid(&mut self, window_start: Timestamp, units: u64, node: &str) {
        if window_start != self.window_start {
            self.count(window_start, units);
            return;
        }
        let pool = self.pool(node);
        let covered = units.min(*pool);
        *pool -= covered;
        self.count(window_start, units - covered);
    }

    /// Units another writer added to the counter (a claimed event's): counted in their window
    /// (a later window starts afresh, leases of the old one closed), ignored for an older one
    /// (a late write never resets the window the store serves). Saturates at 2^53.
    pub fn count(&mut self, window_start: Timestamp, units: u64) {
        if window_start < self.window_start {
            return;
        }
        if window_start > self.window_start {
            *self = StoredLeases {
                window_start,
                ..StoredLeases::default()
            };
        }
        self.counted = self.counted.saturating_add(units).min(MAX_UNITS);
    }
}

/// A lease as its node holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    window_start: Timestamp,
    window_end: Timestamp,
    id: u64,
    /// Units left to spend.
    left: u64,
    /// Units spent from it.
    spent: u64,
    /// Units it was granted.
    units: u64,
    /// When the node gives back what is left.
    ends_at: Timestamp,
}

/// A refusal the node remembers, so it does not ask the store on every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Refused {
    window_start: Timestamp,
    /// The quota asked under (a new snapshot's quota asks again).
    quota: u64,
    /// Requests needing this many units or more are refused until `until`.
    need: u64,
    until: Timestamp,
}

/// One counter as a node sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counter {
    lease: Option<Held>,
    refused: Option<Refused>,
    /// Units to ask for next (its demand over a lease's time).
    want: u64,
    /// Refusals by the store in a row in this window (each waits twice as long).
    refusals: u32,
    /// Units the store could still grant at its last answer (for `remaining`).
    store_left: u64,
    /// When a request last used the counter (its demand is remembered for a while).
    last_used: Timestamp,
    /// When the ask now out for this counter went out.
    asking: Option<Timestamp>,
}

/// What a node does with a request's units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Take {
    /// Admit: spent from the lease held.
    Admit,
    /// Refuse: the store said a moment ago that there is not enough in this window.
    Refuse,
    /// Ask the store (one atomic step), then call `NodeLeases::granted` with its answer (or
    /// `NodeLeases::unanswered` if none came).
    Ask(Renewal),
    /// An ask for this counter is out: wait for its answer, then take again.
    Wait,
}

/// A lease to give back to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GiveBack {
    /// The window it was for.
    pub window_start: Timestamp,
    /// When that window ends (past it, nothing need go back).
    pub window_end: Timestamp,
    /// Its id.
    pub lease: u64,
    /// Units not spent.
    pub unspent: u64,
}

/// A node's leases, by counter key.
#[derive(Debug)]
pub struct NodeLeases {
    policy: LeasePolicy,
    counters: HashMap<String, Counter>,
    /// Leases displaced by a newer one, to give back with the next `due`.
    returning: Vec<(String, GiveBack)>,
}

impl NodeLeases {
    /// An empty book under `policy`.
    pub fn new(policy: LeasePolicy) -> Self {
        NodeLeases {
            policy,
            counters: HashMap::new(),
            returning: Vec::new(),
        }
    }

    /// The policy the book follows.
    pub fn policy(&self) -> &LeasePolicy {
        &self.policy
    }

    /// Spends `cost` units (at least one) of `key` in the window `[window_start, window_end)`
    /// under `quota` from the lease held, or says to refuse or to ask the store.
    pub fn take(
        &mut self,
        key: &str,
        window: (Timestamp, Timestamp),
        quota: u64,
        cost: u64,
        now: Timestamp,
    ) -> Take {
        self.take_in(key, window, quota, cost, now, true)
    }

    /// As `take`, for a host whose request cannot be woken by another request's answer (a
    /// proxy's): never `Wait`, it asks too, for its own need only while another ask is out; a
    /// lease displaced by a later answer goes back with the next `due`.
    pub fn take_or_ask(
        &mut self,
        key: &str,
        window: (Timestamp, Timestamp),
        quota: u64,
        cost: u64,
        now: Timestamp,
    ) -> Take {
        self.take_in(key, window, quota, cost, now, false)
    }

    fn take_in(
        &mut self,
        key: &str,
        (window_start, window_end): (Timestamp, Timestamp),
        quota: u64,
        cost: u64,
        now: Timestamp,
        can_wait: bool,
    ) -> Take {
        let need = cost.max(1);
        let c = self.counters.entry(key.to_string()).or_default();
        c.last_used = now;
        let other_window = |w: Timestamp| w != window_start;
        if c.lease.is_some_and(|l| other_window(l.window_start))
            || c.refused.is_some_and(|r| other_window(r.window_start))
        {
            // A new window: the store starts it afresh, nothing to give back.
            *c = Counter {
                last_used: now,
                ..Counter::default()
            };
        }
        if let Some(l) = c.lease.as_mut() {
            if l.left >= need {
                l.left -= need;
                l.spent += need;
                return Take::Admit;
            }
        }
        if c.refused
            .is_some_and(|r| r.quota == quota && need >= r.need && now < r.until)
        {
            return Take::Refuse;
        }
        // One ask out at a time (an ask unanswered for a lease's time is taken as lost).
        let asking = c
            .asking
            .is_some_and(|t| now.nanos_since(t) < self.policy.lease_ns);
        if can_wait && asking {
            return Take::Wait;
        }
        c.asking = Some(now);
        // The lease goes back with the ask and leaves the book now: nothing more is spent
        // from it while the ask is out (whether the store took it back is then unknown if the
        // ask fails, so its units are never spent again: under-admission, never over).
        let back = c.lease.take().map(|l| {
            // Spent before its end: ask for twice as much.
            c.want = l.units.saturating_mul(2);
            (l.id, l.left)
        });
        Take::Ask(Renewal {
            window_start,
            window_end,
            quota,
            give_back: back,
            // Asking beside an ask already out (a host that cannot wait): only what this
            // request needs, so concurrent answers do not park units the node cannot spend
            // until they go back.
            want: if asking { need } else { c.want.max(need) },
            need,
        })
    }

    /// Applies the store's answer to a `Take::Ask` for `key`; true when the request that asked
    /// is admitted (its units are spent from the new lease). An ask that got no answer (the
    /// store unreachable) is not applied: the caller's failure mode decides the request.
    pub fn granted(&mut self, key: &str, asked: &Renewal, g: LeaseGrant, now: Timestamp) -> bool {
        let p = self.policy;
        let c = self.counters.entry(key.to_string()).or_default();
        c.asking = None;
        c.store_left = g.left;
        if g.lease == 0 || g.units < asked.need {
            let until = if g.current && g.left < asked.need && g.returning == 0 {
                // Not enough left and nothing that can come back: refused to the window's end,
                // asking again every 8 lease times at most (a refund can still free units).
                asked
                    .window_end
                    .min(now.plus_nanos(p.lease_ns.saturating_mul(8)))
            } else {
                // Ask again in a moment (units come back as leases end; a window not current
                // by the store's clock soon is), twice as long after each refusal, at most a
                // lease's time.
                let wait = p.recheck_ns.saturating_mul(1 << c.refusals.min(8));
                c.refusals = c.refusals.saturating_add(1);
                now.plus_nanos(wait.min(p.lease_ns.max(p.recheck_ns)))
            };
            c.refused = Some(Refused {
                window_start: asked.window_start,
                quota: asked.quota,
                need: asked.need,
                until,
            });
            return false;
        }
        c.refused = None;
        c.refusals = 0;
        let new = Held {
            window_start: asked.window_start,
            window_end: asked.window_end,
            id: g.lease,
            left: g.units - asked.need,
            spent: asked.need,
            units: g.units,
            ends_at: now.plus_nanos(p.lease_ns),
        };
        // Another ask for the same counter answered first (concurrent requests): the lease
        // with more units left is kept, the other goes back with the next `due` (one spent
        // whole is just dropped).
        let back = match c.lease {
            Some(old) if old.window_start == new.window_start && old.left > new.left => new,
            _ => match c.lease.replace(new) {
                Some(old) => old,
                None => return true,
            },
        };
        if back.left > 0 {
            self.returning.push((
                key.to_string(),
                GiveBack {
                    window_start: back.window_start,
                    window_end: back.window_end,
                    lease: back.id,
                    unspent: back.left,
                },
            ));
        }
        true
    }

    /// Units of a request admitted from `key`'s lease that were not used after all (its
    /// response was not billable): back into the lease held for that window; false when that
    /// lease is gone (they stay counted in the store for the window: under-admission).
    pub fn refund(&mut self, key: &str, window_start: Timestamp, units: u64) -> bool {
        let Some(l) = self
            .counters
            .get_mut(key)
            .and_then(|c| c.lease.as_mut())
            .filter(|l| l.window_start == window_start && l.spent >= units)
        else {
            return false;
        };
        l.spent -= units;
        l.left += units;
        true
    }

    /// The ask for `key` got no answer (the store unreachable, a timeout): the next request
    /// may ask again; this one, and those that waited on it, are decided by the caller's
    /// failure mode.
    pub fn unanswered(&mut self, key: &str) {
        if let Some(c) = self.counters.get_mut(key) {
            c.asking = None;
        }
    }

    /// Leases whose time is up: their unspent units go back to the store (the caller sends
    /// them; a give-back that fails loses nothing but those units for the window). A lease
    /// spent whole is just dropped: the store counts it as spent when it closes it.
    pub fn due(&mut self, now: Timestamp) -> Vec<(String, GiveBack)> {
        let mut out = std::mem::take(&mut self.returning);
        for (key, c) in &mut self.counters {
            let Some(l) = c.lease else { continue };
            if now < l.ends_at {
                continue;
            }
            c.lease = None;
            c.want = l.spent.max(1);
            if l.left == 0 {
                continue;
            }
            out.push((
                key.clone(),
                GiveBack {
                    window_start: l.window_start,
                    window_end: l.window_end,
                    lease: l.id,
                    unspent: l.left,
                },
            ));
        }
        let remember = self.policy.lease_ns.saturating_mul(2);
        self.counters.retain(|_, c| {
            c.lease.is_some()
                || c.asking.is_some()
                || c.refused.is_some_and(|r| now < r.until)
                || now.nanos_since(c.last_used) < remember
        });
        out
    }

    /// What is left of `key`'s quota as this node last heard: its lease's unspent units and
    /// what the store could still grant at its last answer (`RateLimit-Remaining`).
    pub fn remaining(&self, key: &str) -> u64 {
        self.counters.get(key).map_or(0, |c| {
            c.lease.map_or(0, |l| l.left).saturating_add(c.store_left)
        })
    }

    /// A request's outcome for `key` as the counter store answers it (`Leased`): what is left
    /// as this node last heard, and when a refused one may ask again (at the latest the
    /// window's end).
    pub fn leased(&self, key: &str, admitted: bool, window_end: Timestamp) -> Leased {
        let remaining = self.remaining(key);
        if admitted {
            Leased::Admitted { remaining }
        } else {
            Leased::Refused {
                remaining,
                retry_at: self.refused_until(key).unwrap_or(window_end),
            }
        }
    }

    /// Until when requests for `key` are refused without asking the store (a Retry-After).
    pub fn refused_until(&self, key: &str) -> Option<Timestamp> {
        self.counters.get(key)?.refused.map(|r| r.until)
    }

    /// Every lease held, to give back now (the node is stopping): the book is left empty.
    pub fn release_all(&mut self) -> Vec<(String, GiveBack)> {
        let mut out = std::mem::take(&mut self.returning);
        for (key, c) in self.counters.drain() {
            if let Some(l) = c.lease.filter(|l| l.left > 0) {
                out.push((
                    key,
                    GiveBack {
                        window_start: l.window_start,
                        window_end: l.window_end,
                        lease: l.id,
                        unspent: l.left,
                    },
                ));
            }
        }
        out
    }

    /// Units this node holds unspent, over all counters, with displaced leases not given back
    /// yet (for gauges and tests).
    pub fn held(&self) -> u64 {
        let displaced: u64 = self.returning.iter().map(|(_, g)| g.unspent).sum();
        self.counters
            .values()
            .filter_map(|c| c.lease.map(|l| l.left))
            .sum::<u64>()
            .saturating_add(displaced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_unix_secs(1_773_576_000);
    const W: Timestamp = Timestamp::from_unix_secs(1_773_575_940);
    const END: Timestamp = Timestamp::from_unix_secs(1_773_576_000 + 3_600);
    const WIN: (Timestamp, Timestamp) = (W, END);

    fn ask(want: u64, need: u64, give_back: Option<(u64, u64)>) -> Renewal {
        Renewal {
            window_start: W,
            window_end: END,
            quota: 100,
            give_back,
            want,
            need,
        }
    }

    #[test]
    fn the_store_grants_at_most_half_of_what_is_left_per_node_and_never_past_the_ceiling() {
        let p = LeasePolicy::STRICT;
        let mut s = StoredLeases::default();
        let g = s.renew("a", &ask(1_000, 1, None), T0, &p);
        assert_eq!((g.units, g.left), (50, 50), "one node: half of 100");
        let g = s.renew("b", &ask(1_000, 1, None), T0, &p);
        assert_eq!((g.units, g.left), (12, 38), "two nodes: a quarter of 50");
        let g = s.renew("b", &ask(3, 1, None), T0, &p);
        assert_eq!(g.units, 3, "never beyond the want");
        // Down to the last units: one at a time, then nothing.
        let mut granted = 50 + 12 + 3;
        loop {
            let g = s.renew("c", &ask(1_000, 1, None), T0, &p);
            if g.units == 0 {
                assert_eq!(g.left, 0);
                break;
            }
            granted += g.units;
        }
        assert_eq!(granted, 100, "exactly the quota, with no overshoot budget");
        assert_eq!(s.counted, 100);
    }

    #[test]
    fn the_budget_is_the_only_overshoot_and_a_need_is_granted_whole_or_not_at_all() {
        let p = LeasePolicy {
            max_overshoot: 5,
            ..LeasePolicy::STRICT
        };
        let mut s = StoredLeases::default();
        let mut total = 0;
        for _ in 0..1_000 {
            total += s.renew("a", &ask(7, 1, None), T0, &p).units;
        }
        assert_eq!(total, 105);
        let mut s = StoredLeases::default();
        s.renew("a", &ask(98, 98, None), T0, &LeasePolicy::STRICT);
        let g = s.renew("a", &ask(3, 3, None), T0, &LeasePolicy::STRICT);
        assert_eq!(
            (g.lease, g.units, g.left),
            (0, 0, 2),
            "2 left, 3 needed: nothing"
        );
        assert_eq!(s.counted, 98, "a refused need takes nothing");
    }

    #[test]
    fn a_give_back_counts_once_and_only_for_its_own_open_lease() {
        let p = LeasePolicy::STRICT;
        let mut s = StoredLeases::default();
        let g = s.renew("a", &ask(40, 1, None), T0, &p);
        assert_eq!(g.units, 40);
        s.give_back("b", W, g.lease, 30);
        assert_eq!(s.counted, 40, "another node's give-back is ignored");
        s.give_back("a", W.plus_nanos(-1), g.lease, 30);
        assert_eq!(s.counted, 40, "another window's too");
        s.give_back("a", W, g.lease, 30);
        assert_eq!(s.counted, 10);
        s.give_back("a", W, g.lease, 30);
        assert_eq!(s.counted, 10, "a repeated give-back returns nothing");
        let g = s.renew("a", &ask(10, 1, None), T0, &p);
        s.give_back("a", W, g.lease, 1_000);
        assert_eq!(s.counted, 10, "never more than the lease had");
    }

    #[test]
    fn a_gateways_events_take_the_units_its_leases_counted_and_never_hide_unspent_ones() {
        let p = LeasePolicy::STRICT;
        // Events claimed before the give-back: counted once, by the lease.
        let mut s = StoredLeases::default();
        let g = s.renew("gw/a", &ask(10, 1, None), T0, &p);
        assert_eq!(g.units, 10);
        for _ in 0..4 {
            s.count_prepaid(W, 1, "gw/a");
        }
        assert_eq!(s.counted, 10, "the 4 events were counted by the lease");
        s.give_back("gw/a", W, g.lease, 6);
        assert_eq!(s.counted, 4, "4 spent, 4 counted");
        // Events claimed after the give-back: still once.
        let mut s = StoredLeases::default();
        let g = s.renew("gw/a", &ask(10, 1, None), T0, &p);
        s.give_back("gw/a", W, g.lease, 6);
        s.count_prepaid(W, 4, "gw/a");
        assert_eq!(s.counted, 4);
        s.count_prepaid(W, 2, "gw/a");
        assert_eq!(s.counted, 6, "past the pool, events count");
        // More marked units than the node spent (forged, or mistaken): the count never falls
        // below what was served, because a give-back never returns what claims took.
        let mut s = StoredLeases::default();
        let g = s.renew("gw/a", &ask(10, 1, None), T0, &p);
        s.count_prepaid(W, 7, "gw/a");
        s.give_back("gw/a", W, g.lease, 6);
        assert_eq!(s.counted, 7, "4 spent from the lease and 3 more events");
        // Another node's pool is not this node's.
        s.count_prepaid(W, 2, "gw/b");
        assert_eq!(s.counted, 9);
        // A new window starts without pools.
        let next = W.plus_nanos(60_000_000_000);
        s.count_prepaid(next, 1, "gw/a");
        assert_eq!((s.window_start, s.counted), (next, 1));
        assert!(s.prepaid.is_empty());
    }

    #[test]
    fn of_two_answers_to_concurrent_asks_the_lease_with_more_left_is_kept() {
        let p = LeasePolicy::STRICT;
        let mut b = NodeLeases::new(p);
        let mut s = StoredLeases::default();
        let Take::Ask(first) = b.take_or_ask("k", WIN, 100, 1, T0) else {
            panic!("asks")
        };
        let g = s.renew("n", &first, T0, &p);
        assert!(b.granted("k", &first, g, T0), "one unit, spent");
        // Spent whole: the next ask wants twice as much; one asking beside it, its need only.
        let Take::Ask(big) = b.take_or_ask("k", WIN, 100, 1, T0) else {
            panic!("asks again")
        };
        let Take::Ask(small) = b.take_or_ask("k", WIN, 100, 1, T0) else {
            panic!("asks beside it")
        };
        assert_eq!((big.want, small.want), (2, 1));
        let g = s.renew("n", &big, T0, &p);
        assert!(b.granted("k", &big, g, T0));
        let g = s.renew("n", &small, T0, &p);
        assert!(b.granted("k", &small, g, T0));
        // The answers came in send order: the big lease's unit is still there to spend.
        assert_eq!(b.take_or_ask("k", WIN, 100, 1, T0), Take::Admit);
        assert!(
            b.due(T0).is_empty(),
            "nothing parked: the small lease was spent whole"
        );
    }

    #[test]
    fn a_refund_goes_back_into_the_lease_of_its_window_only() {
        let mut b = NodeLeases::new(LeasePolicy::STRICT);
        let mut s = StoredLeases::default();
        let Take::Ask(r) = b.take_or_ask("k", WIN, 100, 1, T0) else {
            panic!("asks first")
        };
        // A second request while the first ask is out asks too, for its own unit only.
        let Take::Ask(second) = b.take_or_ask("k", WIN, 100, 1, T0) else {
            panic!("asks beside the first")
        };
        assert_eq!((second.want, second.need), (1, 1));
        let g = s.renew("n", &r, T0, &LeasePolicy::STRICT);
        assert!(b.granted("k", &r, g, T0));
        let held = b.held();
        assert!(b.refund("k", W, 1));
        assert_eq!(b.held(), held + 1);
        assert!(!b.refund("k", W, 1), "only units spent from it");
        assert!(
            !b.refund("k", W.plus_nanos(-1), 1),
            "another window's: lost"
        );
    }

    #[test]
    fn a_give_back_from_before_the_store_lost_its_state_matches_no_new_lease() {
        let p = LeasePolicy::STRICT;
        let mut s = StoredLeases::default();
        let old = s.renew("a", &ask(10, 1, None), T0, &p);
        // The store forgets everything (a restart without its file); a second later the same
        // node is granted a new lease, then its old lease's give-back arrives.
        let mut s = StoredLeases::default();
        let later = T0.plus_nanos(1_000_000_000);
        let new = s.renew("a", &ask(10, 1, None), later, &p);
        assert_ne!(old.lease, new.lease);
        s.give_back("a", W, old.lease, old.units);
        assert_eq!(s.counted, new.units, "the new lease stays counted");
    }

    #[test]
    fn units_counted_by_other_writers_leave_less_to_lease_and_a_late_count_changes_nothing() {
        let p = LeasePolicy::STRICT;
        let mut s = StoredLeases::default();
        s.count(W, 90);
        let g = s.renew("a", &ask(1_000, 1, None), T0, &p);
        assert_eq!((g.units, g.left), (5, 5), "half of the 10 the events left");
        s.count(W, 10);
        let g = s.renew("a", &ask(1_000, 1, None), T0, &p);
        assert_eq!((g.lease, g.left), (0, 0), "claims took the rest");
        assert_eq!(
            s.counted, 105,
            "a lease granted before the claims stays counted"
        );
        s.count(W.plus_nanos(-1), 7);
        assert_eq!(s.counted, 105, "a count for an older window is ignored");
        let next = W.plus_nanos(60_000_000_000);
        s.count(next, 3);
        assert_eq!((s.window_start, s.counted), (next, 3));
        assert!(s.open.is_empty(), "the old window's leases are closed");
        let old = s.renew("a", &ask(1, 1, None), T0, &p);
        assert!(!old.current, "the old window is no longer served");
    }

    #[test]
    fn a_lease_never_given_back_counts_as_spent_and_a_new_window_starts_afresh() {
        let p = LeasePolicy::STRICT;
        let mut s = StoredLeases::default();
        let g = s.renew("dead", &ask(40, 1, None), T0, &p);
        let later = T0.plus_nanos(p.open_ns());
        s.renew("a", &ask(1, 1, None), later, &p);
        assert!(
            s.open.iter().all(|l| l.node != "dead"),
            "closed after open_ns"
        );
        s.give_back("dead", W, g.lease, 40);
        assert_eq!(s.counted, 41, "too late: its units stay spent");
        let next = Renewal {
            window_start: W.plus_nanos(60_000_000_000),
            ..ask(1_000, 1, None)
        };
        assert_eq!(s.renew("a", &next, later, &p).units, 50);
        let old = s.renew("a", &ask(1_000, 1, None), later, &p);
        assert_eq!(
            (old.units, old.left),
            (0, 0),
            "nothing for a window that is over"
        );
    }

    #[test]
    fn a_node_spends_its_lease_asks_when_it_runs_out_and_asks_for_more_each_time() {
        let p = LeasePolicy::STRICT;
        let mut store = StoredLeases::default();
        let mut book = NodeLeases::new(p);
        let mut units = Vec::new();
        let mut admitted = 0;
        for i in 0..40 {
            let now = T0.plus_nanos(i);
            match book.take("k", WIN, 1_000_000, 1, now) {
                Take::Admit => admitted += 1,
                Take::Refuse | Take::Wait => panic!("refused with quota left"),
                Take::Ask(r) => {
                    let g = store.renew("a", &r, now, &p);
                    units.push(g.units);
                    assert!(book.granted("k", &r, g, now));
                    admitted += 1;
                }
            }
        }
        assert_eq!(admitted, 40);
        assert_eq!(
            units,
            [1, 2, 4, 8, 16, 32],
            "demand doubles while leases run out"
        );
        assert_eq!(store.counted, 63);
        // Each lease but the last went back with the next ask, whole or nearly.
        assert_eq!(store.open.len(), 1);
        assert_eq!(book.held(), 63 - 40);
    }

    #[test]
    fn a_refusal_is_remembered_for_a_moment_and_a_lease_goes_back_when_its_time_is_up() {
        let p = LeasePolicy::STRICT;
        let mut store = StoredLeases::default();
        let mut book = NodeLeases::new(p);
        let Take::Ask(r) = book.take("k", WIN, 1, 1, T0) else {
            panic!("asks first")
        };
        let g = store.renew("a", &r, T0, &p);
        assert!(book.granted("k", &r, g, T0));
        let Take::Ask(r) = book.take("k", WIN, 1, 1, T0) else {
            panic!("asks again when spent")
        };
        assert_eq!(r.give_back, Some((g.lease, 0)));
        let g = store.renew("a", &r, T0, &p);
        assert!(!book.granted("k", &r, g, T0), "the quota of 1 is spent");
        // Nothing left and no lease open elsewhere: refused without asking, for 8 lease times
        // (a refund could still free units), never past the window's end.
        assert_eq!(book.take("k", WIN, 1, 1, T0), Take::Refuse);
        let quiet = p.lease_ns * 8;
        assert_eq!(book.refused_until("k"), Some(T0.plus_nanos(quiet)));
        assert_eq!(
            book.take("k", WIN, 1, 1, T0.plus_nanos(quiet - 1)),
            Take::Refuse
        );
        assert!(matches!(
            book.take("k", WIN, 1, 1, T0.plus_nanos(quiet)),
            Take::Ask(_)
        ));
        let mut book = NodeLeases::new(p);
        let Take::Ask(r) = book.take("k", WIN, 1, 1, END.plus_nanos(-1_000)) else {
            panic!("asks")
        };
        let g = store.renew("a", &r, T0, &p);
        assert!(!book.granted("k", &r, g, END.plus_nanos(-1_000)));
        assert_eq!(
            book.refused_until("k"),
            Some(END),
            "never past the window's end"
        );
        assert!(matches!(book.take("k", (T0, END), 1, 1, T0), Take::Ask(_)));
        // Units held by another node may come back: ask again in a moment, then less often.
        let mut store = StoredLeases::default();
        let other = store.renew("b", &ask(1, 1, None), T0, &p);
        assert_eq!(other.units, 1);
        let mut book = NodeLeases::new(p);
        let asked_at = |book: &mut NodeLeases, store: &mut StoredLeases, t: Timestamp| {
            let Take::Ask(r) = book.take("k", WIN, 1, 1, t) else {
                return false;
            };
            let g = store.renew("a", &r, t, &p);
            assert!(!book.granted("k", &r, g, t));
            true
        };
        assert!(asked_at(&mut book, &mut store, T0));
        let t1 = T0.plus_nanos(p.recheck_ns);
        assert_eq!(book.take("k", WIN, 1, 1, t1.plus_nanos(-1)), Take::Refuse);
        assert!(asked_at(&mut book, &mut store, t1));
        let t2 = t1.plus_nanos(2 * p.recheck_ns);
        assert_eq!(book.take("k", WIN, 1, 1, t2.plus_nanos(-1)), Take::Refuse);
        assert!(asked_at(&mut book, &mut store, t2));
        // A new lease, half spent, given back when its time is up.
        let mut store = StoredLeases::default();
        let mut book = NodeLeases::new(p);
        let Take::Ask(r) = book.take("k", WIN, 100, 1, T0) else {
            panic!()
        };
        let r = Renewal { want: 10, ..r };
        let g = store.renew("a", &r, T0, &p);
        assert!(book.granted("k", &r, g, T0));
        for _ in 0..4 {
            assert_eq!(book.take("k", WIN, 100, 1, T0), Take::Admit);
        }
        assert!(book.due(T0.plus_nanos(p.lease_ns - 1)).is_empty());
        let due = book.due(T0.plus_nanos(p.lease_ns));
        assert_eq!(due.len(), 1);
        let (key, back) = &due[0];
        assert_eq!((key.as_str(), back.unspent), ("k", 5));
        store.give_back("a", back.window_start, back.lease, back.unspent);
        assert_eq!(store.counted, 5, "what was spent stays counted");
        assert_eq!(book.held(), 0);
    }

    #[test]
    fn a_new_window_drops_the_old_lease_without_giving_it_back() {
        let p = LeasePolicy::STRICT;
        let mut store = StoredLeases::default();
        let mut book = NodeLeases::new(p);
        let Take::Ask(r) = book.take("k", WIN, 100, 1, T0) else {
            panic!()
        };
        let g = store.renew("a", &r, T0, &p);
        assert!(book.granted("k", &r, g, T0));
        let next = W.plus_nanos(60_000_000_000);
        let Take::Ask(r) = book.take("k", (next, END), 100, 1, T0) else {
            panic!("a new window asks afresh")
        };
        assert_eq!((r.give_back, r.want), (None, 1));
    }

    #[test]
    fn a_window_is_granted_only_while_it_is_current_by_the_stores_clock() {
        let p = LeasePolicy::STRICT;
        // The window ended: nothing, even from a store that forgot it (its state expired).
        let mut s = StoredLeases::default();
        let over = Renewal {
            window_end: T0,
            ..ask(10, 1, None)
        };
        assert_eq!(s.renew("a", &over, T0, &p), LeaseGrant::NOT_CURRENT);
        assert_eq!(s, StoredLeases::default(), "nothing changed");
        // A node whose clock runs ahead cannot open the next window early...
        let next = Renewal {
            window_start: T0.plus_nanos(p.max_ahead_ns + 1_000_000),
            window_end: END.plus_nanos(60_000_000_000),
            ..ask(10, 1, None)
        };
        assert_eq!(s.renew("fast", &next, T0, &p), LeaseGrant::NOT_CURRENT);
        // ...and the node asks again soon, not at the window's end.
        let mut book = NodeLeases::new(p);
        let Take::Ask(r) = book.take("k", (next.window_start, next.window_end), 100, 1, T0) else {
            panic!()
        };
        assert!(!book.granted("k", &r, LeaseGrant::NOT_CURRENT, T0));
        assert!(matches!(
            book.take(
                "k",
                (next.window_start, next.window_end),
                100,
                1,
                T0.plus_nanos(p.recheck_ns)
            ),
            Take::Ask(_)
        ));
        // Within the allowance it may, and then a lagging node's old window is over for it.
        let early = Renewal {
            window_start: T0.plus_nanos(p.max_ahead_ns),
            ..next.clone()
        };
        assert_eq!(s.renew("fast", &early, T0, &p).units, 10);
        assert_eq!(
            s.renew("slow", &ask(10, 1, None), T0, &p),
            LeaseGrant::NOT_CURRENT
        );
    }

    #[test]
    fn a_refusal_holds_for_requests_as_large_under_the_same_quota_only() {
        let p = LeasePolicy::STRICT;
        let mut store = StoredLeases::default();
        let mut book = NodeLeases::new(p);
        // 2 units left of 3 and nothing open: a request of 3 is refused to the window's end.
        let g = store.renew(
            "b",
            &Renewal {
                quota: 3,
                ..ask(1, 1, None)
            },
            T0,
            &p,
        );
        store.give_back("b", W, g.lease, 0);
        let Take::Ask(r) = book.take("k", WIN, 3, 3, T0) else {
            panic!()
        };
        let g = store.renew("a", &r, T0, &p);
        assert_eq!((g.units, g.left, g.returning), (0, 2, 0));
        assert!(!book.granted("k", &r, g, T0));
        assert_eq!(book.take("k", WIN, 3, 3, T0), Take::Refuse);
        assert_eq!(book.take("k", WIN, 3, 5, T0), Take::Refuse);
        // A request of 1 still asks, and is granted.
        let Take::Ask(r) = book.take("k", WIN, 3, 1, T0) else {
            panic!("a smaller request asks")
        };
        assert!(book.granted("k", &r, store.renew("a", &r, T0, &p), T0));
        // A new snapshot's quota asks again.
        let mut book = NodeLeases::new(p);
        let Take::Ask(r) = book.take("k", WIN, 3, 3, T0) else {
            panic!()
        };
        assert!(!book.granted("k", &r, store.renew("a", &r, T0, &p), T0));
        assert!(matches!(book.take("k", WIN, 10, 3, T0), Take::Ask(_)));
    }

    #[test]
    fn a_request_of_unknown_cost_takes_one_unit_and_the_ceiling_stays_exact() {
        let p = LeasePolicy::STRICT;
        let mut book = NodeLeases::new(p);
        let Take::Ask(r) = book.take("k", WIN, 100, 0, T0) else {
            panic!()
        };
        assert_eq!((r.need, r.want), (1, 1));
        let budget = LeasePolicy {
            max_overshoot: 3,
            ..p
        };
        let mut s = StoredLeases::default();
        let g = s.renew(
            "a",
            &Renewal {
                quota: MAX_UNITS,
                want: u64::MAX,
                ..ask(0, 1, None)
            },
            T0,
            &budget,
        );
        assert_eq!(g.units + g.left, MAX_UNITS, "quota + budget capped at 2^53");
    }

    #[test]
    fn one_ask_is_out_at_a_time_and_a_lost_one_frees_the_next() {
        let p = LeasePolicy::STRICT;
        let mut store = StoredLeases::default();
        let mut book = NodeLeases::new(p);
        let Take::Ask(r) = book.take("k", WIN, 100, 1, T0) else {
            panic!()
        };
        assert_eq!(book.take("k", WIN, 100, 1, T0), Take::Wait);
        assert!(matches!(book.take("other", WIN, 100, 1, T0), Take::Ask(_)));
        let g = store.renew(
            "a",
            &Renewal {
                want: 5,
                ..r.clone()
            },
            T0,
            &p,
        );
        assert!(book.granted("k", &r, g, T0));
        assert_eq!(
            book.take("k", WIN, 100, 1, T0),
            Take::Admit,
            "waiters take from the answer"
        );
        // An ask with no answer: the next request asks again at once after `unanswered`...
        let mut book = NodeLeases::new(p);
        assert!(matches!(book.take("k", WIN, 100, 1, T0), Take::Ask(_)));
        book.unanswered("k");
        assert!(matches!(book.take("k", WIN, 100, 1, T0), Take::Ask(_)));
        // ...or once a lease's time has passed without one.
        assert_eq!(
            book.take("k", WIN, 100, 1, T0.plus_nanos(p.lease_ns - 1)),
            Take::Wait
        );
        assert!(matches!(
            book.take("k", WIN, 100, 1, T0.plus_nanos(p.lease_ns)),
            Take::Ask(_)
        ));
    }
}
