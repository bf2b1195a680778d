//! `GET /v1/dead-letters` and `POST /v1/dead-letters/replay`: what could not be delivered or
//! was refused, with its reason; replaying re-validates and stores (and forwards) again.

use super::extract::{KeysOwn, Scoped};
use super::{json, parse_json, read_body, ApiError, SMALL_BODY};
use crate::app::App;
use aforo_core::strict_json::ObjReader;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

/// Lists dead letters, newest first (`?limit=`, default 100).
pub async fn list(
    State(app): State<Arc<App>>,
    Scoped { env, query, .. }: Scoped<KeysOwn>,
) -> Result<Response, ApiError> {
    let limit = query
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

/// Replays dead letters: `{"seqs": [1, 2]}` or `{}` for all (see `replay.rs`).
pub async fn replay(
    State(app): State<Arc<App>>,
    scoped: Scoped<KeysOwn>,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&app, body, SMALL_BODY).await?;
    let v = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(&bytes)?
    };
    let r =
        ObjReader::new("", &v, &["seqs"]).map_err(|e| ApiError::from_field("invalid_body", e))?;
    let seqs: Option<Vec<i64>> = match r.get("seqs") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .enumerate()
                .map(|(i, s)| {
                    s.as_i64().ok_or_else(|| {
                        ApiError::invalid(
                            "invalid_body",
                            format!("seqs[{i}]"),
                            "must be a dead-letter number",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_body",
                "seqs",
                "must be a list of dead-letter numbers",
            ))
        }
    };
    let report = crate::replay::replay(&app, scoped.env, seqs.as_deref()).await?;
    Ok(json(
        200,
        &serde_json::to_value(&report).unwrap_or_default(),
    ))
}
