//! Webhooks per environment: what triggers a notice (a quota's 80% and 100% once per window,
//! a partner's sandbox toggle, a month's invoice previews closing; dead letters are noticed by
//! the store in their own transaction), and the sender that POSTs each delivery, signed, until
//! a 2xx answers or its attempts run out. Delivered at least once: receivers deduplicate on
//! the notice's `id`, which every attempt repeats.

use crate::app::App;
use aforo_core::delivery::{backoff_delay_ms, SplitMix64};
use aforo_core::entitlement::{Period, QuotaWindow};
use aforo_core::event::to_hex;
use aforo_core::rating::Rater;
use aforo_core::webhook_signature::{hmac_sha256, signature_header};
use aforo_core::{Environment, Timestamp};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Quota shares that send a notice, in percent.
pub const THRESHOLDS: [u64; 2] = [80, 100];

/// Attempts before a delivery is given up (about four hours of backoff in all).
pub const MAX_ATTEMPTS: u32 = 12;

const FIRST_RETRY_MS: u64 = 1_000;
const LONGEST_RETRY_MS: u64 = 3_600_000;

/// The stable id of the notice a mark stands for.
fn notice_id(mark: &str) -> String {
    format!(
        "whevt_{}",
        to_hex(&hmac_sha256(b"aforo-webhook-notice", mark.as_bytes())[..12])
    )
}

/// Records a notice once per `mark` (false when it was recorded before).
fn emit_once(
    app: &App,
    env: Environment,
    mark: String,
    kind: &str,
    data: Value,
    t: Timestamp,
) -> bool {
    if app.webhooks.knows(&mark) {
        return false;
    }
    match app
        .stores
        .emit_webhook(env, Some(&mark), &notice_id(&mark), kind, data, t)
    {
        Ok(new) => {
            app.webhooks.learn(mark);
            if new {
                app.webhooks.wake();
            }
            new
        }
        Err(e) => {
            // Not marked: the next event past the threshold tries again.
            eprintln!("aforo-agent: the {kind} webhook of {env} could not be recorded: {e}");
            false
        }
    }
}

/// After events are stored in `env`: a notice for each quota of theirs whose usage reached 80%
/// or 100% in its current window, once per window.
pub fn after_store(app: &App, env: Environment, stored: &BTreeSet<(String, String)>, t: Timestamp) {
    let pairs = stored.iter().map(|(c, m)| (c.as_str(), m.as_str()));
    let mut crossed = Vec::new();
    {
        let Ok(catalog) = app.catalog.read() else {
            return;
        };
        for (customer, metric) in pairs {
            for f in catalog
                .features_for(customer, metric)
                .filter(|f| f.has_quota)
            {
                let Some(quota) = catalog.quota(customer, &f.feature) else {
                    continue;
                };
                let (start, end) = f.window.current(t);
                let used = app.usage.used(env, customer, &f.feature, start);
                for pct in THRESHOLDS {
                    if used.saturating_mul(100) >= quota.saturating_mul(pct) {
                        crossed.push((
                            customer.to_string(),
                            f.feature.clone(),
                            quota,
                            used,
                            start,
                            end,
                            pct,
                        ));
                    }
                }
            }
        }
    }
    for (customer, feature, quota, used, start, end, pct) in crossed {
        let mark = format!("quota:{customer}:{feature}:{}:{pct}", start.unix_nanos());
        let data = json!({
            "customer_id": customer,
            "feature": feature,
            "threshold_percent": pct,
            "quota": quota,
            "used": used,
            "window_start": start.to_rfc3339(),
            "window_end": end.to_rfc3339(),
        });
        emit_once(app, env, mark, "quota.threshold_reached", data, t);
    }
}

/// A partner's sandbox mode changed: both environments' endpoints hear of it (it moves the
/// partner's usage from one to the other).
pub fn sandbox_toggled(app: &App, customer: &str, sandbox_mode: bool, t: Timestamp) {
    let id = format!(
        "whevt_{}",
        to_hex(
            &hmac_sha256(
                b"aforo-webhook-toggle",
                format!("{customer}:{}", t.unix_nanos()).as_bytes()
            )[..12]
        )
    );
    for env in app.config.environments.iter().copied() {
        let data = json!({"customer_id": customer, "sandbox_mode": sandbox_mode});
        if let Err(e) =
            app.stores
                .emit_webhook(env, None, &id, "partner.sandbox_mode_changed", data, t)
        {
            eprintln!(
                "aforo-agent: the sandbox-toggle webhook of {env} could not be recorded: {e}"
            );
        }
    }
    app.webhooks.wake();
}

