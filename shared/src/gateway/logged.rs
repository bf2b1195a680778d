//! Metering from an access log instead of a live exchange (AWS API Gateway, whose extension
//! point sees the request in an authorizer and the response only in its access log): the log
//! line becomes an exchange and goes through the same metering as a proxied request.

use super::exchange::Exchange;
use super::Gateway;
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
    /// Request body bytes (for `request_bytes` quantities).
    pub request_bytes: u64,
    /// Response body bytes (for `response_bytes` quantities).
    pub response_bytes: u64,
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
    /// Meters one logged request exactly as the filter meters a proxied one (route, quantity,
    /// id, validation, buffer, dead letters). Its quantity cannot come from a response header
    /// or body: those routes get the `quantity_unavailable` refusal, counted and dead-lettered.
    pub fn meter_logged(
        &mut self,
        host: &mut dyn Host,
        req: &LoggedRequest<'_>,
    ) -> Result<(), NotMetered> {
        let route = self
            .config
            .routes
            .iter()
            .position(|r| r.matches(req.method, req.path))
            .ok_or(NotMetered::NoRoute)?;
        if !self.config.billable_status.contains(req.status) {
            return Err(NotMetered::NotBillable(req.status));
        }
        let mut ex = Exchange::new(
            route,
            req.time,
            Some(req.request_id.to_string()),
            req.method,
            req.path,
        );
        ex.identify(
            req.customer_id.to_string(),
            req.environment,
            req.key_id.map(str::to_string),
        );
        ex.status = Some(req.status);
        ex.request_bytes = req.request_bytes;
        ex.response_bytes = req.response_bytes;
        self.finish(host, ex);
        Ok(())
    }
}
