//! Requests served before the first snapshot arrived. Under `failure_mode: open` a gateway that
//! has never synced serves them, but a consumer key cannot be resolved to a customer yet. Rather
//! than lose that usage, the finished exchange waits (bounded) with the key's hash, and is
//! metered, with its original timestamp, as soon as the first snapshot is installed.

use super::exchange::Exchange;
use super::Gateway;
use crate::host::{Host, LogLevel};

impl Gateway {
    /// Keeps a finished, billable exchange whose customer is not known yet.
    pub(crate) fn await_identity(&mut self, host: &mut dyn Host, ex: Exchange) {
        if self.awaiting.len() < self.config.delivery.max_buffer_events {
            self.awaiting.push(ex);
            return;
        }
        self.unattributed += 1;
        if self.unattributed.is_power_of_two() {
            host.log(
                LogLevel::Error,
                &format!(
                    "aforo: {} requests served before the first snapshot could not be kept for metering (max_buffer_events={} are waiting); is entitlements_url reachable?",
                    self.unattributed, self.config.delivery.max_buffer_events
                ),
            );
        }
    }

    /// Meters the waiting exchanges now that a snapshot is installed; keys it does not know
    /// (or revoked, expired) are logged: that usage cannot be attributed.
    pub(crate) fn resolve_awaiting(&mut self, host: &mut dyn Host) {
        if self.awaiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.awaiting);
        let env = self.config.environment();
        let mut unknown = 0u64;
        for mut ex in waiting {
            let identity = match (&ex.pending_key, self.snapshot.snapshot.as_ref()) {
                (Some(hash), Some(s)) => s
                    .keys
                    .authenticate_hash(hash, ex.started_at)
                    .ok()
                    .map(|k| (k.customer_id.clone(), k.key_id.clone())),
                _ => None,
            };
            match identity {
                Some((customer, key_id)) => {
                    ex.identify(customer, env, Some(key_id));
                    self.finish(host, ex);
                }
                None => unknown += 1,
            }
        }
        if unknown > 0 {
            host.log(
                LogLevel::Warn,
                &format!("aforo: {unknown} requests served before the first snapshot carried keys the snapshot does not accept; not metered"),
            );
        }
    }
}
