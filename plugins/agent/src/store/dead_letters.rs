//! Dead letters: events refused on arrival or by the upstream ingest, kept whole with their
//! reason, so that a replay can store each once its reason has cleared. A replay removes only
//! the entries it stored, re-queued or found already stored; every other entry stays.

use super::{event_log, webhooks, StoreError, Stores};
use aforo_core::{Environment, Timestamp};
use rusqlite::{params, Connection};
use serde::Serialize;
use serde_json::Value;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dead_letters (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    reason   TEXT NOT NULL,
    detail   TEXT NOT NULL,
    body     TEXT NOT NULL,
    at       INTEGER NOT NULL,
    origin   TEXT NOT NULL DEFAULT 'refused'
);
";

/// Creates the table; stores written before `origin` existed get it, classified from what
/// they held (the forwarder wrote `upstream` as the detail; refusals without an event, `{}`).
pub(super) fn migrate(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(SCHEMA)?;
    let has = c
        .prepare("SELECT 1 FROM pragma_table_info('dead_letters') WHERE name = 'origin'")?
        .exists([])?;
    if !has {
        c.execute_batch(
            "ALTER TABLE dead_letters ADD COLUMN origin TEXT NOT NULL DEFAULT 'refused';
             UPDATE dead_letters SET origin = 'upstream' WHERE detail = 'upstream';
             UPDATE dead_letters SET origin = 'unparsable' WHERE body = '{}';",
        )?;
    }
    Ok(())
}

/// Where a dead letter came from, which says what its body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterOrigin {
    /// Refused on arrival (`/v1/events`, `/v1/meter`): the body is the event as it was given.
    Refused,
    /// An entry that is not an event at all: the body is the bytes received, as text.
    Unparsable,
    /// Stored here, then refused by the upstream ingest or never taken by it: the body is the
    /// stored event.
    Upstream,
}

impl DeadLetterOrigin {
    const fn as_str(self) -> &'static str {
        match self {
            DeadLetterOrigin::Refused => "refused",
            DeadLetterOrigin::Unparsable => "unparsable",
            DeadLetterOrigin::Upstream => "upstream",
        }
    }

    fn parse(s: &str) -> DeadLetterOrigin {
        match s {
            "unparsable" => DeadLetterOrigin::Unparsable,
            "upstream" => DeadLetterOrigin::Upstream,
            _ => DeadLetterOrigin::Refused,
        }
    }
}

/// A dead letter to record.
#[derive(Clone, Copy, Debug)]
pub struct DeadLetter<'a> {
    /// The event's id (empty when the entry had no readable one).
    pub event_id: &'a str,
    /// Where it came from.
    pub origin: DeadLetterOrigin,
    /// Machine-readable reason (`rejected:timestamp_in_future`).
    pub reason: &'a str,
    /// What a person reads.
    pub detail: &'a str,
    /// The event (or, for `Unparsable`, the bytes received).
    pub body: &'a str,
}

/// A dead letter as listed.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetterRow {
    /// Row number (for replay).
    pub seq: i64,
    /// Event id.
    pub event_id: String,
    /// Where it came from.
    pub origin: DeadLetterOrigin,
    /// Why.
    pub reason: String,
    /// Details.
    pub detail: String,
    /// When (RFC 3339).
    pub at: String,
    /// The event, whole (`refused` and `upstream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
    /// The bytes received, as text (`unparsable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
}

/// A dead letter taken up by a replay.
#[derive(Clone, Debug)]
pub struct ReplayCandidate {
    /// Row number.
    pub seq: i64,
    /// Event id.
    pub event_id: String,
    /// Where it came from.
    pub origin: DeadLetterOrigin,
    /// Its body.
    pub body: String,
}

/// What a replay did with one dead letter.
#[derive(Clone, Debug)]
pub enum ReplayOutcome {
    /// Stored now, or found already stored: the entry goes.
    Stored,
    /// Already stored here and sent upstream again: the entry goes, the event is pending.
    Requeued(String),
    /// Still refused: the entry stays, with this reason and detail.
    Refused(String, String),
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError(e.to_string())
}

