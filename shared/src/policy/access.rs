//! May this caller use this feature now? The answer carries everything an HTTP reply needs.

use crate::entitlement::{
    admit, AccessRequest, CounterBackend, Credential, Deny, Refusal, Snapshot,
};
use crate::keys::parse_peer;
use crate::{Environment, Timestamp};

/// One access question, as a host receives it.
#[derive(Clone, Debug)]
pub struct AccessQuery<'a> {
    /// A customer id asserted by a trusted caller.
    pub tenant_id: Option<&'a str>,
    /// Or a consumer key, looked up by its hash (wins over `tenant_id`).
    pub api_key: Option<&'a str>,
    /// The feature asked for.
    pub feature_key: &'a str,
    /// The client address (`ip` or `ip:port`), for IP allowlists.
    pub client_ip: Option<&'a str>,
    /// Units to reserve now; `None`: at least one unit must be left, usage is metered later.
    pub cost: Option<u64>,
    /// The host's environment (from its `sk_` key).
    pub environment: Environment,
    /// The host's clock.
    pub now: Timestamp,
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessAnswer {
    /// Serve the request?
    pub allowed: bool,
    /// 200, 401, 403, 429 or 503.
    pub status: u16,
    /// `error.code` of a refusal (`quota_exhausted`, `invalid_key`…).
    pub code: Option<String>,
    /// What a person reads.
    pub message: Option<String>,
    /// The customer billed, when known.
    pub customer_id: Option<String>,
    /// Where its usage belongs (a partner in sandbox mode is `sandbox`).
    pub environment: Environment,
    /// Limit of the tightest window.
    pub quota: Option<u64>,
    /// Units left in it.
    pub remaining: Option<u64>,
    /// When it resets.
    pub resets_at: Option<Timestamp>,
    /// `Retry-After` for 429 and 503.
    pub retry_after_secs: Option<u64>,
}

/// Decides from `snapshot` (none yet: 503 `entitlements_unavailable`), counting in `counters`.
pub fn can_access(
    snapshot: Option<&Snapshot>,
    q: &AccessQuery<'_>,
    counters: &mut dyn CounterBackend,
) -> AccessAnswer {
    let credential = match (q.api_key, q.tenant_id) {
        (Some(k), _) if !k.is_empty() => Credential::ConsumerKey(k),
        (_, Some(t)) if !t.is_empty() => Credential::Customer(t),
        _ => Credential::Missing,
    };
    let access = AccessRequest {
        credential,
        feature: q.feature_key,
        client_ip: q.client_ip.and_then(parse_peer),
        cost: q.cost,
        default_environment: q.environment,
    };
    let Some(snapshot) = snapshot else {
        let refusal = Refusal {
            deny: Deny::unavailable(1),
            identity: None,
        };
        return refused(&refusal, q.environment);
    };
    match admit(snapshot, &access, q.now, counters) {
        Ok(a) => AccessAnswer {
            allowed: true,
            status: 200,
            code: None,
            message: None,
            customer_id: Some(a.identity.customer_id),
            environment: a.identity.environment,
            quota: a.allowance.map(|x| x.limit),
            remaining: a.allowance.map(|x| x.remaining),
            resets_at: a.allowance.map(|x| x.reset_at),
            retry_after_secs: None,
        },
        Err(r) => refused(&r, q.environment),
    }
}

fn refused(r: &Refusal, default_environment: Environment) -> AccessAnswer {
    let d = &r.deny;
    AccessAnswer {
        allowed: false,
        status: d.code.status(),
        code: Some(d.code.as_str().to_string()),
        message: Some(d.message.clone()),
        customer_id: r.identity.as_ref().map(|i| i.customer_id.clone()),
        environment: r
            .identity
            .as_ref()
            .map_or(default_environment, |i| i.environment),
        quota: d.allowance.map(|a| a.limit),
        remaining: d.allowance.map(|a| a.remaining),
        resets_at: d.allowance.map(|a| a.reset_at),
        retry_after_secs: d.retry_after_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::MemoryCounters;

    fn snapshot() -> Snapshot {
        Snapshot::from_json(br#"{"customers": {"acme": {"features": {"search": {"quota": 2}}}}}"#)
            .unwrap()
    }

    fn ask<'a>(tenant: &'a str) -> AccessQuery<'a> {
        AccessQuery {
            tenant_id: Some(tenant),
            feature_key: "search",
            environment: Environment::Sandbox,
            now: Timestamp::from_unix_nanos(1_773_576_000_000_000_000),
            cost: Some(1),
            api_key: None,
            client_ip: None,
        }
    }

    #[test]
    fn quota_is_counted_then_refused_with_retry_after() {
        let s = snapshot();
        let mut c = MemoryCounters::default();
        let a = can_access(Some(&s), &ask("acme"), &mut c);
        assert_eq!((a.allowed, a.quota, a.remaining), (true, Some(2), Some(1)));
        can_access(Some(&s), &ask("acme"), &mut c);
        let r = can_access(Some(&s), &ask("acme"), &mut c);
        assert_eq!(
            (r.status, r.code.as_deref()),
            (429, Some("quota_exhausted"))
        );
        assert!(r.retry_after_secs.unwrap() > 0);
    }

    #[test]
    fn no_snapshot_is_503_and_an_unknown_customer_403() {
        let mut c = MemoryCounters::default();
        assert_eq!(can_access(None, &ask("acme"), &mut c).status, 503);
        let s = snapshot();
        let r = can_access(Some(&s), &ask("nobody"), &mut c);
        assert_eq!(
            (r.status, r.code.as_deref()),
            (403, Some("unknown_customer"))
        );
    }
}
