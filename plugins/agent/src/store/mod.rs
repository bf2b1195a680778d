//! The durable stores: one SQLite database per environment (events, dead letters) and one for
//! control data (partners, consumer keys). WAL mode with `synchronous=FULL`: a transaction is on
//! disk (fsynced) when `COMMIT` returns, so an event acknowledged with 202 survives a crash of
//! the agent and, when the disk honours fsync, of the machine.
//!
//! Writes to the event stores go through one writer thread that groups concurrent requests into
//! one transaction (group commit), so many small batches share one fsync.

mod dead_letters;
mod event_log;
mod webhooks;

pub use dead_letters::{DeadLetter, DeadLetterOrigin, ReplayOutcome};
pub use event_log::{LogQuery, Outcome};
pub use webhooks::{Attempt, DueDelivery, EVENT_TYPES};

use aforo_core::event::{parse_wire_event, UsageEvent};
use aforo_core::{Environment, Timestamp};
use rusqlite::{params, Connection};
use serde_json::value::RawValue;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A store failure, with the file.
#[derive(Debug)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

fn err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError(format!("{}: {e}", path.display()))
}

const EVENTS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    metric      TEXT NOT NULL,
    quantity    TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    source      TEXT,
    body        TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    forwarded   INTEGER NOT NULL DEFAULT 0,
    claimed     INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS events_pending ON events(seq) WHERE forwarded = 0;
CREATE INDEX IF NOT EXISTS events_customer_ts ON events(customer_id, ts);
";

const CONTROL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS partners (
    customer_id  TEXT PRIMARY KEY,
    sandbox_mode INTEGER NOT NULL DEFAULT 0,
    updated_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key_id      TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    hash        TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    ip_allowlist TEXT NOT NULL,
    expires_at  INTEGER,
    revoked     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
";

/// Opens a database with the durability settings.
fn open(path: &Path, schema: &str) -> Result<Connection, StoreError> {
    let c = Connection::open(path).map_err(err(path))?;
    c.busy_timeout(Duration::from_secs(10)).map_err(err(path))?;
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(err(path))?;
    migrate(&c, path, schema)?;
    Ok(c)
}

/// A connection whose commits are not fsynced, for settling claims: a settlement lost with
/// the machine leaves the event unclaimed, and claiming it again finds the same answer.
fn open_settler(path: &Path) -> Result<Connection, StoreError> {
    let c = Connection::open(path).map_err(err(path))?;
    c.busy_timeout(Duration::from_secs(10)).map_err(err(path))?;
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
        .map_err(err(path))?;
    Ok(c)
}

/// Creates the schema, and adds what older stores lack.
fn migrate(c: &Connection, path: &Path, schema: &str) -> Result<(), StoreError> {
    c.execute_batch(schema).map_err(err(path))?;
    if schema == CONTROL_SCHEMA {
        // Keys rotated before rotation had a grace period have no successor recorded.
        let has: bool = c
            .prepare("SELECT 1 FROM pragma_table_info('keys') WHERE name = 'replaced_by'")
            .and_then(|mut st| st.exists([]))
            .map_err(err(path))?;
        if !has {
            c.execute_batch("ALTER TABLE keys ADD COLUMN replaced_by TEXT;")
                .map_err(err(path))?;
        }
        // Keys made before the console listed when they were last used.
        let has: bool = c
            .prepare("SELECT 1 FROM pragma_table_info('keys') WHERE name = 'last_used_at'")
            .and_then(|mut st| st.exists([]))
            .map_err(err(path))?;
        if !has {
            c.execute_batch("ALTER TABLE keys ADD COLUMN last_used_at INTEGER;")
                .map_err(err(path))?;
        }
    }
    if schema == EVENTS_SCHEMA {
        dead_letters::migrate(c).map_err(err(path))?;
        event_log::migrate(c).map_err(err(path))?;
        webhooks::migrate(c).map_err(err(path))?;
        // Stores written before the Redis backend existed lack `claimed`: every event in them
        // is this node's.
        let has: bool = c
            .prepare("SELECT 1 FROM pragma_table_info('events') WHERE name = 'claimed'")
            .and_then(|mut st| st.exists([]))
            .map_err(err(path))?;
        if !has {
            c.execute_batch("ALTER TABLE events ADD COLUMN claimed INTEGER NOT NULL DEFAULT 1;")
                .map_err(err(path))?;
        }
        c.execute_batch(
            "CREATE INDEX IF NOT EXISTS events_unclaimed ON events(seq) WHERE claimed = 0;",
        )
        .map_err(err(path))?;
    }
    Ok(())
}

/// An event to store: parsed, validated, with its canonical encoding.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// The event.
    pub event: UsageEvent,
    /// Ingest v1 JSON of it.
    pub body: String,
    /// Accepted with the `late` flag (the event log says so).
    pub late: bool,
}

