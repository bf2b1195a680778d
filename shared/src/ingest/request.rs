//! Reading an ingest v1 request body: envelope errors fail the request, event errors only the event.

use crate::event::{parse_well_formed_events, parse_wire_event, UsageEvent, WireEventError};
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
    // Every entry well-formed (a gateway's batch): one pass, the same results.
    if body.len() <= MAX_BATCH_BYTES {
        if let Some(events) = std::str::from_utf8(body)
            .ok()
            .and_then(|text| parse_well_formed_events(text, MAX_BATCH_EVENTS))
        {
            return Ok(events);
        }
    }
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

    /// The one-pass read of well-formed batches gives what reading each entry on its own gives.
    #[test]
    fn a_batch_read_in_one_pass_equals_each_entry_read_alone() {
        let ok = r#"{"id":"evt_1","customer_id":"c\u00e9 \"q\"","metric":"m","quantity":"2.50","timestamp":"2026-03-02T09:00:00.123Z","product_id":"p","environment":"sandbox","properties":{"path":"/v1/x?a=\"b\"","n":3,"nested":{"k":[1,2]}}}"#;
        let no_props = r#"{"id":"evt_2","customer_id":"c","metric":"m","quantity":7,"timestamp":"2026-03-02T09:00:00Z","product_id":"p","environment":"production"}"#;
        let entries = [
            ok,
            no_props,
            // Well-formed JSON, but refused by the checks after the read (both ways).
            r#"{"id":"evt_3","customer_id":"","metric":"m","quantity":"1","timestamp":"2026-03-02T09:00:00Z","product_id":"p","environment":"sandbox"}"#,
            r#"{"id":"evt_4","customer_id":"c","metric":"m","quantity":"-1","timestamp":"2026-03-02T09:00:00Z","product_id":"p","environment":"sandbox"}"#,
            r#"{"id":"evt_5","customer_id":"c","metric":"m","quantity":"1","timestamp":"yesterday","product_id":"p","environment":"sandbox"}"#,
            // Not of the fast shape: the whole batch is read entry by entry.
            r#"{"id":"evt_6","customer_id":"c","metric":"m","quantity":"1","timestamp":"2026-03-02T09:00:00Z","product_id":"p","environment":"sandbox","extra":1}"#,
            r#"{"id":"evt_7","id":"evt_7b","customer_id":"c","metric":"m","quantity":"1","timestamp":"2026-03-02T09:00:00Z","product_id":"p","environment":"sandbox"}"#,
            r#"{"id":"evt_8","customer_id":null,"metric":"m","quantity":"1","timestamp":"2026-03-02T09:00:00Z","product_id":"p","environment":"sandbox"}"#,
            r#"[1,2]"#,
            r#""evt_9""#,
        ];
        let mut bodies: Vec<String> = vec![
            r#"{"events": []}"#.to_string(),
            format!(r#"{{"events": [{ok}, {no_props}]}}"#),
            format!(r#"{{"events": [{ok}, {no_props}], "events": []}}"#),
            format!(r#"{{"events": [{ok}], "more": 1}}"#),
        ];
        for e in &entries {
            bodies.push(format!(r#"{{"events": [{ok}, {e}, {no_props}]}}"#));
            bodies.push(format!(r#"{{ "events" : [ {e} ] }}"#));
        }
        for body in &bodies {
            let one_pass = parse_batch(body.as_bytes());
            let alone = parse_batch_with_text(body.as_bytes())
                .map(|v| v.into_iter().map(|(_, e)| e).collect::<ParsedBatch>());
            assert_eq!(one_pass, alone, "{body}");
        }
        // Both ways see the same good events.
        let good = parse_batch(bodies[1].as_bytes()).unwrap();
        assert_eq!(good.len(), 2);
        assert_eq!(good[0].as_ref().unwrap().customer_id, "cé \"q\"");
        // One entry past the limit: refused whole, as before.
        let many = format!(
            r#"{{"events": [{}]}}"#,
            vec![no_props; MAX_BATCH_EVENTS + 1].join(",")
        );
        assert_eq!(parse_batch(many.as_bytes()).unwrap_err().status(), 413);
    }

    /// Found by the fuzzer: with two unknown fields the answer named either, by a hash
    /// map's order; a retried batch must get the same answer.
    #[test]
    fn the_unknown_field_named_is_the_same_every_time() {
        let body = br#"{"events": [{"zz": 1, "d": "x", "onment": 0, "id": "e"}]}"#;
        for _ in 0..20 {
            let e = parse_batch(body).unwrap().remove(0).unwrap_err();
            assert!(
                e.rejection.message.starts_with("unknown field \"d\""),
                "{e:?}"
            );
            assert_eq!(e.id.as_deref(), Some("e"));
        }
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
