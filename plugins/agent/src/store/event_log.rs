//! The event log: one row per event offered to this agent and what became of it (accepted,
//! late, duplicate, rejected with its code, dead-lettered by the upstream), so a person can
//! tail and search what the gateway sent. Each row is written in the transaction that stores
//! the event or the dead letter, so the log never says more or less than the store holds.

use super::{DeadLetter, DeadLetterOrigin, StoreError, Stores};
use aforo_core::event::UsageEvent;
use aforo_core::time::parse_rfc3339;
use aforo_core::{Environment, Timestamp};
use rusqlite::types::ToSql;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;
use serde_json::Value;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS event_log (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    event_id        TEXT NOT NULL,
    customer_id     TEXT,
    metric          TEXT,
    quantity        TEXT,
    ts              INTEGER,
    outcome         TEXT NOT NULL,
    code            TEXT,
    dead_letter_seq INTEGER
);
CREATE INDEX IF NOT EXISTS event_log_at ON event_log(at);
CREATE INDEX IF NOT EXISTS event_log_event ON event_log(event_id);
CREATE INDEX IF NOT EXISTS event_log_customer ON event_log(customer_id, seq);
CREATE INDEX IF NOT EXISTS event_log_metric ON event_log(metric, seq);
CREATE INDEX IF NOT EXISTS event_log_outcome ON event_log(outcome, seq);
";

/// Creates the table (stores written before it existed start an empty log).
pub(super) fn migrate(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(SCHEMA)
}

/// What became of an event offered to the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Stored, counted and (when forwarding) sent on.
    Accepted,
    /// Stored, but older than the late window allows without a flag.
    Late,
    /// Its id was already stored (here, or on another agent with the Redis backend).
    Duplicate,
    /// Refused on arrival; kept as a dead letter with its code.
    Rejected,
    /// Stored here, then refused or never taken by the upstream ingest; kept as a dead letter.
    DeadLettered,
}

impl Outcome {
    /// Every outcome, in the order a person reads them.
    pub const ALL: [Outcome; 5] = [
        Outcome::Accepted,
        Outcome::Late,
        Outcome::Duplicate,
        Outcome::Rejected,
        Outcome::DeadLettered,
    ];

    /// The word in the log and in `?outcome=`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Late => "late",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::DeadLettered => "dead_lettered",
        }
    }

    /// Reads `?outcome=`.
    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    fn stored(new: bool, late: bool) -> Outcome {
        match (new, late) {
            (false, _) => Outcome::Duplicate,
            (true, true) => Outcome::Late,
            (true, false) => Outcome::Accepted,
        }
    }
}

/// One row of the log as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LogEntry {
    /// Row number (the tail's and the cursor's position).
    pub seq: i64,
    /// When the agent received it (RFC 3339).
    pub at: String,
    /// The event's id (empty when the entry had no readable one).
    pub event_id: String,
    /// Its customer, when it could be read.
    pub customer_id: Option<String>,
    /// Its metric, when it could be read.
    pub metric: Option<String>,
    /// Its quantity, as given.
    pub quantity: Option<String>,
    /// The event's own timestamp (RFC 3339), when it could be read.
    pub timestamp: Option<String>,
    /// What became of it.
    pub outcome: Outcome,
    /// The refusal's code (rejected and dead-lettered entries).
    pub code: Option<String>,
    /// The dead letter to replay, while it is still held.
    pub dead_letter_seq: Option<i64>,
}

/// A search of the log; `after` reads forward (the live tail), otherwise newest first.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// One customer.
    pub customer: Option<String>,
    /// One metric.
    pub metric: Option<String>,
    /// One outcome.
    pub outcome: Option<Outcome>,
    /// Received at or after.
    pub from: Option<Timestamp>,
    /// Received before.
    pub to: Option<Timestamp>,
    /// Rows older than this one (the cursor of the next page).
    pub before_seq: Option<i64>,
    /// Rows newer than this one, oldest first (the live tail).
    pub after_seq: Option<i64>,
    /// At most this many rows.
    pub limit: usize,
}

/// Logs stored events inside the writer's transaction: `new` from the insert, `late` from
/// validation.
pub(super) fn record_stored(
    tx: &Connection,
    e: &UsageEvent,
    new: bool,
    late: bool,
    at: Timestamp,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO event_log (at, event_id, customer_id, metric, quantity, ts, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        at.unix_nanos(),
        e.id,
        e.customer_id,
        e.metric,
        e.quantity.to_text(),
        e.timestamp.unix_nanos(),
        Outcome::stored(new, late).as_str()
    ])
    .map(|_| ())
}

/// Logs a dead letter inside its transaction; what the body lets us read is kept beside it.
pub(super) fn record_dead_letter(
    tx: &Connection,
    dl: &DeadLetter<'_>,
    dead_letter_seq: i64,
    at: Timestamp,
) -> rusqlite::Result<()> {
    let outcome = match dl.origin {
        DeadLetterOrigin::Upstream => Outcome::DeadLettered,
        DeadLetterOrigin::Refused | DeadLetterOrigin::Unparsable => Outcome::Rejected,
    };
    let body: Value = serde_json::from_str(dl.body).unwrap_or(Value::Null);
    let text = |k: &str| match body.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let ts = text("timestamp")
        .and_then(|t| parse_rfc3339(&t).ok())
        .map(|t| t.unix_nanos());
    let code = dl.reason.strip_prefix("rejected:").unwrap_or(dl.reason);
    tx.prepare_cached(
        "INSERT INTO event_log (at, event_id, customer_id, metric, quantity, ts, outcome, code, dead_letter_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        at.unix_nanos(),
        dl.event_id,
        text("customer_id"),
        text("metric"),
        text("quantity"),
        ts,
        outcome.as_str(),
        code,
        dead_letter_seq
    ])
    .map(|_| ())
}

