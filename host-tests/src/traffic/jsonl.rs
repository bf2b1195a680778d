//! The JSONL traffic format (see the module docs of `traffic`).

use super::{check_header, Entry, Request, Response, Traffic, TrafficError};
use aforo_core::strict_json::{describe, FieldError, ObjReader};
use aforo_core::time::parse_rfc3339;
use aforo_core::Timestamp;
use serde_json::Value;

const ENTRY: &[&str] = &[
    "time",
    "request",
    "response",
    "customer",
    "repeat",
    "interval_ms",
];

/// Most requests one line may expand to.
pub const MAX_REPEAT: u64 = 10_000_000;
const REQUEST: &[&str] = &[
    "method",
    "path",
    "authority",
    "headers",
    "body",
    "body_base64",
    "peer",
];
const RESPONSE: &[&str] = &["status", "headers", "body", "body_base64"];

/// Parses JSONL traffic; `start` is the time of a first entry without one.
pub fn parse_jsonl(file: &str, text: &str, start: Timestamp) -> Result<Traffic, TrafficError> {
    let mut out = Traffic::default();
    let mut last = start.plus_millis(-1);
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let err = |message: String| TrafficError {
            file: file.to_string(),
            location: format!("line {}", i + 1),
            message,
        };
        let v: Value = serde_json::from_str(t).map_err(|e| {
            err(format!(
                "not a JSON object ({e}); the line may be truncated"
            ))
        })?;
        let entry = parse_entry(&v, last).map_err(|e| err(e.to_string()))?;
        let (repeat, interval) = repetition(&v).map_err(|e| err(e.to_string()))?;
        let n = repeat.unwrap_or(1);
        last = entry.time.plus_millis(((n - 1) * interval) as i64);
        out.push(entry, n, interval);
    }
    if out.is_empty() {
        return Err(TrafficError {
            file: file.to_string(),
            location: "line 1".into(),
            message: "no traffic entries in the file".into(),
        });
    }
    Ok(out)
}

fn repetition(v: &Value) -> Result<(Option<u64>, u64), FieldError> {
    let r = ObjReader::new("", v, ENTRY)?;
    let repeat = r.u64_in("repeat", 1, MAX_REPEAT)?;
    let interval = r.u64_in("interval_ms", 0, 86_400_000)?.unwrap_or(1);
    if repeat.is_none() && r.get("interval_ms").is_some() {
        return Err(FieldError::new("interval_ms", "is only used with repeat"));
    }
    Ok((repeat, interval))
}

/// Appends `text` to `out` with every `{n}` replaced by `n`.
fn fill_into(out: &mut Vec<u8>, text: &str, n: u64) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    // Each `{` is found with a byte search: `str::find("{n}")` sets up a substring search on
    // every call (about 1,100 instructions a request in scripts/bench-replay.sh's traffic).
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        let (before, from) = rest.split_at(i);
        out.extend_from_slice(before.as_bytes());
        match from.strip_prefix("{n}") {
            Some(after) => {
                out.extend_from_slice(digits);
                rest = after;
            }
            None => {
                out.push(b'{');
                rest = &from[1..];
            }
        }
    }
    out.extend_from_slice(rest.as_bytes());
}

/// `out` becomes `text` with `{n}` replaced, reusing its buffer.
fn fill_string(out: &mut String, text: &str, n: u64) {
    let mut bytes = std::mem::take(out).into_bytes();
    bytes.clear();
    fill_into(&mut bytes, text, n);
    // Only ASCII digits replace ASCII `{n}` in UTF-8 text: still UTF-8.
    *out = String::from_utf8(bytes).unwrap_or_default();
}

/// `out` becomes `body`, with `{n}` replaced when it is UTF-8 text, reusing its buffer.
fn fill_body(out: &mut Vec<u8>, body: &[u8], n: u64) {
    out.clear();
    match std::str::from_utf8(body) {
        Ok(text) => fill_into(out, text, n),
        Err(_) => out.extend_from_slice(body),
    }
}

/// `out` becomes `pairs` with `{n}` replaced in the values, reusing its strings.
fn fill_pairs(out: &mut Vec<(String, String)>, pairs: &[(String, String)], n: u64) {
    out.truncate(pairs.len());
    for (i, (k, v)) in pairs.iter().enumerate() {
        match out.get_mut(i) {
            Some((ok, ov)) => {
                ok.clone_from(k);
                fill_string(ov, v, n);
            }
            None => {
                let mut ov = String::new();
                fill_string(&mut ov, v, n);
                out.push((k.clone(), ov));
            }
        }
    }
}

/// Entry number `n` of a repeated line: `{n}` substituted.
pub(super) fn expand(e: &Entry, n: u64) -> Entry {
    let mut out = e.clone();
    expand_into(&mut out, e, n);
    out
}

