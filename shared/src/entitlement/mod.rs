//! Entitlements: the snapshot model, calendar windows, the local decision and its HTTP form.

mod admission;
mod counter_contract;
mod counters;
mod decision;
mod features;
mod lease;
mod lease_wire;
mod reply;
mod slices;
mod snapshot;
mod stepped;
mod streamed;
mod window;

pub use admission::{
    add_usage, admit, quota_key, release, AccessRequest, Admission, Identity, Refusal, Reservation,
};
pub use counter_contract::{
    counters_of, leased_for, CounterKey, CounterKind, CounterTarget, CounterValue, DAILY_CREDITS,
    KEY_PREFIX, LEASED_PROPERTY, VALUE_HEADER_BYTES,
};
pub use counters::{
    read as read_counter, stored_count, stored_window_start, update as update_counter,
    CounterBackend, HostCounters, Leased, MemoryCounters, ModifyFn, Update,
};
pub use decision::{
    check_access, check_quota, check_quota_in, check_rate, Allowance, Credential, Deny, DenyCode,
    Grant, ALL_DENY_CODES,
};
pub use features::{FeatureNames, Features};
pub use lease::{
    GiveBack, LeaseGrant, LeasePolicy, NodeLeases, OpenLease, Renewal, StoredLeases, Take,
};
pub use lease_wire::{gateway_node, grant_from_json, grant_to_json, LeaseAsk};
pub use reply::{
    deny_reply, error_body, ratelimit_headers, LocalReply, NumberText, RateLimitHeaders,
};
pub use slices::{Sliced, Slices};
pub use snapshot::{Customer, Entitlement, Snapshot, MAX_UNITS};
pub use stepped::{Progress, SnapshotReader};
pub(crate) use streamed::SnapshotSeed;
pub use window::{Period, QuotaWindow};

use crate::time::Timestamp;

/// What to do when the snapshot is missing or older than the staleness bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureMode {
    /// Allow (and still meter): an outage of the entitlement source never takes the API down.
    Open,
    /// Refuse with 503 `entitlements_unavailable`.
    Closed,
}

/// How fresh a snapshot is, as of now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Within the staleness bound.
    Fresh,
    /// Older than the bound, or never received.
    Stale,
}

/// Whether a snapshot received at `received_at` is still usable at `now`.
pub fn freshness(received_at: Option<Timestamp>, now: Timestamp, max_age_ms: u64) -> Freshness {
    match received_at {
        Some(t) if now.millis_since(t) <= max_age_ms as i64 => Freshness::Fresh,
        _ => Freshness::Stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_bound_is_inclusive() {
        let t = Timestamp::from_unix_secs(1_000);
        assert_eq!(
            freshness(Some(t), t.plus_millis(60_000), 60_000),
            Freshness::Fresh
        );
        assert_eq!(
            freshness(Some(t), t.plus_millis(60_001), 60_000),
            Freshness::Stale
        );
        assert_eq!(freshness(None, t, 60_000), Freshness::Stale);
    }
}
