//! Server-sent events read as they stream (the WHATWG `text/event-stream` rules): chunks may
//! split a line, a CRLF or a UTF-8 sequence anywhere; each complete event's `data` is handed on
//! at once and nothing else is kept, so memory is bounded by one event, however long the stream.

/// Longest `event:` name kept (the names LLM APIs use are under 32 bytes).
const MAX_EVENT_NAME: usize = 64;

/// One dispatched event.
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field (empty when the stream names none).
    pub event: &'a [u8],
    /// The `data:` lines joined with `\n`.
    pub data: &'a [u8],
}

/// An incremental `text/event-stream` reader.
#[derive(Debug)]
pub struct SseReader {
    max_event_bytes: usize,
    line: Vec<u8>,
    line_too_long: bool,
    data: Vec<u8>,
    event: Vec<u8>,
    event_too_long: bool,
    after_cr: bool,
    /// Events dispatched so far.
    pub events: u64,
    /// Events dropped because a line or the event passed `max_event_bytes`.
    pub dropped: u64,
}

impl SseReader {
    /// A reader keeping at most `max_event_bytes` of one event (its data and current line).
    pub fn new(max_event_bytes: usize) -> SseReader {
        SseReader {
            max_event_bytes,
            line: Vec::new(),
            line_too_long: false,
            data: Vec::new(),
            event: Vec::new(),
            event_too_long: false,
            after_cr: false,
            events: 0,
            dropped: 0,
        }
    }

    /// Frees what an unfinished event holds (the stream is over; its counts stay).
    pub fn release(&mut self) {
        self.line = Vec::new();
        self.data = Vec::new();
        self.event = Vec::new();
    }

    /// Reads a chunk; `on_event` is called for every event it completes, in order.
    pub fn feed(&mut self, chunk: &[u8], on_event: &mut dyn FnMut(SseEvent<'_>)) {
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    self.push_line_bytes(&rest[..i]);
                    self.after_cr = rest[i] == b'\r';
                    self.end_line(on_event);
                    rest = &rest[i + 1..];
                }
                None => {
                    self.push_line_bytes(rest);
                    rest = &[];
                }
            }
        }
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) {
        if self.line_too_long {
            return;
        }
        if self.line.len() + bytes.len() > self.max_event_bytes {
            self.line_too_long = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self, on_event: &mut dyn FnMut(SseEvent<'_>)) {
        let line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.line_too_long) {
            // A line past the bound: the event it belongs to cannot be read whole.
            self.event_too_long = true;
            self.data = Vec::new();
            return;
        }
        if line.is_empty() {
            self.dispatch(on_event);
        } else if line[0] != b':' {
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => {
                    let v = &line[i + 1..];
                    (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (&line[..], &[][..]),
            };
            match field {
                b"data" if !self.event_too_long => {
                    if self.data.len() + value.len() + 1 > self.max_event_bytes {
                        self.event_too_long = true;
                        self.data = Vec::new();
                    } else {
                        self.data.extend_from_slice(value);
                        self.data.push(b'\n');
                    }
                }
                b"event" => {
                    self.event.clear();
                    self.event
                        .extend_from_slice(&value[..value.len().min(MAX_EVENT_NAME)]);
                }
                _ => {}
            }
        }
        // The buffer is reused for the next line (its capacity stays within the bound).
        self.line = line;
        self.line.clear();
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(SseEvent<'_>)) {
        if std::mem::take(&mut self.event_too_long) {
            self.dropped += 1;
        } else if !self.data.is_empty() {
            self.events += 1;
            let data = &self.data[..self.data.len() - 1];
            on_event(SseEvent {
                event: &self.event,
                data,
            });
        }
        self.data.clear();
        self.event.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(chunks: &[&[u8]], max: usize) -> (Vec<(String, String)>, u64) {
        let mut r = SseReader::new(max);
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut |e| {
                out.push((
                    String::from_utf8_lossy(e.event).into_owned(),
                    String::from_utf8_lossy(e.data).into_owned(),
                ))
            });
        }
        (out, r.dropped)
    }

    const ANTHROPIC: &[u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\n: a comment\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn events_are_read_with_their_names_and_comments_skipped() {
        let (events, dropped) = read_all(&[ANTHROPIC], 4096);
        assert_eq!(dropped, 0);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec!["message_start", "ping", "message_delta", "message_stop"]
        );
        assert_eq!(
            events[2].1,
            r#"{"type":"message_delta","usage":{"output_tokens":15}}"#
        );
    }

    #[test]
    fn multi_line_data_crlf_and_cr_endings_and_a_missing_space() {
        let (events, _) = read_all(&[b"data:a\r\ndata: b\r\n\r\ndata: c\r\rdata\n\n"], 64);
        let data: Vec<&str> = events.iter().map(|(_, d)| d.as_str()).collect();
        // A bare `data` line is an empty value: its event is dispatched with empty data.
        assert_eq!(data, vec!["a\nb", "c", ""]);
    }

    #[test]
    fn an_unfinished_event_at_the_end_is_not_dispatched() {
        let (events, _) = read_all(&[b"data: {\"usage\":1}\n\ndata: {\"usage\":2}\n"], 64);
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn an_event_past_the_bound_is_dropped_and_the_next_one_read() {
        let big = format!("data: {}\n\ndata: small\n\n", "x".repeat(100));
        let (events, dropped) = read_all(&[big.as_bytes()], 50);
        assert_eq!(dropped, 1);
        assert_eq!(events, vec![(String::new(), "small".to_string())]);
        // Several lines that each fit but together do not.
        let many = "data: 0123456789\n".repeat(10) + "\ndata: next\n\n";
        let (events, dropped) = read_all(&[many.as_bytes()], 50);
        assert_eq!(dropped, 1);
        assert_eq!(events, vec![(String::new(), "next".to_string())]);
    }

    proptest! {
        /// Split anywhere (inside a CRLF, a field name, a UTF-8 sequence): the same events.
        #[test]
        fn any_chunking_reads_the_same_events(cuts in proptest::collection::vec(0usize..400, 0..12), crlf in any::<bool>()) {
            let text: Vec<u8> = if crlf {
                String::from_utf8_lossy(ANTHROPIC).replace('\n', "\r\n").into_bytes()
            } else {
                [ANTHROPIC, "data: {\"é\": \"ü\"}\n\n".as_bytes()].concat()
            };
            let whole = read_all(&[&text], 4096);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (text.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&text[at..c]);
                at = c;
            }
            chunks.push(&text[at..]);
            prop_assert_eq!(read_all(&chunks, 4096), whole);
        }
    }
}