impl Stores {
    /// Records a dead letter (committed with `synchronous=FULL`, like events). One from the
    /// upstream also marks its stored event done forwarding in the same transaction: marked
    /// after, a replay committed in between would be undone and the event never sent again.
    pub fn dead_letter(
        &self,
        env: Environment,
        dl: &DeadLetter<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut c = self.reader(env)?;
        let tx = c.transaction().map_err(sql)?;
        tx.execute(
            "INSERT INTO dead_letters (event_id, reason, detail, body, at, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![dl.event_id, dl.reason, dl.detail, dl.body, now.unix_nanos(), dl.origin.as_str()],
        )
        .map_err(sql)?;
        let seq = tx.last_insert_rowid();
        event_log::record_dead_letter(&tx, dl, seq, now).map_err(sql)?;
        let notice = serde_json::json!({
            "dead_letter_seq": seq,
            "event_id": dl.event_id,
            "origin": dl.origin.as_str(),
            "reason": dl.reason,
            "detail": dl.detail,
        });
        webhooks::dead_letter_notice(&tx, env, seq, notice, now).map_err(sql)?;
        if dl.origin == DeadLetterOrigin::Upstream {
            tx.execute(
                "UPDATE events SET forwarded = 2 WHERE id = ?1",
                params![dl.event_id],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// Dead letters, newest first.
    pub fn dead_letters(
        &self,
        env: Environment,
        limit: usize,
    ) -> Result<Vec<DeadLetterRow>, StoreError> {
        self.read(env, |c| {
            let mut st = c.prepare_cached("SELECT seq, event_id, reason, detail, at, body, origin FROM dead_letters ORDER BY seq DESC LIMIT ?1")?;
            let rows = st.query_map(params![limit as i64], |r| {
                let body: String = r.get(5)?;
                let origin = DeadLetterOrigin::parse(&r.get::<_, String>(6)?);
                let (event, received) = match origin {
                    DeadLetterOrigin::Unparsable => (None, Some(body)),
                    _ => match serde_json::from_str::<Value>(&body) {
                        Ok(v) => (Some(v), None),
                        Err(_) => (None, Some(body)),
                    },
                };
                Ok(DeadLetterRow {
                    seq: r.get(0)?,
                    event_id: r.get(1)?,
                    origin,
                    reason: r.get(2)?,
                    detail: r.get(3)?,
                    at: Timestamp::from_unix_nanos(r.get(4)?).to_rfc3339(),
                    event,
                    received,
                })
            })?;
            rows.collect()
        })
    }

    /// The dead letters a replay takes up (all, or the given row numbers), oldest first. They
    /// stay in the store until `settle_replay` says what became of each.
    pub fn dead_letters_to_replay(
        &self,
        env: Environment,
        seqs: Option<&[i64]>,
    ) -> Result<Vec<ReplayCandidate>, StoreError> {
        self.read(env, |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, event_id, origin, body FROM dead_letters ORDER BY seq",
            )?;
            let rows = st.query_map([], |r| {
                Ok(ReplayCandidate {
                    seq: r.get(0)?,
                    event_id: r.get(1)?,
                    origin: DeadLetterOrigin::parse(&r.get::<_, String>(2)?),
                    body: r.get(3)?,
                })
            })?;
            let all = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(all
                .into_iter()
                .filter(|d| seqs.is_none_or(|w| w.contains(&d.seq)))
                .collect())
        })
    }

    /// Whether the store holds an event with this id.
    pub fn has_event(&self, env: Environment, id: &str) -> Result<bool, StoreError> {
        self.read(env, |c| {
            c.prepare_cached("SELECT 1 FROM events WHERE id = ?1")?
                .exists(params![id])
        })
    }

    /// Applies a replay's outcomes in one transaction: stored and re-queued entries go (their
    /// events pending again for forwarding), refused ones stay with their current reason.
    pub fn settle_replay(
        &self,
        env: Environment,
        outcomes: &[(i64, ReplayOutcome)],
    ) -> Result<(), StoreError> {
        let mut c = self.reader(env)?;
        let tx = c.transaction().map_err(sql)?;
        for (seq, outcome) in outcomes {
            match outcome {
                ReplayOutcome::Stored => {
                    tx.execute("DELETE FROM dead_letters WHERE seq = ?1", params![seq])
                        .map_err(sql)?;
                    event_log::forget_dead_letter(&tx, *seq).map_err(sql)?;
                }
                ReplayOutcome::Requeued(id) => {
                    tx.execute("DELETE FROM dead_letters WHERE seq = ?1", params![seq])
                        .map_err(sql)?;
                    tx.execute("UPDATE events SET forwarded = 0 WHERE id = ?1", params![id])
                        .map_err(sql)?;
                    event_log::forget_dead_letter(&tx, *seq).map_err(sql)?;
                }
                ReplayOutcome::Refused(reason, detail) => {
                    tx.execute(
                        "UPDATE dead_letters SET reason = ?2, detail = ?3 WHERE seq = ?1",
                        params![seq, reason, detail],
                    )
                    .map_err(sql)?;
                }
            }
        }
        tx.commit().map_err(sql)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{test_dir, test_event};
    use std::sync::Arc;

    fn pending(stores: &Stores) -> Vec<String> {
        let rows = stores.pending(Environment::Sandbox, 0, 10).unwrap();
        rows.into_iter().map(|r| r.1).collect()
    }

    /// An upstream dead letter and its event's "done forwarding" are one commit: a replay can
    /// only come after both, and what it re-queues stays queued.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_upstream_dead_letter_marks_its_event_in_the_same_commit() {
        let dir = test_dir("dead-letter-mark");
        let env = Environment::Sandbox;
        let stores = Stores::open(&dir, &[env], false, Arc::new(|_, _| {})).unwrap();
        let t = aforo_core::time::parse_rfc3339("2026-12-01T10:00:00Z").unwrap();
        stores
            .insert(
                env,
                vec![
                    test_event("e1", "acme", env, t),
                    test_event("e2", "acme", env, t),
                ],
                t,
            )
            .await
            .unwrap();
        assert_eq!(pending(&stores), ["e1", "e2"]);
        let dl = |id: &'static str, origin| DeadLetter {
            event_id: id,
            origin,
            reason: "rejected:invalid",
            detail: "refused",
            body: "{}",
        };
        stores
            .dead_letter(env, &dl("e1", DeadLetterOrigin::Upstream), t)
            .unwrap();
        // A dead letter refused on arrival is no stored event's: e2 is not touched.
        stores
            .dead_letter(env, &dl("e2", DeadLetterOrigin::Refused), t)
            .unwrap();
        assert_eq!(
            pending(&stores),
            ["e2"],
            "e1 is done forwarding, with no mark after"
        );
        let rows = stores.dead_letters(env, 10).unwrap();
        let seq = rows.iter().find(|d| d.event_id == "e1").unwrap().seq;
        stores
            .settle_replay(env, &[(seq, ReplayOutcome::Requeued("e1".into()))])
            .unwrap();
        assert_eq!(
            pending(&stores),
            ["e1", "e2"],
            "re-queued, and nothing undoes it"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
