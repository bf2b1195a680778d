//! A quantity read from a streamed (`text/event-stream`) response as it passes: each event's
//! JSON is looked at once and dropped, and the last value found at the pointer wins (LLM APIs
//! send their usage in the last events). A stream that ends, or is cut off, before any event
//! carried it has no quantity: never a zero.

use crate::config::{Meter, QuantitySource};
use crate::event::Quantity;
use crate::sse::SseReader;
use serde_json::Value;

/// The usage seen so far in one streamed response, per meter of the route.
#[derive(Debug)]
pub(crate) struct StreamQuantity {
    reader: SseReader,
    last: Vec<Option<Result<Quantity, String>>>,
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

impl StreamQuantity {
    /// Reads events of at most `max_event_bytes` each (larger ones are skipped and counted)
    /// for a route of `meters` meters.
    pub(crate) fn new(max_event_bytes: usize, meters: usize) -> StreamQuantity {
        StreamQuantity {
            reader: SseReader::new(max_event_bytes),
            last: vec![None; meters],
            not_json: 0,
        }
    }

    /// Reads a chunk of the stream, keeping for each JSON meter the last value found at its
    /// pointer.
    pub(crate) fn feed(&mut self, chunk: &[u8], meters: &[Meter]) {
        let StreamQuantity {
            reader,
            last,
            not_json,
        } = self;
        reader.feed(chunk, &mut |e| {
            if e.data == b"[DONE]" {
                return;
            }
            match serde_json::from_slice::<Value>(e.data) {
                Ok(v) => {
                    for (slot, m) in last.iter_mut().zip(meters) {
                        if let QuantitySource::ResponseJson(pointer) = &m.quantity {
                            if let Some(found) = v.pointer(pointer) {
                                *slot = Some(json_quantity(pointer, Some(found)));
                            }
                        }
                    }
                }
                Err(_) => *not_json += 1,
            }
        });
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
        if complete {
            Err(format!(
                "the event stream ended without {pointer} in any event ({read})"
            ))
        } else {
            Err(format!(
                "the event stream was cut off before {pointer} arrived ({read})"
            ))
        }
    }
}
