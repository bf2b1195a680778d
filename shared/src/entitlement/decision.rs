//! The local decision: allow, 401, 403 or 429, with the headers and error codes clients rely on.
//!
//! Split in two pure steps so every host shares them: `check_access` (who is it, may they use
//! this feature from here) and `check_quota` / `check_rate` (is there room left), which hosts call
//! inside their own atomic counter update.

use super::snapshot::{Entitlement, Snapshot};
use crate::keys::{any_contains, ConsumerKey, KeyHash};
use crate::ratelimit::{retry_after_secs, RateLimit};
use crate::time::Timestamp;
use std::fmt;
use std::net::IpAddr;

/// How the caller identified itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A consumer key secret, looked up by hash.
    ConsumerKey(&'a str),
    /// A consumer key already hashed (the gateway keeps recent keys' hashes).
    HashedKey(KeyHash),
    /// A customer id asserted by a trusted auth layer in front.
    Customer(&'a str),
    /// Nothing usable.
    Missing,
}

/// Why a request is refused; each maps to one status and one `error.code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DenyCode {
    /// No key, or an unknown, revoked or expired one (401).
    InvalidKey,
    /// The customer is not in the snapshot (403).
    UnknownCustomer,
    /// The customer is suspended (403).
    CustomerSuspended,
    /// The feature is not in the customer's plan (403).
    NoAccess,
    /// The key's scopes do not include the feature (403).
    ScopeMissing,
    /// The client address is outside the allowlist (403).
    IpNotAllowed,
    /// The quota of the current window is used up (429).
    QuotaExhausted,
    /// Too many requests in the short window (429).
    RateLimited,
    /// The customer's credits for the UTC day are used up (429; production only).
    DailyCreditLimit,
    /// The customer's margin this period is below its plan's floor with `margin_action:
    /// block` (403; production only).
    MarginGuard,
    /// No fresh snapshot and the failure mode is closed (503).
    EntitlementsUnavailable,
}

/// Every deny code, for reports that count by code.
pub const ALL_DENY_CODES: [DenyCode; 11] = [
    DenyCode::InvalidKey,
    DenyCode::UnknownCustomer,
    DenyCode::CustomerSuspended,
    DenyCode::NoAccess,
    DenyCode::ScopeMissing,
    DenyCode::IpNotAllowed,
    DenyCode::QuotaExhausted,
    DenyCode::RateLimited,
    DenyCode::DailyCreditLimit,
    DenyCode::MarginGuard,
    DenyCode::EntitlementsUnavailable,
];

impl DenyCode {
    /// HTTP status of the local reply.
    pub const fn status(self) -> u16 {
        match self {
            DenyCode::InvalidKey => 401,
            DenyCode::QuotaExhausted | DenyCode::RateLimited | DenyCode::DailyCreditLimit => 429,
            DenyCode::EntitlementsUnavailable => 503,
            _ => 403,
        }
    }

