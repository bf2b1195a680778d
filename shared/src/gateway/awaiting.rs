//! Requests served before the first snapshot arrived. Under `failure_mode: open` a gateway that
//! has never synced serves them, but a consumer key cannot be resolved to a customer yet. Rather
//! than lose that usage, the finished exchange waits (bounded in count and bytes) with the key's
//! hash, and is metered, with its original timestamp, as soon as a snapshot is installed.

use super::exchange::Exchange;
use super::Gateway;
use crate::environment::Environment;
use crate::host::{Host, LogLevel};

impl Gateway {
    /// The environment a customer's usage belongs to: a partner in sandbox mode is billed in
    /// the sandbox, as `admit` decides it.
    pub(crate) fn environment_of(&self, customer_id: &str) -> Environment {
        let sandbox = self
            .snapshot
            .snapshot
            .as_ref()
            .and_then(|s| s.customers.get(customer_id))
            .is_some_and(|c| c.sandbox_mode);
        if sandbox {
            Environment::Sandbox
        } else {
            self.config.environment()
        }
    }

    /// Keeps a finished, billable exchange whose customer is not known yet; resolves it at once
    /// when a snapshot arrived while it was in flight.
    pub(crate) fn await_identity(&mut self, host: &mut dyn Host, mut ex: Exchange) {
        if self.snapshot.snapshot.is_some() {
            if !self.resolve_one(host, ex) {
                self.log_unknown(host, 1);
            }
            return;
        }
        // Every body it keeps counts (the response's, the request's), against max_buffer_bytes.
        let bytes = ex.held_bytes();
        if self.awaiting.len() < self.config.delivery.max_buffer_events
            && self.awaiting_bytes + bytes <= self.config.delivery.max_buffer_bytes
        {
            self.awaiting_bytes += bytes;
            self.awaiting.push(ex);
            return;
        }
        self.unattributed += 1;
        if self.unattributed.is_power_of_two() {
            host.log(
                LogLevel::Error,
                &format!(
                    "aforo: {} requests served before the first snapshot could not be kept for metering (max_buffer_events={}, max_buffer_bytes={}); is entitlements_url reachable?",
                    self.unattributed, self.config.delivery.max_buffer_events, self.config.delivery.max_buffer_bytes
                ),
            );
        }
    }

    /// Meters the waiting exchanges once a snapshot is installed.
    pub(crate) fn resolve_awaiting(&mut self, host: &mut dyn Host) {
        if self.awaiting.is_empty() || self.snapshot.snapshot.is_none() {
            return;
        }
        let waiting = std::mem::take(&mut self.awaiting);
        self.awaiting_bytes = 0;
        let mut unknown = 0u64;
        for ex in waiting {
            if !self.resolve_one(host, ex) {
                unknown += 1;
            }
        }
        self.log_unknown(host, unknown);
    }

    /// Identifies one exchange by its key's hash and meters it; `false` when the snapshot does
    /// not accept the key (unknown, revoked, expired at the time of the request).
    fn resolve_one(&mut self, host: &mut dyn Host, mut ex: Exchange) -> bool {
        let identity = match (&ex.pending_key, self.snapshot.snapshot.as_ref()) {
            (Some(hash), Some(s)) => s
                .keys
                .authenticate_hash(hash, ex.started_at)
                .ok()
                .map(|k| (k.customer_id.clone(), k.key_id.clone())),
            _ => None,
        };
        let Some((customer, key_id)) = identity else {
            return false;
        };
        let env = self.environment_of(&customer);
        ex.identify(customer, env, Some(key_id));
        self.finish(host, ex);
        true
    }

    fn log_unknown(&self, host: &mut dyn Host, unknown: u64) {
        if unknown > 0 {
            host.log(
                LogLevel::Warn,
                &format!("aforo: {unknown} requests served before the first snapshot carried keys the snapshot does not accept; not metered"),
            );
        }
    }
}
