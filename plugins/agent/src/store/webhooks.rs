//! Webhook endpoints, deliveries and the marks that make a notice once-only, in each
//! environment's own database: a sandbox endpoint can only ever be handed sandbox notices, and
//! a notice, its mark and its deliveries are committed together, so a restart neither loses
//! one nor records one twice (a delivery whose answer was not recorded before the agent
//! stopped is sent again, with the same id).

use super::{StoreError, Stores};
use aforo_core::{Environment, Timestamp};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::{json, Value};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    events     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id  TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    type         TEXT NOT NULL,
    body         TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    last_status  INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries(next_at) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS webhook_marks (
    mark TEXT PRIMARY KEY,
    at   INTEGER NOT NULL
);
";

/// Creates the tables.
pub(super) fn migrate(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(SCHEMA)
}

/// The notices an endpoint can subscribe to.
pub const EVENT_TYPES: [&str; 5] = [
    "quota.threshold_reached",
    "dead_letter.created",
    "partner.sandbox_mode_changed",
    "invoice.preview_closed",
    "invoice.margin_flagged",
];

/// An endpoint as listed (never its secret).
#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    /// `we_…`.
    pub id: String,
    /// Where notices are POSTed.
    pub url: String,
    /// The notices it receives.
    pub events: Vec<String>,
    /// Always true while listed (deleted endpoints are not).
    pub enabled: bool,
    /// RFC 3339.
    pub created_at: String,
}

/// A delivery as listed.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    /// Row number (the cursor).
    pub seq: i64,
    /// The endpoint.
    pub endpoint_id: String,
    /// The notice's id (`whevt_…`), the same on every attempt: receivers deduplicate on it.
    pub event_id: String,
    /// The notice's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `delivered`, or `failed` (attempts exhausted).
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last answer's status.
    pub last_status: Option<u16>,
    /// The last failure, as text.
    pub last_error: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once delivered.
    pub delivered_at: Option<String>,
    /// RFC 3339, while pending.
    pub next_attempt_at: Option<String>,
}

/// A delivery due now, with what it takes to send it.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    /// Row number.
    pub seq: i64,
    /// The endpoint's URL.
    pub url: String,
    /// The endpoint's signing secret.
    pub secret: String,
    /// The JSON body.
    pub body: String,
    /// The notice's id.
    pub event_id: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// What an attempt came to.
#[derive(Clone, Debug)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered(u16),
    /// Anything else; retried at `next_at`, or given up when `None`.
    Failed {
        /// The status, when there was an answer.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// The next attempt, or none: attempts exhausted.
        next_at: Option<Timestamp>,
    },
}

/// Deliveries per state.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct DeliveryCounts {
    /// Waiting for their next attempt.
    pub pending: u64,
    /// Answered with 2xx.
    pub delivered: u64,
    /// Attempts exhausted.
    pub failed: u64,
}

fn rfc(ns: Option<i64>) -> Option<String> {
    ns.map(|n| Timestamp::from_unix_nanos(n).to_rfc3339())
}

