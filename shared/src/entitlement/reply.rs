//! Turning decisions into HTTP: `RateLimit-*` headers on allowed responses, local replies on denials.

use super::decision::{Allowance, Deny};
use crate::ratelimit::retry_after_secs;
use crate::time::Timestamp;
use serde::Serialize;

/// A response the gateway sends itself instead of forwarding the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: Vec<u8>,
}

/// A number's decimal text held in place: a header value written on every allowed response
/// without an allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NumberText {
    digits: [u8; 20],
    len: u8,
}

impl NumberText {
    /// The decimal text of `n` (at most 20 digits).
    pub fn new(n: u64) -> Self {
        let mut buffer = itoa::Buffer::new();
        let text = buffer.format(n).as_bytes();
        let mut digits = [0u8; 20];
        let len = text.len().min(digits.len());
        digits[..len].copy_from_slice(&text[..len]);
        NumberText {
            digits,
            len: len as u8,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[..usize::from(self.len)]).unwrap_or("0")
    }
}

impl std::fmt::Debug for NumberText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The `RateLimit-*` headers of an allowed response, by name.
pub type RateLimitHeaders = [(&'static str, NumberText); 3];

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds, >= 1) for an allowance.
pub fn ratelimit_headers(a: &Allowance, now: Timestamp) -> RateLimitHeaders {
    [
        ("ratelimit-limit", NumberText::new(a.limit)),
        ("ratelimit-remaining", NumberText::new(a.remaining)),
        (
            "ratelimit-reset",
            NumberText::new(retry_after_secs(now, a.reset_at)),
        ),
    ]
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// The JSON body of a denial: `{"error": {"code": "...", "message": "..."}}`.
pub fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody {
        error: ErrorDetail { code, message },
    })
    .unwrap_or_default()
}

/// The local reply for a denial: status, JSON body, and on 429 `Retry-After` and, with
/// `rate_limit_headers` (the option of that name), the counters.
pub fn deny_reply(d: &Deny, now: Timestamp, rate_limit_headers: bool) -> LocalReply {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(a) = d.allowance.as_ref().filter(|_| rate_limit_headers) {
        for (k, v) in ratelimit_headers(a, now) {
            headers.push((k.to_string(), v.as_str().to_string()));
        }
    }
    if let Some(s) = d.retry_after_secs {
        headers.push(("retry-after".to_string(), s.to_string()));
    }
    LocalReply {
        status: d.code.status(),
        headers,
        body: error_body(d.code.as_str(), &d.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::decision::{check_quota, DenyCode};
    use crate::entitlement::snapshot::Entitlement;
    use crate::entitlement::window::{Period, QuotaWindow};
    use crate::time::parse_rfc3339;

    #[test]
    fn a_number_text_is_the_numbers_decimal_text() {
        for n in [0, 7, 10, 99, 4_294_967_296, 1_000_000_000_000, u64::MAX] {
            assert_eq!(NumberText::new(n).as_str(), n.to_string());
        }
    }

    #[test]
    fn a_429_carries_counters_and_retry_after() {
        let now = parse_rfc3339("2026-03-31T23:59:59.5Z").unwrap();
        let e = Entitlement {
            allowed: true,
            quota: Some(5),
            used: 5,
            used_by_source: None,
            used_window_start: None,
            window: QuotaWindow::calendar(Period::Month),
            rate_limit: None,
        };
        let d = check_quota(&e, 0, 1, now).unwrap_err();
        let r = deny_reply(&d, now, true);
        assert_eq!(r.status, 429);
        let h = |n: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(h("ratelimit-limit").as_deref(), Some("5"));
        assert_eq!(h("ratelimit-remaining").as_deref(), Some("0"));
        // Half a second to the month boundary: rounded up to the 1 s minimum.
        assert_eq!(h("retry-after").as_deref(), Some("1"));
        assert_eq!(h("ratelimit-reset").as_deref(), Some("1"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"]["code"], DenyCode::QuotaExhausted.as_str());
        // Without `rate_limit_headers`: the same refusal, `Retry-After` and no counters.
        let hidden = deny_reply(&d, now, false);
        let names: Vec<&str> = hidden.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["content-type", "retry-after"]);
        assert_eq!((hidden.status, hidden.body), (r.status, r.body));
    }
}
