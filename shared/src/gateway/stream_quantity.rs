//! Quantities and properties read from a streamed (`text/event-stream`) response as it passes:
//! each event's JSON is looked at once and dropped, and the last value found at a pointer wins
//! (LLM APIs send their usage in the last events). A stream that ends, or is cut off, before
//! any event carried a quantity has none: never a zero.

use crate::config::{BodySide, QuantitySource, Route};
use crate::event::Quantity;
use crate::sse::SseReader;
use serde_json::Value;

/// The usage seen so far in one streamed response, per meter and property of the route.
#[derive(Debug)]
pub(crate) struct StreamQuantity {
    reader: SseReader,
    last: Vec<Option<Result<Quantity, String>>>,
    properties: Vec<Option<Value>>,
    not_json: u64,
}

/// The quantity at `pointer` in `v`: a JSON number, or a string holding a decimal.
pub(crate) fn json_quantity(pointer: &str, v: Option<&Value>) -> Result<Quantity, String> {
    match v {
        Some(Value::Number(n)) => {
            Quantity::parse(&n.to_string()).map_err(|e| format!("{pointer}: {e}"))
        }
        Some(Value::String(s)) => Quantity::parse(s).map_err(|e| format!("{pointer}: {e}")),
        Some(other) => Err(format!("{pointer} is not a number ({other})")),
        None => Err(format!("{pointer} is not in the response body")),
    }
}

/// A value fit to be a property: a string of at most `MAX_PROPERTY_BYTES`, a number or a
/// boolean (objects, arrays and nulls are not stored).
pub(crate) fn property_value(v: Option<&Value>) -> Option<Value> {
    match v? {
        Value::String(s) if s.len() <= crate::config::MAX_PROPERTY_BYTES => {
            Some(Value::String(s.clone()))
        }
        v @ (Value::Number(_) | Value::Bool(_)) => Some(v.clone()),
        _ => None,
    }
}

impl StreamQuantity {
    /// Reads events of at most `max_event_bytes` each (larger ones are skipped and counted)
    /// for `route`'s meters and properties.
    pub(crate) fn new(max_event_bytes: usize, route: &Route) -> StreamQuantity {
        StreamQuantity {
            reader: SseReader::new(max_event_bytes),
            last: vec![None; route.meters.len()],
            properties: vec![None; route.properties.len()],
            not_json: 0,
        }
    }

    /// Reads a chunk of the stream, keeping for each JSON meter and response property the
    /// last value found at its pointer.
    pub(crate) fn feed(&mut self, chunk: &[u8], route: &Route) {
        let StreamQuantity {
            reader,
            last,
            properties,
            not_json,
        } = self;
        reader.feed(chunk, &mut |e| {
            if e.data == b"[DONE]" {
                return;
            }
            match serde_json::from_slice::<Value>(e.data) {
                Ok(v) => {
                    for (slot, m) in last.iter_mut().zip(&route.meters) {
                        if let QuantitySource::ResponseJson(pointer) = &m.quantity {
                            // A null (a chunk before the usage, `"usage": null`) never
                            // replaces a value found earlier.
                            if let Some(found) = v.pointer(pointer).filter(|f| !f.is_null()) {
                                *slot = Some(json_quantity(pointer, Some(found)));
                            }
                        }
                    }
                    for (slot, p) in properties.iter_mut().zip(&route.properties) {
                        if p.from == BodySide::Response {
                            if let Some(found) = property_value(v.pointer(&p.pointer)) {
                                *slot = Some(found);
                            }
                        }
                    }
                }
                Err(_) => *not_json += 1,
            }
        });
    }

    /// Frees the reader's buffers once the stream is over (what was found stays).
    pub(crate) fn release(&mut self) {
        self.reader.release();
    }

    /// Property `i`'s last value seen in the stream.
    pub(crate) fn property(&self, i: usize) -> Option<&Value> {
        self.properties.get(i).and_then(Option::as_ref)
    }

    /// Meter `i`'s quantity, or why there is none; `complete`: the upstream ended the stream
    /// (else it was cut off, by the client or a reset).
    pub(crate) fn quantity(
        &self,
        i: usize,
        pointer: &str,
        complete: bool,
    ) -> Result<Quantity, String> {
        if let Some(Some(found)) = self.last.get(i) {
            return found.clone();
        }
        let read = format!(
            "{} events read{}{}",
            self.reader.events,
            if self.reader.dropped > 0 {
                format!(", {} skipped past max_body_bytes", self.reader.dropped)
            } else {
                String::new()
            },
            if self.not_json > 0 {
                format!(", {} not JSON", self.not_json)
            } else {
                String::new()
            },
        );
        Err(missing_from_stream(pointer, complete, &read))
    }
}

/// Why a streamed response has no quantity at `pointer`: it ended without it (`complete`), or
/// was cut off before it; `read` says what was read.
pub(crate) fn missing_from_stream(pointer: &str, complete: bool, read: &str) -> String {
    if complete {
        format!("the event stream ended without {pointer} in any event ({read})")
    } else {
        format!("the event stream was cut off before {pointer} arrived ({read})")
    }
}