fn delivery(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let state: String = r.get(4)?;
    Ok(Delivery {
        seq: r.get(0)?,
        endpoint_id: r.get(1)?,
        event_id: r.get(2)?,
        kind: r.get(3)?,
        attempts: r.get(5)?,
        next_attempt_at: if state == "pending" {
            rfc(r.get(6)?)
        } else {
            None
        },
        last_status: r.get(7)?,
        last_error: r.get(8)?,
        created_at: rfc(r.get(9)?).unwrap_or_default(),
        delivered_at: rfc(r.get(10)?),
        state,
    })
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

impl Stores {
    /// Adds an endpoint of `env`.
    pub fn add_endpoint(
        &self,
        env: Environment,
        id: &str,
        url: &str,
        secret: &str,
        events: &[String],
        now: Timestamp,
    ) -> Result<Endpoint, StoreError> {
        let list = serde_json::to_string(events).unwrap_or_else(|_| "[]".into());
        self.read(env, |c| {
            c.execute(
                "INSERT INTO webhook_endpoints (id, url, secret, events, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, url, secret, list, now.unix_nanos()],
            )
        })?;
        Ok(Endpoint {
            id: id.to_string(),
            url: url.to_string(),
            events: events.to_vec(),
            enabled: true,
            created_at: now.to_rfc3339(),
        })
    }

    /// The endpoints of `env`, oldest first.
    pub fn endpoints(&self, env: Environment) -> Result<Vec<Endpoint>, StoreError> {
        self.read(env, |c| {
            let mut st = c.prepare_cached(
                "SELECT id, url, events, created_at FROM webhook_endpoints WHERE deleted = 0 ORDER BY created_at, id",
            )?;
            let rows = st.query_map([], |r| {
                let events: String = r.get(2)?;
                Ok(Endpoint {
                    id: r.get(0)?,
                    url: r.get(1)?,
                    events: serde_json::from_str(&events).unwrap_or_default(),
                    enabled: true,
                    created_at: rfc(r.get(3)?).unwrap_or_default(),
                })
            })?;
            rows.collect()
        })
    }

    /// Removes an endpoint (its pending deliveries are dropped; the log keeps the rest).
    /// Whether it existed.
    pub fn delete_endpoint(&self, env: Environment, id: &str) -> Result<bool, StoreError> {
        let mut c = self.reader(env)?;
        let tx = c.transaction().map_err(sql)?;
        let n = tx
            .execute(
                "UPDATE webhook_endpoints SET deleted = 1 WHERE id = ?1 AND deleted = 0",
                params![id],
            )
            .map_err(sql)?;
        tx.execute(
            "UPDATE webhook_deliveries SET state = 'failed', last_error = 'endpoint deleted' WHERE endpoint_id = ?1 AND state = 'pending'",
            params![id],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(n == 1)
    }

    /// Records a notice for every endpoint of `env` subscribed to `kind`. With `mark`, only the
    /// first call for that mark does (a threshold once per window); false when it was made
    /// already. The notice's id is derived from the mark, so it is stable.
    pub fn emit_webhook(
        &self,
        env: Environment,
        mark: Option<&str>,
        event_id: &str,
        kind: &str,
        data: Value,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut c = self.reader(env)?;
        let tx = c.transaction().map_err(sql)?;
        if let Some(m) = mark {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO webhook_marks (mark, at) VALUES (?1, ?2)",
                    params![m, now.unix_nanos()],
                )
                .map_err(sql)?;
            if n == 0 {
                return Ok(false);
            }
        }
        record_notice(&tx, env, event_id, kind, data, now).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(true)
    }

    /// Whether a mark was made (a notice already recorded).
    pub fn has_webhook_mark(&self, env: Environment, mark: &str) -> Result<bool, StoreError> {
        self.read(env, |c| {
            c.query_row(
                "SELECT 1 FROM webhook_marks WHERE mark = ?1",
                params![mark],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
        })
    }

    /// Deliveries of `env` due at `now`, oldest first.
    pub fn due_deliveries(
        &self,
        env: Environment,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.read(env, |c| {
            let mut st = c.prepare_cached(
                "SELECT d.seq, e.url, e.secret, d.body, d.event_id, d.attempts FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
                 WHERE d.state = 'pending' AND d.next_at <= ?1 AND e.deleted = 0 ORDER BY d.next_at, d.seq LIMIT ?2",
            )?;
            let rows = st.query_map(params![now.unix_nanos(), limit as i64], |r| {
                Ok(DueDelivery {
                    seq: r.get(0)?,
                    url: r.get(1)?,
                    secret: r.get(2)?,
                    body: r.get(3)?,
                    event_id: r.get(4)?,
                    attempts: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Records an attempt's result.
    pub fn record_attempt(
        &self,
        env: Environment,
        seq: i64,
        attempt: &Attempt,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.read(env, |c| match attempt {
            Attempt::Delivered(status) => c.execute(
                "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, last_status = ?2, last_error = NULL, delivered_at = ?3 WHERE seq = ?1 AND state = 'pending'",
                params![seq, status, now.unix_nanos()],
            ),
            Attempt::Failed { status, error, next_at } => c.execute(
                "UPDATE webhook_deliveries SET state = ?2, attempts = attempts + 1, last_status = ?3, last_error = ?4, next_at = COALESCE(?5, next_at) WHERE seq = ?1 AND state = 'pending'",
                params![
                    seq,
                    if next_at.is_some() { "pending" } else { "failed" },
                    status,
                    error,
                    next_at.map(|t| t.unix_nanos())
                ],
            ),
        })
        .map(|_| ())
    }

    /// Deliveries of `env`, newest first, older than `before_seq` when given.
    pub fn deliveries(
        &self,
        env: Environment,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.read(env, |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, endpoint_id, event_id, type, state, attempts, next_at, last_status, last_error, created_at, delivered_at
                 FROM webhook_deliveries WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2",
            )?;
            let rows = st.query_map(
                params![before_seq.unwrap_or(i64::MAX), limit as i64],
                delivery,
            )?;
            rows.collect()
        })
    }

    /// Deliveries of `env` per state.
    pub fn webhook_delivery_counts(&self, env: Environment) -> Result<DeliveryCounts, StoreError> {
        self.read(env, |c| {
            let mut out = DeliveryCounts::default();
            let mut st =
                c.prepare_cached("SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state")?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (state, n) = row?;
                let n = u64::try_from(n).unwrap_or(0);
                match state.as_str() {
                    "pending" => out.pending = n,
                    "delivered" => out.delivered = n,
                    _ => out.failed += n,
                }
            }
            Ok(out)
        })
    }
}

/// Records a `dead_letter.created` notice inside the dead letter's own transaction.
pub(super) fn dead_letter_notice(
    tx: &Connection,
    env: Environment,
    dead_letter_seq: i64,
    data: Value,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let event_id = format!("whevt_dl_{dead_letter_seq}_{}", now.unix_nanos());
    record_notice(tx, env, &event_id, "dead_letter.created", data, now)
}

/// One notice, queued for every endpoint subscribed to its type.
fn record_notice(
    tx: &Connection,
    env: Environment,
    event_id: &str,
    kind: &str,
    data: Value,
    now: Timestamp,
) -> rusqlite::Result<()> {
    let body = json!({
        "id": event_id,
        "type": kind,
        "created": now.unix_nanos() / 1_000_000_000,
        "environment": env.as_str(),
        "data": data,
    })
    .to_string();
    let mut st = tx.prepare_cached("SELECT id, events FROM webhook_endpoints WHERE deleted = 0")?;
    let endpoints: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (id, events) in endpoints {
        let wanted: Vec<String> = serde_json::from_str(&events).unwrap_or_default();
        if wanted.iter().any(|w| w == kind) {
            tx.execute(
                "INSERT OR IGNORE INTO webhook_deliveries (endpoint_id, event_id, type, body, next_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![id, event_id, kind, body, now.unix_nanos()],
            )?;
        }
    }
    Ok(())
}

/// Days a once-only mark is kept: longer than the longest quota window (a year), so a
/// notice is never sent twice in one window, whatever the environment's retention.
const MARK_DAYS: i64 = 400;

/// Removes finished deliveries made before `cutoff` (retention; pending ones stay), and marks
/// older than `MARK_DAYS` at `now`.
pub(super) fn purge(c: &Connection, cutoff: Timestamp, now: Timestamp) -> rusqlite::Result<()> {
    c.execute(
        "DELETE FROM webhook_deliveries WHERE created_at < ?1 AND state != 'pending'",
        params![cutoff.unix_nanos()],
    )?;
    let marks_cutoff = now.plus_nanos(-MARK_DAYS * aforo_core::time::NANOS_PER_DAY);
    c.execute(
        "DELETE FROM webhook_marks WHERE at < ?1",
        params![marks_cutoff.unix_nanos()],
    )
    .map(|_| ())
}