type Reply = tokio::sync::oneshot::Sender<Result<Vec<bool>, StoreError>>;

struct Job {
    env: Environment,
    events: Vec<NewEvent>,
    now: Timestamp,
    reply: Reply,
}

/// Called after each commit with the newly stored events (usage counters).
pub type OnStored = Arc<dyn Fn(Environment, &[&NewEvent]) + Send + Sync>;

/// The event stores of both environments.
pub struct Stores {
    dir: PathBuf,
    writer: Sender<Job>,
    readers: [Option<Mutex<Connection>>; 2],
    settlers: [Option<Mutex<Connection>>; 2],
    /// Control data.
    pub control: Mutex<Connection>,
}

fn env_path(dir: &Path, env: Environment) -> PathBuf {
    dir.join(format!("{}.db", env.as_str()))
}

impl Stores {
    /// Opens (and creates) the stores of `environments` under `dir`, and starts the writer.
    /// With `shared` (the Redis backend) new events are stored unclaimed: they are forwarded
    /// and counted once their claim in Redis settles (see `reconcile.rs`).
    pub fn open(
        dir: &Path,
        environments: &[Environment],
        shared: bool,
        on_stored: OnStored,
    ) -> Result<Stores, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        let mut writers: [Option<Connection>; 2] = [None, None];
        let mut readers: [Option<Mutex<Connection>>; 2] = [None, None];
        let mut settlers: [Option<Mutex<Connection>>; 2] = [None, None];
        for env in environments {
            let p = env_path(dir, *env);
            writers[env.index()] = Some(open(&p, EVENTS_SCHEMA)?);
            readers[env.index()] = Some(Mutex::new(open(&p, EVENTS_SCHEMA)?));
            settlers[env.index()] = Some(Mutex::new(open_settler(&p)?));
        }
        if !shared {
            // Events a Redis-backed run left unclaimed are this node's once it runs alone:
            // forwarded (the ingest deduplicates by id) rather than stranded.
            for env in environments {
                if let Some(c) = &readers[env.index()] {
                    let c = c
                        .lock()
                        .map_err(|_| StoreError("a store lock was poisoned".into()))?;
                    let n = c
                        .execute("UPDATE events SET claimed = 1 WHERE claimed = 0", [])
                        .map_err(err(&env_path(dir, *env)))?;
                    if n > 0 {
                        eprintln!("aforo-agent: {n} {env} events were waiting for their claim in Redis; with the embedded state they are this agent's and will be forwarded (the ingest deduplicates any another agent also sent)");
                    }
                }
            }
        }
        let control = Mutex::new(open(&dir.join("control.db"), CONTROL_SCHEMA)?);
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("aforo-store-writer".into())
            .spawn(move || writer(rx, writers, !shared, on_stored))
            .map_err(|e| StoreError(format!("cannot start the store writer: {e}")))?;
        Ok(Stores {
            dir: dir.to_path_buf(),
            writer: tx,
            readers,
            settlers,
            control,
        })
    }

    /// Stores events durably; `true` for each new event, `false` for a duplicate id.
    pub async fn insert(
        &self,
        env: Environment,
        events: Vec<NewEvent>,
        now: Timestamp,
    ) -> Result<Vec<bool>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.writer
            .send(Job {
                env,
                events,
                now,
                reply,
            })
            .map_err(|_| StoreError("the store writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError("the store writer stopped".into()))?
    }

    pub(crate) fn reader(
        &self,
        env: Environment,
    ) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.readers[env.index()]
            .as_ref()
            .ok_or_else(|| {
                StoreError(format!(
                    "the {env} store is not open (environment not served)"
                ))
            })?
            .lock()
            .map_err(|_| StoreError("a store lock was poisoned".into()))
    }

    /// Runs `f` on a read connection of `env`.
    pub fn read<T>(
        &self,
        env: Environment,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let c = self.reader(env)?;
        f(&c).map_err(|e| StoreError(format!("{}: {e}", env_path(&self.dir, env).display())))
    }

    /// Stored events of `env` with `ts` in `[from, to)`, optionally for one customer.
    pub fn events_between(
        &self,
        env: Environment,
        from: Timestamp,
        to: Timestamp,
        customer: Option<&str>,
    ) -> Result<Vec<UsageEvent>, StoreError> {
        self.read(env, |c| {
            let mut out = Vec::new();
            let mut push = |body: String| {
                if let Ok(raw) = RawValue::from_string(body) {
                    if let Ok(e) = parse_wire_event(&raw) {
                        out.push(e);
                    }
                }
            };
            match customer {
                Some(cust) => {
                    let mut st = c.prepare_cached("SELECT body FROM events WHERE customer_id = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts")?;
                    for b in st.query_map(params![cust, from.unix_nanos(), to.unix_nanos()], |r| r.get::<_, String>(0))? {
                        push(b?);
                    }
                }
                None => {
                    let mut st = c.prepare_cached("SELECT body FROM events WHERE ts >= ?1 AND ts < ?2 ORDER BY ts")?;
                    for b in st.query_map(params![from.unix_nanos(), to.unix_nanos()], |r| r.get::<_, String>(0))? {
                        push(b?);
                    }
                }
            }
            Ok(out)
        })
    }

    /// Events not yet forwarded, after `after_seq`, oldest first.
    pub fn pending(
        &self,
        env: Environment,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        self.read(env, |c| {
            let mut st = c.prepare_cached("SELECT seq, id, body FROM events WHERE forwarded = 0 AND claimed = 1 AND seq > ?1 ORDER BY seq LIMIT ?2")?;
            let rows = st.query_map(params![after_seq, limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    /// Events whose claim in Redis has not settled, received before `before`, after row
    /// `after_seq`, oldest first: (seq, received at, body).
    pub fn unclaimed(
        &self,
        env: Environment,
        before: Timestamp,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Timestamp, String)>, StoreError> {
        self.read(env, |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, received_at, body FROM events WHERE claimed = 0 AND received_at < ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = st.query_map(
                params![before.unix_nanos(), after_seq, limit as i64],
                |r| Ok((r.get(0)?, Timestamp::from_unix_nanos(r.get(1)?), r.get(2)?)),
            )?;
            rows.collect()
        })
    }

    /// Number of events whose claim has not settled.
    pub fn count_unclaimed(&self, env: Environment) -> Result<i64, StoreError> {
        self.read(env, |c| {
            c.query_row("SELECT COUNT(*) FROM events WHERE claimed = 0", [], |r| {
                r.get(0)
            })
        })
    }

    /// Settles claims in one transaction: `ours` become this node's (forwarded, billed),
    /// `elsewhere` (claimed by another agent) are removed as duplicates. For each id, whether
    /// this call settled it (false: settled already, by the ingest path or the reconciler).
    pub fn settle_claims(
        &self,
        env: Environment,
        ids: &[(&str, bool)],
    ) -> Result<Vec<bool>, StoreError> {
        let mut c = self.settlers[env.index()]
            .as_ref()
            .ok_or_else(|| StoreError(format!("the {env} store is not open")))?
            .lock()
            .map_err(|_| StoreError("a store lock was poisoned".into()))?;
        let tx = c.transaction().map_err(|e| StoreError(e.to_string()))?;
        let mut changed = Vec::with_capacity(ids.len());
        {
            let mut own = tx
                .prepare_cached("UPDATE events SET claimed = 1 WHERE id = ?1 AND claimed = 0")
                .map_err(|e| StoreError(e.to_string()))?;
            let mut drop = tx
                .prepare_cached("DELETE FROM events WHERE id = ?1 AND claimed = 0")
                .map_err(|e| StoreError(e.to_string()))?;
            for (id, ours) in ids {
                let st = if *ours { &mut own } else { &mut drop };
                let n = st
                    .execute(params![id])
                    .map_err(|e| StoreError(e.to_string()))?;
                if !*ours && n == 1 {
                    event_log::claimed_elsewhere(&tx, id).map_err(|e| StoreError(e.to_string()))?;
                }
                changed.push(n == 1);
            }
        }
        tx.commit().map_err(|e| StoreError(e.to_string()))?;
        Ok(changed)
    }

    /// Marks events forwarded (1) or dead-lettered upstream (2).
    pub fn mark(&self, env: Environment, ids: &[String], state: i64) -> Result<(), StoreError> {
        let mut c = self.reader(env)?;
        let tx = c.transaction().map_err(|e| StoreError(e.to_string()))?;
        {
            let mut st = tx
                .prepare_cached("UPDATE events SET forwarded = ?1 WHERE id = ?2")
                .map_err(|e| StoreError(e.to_string()))?;
            for id in ids {
                st.execute(params![state, id])
                    .map_err(|e| StoreError(e.to_string()))?;
            }
        }
        tx.commit().map_err(|e| StoreError(e.to_string()))
    }

    /// Deletes events older than the environment's retention, except, when `forwarding`, those
    /// not yet forwarded, and those still waiting for their claim in Redis: an event is never
    /// removed before it has gone where it is billed.
    pub fn purge(
        &self,
        env: Environment,
        now: Timestamp,
        forwarding: bool,
    ) -> Result<usize, StoreError> {
        let cutoff =
            now.plus_nanos(-(env.retention_days() as i64) * aforo_core::time::NANOS_PER_DAY);
        self.read(env, |c| {
            event_log::purge(c, cutoff)?;
            webhooks::purge(c, cutoff, now)?;
            c.execute(
                "DELETE FROM events WHERE ts < ?1 AND claimed = 1 AND (forwarded = 1 OR ?2 = 0)",
                params![cutoff.unix_nanos(), i64::from(forwarding)],
            )
        })
    }

    /// Whether `env` holds any event of `customer` (an environment not served holds none).
    pub fn has_customer_events(&self, env: Environment, customer: &str) -> bool {
        self.read(env, |c| {
            c.prepare_cached("SELECT EXISTS(SELECT 1 FROM events WHERE customer_id = ?1)")?
                .query_row(params![customer], |r| r.get::<_, bool>(0))
        })
        .unwrap_or(false)
    }

    /// Number of stored events.
    pub fn count(&self, env: Environment) -> Result<i64, StoreError> {
        self.read(env, |c| {
            c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        })
    }
}

fn writer(
    rx: Receiver<Job>,
    mut conns: [Option<Connection>; 2],
    claimed: bool,
    on_stored: OnStored,
) {
    while let Ok(first) = rx.recv() {
        // Group commit: take every job already waiting; one transaction per environment.
        let mut jobs = vec![first];
        while jobs.len() < 256 {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (sandbox, production): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|j| j.env == Environment::Sandbox);
        for (env, group) in [
            (Environment::Sandbox, sandbox),
            (Environment::Production, production),
        ] {
            if group.is_empty() {
                continue;
            }
            let result = match conns[env.index()].as_mut() {
                Some(conn) => insert_all(conn, &group, claimed),
                None => Err(StoreError(format!("the {env} store is not open"))),
            };
            match result {
                Ok(flags) => {
                    let stored: Vec<&NewEvent> = group
                        .iter()
                        .zip(&flags)
                        .flat_map(|(job, f)| {
                            job.events
                                .iter()
                                .zip(f)
                                .filter(|(_, new)| **new)
                                .map(|(e, _)| e)
                        })
                        .collect();
                    // Counters move before the replies, so a 202 is visible to the next decision.
                    on_stored(env, &stored);
                    for (job, f) in group.into_iter().zip(flags) {
                        let _ = job.reply.send(Ok(f));
                    }
                }
                Err(e) => {
                    for job in group {
                        let _ = job.reply.send(Err(StoreError(e.0.clone())));
                    }
                }
            }
        }
    }
}

fn insert_all(
    conn: &mut Connection,
    jobs: &[Job],
    claimed: bool,
) -> Result<Vec<Vec<bool>>, StoreError> {
    let tx = conn.transaction().map_err(|e| StoreError(e.to_string()))?;
    let mut out = Vec::with_capacity(jobs.len());
    {
        let mut st = tx
            .prepare_cached("INSERT OR IGNORE INTO events (id, customer_id, metric, quantity, ts, source, body, received_at, claimed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")
            .map_err(|e| StoreError(e.to_string()))?;
        for Job { events, now, .. } in jobs {
            let mut flags = Vec::with_capacity(events.len());
            for n in events {
                let e = &n.event;
                let source = e.properties.get("source").and_then(|v| v.as_str());
                let changed = st
                    .execute(params![
                        e.id,
                        e.customer_id,
                        e.metric,
                        e.quantity.to_text(),
                        e.timestamp.unix_nanos(),
                        source,
                        n.body,
                        now.unix_nanos(),
                        claimed as i64
                    ])
                    .map_err(|e| StoreError(e.to_string()))?;
                event_log::record_stored(&tx, e, changed == 1, n.late, *now)
                    .map_err(|e| StoreError(e.to_string()))?;
                flags.push(changed == 1);
            }
            out.push(flags);
        }
    }
    tx.commit().map_err(|e| StoreError(e.to_string()))?;
    Ok(out)
}

/// A fresh directory for a unit test's stores (the caller removes it).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub fn test_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "aforo-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An `api_calls` event of 2 for tests, stored as the ingest stores it.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub fn test_event(id: &str, customer: &str, env: Environment, t: Timestamp) -> NewEvent {
    use aforo_core::event::{encode_v1, parse_wire_event};
    let body = serde_json::json!({"id": id, "customer_id": customer, "metric": "api_calls", "quantity": "2", "timestamp": t.to_rfc3339(), "environment": env.as_str(), "product_id": "p", "properties": {}}).to_string();
    let raw = serde_json::value::RawValue::from_string(body).unwrap();
    let event = parse_wire_event(&raw).unwrap();
    let body = String::from_utf8_lossy(&encode_v1(&event)).into_owned();
    NewEvent {
        event,
        body,
        late: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_written_before_claims_existed_opens_with_every_event_its_own() {
        let dir = test_dir("store-migrate");
        {
            let c = Connection::open(env_path(&dir, Environment::Sandbox)).unwrap();
            c.execute_batch(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                 customer_id TEXT NOT NULL, metric TEXT NOT NULL, quantity TEXT NOT NULL, ts INTEGER NOT NULL,
                 source TEXT, body TEXT NOT NULL, received_at INTEGER NOT NULL, forwarded INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO events (id, customer_id, metric, quantity, ts, body, received_at)
                 VALUES ('old-1', 'c', 'm', '1', 0, '{}', 0);",
            )
            .unwrap();
        }
        let stores =
            Stores::open(&dir, &[Environment::Sandbox], true, Arc::new(|_, _| {})).unwrap();
        assert_eq!(stores.count_unclaimed(Environment::Sandbox).unwrap(), 0);
        let pending = stores.pending(Environment::Sandbox, 0, 10).unwrap();
        assert_eq!(pending.len(), 1, "the old event is still forwarded");
        assert_eq!(pending[0].1, "old-1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
