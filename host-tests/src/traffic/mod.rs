//! Recorded traffic: one request and its recorded response per entry, from JSONL or HAR 1.2.
//!
//! JSONL format, one object per line (blank lines and lines starting with `#` are skipped):
//!
//! ```json
//! {"time": "2026-03-15T12:00:00Z",
//!  "request": {"method": "GET", "path": "/v1/search?q=1", "headers": {"x-api-key": "ck_…"},
//!              "body": "…", "peer": "203.0.113.7:5555"},
//!  "response": {"status": 200, "headers": {"content-type": "application/json"}, "body": "…"},
//!  "customer": "cust_a"}
//! ```
//!
//! `time` (RFC 3339) drives the virtual clock; without it an entry comes 1 ms after the one
//! before. Headers are an object or a list of `[name, value]` pairs. `body_base64` may replace
//! `body`. `response` defaults to `200` with no body. `customer` only labels the report.
//!
//! `"repeat": N` (with optional `"interval_ms"`, default 1) expands one line into N requests;
//! `{n}` in the path, header values and bodies becomes the repetition number (0-based), so a
//! 100,000-request scenario is one line: `"headers": {"x-request-id": "load-{n}"}`.

mod har;
mod jsonl;

pub use har::parse_har;
pub use jsonl::parse_jsonl;

use aforo_core::Timestamp;
use std::fmt;
use std::path::Path;

/// One recorded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// HTTP method, upper case.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// `Host` / `:authority`.
    pub authority: String,
    /// Headers, lower-case names, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Downstream peer address, `ip:port`.
    pub peer: String,
}

/// The response the upstream gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// One entry of a traffic file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// When the request arrived.
    pub time: Timestamp,
    /// The request.
    pub request: Request,
    /// What the upstream answered.
    pub response: Response,
    /// A label for reports (the customer the request is from).
    pub customer: Option<String>,
}

/// One line of a traffic file, possibly repeated (expanded lazily, one request at a time).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    entry: Entry,
    repeat: u64,
    interval_ms: u64,
}

/// Parsed traffic; `repeat` lines are expanded as they are iterated, so a million-request
/// scenario does not hold a million requests in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    lines: Vec<Line>,
    len: usize,
}

impl Traffic {
    /// Traffic from plain entries.
    pub fn from_entries(entries: Vec<Entry>) -> Self {
        let len = entries.len();
        Traffic {
            lines: entries
                .into_iter()
                .map(|entry| Line {
                    entry,
                    repeat: 1,
                    interval_ms: 0,
                })
                .collect(),
            len,
        }
    }

    fn push(&mut self, entry: Entry, repeat: u64, interval_ms: u64) {
        self.len += repeat as usize;
        self.lines.push(Line {
            entry,
            repeat,
            interval_ms,
        });
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether every request carries a customer label (HAR recordings carry none).
    pub fn all_labelled(&self) -> bool {
        self.lines.iter().all(|l| l.entry.customer.is_some())
    }

    /// When the first request arrives.
    pub fn first_time(&self) -> Option<Timestamp> {
        self.lines.first().map(|l| l.entry.time)
    }

    /// Every request in order.
    pub fn iter(&self) -> impl Iterator<Item = std::borrow::Cow<'_, Entry>> + '_ {
        self.lines.iter().flat_map(|l| {
            (0..l.repeat).map(move |n| {
                if l.repeat == 1 {
                    std::borrow::Cow::Borrowed(&l.entry)
                } else {
                    let mut e = jsonl::expand(&l.entry, n);
                    e.time = l.entry.time.plus_millis((n * l.interval_ms) as i64);
                    std::borrow::Cow::Owned(e)
                }
            })
        })
    }

    /// The requests one at a time, each repeated line expanded into one reused entry (no
    /// allocation per request once its buffers have grown); `iter` hands out owned copies.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            lines: &self.lines,
            line: 0,
            n: 0,
            scratch: None,
        }
    }

    /// Every request, materialised (small files and tests).
    pub fn entries(&self) -> Vec<Entry> {
        self.iter().map(std::borrow::Cow::into_owned).collect()
    }
}

/// Walks a traffic's requests in order without copying each (`Traffic::cursor`).
pub struct Cursor<'a> {
    lines: &'a [Line],
    line: usize,
    n: u64,
    scratch: Option<Entry>,
}

impl Cursor<'_> {
    /// The next request, or `None` after the last.
    pub fn next_entry(&mut self) -> Option<&Entry> {
        loop {
            let l = self.lines.get(self.line)?;
            if self.n >= l.repeat {
                self.line += 1;
                self.n = 0;
                continue;
            }
            let n = self.n;
            self.n += 1;
            if l.repeat == 1 {
                return Some(&l.entry);
            }
            let out = self.scratch.get_or_insert_with(|| l.entry.clone());
            jsonl::expand_into(out, &l.entry, n);
            out.time = l.entry.time.plus_millis((n * l.interval_ms) as i64);
            return Some(out);
        }
    }
}

/// A traffic file that could not be read, with where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficError {
    /// File name.
    pub file: String,
    /// `line 17` or `entry 3`.
    pub location: String,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for TrafficError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.location, self.message)
    }
}

impl std::error::Error for TrafficError {}

/// Reads a traffic file, choosing HAR for `.har` files (or JSON starting with `{"log"`) and JSONL otherwise.
pub fn load(path: &Path) -> Result<Traffic, TrafficError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| TrafficError {
        file: file.clone(),
        location: "open".into(),
        message: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| TrafficError {
        file: file.clone(),
        location: format!("byte {}", e.utf8_error().valid_up_to()),
        message: "the file is not UTF-8".into(),
    })?;
    let looks_har = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("har"))
        || text.trim_start().starts_with("{\"log\"")
        || text.trim_start().starts_with("{ \"log\"");
    if looks_har {
        parse_har(&file, &text).map(Traffic::from_entries)
    } else {
        parse_jsonl(&file, &text, Timestamp::from_unix_secs(0))
    }
}

/// A header's value by lower-case name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Checks a header for what HTTP allows (no CR, LF or NUL; a token name).
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;\\\"/[]?={}".contains(&b))
    {
        return Err(format!("header name {name:?} is not a valid HTTP token"));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header {name:?} has a value with CR, LF or NUL"));
    }
    Ok(())
}