    /// `error.code` in the reply body.
    pub const fn as_str(self) -> &'static str {
        match self {
            DenyCode::InvalidKey => "invalid_key",
            DenyCode::UnknownCustomer => "unknown_customer",
            DenyCode::CustomerSuspended => "customer_suspended",
            DenyCode::NoAccess => "no_access",
            DenyCode::ScopeMissing => "scope_missing",
            DenyCode::IpNotAllowed => "ip_not_allowed",
            DenyCode::QuotaExhausted => "quota_exhausted",
            DenyCode::RateLimited => "rate_limited",
            DenyCode::DailyCreditLimit => "daily_credit_limit",
            DenyCode::MarginGuard => "margin_guard",
            DenyCode::EntitlementsUnavailable => "entitlements_unavailable",
        }
    }

    /// Parses a wire code.
    pub fn from_wire(s: &str) -> Option<Self> {
        ALL_DENY_CODES.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for DenyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of the most restrictive window, for `RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// `RateLimit-Limit`.
    pub limit: u64,
    /// `RateLimit-Remaining` after this request.
    pub remaining: u64,
    /// When the window resets.
    pub reset_at: Timestamp,
}

impl Allowance {
    /// The more restrictive of two allowances (lowest remaining; ties go to the longer window).
    pub fn tighter(a: Option<Allowance>, b: Option<Allowance>) -> Option<Allowance> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if (y.remaining, x.reset_at) < (x.remaining, y.reset_at) {
                y
            } else {
                x
            }),
            (x, None) => x,
            (None, y) => y,
        }
    }
}

/// A refusal, with what the reply needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    /// Why.
    pub code: DenyCode,
    /// Words for the reply body.
    pub message: String,
    /// Counters to show (429 only).
    pub allowance: Option<Allowance>,
    /// `Retry-After` seconds (429 and 503).
    pub retry_after_secs: Option<u64>,
}

impl Deny {
    pub(crate) fn new(code: DenyCode, message: impl Into<String>) -> Self {
        Deny {
            code,
            message: message.into(),
            allowance: None,
            retry_after_secs: None,
        }
    }

    /// A 503 for a missing or stale snapshot under the closed failure mode.
    pub fn unavailable(retry_after_secs: u64) -> Self {
        Deny {
            code: DenyCode::EntitlementsUnavailable,
            message: "entitlements are temporarily unavailable".into(),
            allowance: None,
            retry_after_secs: Some(retry_after_secs.max(1)),
        }
    }
}

/// Identity and plan checks passed; quota and rate are still to be checked.
#[derive(Clone, Copy, Debug)]
pub struct Grant<'s> {
    /// The billed customer.
    pub customer_id: &'s str,
    /// The customer's usage is tagged sandbox and never billed.
    pub sandbox_mode: bool,
    /// The key used, when the caller presented one.
    pub key: Option<&'s ConsumerKey>,
    /// The customer's entitlement to the feature.
    pub entitlement: &'s Entitlement,
    /// The customer's credits per UTC day, when it has a limit.
    pub daily_credits: Option<&'s Entitlement>,
    /// The customer's margin is below its plan's floor and the plan blocks.
    pub margin_guard: bool,
}

/// Who is calling and may they use `feature` from `client_ip`: 401 / 403 or a grant.
pub fn check_access<'s>(
    snapshot: &'s Snapshot,
    credential: Credential<'_>,
    feature: &str,
    client_ip: Option<IpAddr>,
    now: Timestamp,
) -> Result<Grant<'s>, Deny> {
    let (customer_id, key): (&str, Option<&ConsumerKey>) = match credential {
        Credential::Missing => {
            return Err(Deny::new(DenyCode::InvalidKey, "an API key is required"));
        }
        Credential::ConsumerKey(secret) => match snapshot.keys.authenticate(secret, now) {
            Ok(k) => (k.customer_id.as_str(), Some(k)),
            Err(d) => return Err(Deny::new(DenyCode::InvalidKey, d.message())),
        },
        Credential::HashedKey(hash) => match snapshot.keys.authenticate_hash(&hash, now) {
            Ok(k) => (k.customer_id.as_str(), Some(k)),
            Err(d) => return Err(Deny::new(DenyCode::InvalidKey, d.message())),
        },
        Credential::Customer(id) => (id, None),
    };
    let Some((stored_id, customer)) = snapshot.customers.get_key_value(customer_id) else {
        return Err(Deny::new(
            DenyCode::UnknownCustomer,
            "the customer is not known",
        ));
    };
    if !customer.active {
        return Err(Deny::new(
            DenyCode::CustomerSuspended,
            "the customer is suspended",
        ));
    }
    let key_list = key.map(|k| k.ip_allowlist.as_slice()).unwrap_or(&[]);
    for list in [key_list, customer.ip_allowlist.as_slice()] {
        if !list.is_empty() && !client_ip.is_some_and(|ip| any_contains(list, ip)) {
            return Err(Deny::new(
                DenyCode::IpNotAllowed,
                "the client address is not in the allowlist",
            ));
        }
    }
    if let Some(k) = key {
        if !k.allows_feature(feature) {
            return Err(Deny::new(
                DenyCode::ScopeMissing,
                format!("the key's scopes do not include {feature:?}"),
            ));
        }
    }
    match customer.features.get(feature) {
        Some(e) if e.allowed => Ok(Grant {
            customer_id: stored_id.as_str(),
            sandbox_mode: customer.sandbox_mode,
            key,
            entitlement: e,
            daily_credits: customer.daily_credits.as_deref(),
            margin_guard: customer.margin_guard,
        }),
        _ => Err(Deny::new(
            DenyCode::NoAccess,
            format!("the plan does not include {feature:?}"),
        )),
    }
}

/// Is there room in the quota for `cost` more units, given `local_used` units admitted by this
/// gateway node in the current window (a shared counter across its workers)?
///
/// Usage is the larger of the snapshot's and (snapshot − this node's reported share + local),
/// so a node never counts its own usage twice and a restart never forgets the snapshot's.
/// With `cost` 0 (quantity known only after the response) there must be at least one unit left.
pub fn check_quota(
    entitlement: &Entitlement,
    local_used: u64,
    cost: u64,
    now: Timestamp,
) -> Result<Option<Allowance>, Deny> {
    check_quota_in(
        entitlement,
        entitlement.window.current(now),
        local_used,
        cost,
        now,
    )
}

/// The refusal of a quota with `remaining` units left: 429 until the window resets.
pub(crate) fn quota_exhausted(
    entitlement: &Entitlement,
    quota: u64,
    remaining: u64,
    reset_at: Timestamp,
    now: Timestamp,
) -> Deny {
    Deny {
        code: DenyCode::QuotaExhausted,
        message: format!(
            "the quota of {quota} per {} is used up",
            entitlement.window.period.as_str()
        ),
        allowance: Some(Allowance {
            limit: quota,
            remaining,
            reset_at,
        }),
        retry_after_secs: Some(retry_after_secs(now, reset_at)),
    }
}

/// As `check_quota`, with the current window `[start, end)` already computed (hosts that
/// retry inside a CAS loop compute it once).
pub fn check_quota_in(
    entitlement: &Entitlement,
    window: (Timestamp, Timestamp),
    local_used: u64,
    cost: u64,
    now: Timestamp,
) -> Result<Option<Allowance>, Deny> {
    let Some(quota) = entitlement.quota else {
        return Ok(None);
    };
    let (start, reset_at) = window;
    let (used, by_source) = entitlement.snapshot_used_in(start);
    let effective = match by_source {
        Some(mine) => used.max(used.saturating_sub(mine).saturating_add(local_used)),
        None => used.max(local_used),
    };
    let needed = cost.max(1);
    if effective.saturating_add(needed) > quota {
        return Err(quota_exhausted(
            entitlement,
            quota,
            quota.saturating_sub(effective),
            reset_at,
            now,
        ));
    }
    Ok(Some(Allowance {
        limit: quota,
        remaining: quota - effective.saturating_add(cost),
        reset_at,
    }))
}

/// Is there room in a short rate window for `cost` more requests, given `used` in this window?
pub fn check_rate(
    limit: &RateLimit,
    used: u64,
    cost: u64,
    now: Timestamp,
) -> Result<Allowance, Deny> {
    let reset_at = limit.reset_at(now);
    if used.saturating_add(cost.max(1)) > limit.limit {
        return Err(Deny {
            code: DenyCode::RateLimited,
            message: format!(
                "more than {} requests per {:?} window",
                limit.limit, limit.per
            )
            .to_lowercase(),
            allowance: Some(Allowance {
                limit: limit.limit,
                remaining: limit.limit.saturating_sub(used),
                reset_at,
            }),
            retry_after_secs: Some(retry_after_secs(now, reset_at)),
        });
    }
    Ok(Allowance {
        limit: limit.limit,
        remaining: limit.limit - used.saturating_add(cost),
        reset_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::window::{Period, QuotaWindow};
    use crate::keys::hash_key;
    use crate::ratelimit::Per;
    use crate::time::parse_rfc3339;
    use serde_json::json;

    fn now() -> Timestamp {
        parse_rfc3339("2026-03-15T12:00:00Z").unwrap()
    }

    fn snapshot() -> Snapshot {
        Snapshot::from_value(
            "",
            &json!({
                "customers": {
                    "cust_a": {"features": {
                        "search": {"quota": 1000, "used": 450},
                        "export": {"allowed": false}
                    }},
                    "cust_ip": {"ip_allowlist": ["10.0.0.0/8", "2001:db8::/32"], "features": {"search": {}}},
                    "cust_off": {"status": "suspended", "features": {"search": {}}}
                },
                "consumer_keys": [
                    {"key_id": "k_a", "hash": hash_key("ck_a").to_text(), "customer_id": "cust_a", "scopes": ["search"]},
                    {"key_id": "k_r", "hash": hash_key("ck_r").to_text(), "customer_id": "cust_a", "revoked": true},
                    {"key_id": "k_e", "hash": hash_key("ck_e").to_text(), "customer_id": "cust_a", "expires_at": "2026-03-01T00:00:00Z"},
                    {"key_id": "k_ip", "hash": hash_key("ck_ip").to_text(), "customer_id": "cust_a", "ip_allowlist": ["192.0.2.0/24"]}
                ]
            }),
        )
        .unwrap()
    }

    fn access(cred: Credential<'_>, feature: &str, ip: Option<&str>) -> Result<String, DenyCode> {
        let s = snapshot();
        check_access(&s, cred, feature, ip.map(|i| i.parse().unwrap()), now())
            .map(|g| g.customer_id.to_string())
            .map_err(|d| d.code)
    }

    #[test]
    fn every_access_outcome() {
        use Credential::*;
        assert_eq!(
            access(ConsumerKey("ck_a"), "search", None),
            Ok("cust_a".into())
        );
        assert_eq!(
            access(Customer("cust_a"), "search", None),
            Ok("cust_a".into())
        );
        assert_eq!(access(Missing, "search", None), Err(DenyCode::InvalidKey));
        assert_eq!(
            access(ConsumerKey("ck_nope"), "search", None),
            Err(DenyCode::InvalidKey)
        );
        assert_eq!(
            access(ConsumerKey("ck_r"), "search", None),
            Err(DenyCode::InvalidKey)
        );
        assert_eq!(
            access(ConsumerKey("ck_e"), "search", None),
            Err(DenyCode::InvalidKey)
        );
        assert_eq!(
            access(Customer("cust_zz"), "search", None),
            Err(DenyCode::UnknownCustomer)
        );
        assert_eq!(
            access(Customer("cust_off"), "search", None),
            Err(DenyCode::CustomerSuspended)
        );
        assert_eq!(
            access(ConsumerKey("ck_a"), "export", None),
            Err(DenyCode::ScopeMissing)
        );
        assert_eq!(
            access(Customer("cust_a"), "export", None),
            Err(DenyCode::NoAccess)
        );
        assert_eq!(
            access(Customer("cust_a"), "missing_feature", None),
            Err(DenyCode::NoAccess)
        );
        // IP allowlists, IPv4 and IPv6, on the customer and on the key.
        assert_eq!(
            access(Customer("cust_ip"), "search", Some("10.1.2.3")),
            Ok("cust_ip".into())
        );
        assert_eq!(
            access(Customer("cust_ip"), "search", Some("2001:db8::42")),
            Ok("cust_ip".into())
        );
        assert_eq!(
            access(Customer("cust_ip"), "search", Some("2001:db9::1")),
            Err(DenyCode::IpNotAllowed)
        );
        assert_eq!(
            access(Customer("cust_ip"), "search", Some("11.0.0.1")),
            Err(DenyCode::IpNotAllowed)
        );
        assert_eq!(
            access(Customer("cust_ip"), "search", None),
            Err(DenyCode::IpNotAllowed)
        );
        assert_eq!(
            access(ConsumerKey("ck_ip"), "search", Some("192.0.2.9")),
            Ok("cust_a".into())
        );
        assert_eq!(
            access(ConsumerKey("ck_ip"), "search", Some("198.51.100.1")),
            Err(DenyCode::IpNotAllowed)
        );
    }

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(DenyCode::InvalidKey.status(), 401);
        for c in [
            DenyCode::UnknownCustomer,
            DenyCode::NoAccess,
            DenyCode::ScopeMissing,
            DenyCode::IpNotAllowed,
            DenyCode::CustomerSuspended,
        ] {
            assert_eq!(c.status(), 403);
        }
        assert_eq!(DenyCode::QuotaExhausted.status(), 429);
        assert_eq!(DenyCode::RateLimited.status(), 429);
        for c in ALL_DENY_CODES {
            assert_eq!(DenyCode::from_wire(c.as_str()), Some(c));
        }
    }

    fn ent(quota: u64, used: u64, by_source: Option<u64>) -> Entitlement {
        Entitlement {
            allowed: true,
            quota: Some(quota),
            used,
            used_by_source: by_source,
            used_window_start: None,
            window: QuotaWindow::calendar(Period::Month),
            rate_limit: None,
        }
    }

    #[test]
    fn quota_edges() {
        let t = now();
        // Exactly the last unit is allowed; the next is refused.
        let a = check_quota(&ent(10, 9, None), 0, 1, t).unwrap().unwrap();
        assert_eq!((a.limit, a.remaining), (10, 0));
        let d = check_quota(&ent(10, 10, None), 0, 1, t).unwrap_err();
        assert_eq!(d.code, DenyCode::QuotaExhausted);
        assert_eq!(d.allowance.unwrap().remaining, 0);
        // Retry-After runs to the real reset: 2026-04-01T00:00:00Z is 16.5 days away.
        assert_eq!(d.retry_after_secs, Some(16 * 86_400 + 12 * 3_600));
        // A zero quota refuses everything.
        assert!(check_quota(&ent(0, 0, None), 0, 1, t).is_err());
        // Deferred quantities need at least one unit left.
        assert!(check_quota(&ent(10, 9, None), 0, 0, t).is_ok());
        assert!(check_quota(&ent(10, 10, None), 0, 0, t).is_err());
        // A cost that does not fit is refused even with units left.
        assert!(check_quota(&ent(10, 8, None), 0, 3, t).is_err());
    }

    #[test]
    fn local_usage_is_never_counted_twice() {
        let t = now();
        // This node admitted 6, of which the snapshot already holds 4 (used 9 includes them).
        let a = check_quota(&ent(20, 9, Some(4)), 6, 1, t).unwrap().unwrap();
        assert_eq!(a.remaining, 20 - (9 - 4 + 6) - 1);
        // After a restart the local count is 0: the snapshot's usage still counts.
        let a = check_quota(&ent(20, 9, Some(9)), 0, 1, t).unwrap().unwrap();
        assert_eq!(a.remaining, 20 - 9 - 1);
        // Without a per-source share, the larger of the two is used.
        let a = check_quota(&ent(20, 5, None), 7, 1, t).unwrap().unwrap();
        assert_eq!(a.remaining, 20 - 7 - 1);
    }

    #[test]
    fn unlimited_quota_has_no_allowance() {
        let mut e = ent(1, 1, None);
        e.quota = None;
        assert_eq!(check_quota(&e, 1_000_000, 1, now()), Ok(None));
    }

    #[test]
    fn rate_limits() {
        let l = RateLimit {
            limit: 2,
            per: Per::Second,
        };
        let t = now().plus_millis(250);
        assert_eq!(check_rate(&l, 1, 1, t).unwrap().remaining, 0);
        let d = check_rate(&l, 2, 1, t).unwrap_err();
        assert_eq!(d.code, DenyCode::RateLimited);
        assert_eq!(d.retry_after_secs, Some(1));
    }

    #[test]
    fn tighter_allowance_wins() {
        let t = now();
        let a = Allowance {
            limit: 100,
            remaining: 50,
            reset_at: t.plus_millis(10_000),
        };
        let b = Allowance {
            limit: 5,
            remaining: 2,
            reset_at: t.plus_millis(1_000),
        };
        assert_eq!(Allowance::tighter(Some(a), Some(b)), Some(b));
        assert_eq!(Allowance::tighter(Some(a), None), Some(a));
    }
}
