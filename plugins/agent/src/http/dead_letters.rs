//! `GET /v1/dead-letters` and `POST /v1/dead-letters/replay`: what could not be delivered or
//! was refused, with its reason; replaying re-validates and stores (and forwards) again.

use super::{gateway_key, json, now, parse_json, read_body, ApiError, App, SMALL_BODY};
use crate::store::NewEvent;
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

/// Replays dead letters: `{"seqs": [1, 2]}` or `{}` for all.
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
        .take_dead_letters(env, seqs.as_deref())
        .map_err(ApiError::unavailable)?;
    let (mut stored, mut still_refused) = (0u64, Vec::new());
    let mut fresh = Vec::new();
    for (seq, id, body) in &taken {
        let event = serde_json::value::RawValue::from_string(body.clone())
            .ok()
            .and_then(|raw| parse_wire_event(&raw).ok());
        match event.map(|e| (validate_event(&e, t, env), e)) {
            Some((Ok(_), e)) => fresh.push(NewEvent {
                body: String::from_utf8_lossy(&encode_v1(&e)).into_owned(),
                event: e,
            }),
            Some((Err(r), _)) => {
                let _ = app.stores.dead_letter(
                    env,
                    id,
                    &format!("rejected:{}", r.code),
                    &r.message,
                    body,
                    t,
                );
                still_refused.push(json!({"seq": seq, "id": id, "code": r.code.as_str()}));
            }
            // Events forwarded upstream and dead-lettered there are already stored: they are
            // simply marked for forwarding again (done by take_dead_letters).
            None => {}
        }
    }
    if !fresh.is_empty() {
        stored = app
            .store_events(env, fresh, t)
            .await?
            .into_iter()
            .filter(|n| *n)
            .count() as u64;
    }
    app.wake_forwarders();
    Ok(json(
        200,
        &json!({"replayed": taken.len(), "stored": stored, "still_refused": still_refused}),
    ))
}
