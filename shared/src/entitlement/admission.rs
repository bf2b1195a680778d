//! Admission: the whole check-before-serving decision, shared by every host. Who is calling,
//! may they use the feature from here, is there room in the short rate windows and the quota;
//! and when there is, the units are reserved atomically in the counter store.

use super::counter_contract::DAILY_CREDITS;
use super::counters::{update, CounterBackend, Leased, Update};
use super::decision::{
    check_access, check_quota_in, check_rate, quota_exhausted, Allowance, Credential, Deny,
    DenyCode,
};
use super::snapshot::Entitlement;
use super::snapshot::Snapshot;
use crate::environment::Environment;
use crate::time::Timestamp;
use std::net::IpAddr;

/// What is asked.
#[derive(Clone, Copy, Debug)]
pub struct AccessRequest<'a> {
    /// How the caller identified itself.
    pub credential: Credential<'a>,
    /// The feature the request uses.
    pub feature: &'a str,
    /// The client address, when an allowlist may need it.
    pub client_ip: Option<IpAddr>,
    /// Units to reserve now; `None` when the quantity is only known after the response
    /// (then at least one unit must be left, and the real quantity is added later).
    pub cost: Option<u64>,
    /// The environment of the host's key (a partner in sandbox mode moves to sandbox).
    pub default_environment: Environment,
}

/// Who a request is billed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The customer.
    pub customer_id: String,
    /// The environment its usage belongs to.
    pub environment: Environment,
    /// The consumer key used, if any.
    pub key_id: Option<String>,
}

/// Units taken at admission, to give back if the response is not billable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// Counter key.
    pub key: String,
    /// Window the units were taken in.
    pub window_start: Timestamp,
    /// Units taken.
    pub units: u64,
    /// Taken from a quota lease (given back to it, not to the counter).
    pub leased: bool,
}

/// An admitted request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Who it is billed to.
    pub identity: Identity,
    /// The tightest window's counters, for `RateLimit-*` headers (`None`: unlimited).
    pub allowance: Option<Allowance>,
    /// Units reserved (rate windows, quota).
    pub reservations: Vec<Reservation>,
    /// The counters to add the real quantity to after the response, only when the request
    /// was admitted with `cost: None`: the feature's quota, and the customer's daily credits.
    pub usage_counters: Vec<(String, Timestamp)>,
    /// The features (or the daily credits) whose units came from a quota lease: the event
    /// names them (`LEASED_PROPERTY`) so its claim does not count them again.
    pub leased: Vec<String>,
}

/// A refused request, with its identity when it got that far (shadow mode still meters it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub deny: Deny,
    /// Who, when known (boxed: keeps `Result<Admission, Refusal>` small on the hot path).
    pub identity: Option<Box<Identity>>,
}

/// A counter key from its parts (no formatting machinery on the request path).
fn counter_key(parts: &[&str]) -> String {
    let mut k = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.push_str(p);
    }
    k
}

/// The quota counter key of a customer's feature in an environment.
pub fn quota_key(env: Environment, customer_id: &str, feature: &str) -> String {
    counter_key(&["aforo:q:", env.as_str(), ":", customer_id, ":", feature])
}