/// A dead letter a replay took up is no longer there to replay (the replayed event gets a
/// row of its own).
pub(super) fn forget_dead_letter(tx: &Connection, dead_letter_seq: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE event_log SET dead_letter_seq = NULL WHERE dead_letter_seq = ?1",
        params![dead_letter_seq],
    )
    .map(|_| ())
}

/// An event stored here but claimed first by another agent is a duplicate after all.
pub(super) fn claimed_elsewhere(tx: &Connection, event_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE event_log SET outcome = 'duplicate', code = 'claimed_by_another_agent' WHERE event_id = ?1 AND outcome IN ('accepted', 'late')",
    )?
    .execute(params![event_id])
    .map(|_| ())
}

/// Removes rows received before `cutoff` (retention).
pub(super) fn purge(c: &Connection, cutoff: Timestamp) -> rusqlite::Result<usize> {
    c.execute(
        "DELETE FROM event_log WHERE at < ?1",
        params![cutoff.unix_nanos()],
    )
}

const COLUMNS: &str =
    "seq, at, event_id, customer_id, metric, quantity, ts, outcome, code, dead_letter_seq";

fn entry(r: &Row<'_>) -> rusqlite::Result<LogEntry> {
    let outcome: String = r.get(7)?;
    Ok(LogEntry {
        seq: r.get(0)?,
        at: Timestamp::from_unix_nanos(r.get(1)?).to_rfc3339(),
        event_id: r.get(2)?,
        customer_id: r.get(3)?,
        metric: r.get(4)?,
        quantity: r.get(5)?,
        timestamp: r
            .get::<_, Option<i64>>(6)?
            .map(|t| Timestamp::from_unix_nanos(t).to_rfc3339()),
        outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Rejected),
        code: r.get(8)?,
        dead_letter_seq: r.get(9)?,
    })
}

/// What the log holds on one day (or any span): rows per outcome.
pub type OutcomeCounts = [(Outcome, u64); 5];

impl Stores {
    /// Searches the log of `env`.
    pub fn event_log(&self, env: Environment, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut args: Vec<Box<dyn ToSql>> = Vec::new();
        if let Some(c) = &q.customer {
            clauses.push("customer_id = ?");
            args.push(Box::new(c.clone()));
        }
        if let Some(m) = &q.metric {
            clauses.push("metric = ?");
            args.push(Box::new(m.clone()));
        }
        if let Some(o) = q.outcome {
            clauses.push("outcome = ?");
            args.push(Box::new(o.as_str()));
        }
        if let Some(t) = q.from {
            clauses.push("at >= ?");
            args.push(Box::new(t.unix_nanos()));
        }
        if let Some(t) = q.to {
            clauses.push("at < ?");
            args.push(Box::new(t.unix_nanos()));
        }
        if let Some(s) = q.before_seq {
            clauses.push("seq < ?");
            args.push(Box::new(s));
        }
        if let Some(s) = q.after_seq {
            clauses.push("seq > ?");
            args.push(Box::new(s));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let order = if q.after_seq.is_some() { "ASC" } else { "DESC" };
        let sql = format!("SELECT {COLUMNS} FROM event_log {filter} ORDER BY seq {order} LIMIT ?");
        args.push(Box::new(q.limit as i64));
        self.read(env, |c| {
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(
                rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())),
                entry,
            )?;
            rows.collect()
        })
    }

    /// One row and the event it is about, whole: the stored event, or the dead letter's body
    /// (the text received when it was not JSON). `None` for an unknown row.
    pub fn event_log_entry(
        &self,
        env: Environment,
        seq: i64,
    ) -> Result<Option<(LogEntry, Value)>, StoreError> {
        self.read(env, |c| {
            let Some(e) = c
                .query_row(
                    &format!("SELECT {COLUMNS} FROM event_log WHERE seq = ?1"),
                    params![seq],
                    entry,
                )
                .optional()?
            else {
                return Ok(None);
            };
            let from_dead_letter = match e.dead_letter_seq {
                Some(dl) => c
                    .query_row(
                        "SELECT body FROM dead_letters WHERE seq = ?1",
                        params![dl],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()?,
                None => None,
            };
            let body = match from_dead_letter {
                Some(b) => Some(b),
                None => c
                    .query_row(
                        "SELECT body FROM events WHERE id = ?1",
                        params![e.event_id],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()?,
            };
            let event = body
                .map(|b| serde_json::from_str(&b).unwrap_or(Value::String(b)))
                .unwrap_or(Value::Null);
            Ok(Some((e, event)))
        })
    }

    /// Rows per outcome received in `[from, to)`.
    pub fn outcome_counts(
        &self,
        env: Environment,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<OutcomeCounts, StoreError> {
        self.read(env, |c| {
            let mut out = Outcome::ALL.map(|o| (o, 0u64));
            let mut st = c.prepare_cached(
                "SELECT outcome, COUNT(*) FROM event_log WHERE at >= ?1 AND at < ?2 GROUP BY outcome",
            )?;
            let rows = st.query_map(params![from.unix_nanos(), to.unix_nanos()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (o, n) = row?;
                if let Some(slot) = out.iter_mut().find(|(k, _)| k.as_str() == o) {
                    slot.1 = u64::try_from(n).unwrap_or(0);
                }
            }
            Ok(out)
        })
    }
}
