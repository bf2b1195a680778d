//! Retention on a schedule: stored events older than their environment's retention (sandbox 30
//! days, production two years) are removed at start and then every `retention_interval_secs`,
//! by the agent's clock, so a long-running agent does not keep them forever.

use crate::app::App;
use crate::store::{StoreError, Stores};
use aforo_core::{Environment, Timestamp};
use std::sync::Arc;
use std::time::Duration;

/// When the next sweep is due, by the agent's clock (tests drive it).
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    interval_ns: i64,
    next_due: Timestamp,
}

impl Schedule {
    /// The first sweep is due at `start`, then one every `interval_secs` (at least one second).
    pub fn new(start: Timestamp, interval_secs: u64) -> Self {
        let interval_ns = i64::try_from(interval_secs.max(1))
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000_000);
        Schedule {
            interval_ns,
            next_due: start,
        }
    }

    /// Whether a sweep is due at `now`; when it is, the next one is set an interval later.
    pub fn due(&mut self, now: Timestamp) -> bool {
        if now < self.next_due {
            return false;
        }
        self.next_due = now.plus_nanos(self.interval_ns);
        true
    }
}

/// Removes every served environment's events past its retention; returns how many, per
/// environment index.
pub fn sweep(
    stores: &Stores,
    envs: &[Environment],
    now: Timestamp,
    forwarding: bool,
) -> Result<[usize; 2], StoreError> {
    let mut removed = [0; 2];
    for env in envs {
        removed[env.index()] = stores.purge(*env, now, forwarding)?;
    }
    Ok(removed)
}

/// Sweeps now, then on the schedule, on a thread of its own.
pub fn start(app: Arc<App>) -> Result<(), String> {
    let mut schedule = Schedule::new(app.now(), app.config.retention_interval_secs);
    let mut run = move |app: &App| {
        if !schedule.due(app.now()) {
            return;
        }
        let forwarding = app.config.upstream.is_some();
        match sweep(&app.stores, &Environment::ALL, app.now(), forwarding) {
            Ok(removed) => {
                for env in &Environment::ALL {
                    let n = removed[env.index()];
                    if n > 0 {
                        eprintln!(
                            "aforo-agent: {n} {env} events past the {}-day retention removed",
                            env.retention_days()
                        );
                    }
                }
            }
            Err(e) => {
                eprintln!("aforo-agent: retention sweep failed ({e}); retried at the next one")
            }
        }
    };
    run(&app);
    std::thread::Builder::new()
        .name("aforo-retention".into())
        .spawn(move || loop {
            // Checked every minute at most, so a clock change takes effect soon.
            std::thread::sleep(Duration::from_secs(
                app.config.retention_interval_secs.clamp(1, 60),
            ));
            run(&app);
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the retention thread: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::test_clock::FixedClock;
    use crate::clock::Clock;
    use aforo_core::time::NANOS_PER_DAY;
    use rusqlite::params;

    #[test]
    fn the_schedule_sweeps_events_past_retention_when_due_and_only_then() {
        let dir = crate::store::test_dir("retention");
        let stores = Stores::open(&dir, &Environment::ALL, false, Arc::new(|_, _| {})).unwrap();
        let clock = FixedClock::at(Timestamp::from_unix_secs(1_800_000_000));
        let start = clock.now();
        let ago = |days: i64| start.plus_nanos(-days * NANOS_PER_DAY).unix_nanos();
        for env in Environment::ALL {
            stores
                .read(env, |c| {
                    for (id, ts) in [("d29", ago(29)), ("d31", ago(31)), ("d800", ago(800))] {
                        c.execute(
                            "INSERT INTO events (id, customer_id, metric, quantity, ts, body, received_at) VALUES (?1, 'c', 'm', '1', ?2, '{}', ?2)",
                            params![id, ts],
                        )?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        let mut schedule = Schedule::new(start, 3600);
        assert!(schedule.due(clock.now()), "the first sweep is at start");
        let removed = sweep(&stores, &Environment::ALL, clock.now(), false).unwrap();
        // Sandbox keeps 30 days, production two years.
        assert_eq!(removed, [2, 1]);
        assert_eq!(stores.count(Environment::Sandbox).unwrap(), 1);
        assert_eq!(stores.count(Environment::Production).unwrap(), 2);
        // Not due again before the interval; due after it, when the 29-day-old sandbox event
        // has aged past 30 days too.
        clock.advance_ms(3_599_000);
        assert!(!schedule.due(clock.now()));
        clock.advance_ms(2 * 86_400_000);
        assert!(schedule.due(clock.now()));
        assert_eq!(
            sweep(&stores, &Environment::ALL, clock.now(), false).unwrap(),
            [1, 0]
        );
        assert_eq!(stores.count(Environment::Sandbox).unwrap(), 0);
        // Forwarding to an upstream: an old event not yet forwarded is kept until it is.
        stores
            .read(Environment::Sandbox, |c| {
                c.execute(
                    "INSERT INTO events (id, customer_id, metric, quantity, ts, body, received_at) VALUES ('late', 'c', 'm', '1', ?1, '{}', ?1)",
                    params![ago(45)],
                )
            })
            .unwrap();
        assert_eq!(
            sweep(&stores, &Environment::ALL, clock.now(), true).unwrap(),
            [0, 0]
        );
        stores
            .read(Environment::Sandbox, |c| {
                c.execute("UPDATE events SET forwarded = 1", [])
            })
            .unwrap();
        assert_eq!(
            sweep(&stores, &Environment::ALL, clock.now(), true).unwrap(),
            [1, 0]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