/// `expand` into an entry already there, reusing its strings and buffers: a million-request
/// replay expands every request into the same one (`Traffic::cursor`).
pub(super) fn expand_into(out: &mut Entry, e: &Entry, n: u64) {
    out.time = e.time;
    out.request.method.clone_from(&e.request.method);
    fill_string(&mut out.request.path, &e.request.path, n);
    out.request.authority.clone_from(&e.request.authority);
    fill_pairs(&mut out.request.headers, &e.request.headers, n);
    fill_body(&mut out.request.body, &e.request.body, n);
    out.request.peer.clone_from(&e.request.peer);
    out.response.status = e.response.status;
    fill_pairs(&mut out.response.headers, &e.response.headers, n);
    fill_body(&mut out.response.body, &e.response.body, n);
    out.customer.clone_from(&e.customer);
}

fn headers(r: &ObjReader<'_>, key: &str) -> Result<Vec<(String, String)>, FieldError> {
    let path = r.field_path(key);
    let mut out = Vec::new();
    match r.get(key) {
        None => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    other => {
                        return Err(FieldError::new(
                            format!("{path}.{k}"),
                            format!("must be a string, got {}", describe(other)),
                        ))
                    }
                };
                out.push((k.to_ascii_lowercase(), value));
            }
        }
        Some(Value::Array(list)) => {
            for (i, pair) in list.iter().enumerate() {
                match pair.as_array().map(Vec::as_slice) {
                    Some([Value::String(k), Value::String(v)]) => {
                        out.push((k.to_ascii_lowercase(), v.clone()))
                    }
                    _ => {
                        return Err(FieldError::new(
                            format!("{path}[{i}]"),
                            "must be a [name, value] pair of strings",
                        ))
                    }
                }
            }
        }
        Some(other) => {
            return Err(FieldError::new(
                path,
                format!(
                    "must be an object or a list of [name, value], got {}",
                    describe(other)
                ),
            ))
        }
    }
    for (k, v) in &out {
        check_header(k, v).map_err(|m| FieldError::new(format!("{path}.{k}"), m))?;
    }
    Ok(out)
}

fn body(r: &ObjReader<'_>) -> Result<Vec<u8>, FieldError> {
    match (r.string("body")?, r.string("body_base64")?) {
        (Some(_), Some(_)) => Err(FieldError::new(
            r.field_path("body"),
            "set body or body_base64, not both",
        )),
        (Some(s), None) => Ok(s.as_bytes().to_vec()),
        (None, Some(b)) => super::har::base64_decode(b)
            .ok_or_else(|| FieldError::new(r.field_path("body_base64"), "is not valid base64")),
        (None, None) => Ok(Vec::new()),
    }
}

