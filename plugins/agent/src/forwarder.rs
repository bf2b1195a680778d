//! Forwarding stored events upstream (Aforo ingest v1 or CloudEvents): one thread per
//! environment, batches through the core's delivery machine (retries, backoff, 429
//! `Retry-After`, per-event outcomes), and the durable flags in the store so a restart resends
//! exactly what was not acknowledged (the upstream deduplicates by id).

use crate::app::App;
use crate::config::AgentConfig;
use crate::store::{DeadLetter, DeadLetterOrigin};
use aforo_core::delivery::{CallOutcome, Delivery, DeliveryConfig};
use aforo_core::Environment;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Starts a forwarder per served environment.
pub fn start(app: Arc<App>, wake: Arc<(Mutex<bool>, Condvar)>) {
    let Some(upstream) = app.config.upstream.clone() else {
        return;
    };
    for env in app.config.environments.clone() {
        let Some(key) = upstream.keys[env.index()].clone() else {
            continue;
        };
        let app = app.clone();
        let wake = wake.clone();
        let up = upstream.clone();
        let _ = std::thread::Builder::new()
            .name(format!("aforo-forward-{env}"))
            .spawn(move || run(app, env, up, key, wake));
    }
}

fn delivery_config(c: &AgentConfig, format: aforo_core::event::IngestFormat) -> DeliveryConfig {
    DeliveryConfig {
        batch_size: c.batch_size,
        flush_interval_ms: c.flush_interval_ms,
        max_buffer_events: (c.batch_size * 20).max(1_000),
        max_buffer_bytes: 64 << 20,
        max_dead_letters: 100_000,
        initial_backoff_ms: 200,
        max_backoff_ms: 30_000,
        max_retry_time_ms: c.max_retry_time_ms,
        request_timeout_ms: 10_000,
        format,
    }
}

fn run(
    app: Arc<App>,
    env: Environment,
    up: crate::config::Upstream,
    key: aforo_core::environment::ApiKey,
    wake: Arc<(Mutex<bool>, Condvar)>,
) {
    let cfg = delivery_config(&app.config, up.format);
    let room = cfg.max_buffer_events;
    let mut d = Delivery::new(cfg, std::process::id() as u64);
    let url = format!(
        "{}://{}{}",
        if up.endpoint.tls { "https" } else { "http" },
        up.endpoint.authority(),
        up.endpoint.path_with("/v1/events")
    );
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut last_seq = 0i64;
    loop {
        let t = app.now();
        // Refill from the store while there is room.
        let held = d.counters().buffered as usize;
        if held < room {
            match app.stores.pending(env, last_seq, room - held) {
                Ok(rows) => {
                    for (seq, id, body) in rows {
                        last_seq = last_seq.max(seq);
                        d.enqueue(id, body.into_bytes(), t);
                    }
                }
                Err(e) => eprintln!("aforo-agent: forwarder {env}: {e}"),
            }
        }
        if let Some(batch) = d.poll(t, false) {
            let outcome = match agent
                .post(&url)
                .header("authorization", &format!("Bearer {}", key.expose_secret()))
                .header("content-type", up.format.content_type())
                .send(&batch.body[..])
            {
                Ok(mut r) => {
                    let status = r.status().as_u16();
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .and_then(|h| h.to_str().ok())
                        .and_then(|s| s.trim().parse().ok());
                    let body = r.body_mut().read_to_vec().unwrap_or_default();
                    CallOutcome::Answered {
                        status,
                        retry_after_secs: retry,
                        body,
                    }
                }
                Err(_) => CallOutcome::Failed,
            };
            let report = d.on_response(outcome, app.now());
            if report.retry_in_ms.is_none() {
                // Settled: everything not rejected or dead-lettered was delivered.
                let bad: Vec<&String> = report
                    .rejected
                    .iter()
                    .map(|(id, _)| id)
                    .chain(report.dead_lettered.iter().map(|(id, _)| id))
                    .collect();
                let delivered: Vec<String> = batch
                    .ids
                    .iter()
                    .filter(|id| !bad.contains(id))
                    .cloned()
                    .collect();
                if let Err(e) = app.stores.mark(env, &delivered, 1) {
                    eprintln!("aforo-agent: forwarder {env}: {e}");
                }
                app.metrics.forwarded[env.index()]
                    .fetch_add(delivered.len() as u64, Ordering::Relaxed);
            }
            for dl in d.take_dead_letters() {
                let body = String::from_utf8_lossy(&dl.bytes).into_owned();
                let reason = dl.reason.to_string();
                let kept = app.stores.dead_letter(
                    env,
                    &DeadLetter {
                        event_id: &dl.id,
                        origin: DeadLetterOrigin::Upstream,
                        reason: &reason,
                        detail: "the upstream ingest refused it or did not take it in time",
                        body: &body,
                    },
                    app.now(),
                );
                // Marked done with its dead letter, in one transaction: when it cannot be kept
                // it stays pending and is offered again, never dropped without a trace.
                if let Err(e) = kept {
                    eprintln!(
                        "aforo-agent: the {env} dead letter of {} could not be stored ({e}); the event stays pending",
                        dl.id
                    );
                }
                app.metrics.forward_dead[env.index()].fetch_add(1, Ordering::Relaxed);
            }
            app.metrics.forward_buffered[env.index()]
                .store(d.counters().buffered, Ordering::Relaxed);
            continue;
        }
        app.metrics.forward_buffered[env.index()].store(d.counters().buffered, Ordering::Relaxed);
        // Sleep until the next deadline or until new events are stored.
        let wait = d
            .next_deadline()
            .map(|dl| dl.millis_since(app.now()).clamp(1, 1_000) as u64)
            .unwrap_or(1_000);
        let (lock, cv) = &*wake;
        if let Ok(mut flag) = lock.lock() {
            if !*flag {
                if let Ok((g, _)) = cv.wait_timeout(flag, Duration::from_millis(wait)) {
                    flag = g;
                } else {
                    continue;
                }
            }
            *flag = false;
        }
        // Replayed dead letters are marked pending again with older sequence numbers.
        if app
            .stores
            .pending(env, 0, 1)
            .map(|r| r.first().is_some_and(|(s, _, _)| *s <= last_seq))
            .unwrap_or(false)
            && d.is_idle()
        {
            last_seq = 0;
        }
    }
}
