//! HAR 1.2 (HTTP Archive) traffic as browsers and proxies export it.

use super::{check_header, Entry, Request, Response, TrafficError};
use aforo_core::time::parse_rfc3339;
use serde_json::Value;

/// Decodes standard base64 (with or without padding); `None` if invalid.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

fn pairs(v: Option<&Value>, what: &str) -> Result<Vec<(String, String)>, String> {
    let Some(list) = v.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, h) in list.iter().enumerate() {
        let name = h
            .get("name")
            .and_then(Value::as_str)
            .ok_or(format!("{what}[{i}].name is missing"))?;
        let value = h
            .get("value")
            .and_then(Value::as_str)
            .ok_or(format!("{what}[{i}].value is missing"))?;
        let name = name.to_ascii_lowercase();
        // HTTP/2 pseudo-headers recorded by browsers are not request headers.
        if name.starts_with(':') {
            continue;
        }
        check_header(&name, value).map_err(|e| format!("{what}[{i}]: {e}"))?;
        out.push((name, value.to_string()));
    }
    Ok(out)
}

fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(format!("request.url {url:?} is not an http(s) URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    Ok((authority.to_string(), path.to_string()))
}

fn entry(e: &Value) -> Result<Entry, String> {
    let time = e
        .get("startedDateTime")
        .and_then(Value::as_str)
        .ok_or("startedDateTime is missing")?;
    let time = parse_rfc3339(time).map_err(|x| format!("startedDateTime: {x}"))?;
    let req = e.get("request").ok_or("request is missing")?;
    let method = req
        .get("method")
        .and_then(Value::as_str)
        .ok_or("request.method is missing")?
        .to_ascii_uppercase();
    let url = req
        .get("url")
        .and_then(Value::as_str)
        .ok_or("request.url is missing")?;
    let (authority, path) = split_url(url)?;
    let headers = pairs(req.get("headers"), "request.headers")?;
    let body = req
        .get("postData")
        .and_then(|p| p.get("text"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .as_bytes()
        .to_vec();
    let res = e.get("response").ok_or("response is missing")?;
    let status = res
        .get("status")
        .and_then(Value::as_u64)
        .ok_or("response.status is missing")?;
    // Browsers record 0 for requests that never got an answer; those cannot be replayed.
    if !(100..=599).contains(&status) {
        return Err(format!(
            "response.status {status} is not an HTTP status (a request without an answer?)"
        ));
    }
    let content = res.get("content");
    let text = content
        .and_then(|c| c.get("text"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let body_res = match content
        .and_then(|c| c.get("encoding"))
        .and_then(Value::as_str)
    {
        Some("base64") => base64_decode(text).ok_or("response.content.text is not valid base64")?,
        _ => text.as_bytes().to_vec(),
    };
    // HAR records the server's address, not the client's: every client gets a documentation address.
    let peer = "203.0.113.10:40000";
    Ok(Entry {
        time,
        request: Request {
            method,
            path,
            authority,
            headers,
            body,
            peer: peer.to_string(),
        },
        response: Response {
            status: status as u16,
            headers: pairs(res.get("headers"), "response.headers")?,
            body: body_res,
        },
        customer: None,
    })
}

/// Parses a HAR 1.2 document; entries are ordered by their start time.
pub fn parse_har(file: &str, text: &str) -> Result<Vec<Entry>, TrafficError> {
    let err = |location: String, message: String| TrafficError {
        file: file.to_string(),
        location,
        message,
    };
    let v: Value = serde_json::from_str(text)
        .map_err(|e| err(format!("line {}", e.line()), format!("not JSON: {e}")))?;
    let entries = v
        .get("log")
        .and_then(|l| l.get("entries"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            err(
                "log".into(),
                "a HAR file needs log.entries (an array)".into(),
            )
        })?;
    if entries.is_empty() {
        return Err(err("log.entries".into(), "the HAR has no entries".into()));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        out.push(entry(e).map_err(|m| err(format!("entry {}", i + 1), m))?);
    }
    out.sort_by_key(|e| e.time);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAR: &str = r#"{"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": [
      {"startedDateTime": "2026-03-15T12:00:01.000+00:00", "time": 12,
       "request": {"method": "GET", "url": "https://api.example.com/v1/search?q=a#frag", "httpVersion": "HTTP/2",
                   "headers": [{"name": ":authority", "value": "api.example.com"}, {"name": "X-Api-Key", "value": "ck_a"}],
                   "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
       "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/2", "headers": [{"name": "Content-Type", "value": "application/json"}],
                    "cookies": [], "content": {"size": 11, "mimeType": "application/json", "text": "eyJvayI6dHJ1ZX0=", "encoding": "base64"},
                    "redirectURL": "", "headersSize": -1, "bodySize": 11},
       "cache": {}, "timings": {"send": 0, "wait": 10, "receive": 2}},
      {"startedDateTime": "2026-03-15T12:00:00Z", "time": 5,
       "request": {"method": "post", "url": "http://api.example.com/v1/chat", "headers": [], "postData": {"mimeType": "application/json", "text": "{}"}},
       "response": {"status": 201, "headers": [], "content": {"size": 2, "text": "{}"}}}
    ]}}"#;

    #[test]
    fn entries_are_read_and_sorted_by_time() {
        let e = parse_har("x.har", HAR).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].request.path, "/v1/chat");
        assert_eq!(e[0].request.body, b"{}");
        assert_eq!(e[1].request.path, "/v1/search?q=a");
        assert_eq!(e[1].request.authority, "api.example.com");
        assert_eq!(
            e[1].request.headers,
            vec![("x-api-key".to_string(), "ck_a".to_string())]
        );
        assert_eq!(e[1].response.body, br#"{"ok":true}"#);
    }

    #[test]
    fn bad_hars_say_which_entry() {
        assert_eq!(
            parse_har("x.har", r#"{"log": {"entries": []}}"#)
                .unwrap_err()
                .location,
            "log.entries"
        );
        assert_eq!(
            parse_har("x.har", r#"{"log": {}}"#).unwrap_err().location,
            "log"
        );
        let bad = HAR.replace(
            "\"X-Api-Key\", \"value\": \"ck_a\"",
            "\"X-Api-Key\", \"value\": \"a\\r\\nb\"",
        );
        let e = parse_har("x.har", &bad).unwrap_err();
        assert_eq!(e.location, "entry 1");
        assert!(e.message.contains("CR, LF"), "{e}");
        let no_answer = HAR.replace("\"status\": 201", "\"status\": 0");
        assert_eq!(
            parse_har("x.har", &no_answer).unwrap_err().location,
            "entry 2"
        );
    }

    #[test]
    fn base64_decodes() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert!(base64_decode("a$b").is_none());
    }
}
