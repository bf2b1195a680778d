//! Reading an ingest v1 request body: envelope errors fail the request, event errors only the event.

use crate::event::{parse_wire_event, UsageEvent, WireEventError};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

/// Most events in one request (413 past it).
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Most bytes in one request body (413 past it).
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// Why a whole request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Body over 1 MiB or over 1,000 events: 413.
    TooLarge(String),
    /// Not JSON, or not `{"events": [...]}`: 400, with the position.
    Malformed(String),
}

impl BatchError {
    /// The HTTP status for this error.
    pub const fn status(&self) -> u16 {
        match self {
            BatchError::TooLarge(_) => 413,
            BatchError::Malformed(_) => 400,
        }
    }

    /// The `error.code` for this error.
    pub const fn code(&self) -> &'static str {
        match self {
            BatchError::TooLarge(_) => "payload_too_large",
            BatchError::Malformed(_) => "invalid_body",
        }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::TooLarge(m) | BatchError::Malformed(m) => f.write_str(m),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// Every event of a request, each either parsed or refused with its reason.
pub type ParsedBatch = Vec<Result<UsageEvent, WireEventError>>;

/// Parses an ingest v1 body; one bad event never fails the others.
pub fn parse_batch(body: &[u8]) -> Result<ParsedBatch, BatchError> {
    Ok(parse_batch_with_text(body)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// Each entry of a request with the JSON text it was received as.
pub type ParsedBatchWithText<'a> = Vec<(&'a str, Result<UsageEvent, WireEventError>)>;

/// Like `parse_batch`, with the JSON text of each entry as received: a refused entry is kept
/// whole (dead letters), even when it is not an event at all.
pub fn parse_batch_with_text(body: &[u8]) -> Result<ParsedBatchWithText<'_>, BatchError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge(format!(
            "the body is {} bytes; at most {MAX_BATCH_BYTES} bytes per request",
            body.len()
        )));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        BatchError::Malformed(format!("the body is not UTF-8 (byte {})", e.valid_up_to()))
    })?;
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        let what = e.to_string();
        let what = what.split(" at line ").next().unwrap_or("invalid JSON");
        BatchError::Malformed(format!(
            "{what} at line {} column {}; expected {{\"events\": [...]}}",
            e.line(),
            e.column()
        ))
    })?;
    if env.events.len() > MAX_BATCH_EVENTS {
        return Err(BatchError::TooLarge(format!(
            "{} events; at most {MAX_BATCH_EVENTS} per request",
            env.events.len()
        )));
    }
    Ok(env
        .events
        .into_iter()
        .map(|raw| (raw.get(), parse_wire_event(raw)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_errors_say_where() {
        let e = parse_batch(b"{\"events\": [1,}").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("column"), "{e}");
        assert_eq!(parse_batch(b"[]").unwrap_err().status(), 400);
        assert_eq!(parse_batch(b"{\"event\": []}").unwrap_err().status(), 400);
        assert_eq!(parse_batch(&[0xff, 0xfe]).unwrap_err().status(), 400);
    }

    #[test]
    fn limits_give_413() {
        let big = vec![b' '; MAX_BATCH_BYTES + 1];
        assert_eq!(parse_batch(&big).unwrap_err().status(), 413);
        let many = format!(
            "{{\"events\": [{}]}}",
            vec!["{}"; MAX_BATCH_EVENTS + 1].join(",")
        );
        assert_eq!(parse_batch(many.as_bytes()).unwrap_err().status(), 413);
        let ok = format!(
            "{{\"events\": [{}]}}",
            vec!["{}"; MAX_BATCH_EVENTS].join(",")
        );
        assert_eq!(parse_batch(ok.as_bytes()).unwrap().len(), MAX_BATCH_EVENTS);
    }

    #[test]
    fn one_bad_event_does_not_fail_the_others() {
        let body = br#"{"events": [
            {"id":"a","customer_id":"c","metric":"m","quantity":1,"timestamp":"2026-03-15T12:00:00Z","product_id":"p","environment":"sandbox"},
            {"id":"b","customer_id":"c","metric":"m","quantity":-1,"timestamp":"2026-03-15T12:00:00Z","product_id":"p","environment":"sandbox"}
        ]}"#;
        let parsed = parse_batch(body).unwrap();
        assert!(parsed[0].is_ok());
        assert_eq!(parsed[1].as_ref().unwrap_err().id.as_deref(), Some("b"));
    }
}
