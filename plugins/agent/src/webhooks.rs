//! Webhooks per environment: what triggers a notice (a quota's 80% and 100% once per window,
//! a partner's sandbox toggle, a month's invoice previews closing; dead letters are noticed by
//! the store in their own transaction), and the sender that POSTs each delivery, signed, until
//! a 2xx answers or its attempts run out. Delivered at least once: receivers deduplicate on
//! the notice's `id`, which every attempt repeats.

use crate::app::App;
use crate::notifier::Notifier;
use crate::store::Stores;
use aforo_core::delivery::{backoff_delay_ms, SplitMix64};
use aforo_core::entitlement::{Period, QuotaWindow};
use aforo_core::event::to_hex;
use aforo_core::rating::Rater;
use aforo_core::rating::{Plan, Terms};
use aforo_core::webhook_signature::{hmac_sha256, signature_header};
use aforo_core::{Environment, Timestamp};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Quota shares that send a notice, in percent.
pub const THRESHOLDS: [u64; 2] = [80, 100];

/// Attempts before a delivery is given up: waits of 1 s doubling to an hour, with equal
/// jitter, about 2 to 4 hours in all.
pub const MAX_ATTEMPTS: u32 = 16;

const FIRST_RETRY_MS: u64 = 1_000;
const LONGEST_RETRY_MS: u64 = 3_600_000;

/// The stable id of the notice a mark stands for.
fn notice_id(mark: &str) -> String {
    format!(
        "whevt_{}",
        to_hex(&hmac_sha256(b"aforo-webhook-notice", mark.as_bytes())[..12])
    )
}

