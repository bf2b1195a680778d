//! `POST /v1/events`: the ingest v1 contract. Every accepted event is committed to the store
//! (fsynced) before the 202; one bad event never fails the others.

use super::extract::Gateway;
use super::{json, read_body, ApiError};
use crate::app::App;
use crate::ingest;
use crate::store::{DeadLetter, DeadLetterOrigin, NewEvent};
use aforo_core::event::encode_v1;
use aforo_core::ingest::{parse_batch_with_text, FlaggedEvent, IngestAnswer, RejectedEvent};
use aforo_core::validate::validate_event;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use std::sync::Arc;

/// Answers one ingest request.
pub async fn ingest(
    State(app): State<Arc<App>>,
    Gateway { env, key }: Gateway,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let t = app.now();
    let bytes = read_body(&app, body, app.config.max_body_bytes).await?;
    let parsed = parse_batch_with_text(&bytes)
        .map_err(|e| ApiError::new(e.status(), e.code(), e.to_string()))?;
    app.take_rate(env, key, parsed.len() as u64, t)?;
    let mut answer = IngestAnswer::default();
    let mut valid = Vec::with_capacity(parsed.len());
    let mut late = Vec::new();
    for (text, item) in parsed {
        // A refused entry is kept whole: the event as given, or the text received when it is
        // not an event, so a replay has everything it needs.
        let (id, rejection, origin, kept) = match item {
            Err(e) => (
                e.id.unwrap_or_default(),
                e.rejection,
                DeadLetterOrigin::Unparsable,
                text.to_string(),
            ),
            Ok(event) => match validate_event(&event, t, env) {
                Ok(flag) => {
                    if flag.is_some() {
                        late.push(event.id.clone());
                    }
                    let body = String::from_utf8_lossy(&encode_v1(&event)).into_owned();
                    valid.push(NewEvent {
                        event,
                        body,
                        late: flag.is_some(),
                    });
                    continue;
                }
                Err(r) => {
                    let raw = String::from_utf8_lossy(&encode_v1(&event)).into_owned();
                    (event.id, r, DeadLetterOrigin::Refused, raw)
                }
            },
        };
        let reason = format!("rejected:{}", rejection.code);
        app.stores
            .dead_letter(
                env,
                &DeadLetter {
                    event_id: &id,
                    origin,
                    reason: &reason,
                    detail: &rejection.message,
                    body: &kept,
                },
                t,
            )
            .map_err(ApiError::unavailable)?;
        app.metrics.event_rejected(env, rejection.code.as_str());
        answer.rejected.push(RejectedEvent {
            id,
            code: rejection.code.as_str().to_string(),
            field: rejection.field.map(str::to_string),
            message: Some(rejection.message),
        });
    }
    let ids: Vec<String> = valid.iter().map(|n| n.event.id.clone()).collect();
    let flags = ingest::store_events(&app, env, valid, t).await?;
    for (id, new) in ids.iter().zip(flags) {
        if new {
            answer.accepted += 1;
            if late.contains(id) {
                answer.flagged.push(FlaggedEvent {
                    id: id.clone(),
                    flag: "late".into(),
                });
            }
        } else {
            answer.duplicates += 1;
        }
    }
    app.metrics
        .events_stored(env, answer.accepted, answer.duplicates);
    app.metrics.ingest(env, started.elapsed());
    let v = serde_json::to_value(&answer).unwrap_or_default();
    Ok(json(202, &v))
}