/// Once a calendar month (UTC) has ended: its invoice previews, once, for every environment
/// that stored events in it.
pub fn invoices_closed(app: &App, t: Timestamp) {
    let (this_month, _) = QuotaWindow::calendar(Period::Month).current(t);
    let (last_month, _) = QuotaWindow::calendar(Period::Month).current(this_month.plus_nanos(-1));
    let Some(plan) = app.catalog.read().ok().and_then(|c| c.plan.clone()) else {
        return;
    };
    for env in app.config.environments.iter().copied() {
        let mark = format!("invoices:{}", last_month.unix_nanos());
        if app.webhooks.knows(&mark) {
            continue;
        }
        match app.stores.has_webhook_mark(env, &mark) {
            Ok(true) => {
                app.webhooks.learn(mark);
                continue;
            }
            Ok(false) => {}
            Err(_) => continue,
        }
        let Ok(events) = app.stores.events_between(env, last_month, this_month, None) else {
            continue;
        };
        if events.is_empty() {
            continue;
        }
        let mut rater = Rater::new(plan.clone());
        for e in &events {
            rater.add(e);
        }
        let Ok(invoices) = rater.invoices() else {
            continue;
        };
        let data = json!({
            "period_start": last_month.to_rfc3339(),
            "period_end": this_month.to_rfc3339(),
            "invoices": invoices,
        });
        emit_once(app, env, mark, "invoice.preview_closed", data, t);
    }
}

/// One attempt at a delivery.
fn send(
    agent: &ureq::Agent,
    d: &crate::store::DueDelivery,
    t: Timestamp,
) -> Result<u16, (Option<u16>, String)> {
    let sig = signature_header(&d.secret, t.unix_nanos() / 1_000_000_000, d.body.as_bytes());
    match agent
        .post(&d.url)
        .header("content-type", "application/json")
        .header("aforo-signature", &sig)
        .header("aforo-webhook-id", &d.event_id)
        .send(d.body.as_bytes())
    {
        Ok(r) => {
            let status = r.status().as_u16();
            if (200..300).contains(&status) {
                Ok(status)
            } else {
                Err((Some(status), format!("answered {status}")))
            }
        }
        Err(e) => Err((None, e.to_string())),
    }
}

/// Sends what is due in every environment; how many attempts were made.
pub fn deliver_due(app: &App, agent: &ureq::Agent, rng: &mut SplitMix64) -> usize {
    let mut made = 0;
    for env in app.config.environments.iter().copied() {
        let t = app.now();
        let Ok(due) = app.stores.due_deliveries(env, t, 32) else {
            continue;
        };
        for d in due {
            let attempt = match send(agent, &d, app.now()) {
                Ok(status) => crate::store::Attempt::Delivered(status),
                Err((status, error)) => {
                    let n = d.attempts + 1;
                    let next_at = (n < MAX_ATTEMPTS).then(|| {
                        let ms = backoff_delay_ms(n, FIRST_RETRY_MS, LONGEST_RETRY_MS, rng);
                        app.now().plus_nanos(
                            i64::try_from(ms).unwrap_or(i64::MAX / 2_000_000) * 1_000_000,
                        )
                    });
                    crate::store::Attempt::Failed {
                        status,
                        error,
                        next_at,
                    }
                }
            };
            if let Err(e) = app.stores.record_attempt(env, d.seq, &attempt, app.now()) {
                eprintln!("aforo-agent: a webhook attempt of {env} could not be recorded (it will be sent again): {e}");
            }
            made += 1;
        }
    }
    made
}

/// Starts the sender (and the month-end check) on a thread of its own.
pub fn start(app: Arc<App>) -> Result<(), String> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    std::thread::Builder::new()
        .name("aforo-webhooks".into())
        .spawn(move || {
            let mut rng = SplitMix64::new(app.now().unix_nanos() as u64);
            let mut next_close_check = Timestamp::from_unix_nanos(0);
            loop {
                let t = app.now();
                if t >= next_close_check {
                    invoices_closed(&app, t);
                    next_close_check = t.plus_nanos(60 * 1_000_000_000);
                }
                if deliver_due(&app, &agent, &mut rng) == 0 {
                    app.webhooks.wait(Duration::from_millis(500));
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the webhook sender: {e}"))
}
