//! `GET /v1/event-log` and `GET /v1/event-log/{seq}`: what became of every event offered to
//! this agent, searchable and tailed live, scoped to the key's environment.

use super::extract::{KeysOwn, Scoped};
use super::{json, ApiError};
use crate::app::App;
use crate::store::{LogQuery, Outcome};
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

const PARAMS: &[&str] = &[
    "customer", "metric", "outcome", "from", "to", "limit", "cursor", "after",
];

/// Searches the log, newest first, a page at a time (`next_cursor`); with `?after=SEQ`, the
/// rows after that one, oldest first (the live tail).
pub async fn list(
    State(app): State<Arc<App>>,
    scoped: Scoped<KeysOwn>,
) -> Result<Response, ApiError> {
    scoped.only(PARAMS)?;
    let q = &scoped.query;
    let outcome = match q.get("outcome") {
        None => None,
        Some(o) => Some(Outcome::parse(o).ok_or_else(|| {
            let words: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
            ApiError::invalid(
                "invalid_query",
                "outcome",
                format!("must be one of {}, got {o:?}", words.join(", ")),
            )
        })?),
    };
    let seq = |name: &str| -> Result<Option<i64>, ApiError> {
        match q.get(name) {
            None => Ok(None),
            Some(_) => Ok(Some(scoped.number(name, 0, 0, i64::MAX as u64)? as i64)),
        }
    };
    let (before_seq, after_seq) = (seq("cursor")?, seq("after")?);
    if before_seq.is_some() && after_seq.is_some() {
        return Err(ApiError::invalid(
            "invalid_query",
            "after",
            "cursor pages back, after tails forward: give one of them",
        ));
    }
    let limit = scoped.number("limit", 50, 1, 500)? as usize;
    let query = LogQuery {
        customer: q.get("customer").cloned(),
        metric: q.get("metric").cloned(),
        outcome,
        from: scoped.time("from")?,
        to: scoped.time("to")?,
        before_seq,
        after_seq,
        // One more than asked: whether another page (or more of the tail) is waiting.
        limit: limit + 1,
    };
    let mut rows = tokio::task::block_in_place(|| app.stores.event_log(scoped.env, &query))
        .map_err(ApiError::unavailable)?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = match (after_seq, has_more, rows.last()) {
        (None, true, Some(last)) => Some(last.seq.to_string()),
        _ => None,
    };
    Ok(json(
        200,
        &json!({"environment": scoped.env.as_str(), "data": rows, "next_cursor": next_cursor, "has_more": has_more}),
    ))
}

/// One row with the event whole (the stored event, or the dead letter as received).
pub async fn one(
    State(app): State<Arc<App>>,
    scoped: Scoped<KeysOwn>,
    Path(seq): Path<String>,
) -> Result<Response, ApiError> {
    scoped.only(&[])?;
    let not_found = || {
        ApiError::new(
            404,
            "not_found",
            format!("no event-log entry {seq:?} in {}", scoped.env.as_str()),
        )
    };
    let n: i64 = seq.parse().map_err(|_| not_found())?;
    let (entry, event) = app
        .stores
        .event_log_entry(scoped.env, n)
        .map_err(ApiError::unavailable)?
        .ok_or_else(not_found)?;
    let mut data = serde_json::to_value(&entry).unwrap_or_default();
    data["event"] = event;
    Ok(json(200, &json!({"data": data})))
}
