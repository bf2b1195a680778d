//! Background work on each tick: flush due batches to the ingest, refresh the snapshot, and
//! route call answers back to the pipeline or the snapshot.

use super::{CallKind, Gateway};
use crate::config::{EntitlementSource, Target};
use crate::delivery::{CallOutcome, Report};
use crate::entitlement::{HostCounters, Snapshot};
use crate::environment::Environment;
use crate::host::{CallResponse, Host, LogLevel, Metric, OutboundRequest};
use crate::time::Timestamp;

const USER_AGENT: &str = concat!("aforo-gateway/", env!("CARGO_PKG_VERSION"));

pub(crate) fn base_headers(t: &Target, method: &str, path: String) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path),
        (":authority".to_string(), t.authority.clone()),
        ("user-agent".to_string(), USER_AGENT.to_string()),
    ];
    if t.tls {
        h.push((":scheme".to_string(), "https".to_string()));
    }
    h
}

impl Gateway {
    /// Periodic work: flush due batches, expire lost calls, refresh a stale-ish snapshot.
    pub fn on_tick(&mut self, host: &mut dyn Host) {
        let now = host.now();
        self.load_snapshot_on_tick(host);
        self.requests_period_before = std::mem::take(&mut self.requests_since_tick);
        for env in Environment::ALL {
            if let Some(report) = self.delivery[env.index()].expire_in_flight(now) {
                self.calls.retain(|_, k| *k != CallKind::Flush(env));
                host.log(
                    LogLevel::Warn,
                    &format!("aforo: {env} ingest call got no answer in time; will retry"),
                );
                self.after_report(host, env, report);
            }
            self.flush(host, env, now, false);
        }
        self.maybe_sync(host, now);
        self.give_back_leases(host, now, false);
        self.slices.merge_all(&mut HostCounters(host));
        if let (Some(received), Some(_)) = (self.snapshot.received_at, self.snapshot.stale_after_ms)
        {
            host.metric_set(
                Metric::SnapshotAgeSeconds,
                now.millis_since(received).max(0) as u64 / 1000,
            );
        }
        self.publish_metrics(host);
    }

    /// Sends whatever is buffered now, regardless of deadlines (VM shutdown, tests).
    pub fn flush_now(&mut self, host: &mut dyn Host) {
        self.resolve_awaiting(host);
        self.slices.merge_all(&mut HostCounters(host));
        let now = host.now();
        self.give_back_leases(host, now, true);
        for env in Environment::ALL {
            self.flush(host, env, now, true);
        }
        self.publish_metrics(host);
    }

    fn flush(&mut self, host: &mut dyn Host, env: Environment, now: Timestamp, force: bool) {
        let Some(key) = self.config.key_for(env) else {
            return;
        };
        let Some(batch) = self.delivery[env.index()].poll(now, force) else {
            return;
        };
        let target = &self.config.ingest[env.index()];
        let mut headers = base_headers(target, "POST", target.path.clone());
        headers.push((
            "content-type".to_string(),
            self.config.delivery.format.content_type().to_string(),
        ));
        headers.push((
            "authorization".to_string(),
            format!("Bearer {}", key.expose_secret()),
        ));
        let request = OutboundRequest {
            upstream: target.upstream.clone(),
            headers,
            body: batch.body,
            timeout_ms: self.config.delivery.request_timeout_ms,
        };
        if self.config.debug {
            host.log(
                LogLevel::Info,
                &format!(
                    "aforo debug: sending {} {env} events to {}{} (attempt {})",
                    batch.events, target.upstream, target.path, batch.attempt
                ),
            );
        }
        match host.http_call(&request) {
            Ok(token) => {
                self.calls.insert(token, CallKind::Flush(env));
            }
            Err(why) => {
                host.log(
                    LogLevel::Error,
                    &format!("aforo: cannot call the {env} ingest upstream {:?}: {why} (check the cluster name or ingest_url)", target.upstream),
                );
                let report = self.delivery[env.index()].on_response(CallOutcome::Failed, now);
                self.after_report(host, env, report);
            }
        }
    }

    fn maybe_sync(&mut self, host: &mut dyn Host, now: Timestamp) {
        let EntitlementSource::Sync(target) = &self.config.entitlements else {
            return;
        };
        if self.snapshot.sync_in_flight {
            return;
        }
        let due = match self.snapshot.last_sync_attempt {
            None => true,
            Some(t) => now.millis_since(t) >= self.sync_interval_now_ms() as i64,
        };
        if !due {
            return;
        }
        self.snapshot.last_sync_attempt = Some(now);
        let sep = if target.path.contains('?') { '&' } else { '?' };
        let path = format!(
            "{}{sep}environment={}&source={}",
            target.path,
            self.config.environment(),
            self.config.source
        );
        let mut headers = base_headers(target, "GET", path);
        headers.push((
            "authorization".to_string(),
            format!("Bearer {}", self.config.api_key.expose_secret()),
        ));
        // The optional snapshot fields this filter reads (an agent adds them only when asked,
        // since filters before them refuse fields they do not know).
        headers.push((
            "aforo-snapshot-fields".to_string(),
            "product_id".to_string(),
        ));
        let request = OutboundRequest {
            upstream: target.upstream.clone(),
            headers,
            body: Vec::new(),
            timeout_ms: self.config.delivery.request_timeout_ms,
        };
        match host.http_call(&request) {
            Ok(token) => {
                self.calls.insert(token, CallKind::Sync);
                self.snapshot.sync_in_flight = true;
            }
            Err(why) => {
                self.sync_failed(host, &format!("cannot call {:?}: {why}", target.upstream))
            }
        }
    }