/// Records a notice once per `mark` in `env` (false when it was recorded before).
fn emit_once(
    stores: &Stores,
    notifier: &Notifier,
    env: Environment,
    mark: String,
    kind: &str,
    data: Value,
    t: Timestamp,
) -> bool {
    let remembered = format!("{env}:{mark}");
    if notifier.knows(&remembered) {
        return false;
    }
    match stores.emit_webhook(env, Some(&mark), &notice_id(&remembered), kind, data, t) {
        Ok(new) => {
            notifier.learn(remembered);
            if new {
                notifier.wake();
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
        emit_once(
            &app.stores,
            &app.webhooks,
            env,
            mark,
            "quota.threshold_reached",
            data,
            t,
        );
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
/// that stored events in it. Not with the Redis backend: each agent holds only the events it
/// took, so no one agent's preview is the invoice (rate the deployment's events upstream).
pub fn invoices_closed(app: &App, t: Timestamp) {
    if app.usage.redis().is_some() {
        return;
    }
    let Some(plan) = app.catalog.read().ok().and_then(|c| c.plan.clone()) else {
        return;
    };
    close_invoices(
        &app.stores,
        &app.webhooks,
        &plan,
        &app.config.environments,
        t,
    );
}

/// `invoices_closed` over its parts (the clock's `t` decides which month has ended).
fn close_invoices(
    stores: &Stores,
    notifier: &Notifier,
    plan: &Plan,
    envs: &[Environment],
    t: Timestamp,
) {
    let (this_month, _) = QuotaWindow::calendar(Period::Month).current(t);
    let (last_month, _) = QuotaWindow::calendar(Period::Month).current(this_month.plus_nanos(-1));
    for env in envs.iter().copied() {
        let mark = format!("invoices:{}", last_month.unix_nanos());
        let remembered = format!("{env}:{mark}");
        if notifier.knows(&remembered) {
            continue;
        }
        match stores.has_webhook_mark(env, &mark) {
            Ok(true) => {
                notifier.learn(remembered);
                continue;
            }
            Ok(false) => {}
            Err(_) => continue,
        }
        let Ok(events) = stores.events_between(env, last_month, this_month, None) else {
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
        emit_once(
            stores,
            notifier,
            env,
            mark,
            "invoice.preview_closed",
            data,
            t,
        );
    }
}

/// Each production customer's margin this month, rated as its invoice preview would be: an
/// invoice flagged `margin_guard` is noticed once a month (`invoice.margin_flagged`), and with
/// the plan's `margin_action: block` the customer is refused production requests (`margin_guard`)
/// until a later check finds its margin back. Not with the Redis backend (no one agent holds
/// every event). Returns whether the blocked set changed.
pub fn check_margins(app: &App, t: Timestamp) -> bool {
    if app.usage.redis().is_some() || !app.config.serves(Environment::Production) {
        return false;
    }
    let env = Environment::Production;
    let (plan, terms) = {
        let Ok(catalog) = app.catalog.read() else {
            return false;
        };
        let Some(plan) = catalog.plan.clone() else {
            return false;
        };
        let terms: Vec<Terms> = catalog
            .billing
            .iter()
            .filter_map(|(cid, b)| {
                Terms::from_billing(&format!("customers.{cid}.billing"), cid, env, b).ok()
            })
            .collect();
        (plan, terms)
    };
    let floors =
        plan.min_margin_percent.is_some() || terms.iter().any(|t| t.min_margin_percent.is_some());
    if !floors {
        return false;
    }
    let (start, end) = QuotaWindow::calendar(Period::Month).current(t);
    let Ok(events) = app.stores.events_between(env, start, end, None) else {
        return false;
    };
    let mut rater = Rater::new(plan.clone());
    rater.set_period(start, end);
    for tm in terms {
        rater.subscribe(tm);
    }
    for e in &events {
        rater.add(e);
    }
    let Ok(invoices) = rater.invoices() else {
        return false;
    };
    let mut blocked = HashSet::new();
    for inv in invoices
        .iter()
        .filter(|i| i.flags.iter().any(|f| f.code == "margin_guard"))
    {
        if plan.margin_blocks {
            blocked.insert(inv.customer_id.clone());
        }
        let mark = format!("margin:{}:{}", inv.customer_id, start.unix_nanos());
        let data = json!({
            "customer_id": inv.customer_id,
            "period_start": start.to_rfc3339(),
            "margin_percent": inv.margin_percent,
            "cost": inv.cost,
            "flags": inv.flags,
            "blocked": plan.margin_blocks,
        });
        emit_once(
            &app.stores,
            &app.webhooks,
            env,
            mark,
            "invoice.margin_flagged",
            data,
            t,
        );
    }
    let Ok(mut current) = app.margin_blocked.write() else {
        return false;
    };
    if *current == blocked {
        return false;
    }
    *current = blocked;
    true
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
        // A redirect is an answer (not 2xx): never followed to an address nobody configured.
        .max_redirects(0)
        .build()
        .new_agent();
    std::thread::Builder::new()
        .name("aforo-webhooks".into())
        .spawn(move || {
            let mut rng = SplitMix64::new(app.now().unix_nanos() as u64);
            let mut next_close_check = Timestamp::from_unix_nanos(0);
            let margin_every = i64::try_from(app.config.margin_check_interval_secs)
                .unwrap_or(60)
                .saturating_mul(1_000_000_000);
            let mut next_margin_check = Timestamp::from_unix_nanos(0);
            loop {
                let t = app.now();
                if t >= next_close_check {
                    invoices_closed(&app, t);
                    next_close_check = t.plus_nanos(60 * 1_000_000_000);
                }
                if t >= next_margin_check {
                    if check_margins(&app, t) {
                        if let Err(e) = app.refresh_policy_snapshot() {
                            eprintln!(
                                "aforo-agent: the margin guard could not reach the decisions: {e}"
                            );
                        }
                    }
                    next_margin_check = t.plus_nanos(margin_every);
                }
                if deliver_due(&app, &agent, &mut rng) == 0 {
                    app.webhooks.wait(Duration::from_millis(500));
                }
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the webhook sender: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{test_dir, test_event as event};
    use std::sync::Arc;

    fn notices(stores: &Stores, env: Environment) -> Vec<Value> {
        stores
            .read(env, |c| {
                let mut st = c.prepare("SELECT body FROM webhook_deliveries ORDER BY seq")?;
                let rows = st.query_map([], |r| r.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<Vec<String>>>()
            })
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }

    /// A month's previews are noticed once the month has ended, once per environment, each
    /// with its own environment's invoices, and not again after a restart (a new notifier).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_months_invoices_are_noticed_once_in_each_environment() {
        let dir = test_dir("invoices-closed");
        let envs = [Environment::Sandbox, Environment::Production];
        let stores = Stores::open(&dir, &envs, false, Arc::new(|_, _| {})).unwrap();
        let nov = aforo_core::time::parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
        for env in envs {
            stores
                .add_endpoint(
                    env,
                    "we_1",
                    "http://127.0.0.1:9/h",
                    "whsec_x",
                    &["invoice.preview_closed".to_string()],
                    nov,
                )
                .unwrap();
        }
        stores
            .insert(
                Environment::Sandbox,
                vec![event("s1", "acme", Environment::Sandbox, nov)],
                nov,
            )
            .await
            .unwrap();
        stores
            .insert(
                Environment::Production,
                vec![
                    event("p1", "acme", Environment::Production, nov),
                    event("p2", "globex", Environment::Production, nov),
                ],
                nov,
            )
            .await
            .unwrap();
        let plan = Plan::from_json(br#"{"currency": "USD", "charges": [{"id": "calls", "metric": "api_calls", "model": "unit", "unit_amount": "0.50"}]}"#).unwrap();
        let notifier = Notifier::default();
        // November is not over on the 30th.
        let nov30 = aforo_core::time::parse_rfc3339("2026-11-30T23:59:59Z").unwrap();
        close_invoices(&stores, &notifier, &plan, &envs, nov30);
        assert!(notices(&stores, Environment::Production).is_empty());
        let dec1 = aforo_core::time::parse_rfc3339("2026-12-01T00:00:01Z").unwrap();
        close_invoices(&stores, &notifier, &plan, &envs, dec1);
        close_invoices(
            &stores,
            &Notifier::default(),
            &plan,
            &envs,
            dec1.plus_millis(60_000),
        );
        let live = notices(&stores, Environment::Production);
        let sandbox = notices(&stores, Environment::Sandbox);
        assert_eq!((live.len(), sandbox.len()), (1, 1), "{live:?} {sandbox:?}");
        assert_eq!(live[0]["type"], "invoice.preview_closed");
        assert_eq!(live[0]["data"]["period_start"], "2026-11-01T00:00:00Z");
        assert_eq!(live[0]["data"]["period_end"], "2026-12-01T00:00:00Z");
        let totals: Vec<(String, String)> = live[0]["data"]["invoices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["customer_id"].as_str().unwrap().to_string(),
                    i["total"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            totals,
            [
                ("acme".to_string(), "1.00".to_string()),
                ("globex".to_string(), "1.00".to_string())
            ]
        );
        assert_eq!(sandbox[0]["data"]["invoices"].as_array().unwrap().len(), 1);
        assert_ne!(live[0]["id"], sandbox[0]["id"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
