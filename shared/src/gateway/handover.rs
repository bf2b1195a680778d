//! An engine leaving its host for another one (the native Envoy module hands the engines of a
//! replaced configuration to the next): what it still holds, and how it leaves and ends without
//! dropping an event silently.

use super::Gateway;
use crate::entitlement::HostCounters;
use crate::host::{Host, LogLevel, Metric};

impl Gateway {
    /// Whether the engine still holds work another host must finish: events to deliver
    /// (buffered, waiting for a retry, in flight), exchanges waiting for their first snapshot,
    /// or quota units held in slices.
    pub fn holds_work(&self) -> bool {
        self.counters().buffered > 0 || !self.awaiting.is_empty() || self.slices.unmerged() > 0
    }

    /// Leaves `host`: held quota units are merged into its shared data, dead letters that a
    /// later attempt may deliver go back into the buffer (the next host sends them), and the
    /// engine's gauges are withdrawn from `host`'s metrics (the next host reports them whole).
    pub fn leave(&mut self, host: &mut dyn Host) {
        self.slices.merge_all(&mut HostCounters(host));
        let now = host.now();
        for d in &mut self.delivery {
            d.replay_dead_letters(usize::MAX, now);
        }
        self.publish_metrics(host);
        let r = self.reported;
        for (m, level) in [
            (Metric::EventsBuffered, r.buffered),
            (Metric::EventsDeadLettered, r.dead_lettered),
        ] {
            if level > 0 {
                host.metric_add(m, -(level as i64));
            }
        }
        self.reported.buffered = 0;
        self.reported.dead_lettered = 0;
    }

    /// Ends an engine that holds no more work: the dead letters still in memory are written to
    /// the log whole (as spilled ones are), so none goes without a trace.
    pub fn end(mut self, host: &mut dyn Host) {
        for i in 0..self.delivery.len() {
            let letters = self.delivery[i].take_dead_letters();
            for d in letters {
                host.log(
                    LogLevel::Error,
                    &format!(
                        "aforo dead letter of a replaced configuration: id={} reason={} event={}",
                        d.id,
                        d.reason,
                        String::from_utf8_lossy(&d.bytes)
                    ),
                );
            }
        }
        self.publish_metrics(host);
        for (m, level) in [
            (Metric::EventsBuffered, self.reported.buffered),
            (Metric::EventsDeadLettered, self.reported.dead_lettered),
        ] {
            if level > 0 {
                host.metric_add(m, -(level as i64));
            }
        }
    }
}
