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

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds, >= 1) for an allowance.
pub fn ratelimit_headers(a: &Allowance, now: Timestamp) -> [(&'static str, String); 3] {
    // On every allowed response: itoa, not `to_string` through core::fmt.
    let text = |n: u64| itoa::Buffer::new().format(n).to_owned();
    [
        ("ratelimit-limit", text(a.limit)),
        ("ratelimit-remaining", text(a.remaining)),
        ("ratelimit-reset", text(retry_after_secs(now, a.reset_at))),
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

/// The local reply for a denial: status, JSON body, and on 429 the counters and `Retry-After`.
pub fn deny_reply(d: &Deny, now: Timestamp) -> LocalReply {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(a) = &d.allowance {
        for (k, v) in ratelimit_headers(a, now) {
            headers.push((k.to_string(), v));
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
        let r = deny_reply(&d, now);
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
    }
}