/// Decides a request against `snapshot`, reserving units in `counters` when it is admitted.
pub fn admit(
    snapshot: &Snapshot,
    req: &AccessRequest<'_>,
    now: Timestamp,
    counters: &mut dyn CounterBackend,
) -> Result<Admission, Refusal> {
    let grant = check_access(snapshot, req.credential, req.feature, req.client_ip, now).map_err(
        |deny| Refusal {
            deny,
            identity: None,
        },
    )?;
    let env = if grant.sandbox_mode {
        Environment::Sandbox
    } else {
        req.default_environment
    };
    let identity = Identity {
        customer_id: grant.customer_id.to_string(),
        environment: env,
        key_id: grant.key.map(|k| k.key_id.clone()),
    };
    if grant.margin_guard && env == Environment::Production {
        return Err(Refusal {
            deny: Deny::new(
                DenyCode::MarginGuard,
                "the customer's margin this period is below its plan's floor; requests are refused until it is reviewed",
            ),
            identity: Some(Box::new(identity)),
        });
    }
    let entitlement = grant.entitlement;
    let mut allowance: Option<Allowance> = None;
    let mut reservations: Vec<Reservation> = Vec::new();
    let refuse = |deny: Deny,
                  counters: &mut dyn CounterBackend,
                  reservations: &[Reservation],
                  identity: &Identity| {
        release(counters, reservations);
        Err(Refusal {
            deny,
            identity: Some(Box::new(identity.clone())),
        })
    };
    // Short-window rate limits: per key, then per customer and feature.
    let key_rate = grant.key.and_then(|k| {
        k.rate_limit.map(|r| {
            (
                counter_key(&["aforo:r:", env.as_str(), ":k:", &k.key_id]),
                r,
            )
        })
    });
    let feature_rate = entitlement.rate_limit.map(|r| {
        (
            counter_key(&[
                "aforo:r:",
                env.as_str(),
                ":c:",
                &identity.customer_id,
                ":",
                req.feature,
            ]),
            r,
        )
    });
    for (key, rl) in key_rate.into_iter().chain(feature_rate) {
        let ws = rl.window_start(now);
        match update(counters, &key, ws, 1, |used| check_rate(&rl, used, 1, now)) {
            Update::Done(a) | Update::Unshared(Ok(a)) => {
                allowance = Allowance::tighter(allowance, Some(a));
                reservations.push(Reservation {
                    key,
                    window_start: ws,
                    units: 1,
                    leased: false,
                });
            }
            Update::Refused(d) | Update::Unshared(Err(d)) => {
                return refuse(d, counters, &reservations, &identity)
            }
        }
    }
    // The feature's quota, then the customer's daily credits (counted in both environments,
    // refused in production only): each reserves the request's units and is added to after.
    let mut usage_counters = Vec::new();
    let mut leased = Vec::new();
    let quotas = [
        entitlement
            .quota
            .is_some()
            .then_some((req.feature, entitlement, None)),
        grant
            .daily_credits
            .map(|d| (DAILY_CREDITS, d, Some(env == Environment::Production))),
    ];
    for (name, ent, daily_enforced) in quotas.into_iter().flatten() {
        let window = ent.window.current(now);
        let key = quota_key(env, &identity.customer_id, name);
        let units = req.cost.unwrap_or(0);
        let daily = |d: Deny| match daily_enforced {
            Some(true) => daily_credits_used_up(d, ent),
            _ => d,
        };
        // Units to reserve against an enforced quota: from a lease, where the store leases.
        let from_lease = match (ent.quota, daily_enforced) {
            (Some(quota), None | Some(true)) if units > 0 => counters
                .take_leased(&key, window, quota, units, now)
                .map(|l| match l {
                    Leased::Admitted { remaining } => Update::Done(Some(Allowance {
                        limit: quota,
                        remaining: remaining.min(quota),
                        reset_at: window.1,
                    })),
                    Leased::Refused {
                        remaining,
                        retry_at,
                    } => {
                        let mut d =
                            quota_exhausted(ent, quota, remaining.min(quota), window.1, now);
                        d.retry_after_secs = Some(crate::ratelimit::retry_after_secs(
                            now,
                            retry_at.min(window.1),
                        ));
                        Update::Refused(daily(d))
                    }
                }),
            _ => None,
        };
        let was_leased = from_lease.is_some();
        let checked = from_lease.unwrap_or_else(|| {
            update(
                counters,
                &key,
                window.0,
                units as i64,
                |local| match daily_enforced {
                    Some(false) => Ok(None),
                    _ => check_quota_in(ent, window, local, units, now).map_err(daily),
                },
            )
        });
        match checked {
            Update::Done(a) | Update::Unshared(Ok(a)) => {
                allowance = Allowance::tighter(allowance, a);
                if was_leased {
                    leased.push(name.to_string());
                }
                // Units known now are reserved; units known only after the response are added
                // to the counter then (`cost: None` reserves nothing now).
                if req.cost.is_none() {
                    usage_counters.push((key, window.0));
                } else if units > 0 {
                    reservations.push(Reservation {
                        key,
                        window_start: window.0,
                        units,
                        leased: was_leased,
                    });
                }
            }
            Update::Refused(d) | Update::Unshared(Err(d)) => {
                return refuse(d, counters, &reservations, &identity)
            }
        }
    }
    Ok(Admission {
        identity,
        allowance,
        reservations,
        usage_counters,
        leased,
    })
}