fn parse_entry(v: &Value, previous: Timestamp) -> Result<Entry, FieldError> {
    let r = ObjReader::new("", v, ENTRY)?;
    let time = match r.string("time")? {
        Some(s) => parse_rfc3339(s).map_err(|e| FieldError::new("time", e.to_string()))?,
        None => previous.plus_millis(1),
    };
    let req_v = r
        .get("request")
        .ok_or_else(|| FieldError::new("request", "is required"))?;
    let rq = ObjReader::new("request", req_v, REQUEST)?;
    let method = rq.string("method")?.unwrap_or("GET").to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(FieldError::new(
            "request.method",
            format!("must be an HTTP method, got {method:?}"),
        ));
    }
    let path = rq.required_string("path")?.to_string();
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(FieldError::new(
            "request.path",
            format!("must start with '/' and have no spaces or control characters, got {path:?}"),
        ));
    }
    let request = Request {
        method,
        path,
        authority: rq
            .string("authority")?
            .unwrap_or("api.example.com")
            .to_string(),
        headers: headers(&rq, "headers")?,
        body: body(&rq)?,
        peer: rq
            .string("peer")?
            .unwrap_or("203.0.113.10:40000")
            .to_string(),
    };
    let response = match r.get("response") {
        None => Response {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        },
        Some(rv) => {
            let rs = ObjReader::new("response", rv, RESPONSE)?;
            let status = match rs.get("status") {
                None => 200,
                Some(s) => match s.as_u64() {
                    Some(n) if (100..=599).contains(&n) => n as u16,
                    _ => {
                        return Err(FieldError::new(
                            "response.status",
                            format!("must be 100..=599, got {}", describe(s)),
                        ))
                    }
                },
            };
            Response {
                status,
                headers: headers(&rs, "headers")?,
                body: body(&rs)?,
            }
        }
    };
    Ok(Entry {
        time,
        request,
        response,
        customer: r.string("customer")?.map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_with_defaults() {
        let text = "# comment\n{\"time\":\"2026-03-15T12:00:00Z\",\"request\":{\"path\":\"/a\",\"headers\":{\"X-Api-Key\":\"k\"}}}\n\n{\"request\":{\"method\":\"post\",\"path\":\"/b\",\"headers\":[[\"x-request-id\",\"r\"]],\"body\":\"hi\"},\"response\":{\"status\":201,\"body\":\"{}\"}}\n";
        let e = parse_jsonl("t.jsonl", text, Timestamp::EPOCH)
            .unwrap()
            .entries();
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0].request.headers,
            vec![("x-api-key".to_string(), "k".to_string())]
        );
        assert_eq!(e[1].time, e[0].time.plus_millis(1));
        assert_eq!(e[1].request.method, "POST");
        assert_eq!(e[1].response.status, 201);
        assert_eq!(e[1].request.body, b"hi");
    }

    #[test]
    fn repeat_expands_one_line() {
        let text = r#"{"time":"2026-03-15T12:00:00Z","repeat":3,"interval_ms":10,"request":{"path":"/a/{n}","headers":{"x-request-id":"r-{n}"},"body":"b{n}"}}"#;
        let e = parse_jsonl("t", text, Timestamp::EPOCH).unwrap().entries();
        assert_eq!(e.len(), 3);
        assert_eq!(e[2].request.path, "/a/2");
        assert_eq!(e[2].request.headers[0].1, "r-2");
        assert_eq!(e[1].request.body, b"b1");
        assert_eq!(e[2].time.millis_since(e[0].time), 20);
        assert!(parse_jsonl(
            "t",
            r#"{"repeat":0,"request":{"path":"/"}}"#,
            Timestamp::EPOCH
        )
        .is_err());
        assert!(parse_jsonl(
            "t",
            r#"{"interval_ms":5,"request":{"path":"/"}}"#,
            Timestamp::EPOCH
        )
        .is_err());
    }

    #[test]
    fn only_n_in_braces_is_replaced() {
        let mut out = Vec::new();
        fill_into(&mut out, "{x}{n}{{n}}{ n}{n", 42);
        assert_eq!(out, b"{x}42{42}{ n}{n");
        out.clear();
        fill_into(&mut out, "é{n}€{", 0);
        assert_eq!(String::from_utf8(out).unwrap(), "é0€{");
    }

    #[test]
    fn the_cursor_walks_the_same_requests_as_the_iterator() {
        // Lines that shrink and grow between requests (headers, bodies, a customer), `{n}`
        // twice in one value, a body that is not UTF-8 (kept as is), and single lines between
        // repeated ones: the reused entry must never keep anything of the request before it.
        let text = [
            r#"{"time":"2026-03-15T12:00:00Z","repeat":12,"interval_ms":3,"request":{"path":"/a/{n}?b={n}","headers":{"x-request-id":"r-{n}","x-two":"{n}{n}"},"body":"b{n}"},"response":{"status":201,"headers":{"x-n":"{n}"},"body":"{n}"},"customer":"c1"}"#,
            r#"{"request":{"path":"/single","peer":"203.0.113.7:5555"}}"#,
            r#"{"repeat":2,"request":{"method":"POST","path":"/p","body_base64":"/v7/"}}"#,
            r#"{"repeat":3,"request":{"path":"/q","headers":[["x-a","{n}"]]},"customer":"c2"}"#,
        ]
        .join("\n");
        let traffic = parse_jsonl("t", &text, Timestamp::EPOCH).unwrap();
        let want = traffic.entries();
        let mut got = Vec::new();
        let mut cursor = traffic.cursor();
        while let Some(e) = cursor.next_entry() {
            got.push(e.clone());
        }
        assert_eq!(got, want);
        assert_eq!(got.len(), 18);
        assert_eq!(got[11].request.path, "/a/11?b=11");
        assert_eq!(got[11].request.headers[1].1, "1111");
        assert_eq!(got[11].response.body, b"11");
        assert_eq!(got[13].request.body, [0xfe, 0xfe, 0xff]);
        assert!(got[13].request.headers.is_empty());
        assert_eq!(
            got[17].request.headers,
            [("x-a".to_string(), "2".to_string())]
        );
        assert_eq!(got[17].customer.as_deref(), Some("c2"));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let good = r#"{"request":{"path":"/a"}}"#;
        let cases = [
            (format!("{good}\n{{\"request\":{{\"path\":\"/a\"}}"), "line 2", "truncated"),
            (format!("{good}\n{good}\n{{\"request\":{{\"path\":\"/a\",\"headers\":{{\"x\":\"a\\nb\"}}}}}}"), "line 3", "CR, LF or NUL"),
            ("{\"request\":{\"path\":\"/a\"},\"response\":{\"status\":700}}".to_string(), "line 1", "response.status"),
            ("{\"request\":{\"path\":\"a\"}}".to_string(), "line 1", "request.path"),
            ("{\"reqest\":{}}".to_string(), "line 1", "did you mean"),
            (String::from("\n# nothing\n"), "line 1", "no traffic entries"),
        ];
        for (text, loc, msg) in cases {
            let e = parse_jsonl("t.jsonl", &text, Timestamp::EPOCH).unwrap_err();
            assert_eq!(e.location, loc, "{e}");
            assert!(e.to_string().contains(msg), "{e}");
        }
    }
}
