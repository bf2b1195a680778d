//! `GET /v1/dead-letters` and `POST /v1/dead-letters/replay`: what could not be delivered or
//! was refused, with its reason; replaying re-validates and stores (and forwards) again.

use super::{gateway_key, json, now, parse_json, read_body, ApiError, App, SMALL_BODY};
use crate::store::{DeadLetterOrigin, NewEvent, ReplayOutcome};
use aforo_core::event::{encode_v1, parse_wire_event};
use aforo_core::validate::validate_event;
use aforo_core::Environment;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

fn env_of(
    app: &App,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Environment, ApiError> {
    let (key_env, _) = gateway_key(app, headers)?;
    let env = match q.get("environment") {
        None => key_env,
        Some(e) => Environment::from_wire(e).ok_or_else(|| {
            ApiError::new(
                400,
                "invalid_query",
                format!("environment must be sandbox or production, got {e:?}"),
            )
        })?,
    };
    if env != key_env {
        return Err(ApiError::new(
            403,
            "wrong_environment",
            format!("a {key_env} key cannot read {env} data"),
        ));
    }
    Ok(env)
}

/// Lists dead letters, newest first (`?limit=`, default 100).
pub async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let env = env_of(&app, &headers, &q)?;
    let limit = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100usize)
        .min(10_000);
    let rows = app
        .stores
        .dead_letters(env, limit)
        .map_err(ApiError::unavailable)?;
    Ok(json(
        200,
        &json!({"environment": env.as_str(), "dead_letters": rows}),
    ))
}

/// Replays dead letters: `{"seqs": [1, 2]}` or `{}` for all. Each entry is parsed and
/// validated again: one that passes is stored (or found already stored, or re-queued for the
/// upstream when this agent already holds it) and leaves the list; any other stays, with the
/// reason it is still refused. `replayed = stored + duplicates + still_refused`.
pub async fn replay(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response, ApiError> {
    let t = now();
    let env = env_of(&app, &headers, &q)?;
    let bytes = read_body(&app, body, SMALL_BODY).await?;
    let v = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(&bytes)?
    };
    let seqs: Option<Vec<i64>> = match v.get("seqs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_i64).collect()),
        Some(_) => {
            return Err(ApiError::new(
                400,
                "invalid_body",
                "seqs: must be a list of dead-letter numbers",
            ))
        }
    };
    let taken = app
        .stores
        .dead_letters_to_replay(env, seqs.as_deref())
        .map_err(ApiError::unavailable)?;
    let mut outcomes: Vec<(i64, ReplayOutcome)> = Vec::with_capacity(taken.len());
    let mut still_refused = Vec::new();
    let (mut fresh, mut fresh_seqs) = (Vec::new(), Vec::new());
    let mut requeued = 0u64;
    for d in &taken {
        // Held here and refused (or never taken) upstream: the stored copy goes upstream again,
        // and the upstream judges it. The body may be in the upstream's format (CloudEvents).
        if d.origin == DeadLetterOrigin::Upstream
            && app
                .stores
                .has_event(env, &d.event_id)
                .map_err(ApiError::unavailable)?
        {
            requeued += 1;
            outcomes.push((d.seq, ReplayOutcome::Requeued(d.event_id.clone())));
            continue;
        }
        let event = serde_json::value::RawValue::from_string(d.body.clone())
            .map_err(|e| e.to_string())
            .and_then(|raw| parse_wire_event(&raw).map_err(|e| e.rejection.to_string()));
        let checked = match event {
            Err(why) => Err(("rejected:invalid_event".to_string(), why, "invalid_event")),
            Ok(e) => match validate_event(&e, t, env) {
                Err(r) => Err((
                    format!("rejected:{}", r.code),
                    r.message.clone(),
                    r.code.as_str(),
                )),
                Ok(_) => Ok(e),
            },
        };
        match checked {
            Err((reason, detail, code)) => {
                still_refused.push(json!({"seq": d.seq, "id": d.event_id, "code": code}));
                outcomes.push((d.seq, ReplayOutcome::Refused(reason, detail)));
            }
            Ok(e) => {
                fresh_seqs.push(d.seq);
                fresh.push(NewEvent {
                    body: String::from_utf8_lossy(&encode_v1(&e)).into_owned(),
                    event: e,
                });
            }
        }
    }
    // Stored first, then the entries removed: a crash in between leaves entries that the next
    // replay finds already stored (duplicates), never an entry gone without its event.
    let flags = app.store_events(env, fresh, t).await?;
    let stored_now = flags.iter().filter(|n| **n).count() as u64;
    let duplicates = flags.len() as u64 - stored_now;
    outcomes.extend(fresh_seqs.into_iter().map(|s| (s, ReplayOutcome::Stored)));
    app.stores
        .settle_replay(env, &outcomes)
        .map_err(ApiError::unavailable)?;
    app.metrics.events_stored(env, stored_now, duplicates);
    app.wake_forwarders();
    Ok(json(
        200,
        &json!({
            "replayed": taken.len(),
            "stored": stored_now + requeued,
            "requeued": requeued,
            "duplicates": duplicates,
            "still_refused": still_refused,
        }),
    ))
}
