//! Metering from an access log instead of a live exchange (AWS API Gateway, whose extension
//! point sees the request in an authorizer and the response only in its access log): the log
//! line becomes an exchange and goes through the same metering as a proxied request.

use super::exchange::Exchange;
use super::Gateway;
use crate::config::QuantitySource;
use crate::environment::Environment;
use crate::host::Host;
use crate::time::Timestamp;

/// One request as an access log records it.
#[derive(Clone, Debug)]
pub struct LoggedRequest<'a> {
    /// The gateway's request id: the event id derives from it, so a redelivered log line
    /// counts once.
    pub request_id: &'a str,
    /// When the request arrived.
    pub time: Timestamp,
    /// HTTP method.
    pub method: &'a str,
    /// Path (a query string is dropped from the endpoint).
    pub path: &'a str,
    /// Status the client got.
    pub status: u16,
    /// The customer the authorizer identified.
    pub customer_id: &'a str,
    /// Where its usage belongs.
    pub environment: Environment,
    /// The consumer key id the authorizer matched, if any.
    pub key_id: Option<&'a str>,
    /// Request body bytes (for `request_bytes` quantities), when the log has them.
    pub request_bytes: Option<u64>,
    /// Response body bytes (for `response_bytes` quantities), when the log has them.
    pub response_bytes: Option<u64>,
}

/// Why a log line was not metered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotMetered {
    /// No route matches its method and path (not a metered endpoint).
    NoRoute,
    /// The status is outside `billable_status`.
    NotBillable(u16),
}

impl Gateway {
    /// Whether a logged request is metered at all (a route matches, the status is billable),
    /// decided before anything else is read from the line.
    pub fn logged_route(&self, method: &str, path: &str, status: u16) -> Result<usize, NotMetered> {
        let route = self
            .config
            .routes
            .iter()
            .position(|r| r.matches(method, path))
            .ok_or(NotMetered::NoRoute)?;
        if !self.config.billable_status.contains(status) {
            return Err(NotMetered::NotBillable(status));
        }
        Ok(route)
    }

    /// Meters one logged request exactly as the filter meters a proxied one (route, quantity,
    /// id, validation, buffer, dead letters). A quantity the log cannot carry (a response
    /// header or body, a length the log format lacks) gets the `quantity_unavailable` refusal,
    /// counted and dead-lettered, never a silent zero.
    pub fn meter_logged(
        &mut self,
        host: &mut dyn Host,
        req: &LoggedRequest<'_>,
    ) -> Result<(), NotMetered> {
        let route = self.logged_route(req.method, req.path, req.status)?;
        let mut ex = Exchange::new(
            route,
            req.time,
            Some(req.request_id.to_string()),
            req.method.to_string(),
            req.path.to_string(),
        );
        ex.identify(
            req.customer_id.to_string(),
            req.environment,
            req.key_id.map(str::to_string),
        );
        ex.status = Some(req.status);
        ex.request_bytes = req.request_bytes.unwrap_or(0);
        ex.response_bytes = req.response_bytes.unwrap_or(0);
        let meters = self.config.routes.get(route).map(|r| &r.meters[..]);
        ex.unmeasured = meters
            .unwrap_or_default()
            .iter()
            .map(|m| {
                match &m.quantity {
                    QuantitySource::RequestBytes if req.request_bytes.is_none() => {
                        Some("the access log has no request length")
                    }
                    QuantitySource::ResponseBytes if req.response_bytes.is_none() => {
                        Some("the access log has no response length")
                    }
                    QuantitySource::ResponseHeader(_) | QuantitySource::ResponseJson(_) => {
                        Some("an access log carries no response headers or body")
                    }
                    _ => None,
                }
                .map(str::to_string)
            })
            .collect();
        self.finish(host, ex);
        Ok(())
    }
}