    /// Routes the answer of an outbound call.
    pub fn on_call_response(&mut self, host: &mut dyn Host, token: u32, response: CallResponse) {
        let now = host.now();
        let Some(kind) = self.calls.remove(&token) else {
            return;
        };
        match kind {
            CallKind::Flush(env) => {
                let outcome = match response.status {
                    None => CallOutcome::Failed,
                    Some(status) => CallOutcome::Answered {
                        status,
                        retry_after_secs: response
                            .header("retry-after")
                            .and_then(|v| v.trim().parse().ok()),
                        body: response.body,
                    },
                };
                if let CallOutcome::Answered { status, .. } = &outcome {
                    if !(200..300).contains(status) {
                        host.log(
                            LogLevel::Warn,
                            &format!("aforo: {env} ingest answered {status}"),
                        );
                    }
                }
                let report = self.delivery[env.index()].on_response(outcome, now);
                self.after_report(host, env, report);
                // Keep the pipe moving: a full buffer need not wait for the next tick.
                self.flush(host, env, now, false);
                self.publish_metrics(host);
            }
            CallKind::LeaseBack => {}
            CallKind::Sync => match response.status {
                // Still in flight until read (`snapshot_load`).
                Some(200) => self.start_snapshot_load(host, response.body, now),
                Some(s) => {
                    self.snapshot.sync_in_flight = false;
                    self.sync_failed(host, &format!("answered {s}"))
                }
                None => {
                    self.snapshot.sync_in_flight = false;
                    self.sync_failed(host, "no answer")
                }
            },
        }
    }

    pub(super) fn accept_snapshot(&mut self, host: &mut dyn Host, s: Snapshot, now: Timestamp) {
        if let Some(e) = s.environment {
            if e != self.config.environment() {
                self.sync_failed(
                    host,
                    &format!(
                        "the snapshot is for {e} but this gateway's key is {}",
                        self.config.environment()
                    ),
                );
                return;
            }
        }
        if self.snapshot.snapshot.is_none() || self.snapshot.consecutive_failures > 0 {
            host.log(
                LogLevel::Info,
                &format!(
                    "aforo: entitlement snapshot v{} installed ({} customers, {} keys)",
                    s.version,
                    s.customers.len(),
                    s.keys.len()
                ),
            );
        }
        host.metric_add(Metric::SnapshotSyncs, 1);
        self.install_snapshot(s, now);
        self.resolve_awaiting(host);
    }

    pub(super) fn sync_failed(&mut self, host: &mut dyn Host, why: &str) {
        self.snapshot.consecutive_failures += 1;
        host.metric_add(Metric::SnapshotSyncFailures, 1);
        if self.snapshot.consecutive_failures.is_power_of_two() {
            host.log(
                LogLevel::Warn,
                &format!("aforo: entitlement sync failed ({why}); {} failures in a row; failure_mode={:?} applies once the snapshot is older than {} ms",
                    self.snapshot.consecutive_failures, self.config.failure_mode, self.config.max_snapshot_age_ms),
            );
        }
    }

    fn after_report(&mut self, host: &mut dyn Host, env: Environment, report: Report) {
        if !report.rejected.is_empty() {
            let sample: Vec<String> = report
                .rejected
                .iter()
                .take(5)
                .map(|(id, code)| format!("{id}:{code}"))
                .collect();
            host.log(
                LogLevel::Warn,
                &format!(
                    "aforo: {env} ingest rejected {} events ({})",
                    report.rejected.len(),
                    sample.join(", ")
                ),
            );
        }
        if !report.dead_lettered.is_empty() {
            host.log(
                LogLevel::Error,
                &format!(
                    "aforo: {} {env} events dead-lettered ({}); they are kept for replay",
                    report.dead_lettered.len(),
                    report.dead_lettered[0].1
                ),
            );
        }
        if report.reoffered > 0 {
            host.log(
                LogLevel::Info,
                &format!(
                    "aforo: {env} ingest recovered; {} dead letters re-offered",
                    report.reoffered
                ),
            );
        }
        self.log_spilled(host, report.spilled);
    }
}