/// A quota refusal as the daily credits' (their own code and words).
fn daily_credits_used_up(mut d: Deny, ent: &Entitlement) -> Deny {
    d.code = DenyCode::DailyCreditLimit;
    d.message = format!(
        "the daily credit limit of {} is used up; it renews at midnight UTC",
        ent.quota.unwrap_or(0)
    );
    d
}

/// Gives reserved units back (a later check refused, or the response was not billable).
pub fn release(counters: &mut dyn CounterBackend, reservations: &[Reservation]) {
    for r in reservations {
        if r.leased {
            counters.give_leased(&r.key, r.window_start, r.units);
            continue;
        }
        let _ = update(
            counters,
            &r.key,
            r.window_start,
            -(r.units as i64),
            Ok::<u64, ()>,
        );
    }
}

/// Adds the real quantity of a response to the quota counter (quantities known only after).
pub fn add_usage(counters: &mut dyn CounterBackend, counter: &(String, Timestamp), units: u64) {
    let _ = update(counters, &counter.0, counter.1, units as i64, Ok::<u64, ()>);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::counters::MemoryCounters;
    use crate::entitlement::DenyCode;
    use crate::host::SharedSetError;
    use crate::keys::hash_key;
    use serde_json::json;

    fn snapshot() -> Snapshot {
        Snapshot::from_value(
            "",
            &json!({
                "customers": {
                    "c": {"features": {"f": {"quota": 3, "rate_limit": {"limit": 2, "per": "second"}}, "tokens": {"quota": 10}}},
                    "s": {"sandbox_mode": true, "features": {"f": {}}}
                },
                "consumer_keys": [{"key_id": "k", "hash": hash_key("ck_k").to_text(), "customer_id": "c", "rate_limit": {"limit": 100, "per": "minute"}}]
            }),
        )
        .unwrap()
    }

    fn req<'a>(cred: Credential<'a>, feature: &'a str, cost: Option<u64>) -> AccessRequest<'a> {
        AccessRequest {
            credential: cred,
            feature,
            client_ip: None,
            cost,
            default_environment: Environment::Production,
        }
    }

    #[test]
    fn quota_and_rate_reserve_and_refund() {
        let s = snapshot();
        let mut m = MemoryCounters::new();
        let t = Timestamp::from_unix_secs(1_773_576_000);
        let a = admit(
            &s,
            &req(Credential::ConsumerKey("ck_k"), "f", Some(1)),
            t,
            &mut m,
        )
        .unwrap();
        assert_eq!(a.identity.customer_id, "c");
        assert_eq!(a.identity.key_id.as_deref(), Some("k"));
        assert_eq!(a.reservations.len(), 3, "key rate, feature rate, quota");
        // The per-second rate (2) binds before the quota (3).
        assert!(admit(&s, &req(Credential::Customer("c"), "f", Some(1)), t, &mut m).is_ok());
        let r = admit(&s, &req(Credential::Customer("c"), "f", Some(1)), t, &mut m).unwrap_err();
        assert_eq!(r.deny.code, DenyCode::RateLimited);
        assert_eq!(r.identity.unwrap().customer_id, "c");
        // A refusal gives back what it took: the quota still has one unit for the next second.
        let later = t.plus_millis(1_000);
        assert!(admit(
            &s,
            &req(Credential::Customer("c"), "f", Some(1)),
            later,
            &mut m
        )
        .is_ok());
        let r = admit(
            &s,
            &req(Credential::Customer("c"), "f", Some(1)),
            later,
            &mut m,
        )
        .unwrap_err();
        assert_eq!(r.deny.code, DenyCode::QuotaExhausted);
        // Releasing a reservation frees the unit again.
        let a = admit(
            &s,
            &req(Credential::Customer("c"), "tokens", Some(4)),
            t,
            &mut m,
        )
        .unwrap();
        release(&mut m, &a.reservations);
        assert!(admit(
            &s,
            &req(Credential::Customer("c"), "tokens", Some(10)),
            t,
            &mut m
        )
        .is_ok());
    }

    /// A store that leases quotas: the core's book over the core's store rule.
    struct Leasing {
        memory: MemoryCounters,
        book: crate::entitlement::NodeLeases,
        store: crate::entitlement::StoredLeases,
        asks: u32,
    }

    impl CounterBackend for Leasing {
        fn read(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.memory.read(key)
        }
        fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), SharedSetError> {
            self.memory.write(key, value, cas)
        }
        fn warn(&self, _message: &str) {}
        fn take_leased(
            &mut self,
            key: &str,
            window: (Timestamp, Timestamp),
            quota: u64,
            cost: u64,
            now: Timestamp,
        ) -> Option<Leased> {
            use crate::entitlement::Take;
            let admitted = match self.book.take(key, window, quota, cost, now) {
                Take::Admit => true,
                Take::Refuse => false,
                Take::Wait => return None,
                Take::Ask(r) => {
                    self.asks += 1;
                    let p = *self.book.policy();
                    let g = self.store.renew("node", &r, now, &p);
                    self.book.granted(key, &r, g, now)
                }
            };
            Some(self.book.leased(key, admitted, window.1))
        }
    }

    #[test]
    fn a_leasing_store_takes_reservations_from_leases_and_counts_them_once() {
        let s = snapshot();
        let mut m = Leasing {
            memory: MemoryCounters::new(),
            book: crate::entitlement::NodeLeases::new(crate::entitlement::LeasePolicy::STRICT),
            store: crate::entitlement::StoredLeases::default(),
            asks: 0,
        };
        let t = Timestamp::from_unix_secs(1_773_576_000);
        let ask = |cost| req(Credential::Customer("c"), "tokens", cost);
        let mut admitted = 0;
        for i in 0..12 {
            match admit(&s, &ask(Some(1)), t.plus_nanos(i), &mut m) {
                Ok(a) => {
                    admitted += 1;
                    assert_eq!(a.reservations.len(), 1);
                    assert!(a.allowance.unwrap().remaining < 10);
                }
                Err(r) => {
                    assert_eq!(r.deny.code, DenyCode::QuotaExhausted);
                    assert_eq!(r.deny.allowance.map(|a| a.remaining), Some(0));
                }
            }
        }
        assert_eq!(admitted, 10, "exactly the quota of 10");
        assert!(m.asks < 10, "{} store calls for 10 admissions", m.asks);
        assert_eq!(m.store.counted, 10, "counted by the store");
        let key = quota_key(Environment::Production, "c", "tokens");
        assert!(m.memory.read(&key).is_none(), "not counted a second time");
        // A quantity known only after the response is checked on the counter, not leased.
        let before = m.asks;
        let _ = admit(&s, &ask(None), t, &mut m);
        assert_eq!(m.asks, before);
    }

    #[test]
    fn deferred_quantities_are_added_after() {
        let s = snapshot();
        let mut m = MemoryCounters::new();
        let t = Timestamp::from_unix_secs(1_773_576_000);
        let a = admit(
            &s,
            &req(Credential::Customer("c"), "tokens", None),
            t,
            &mut m,
        )
        .unwrap();
        assert!(a.reservations.is_empty());
        add_usage(&mut m, &a.usage_counters[0], 10);
        let r = admit(
            &s,
            &req(Credential::Customer("c"), "tokens", None),
            t,
            &mut m,
        )
        .unwrap_err();
        assert_eq!(r.deny.code, DenyCode::QuotaExhausted);
    }

    #[test]
    fn sandbox_mode_partners_move_to_the_sandbox() {
        let s = snapshot();
        let mut m = MemoryCounters::new();
        let a = admit(
            &s,
            &req(Credential::Customer("s"), "f", Some(1)),
            Timestamp::EPOCH,
            &mut m,
        )
        .unwrap();
        assert_eq!(a.identity.environment, Environment::Sandbox);
    }

    fn daily_snapshot(used: u64, window_start: Option<&str>) -> Snapshot {
        let mut daily = json!({"limit": 5, "used": used});
        if let Some(ws) = window_start {
            daily["window_start"] = json!(ws);
        }
        Snapshot::from_value(
            "",
            &json!({"customers": {
                "d": {"daily_credits": daily, "features": {"search": {}, "tokens": {"quota": 100}}},
                "ds": {"sandbox_mode": true, "daily_credits": {"limit": 2}, "features": {"search": {}}}
            }}),
        )
        .unwrap()
    }

    #[test]
    fn a_margin_guard_refuses_production_and_never_the_sandbox() {
        let s = Snapshot::from_value(
            "",
            &json!({"customers": {"m": {"margin_guard": true, "features": {"f": {}}}}}),
        )
        .unwrap();
        let mut m = MemoryCounters::new();
        let t = Timestamp::from_unix_secs(1_773_576_000);
        let r = admit(&s, &req(Credential::Customer("m"), "f", Some(1)), t, &mut m).unwrap_err();
        assert_eq!(
            (r.deny.code.status(), r.deny.code.as_str()),
            (403, "margin_guard")
        );
        assert_eq!(r.identity.unwrap().customer_id, "m");
        let mut sandbox = req(Credential::Customer("m"), "f", Some(1));
        sandbox.default_environment = Environment::Sandbox;
        admit(&s, &sandbox, t, &mut m).unwrap();
        let again = Snapshot::from_value("", &s.to_value()).unwrap();
        assert!(again.customers["m"].margin_guard);
    }

    #[test]
    fn daily_credits_refuse_in_production_until_utc_midnight_across_features() {
        let s = daily_snapshot(0, None);
        let mut m = MemoryCounters::new();
        // 2026-03-15T12:00:00Z: twelve hours to the next UTC midnight.
        let t = Timestamp::from_unix_secs(1_773_576_000);
        let ask = |f, cost| req(Credential::Customer("d"), f, cost);
        admit(&s, &ask("search", Some(2)), t, &mut m).unwrap();
        let a = admit(&s, &ask("tokens", None), t, &mut m).unwrap();
        assert_eq!(
            a.usage_counters.len(),
            2,
            "the feature's quota and the daily credits"
        );
        add_usage(&mut m, &a.usage_counters[1], 2);
        admit(&s, &ask("search", Some(1)), t, &mut m).unwrap();
        let r = admit(&s, &ask("search", Some(1)), t, &mut m).unwrap_err();
        assert_eq!(r.deny.code, DenyCode::DailyCreditLimit);
        assert_eq!(
            (r.deny.code.status(), r.deny.code.as_str()),
            (429, "daily_credit_limit")
        );
        assert_eq!(r.deny.retry_after_secs, Some(12 * 3600));
        assert_eq!(r.deny.allowance.map(|a| a.remaining), Some(0));
        // A refusal takes nothing; the next UTC day starts afresh.
        let tomorrow = t.plus_millis(12 * 3_600_000);
        admit(&s, &ask("search", Some(5)), tomorrow, &mut m).unwrap();
    }

    #[test]
    fn daily_credits_in_the_sandbox_are_counted_and_never_refused() {
        let s = daily_snapshot(0, None);
        let mut m = MemoryCounters::new();
        let t = Timestamp::from_unix_secs(1_773_576_000);
        for _ in 0..4 {
            let a = admit(
                &s,
                &req(Credential::Customer("ds"), "search", Some(1)),
                t,
                &mut m,
            )
            .unwrap();
            assert_eq!(a.identity.environment, Environment::Sandbox);
        }
        let key = quota_key(Environment::Sandbox, "ds", DAILY_CREDITS);
        let day = crate::entitlement::QuotaWindow {
            period: crate::entitlement::Period::Day,
            anchor: Timestamp::EPOCH,
        }
        .current(t)
        .0;
        assert_eq!(
            crate::entitlement::read_counter(&m, &key, day),
            4,
            "tracked over the limit of 2"
        );
        // A live gateway's sandbox key for the production customer "d": not refused either.
        let mut sandbox_req = req(Credential::Customer("d"), "search", Some(9));
        sandbox_req.default_environment = Environment::Sandbox;
        admit(&s, &sandbox_req, t, &mut m).unwrap();
    }

    #[test]
    fn the_snapshots_daily_usage_counts_in_its_own_day_only() {
        let t = Timestamp::from_unix_secs(1_773_576_000);
        let mut m = MemoryCounters::new();
        let today = daily_snapshot(5, Some("2026-03-15T00:00:00Z"));
        let r = admit(
            &today,
            &req(Credential::Customer("d"), "search", Some(1)),
            t,
            &mut m,
        )
        .unwrap_err();
        assert_eq!(r.deny.code, DenyCode::DailyCreditLimit);
        let yesterday = daily_snapshot(5, Some("2026-03-14T00:00:00Z"));
        admit(
            &yesterday,
            &req(Credential::Customer("d"), "search", Some(1)),
            t,
            &mut m,
        )
        .unwrap();
        // Round trip through the snapshot's JSON keeps the daily credits.
        let again = Snapshot::from_value("", &today.to_value()).unwrap();
        assert_eq!(
            again.customers["d"].daily_credits,
            today.customers["d"].daily_credits
        );
    }
}
