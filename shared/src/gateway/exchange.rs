//! One request/response exchange: what the request phase decided and what the response
//! phase observes (status, sizes, the quantity header or body), until it is metered.

use super::stream_quantity::{property_value, StreamQuantity};
use crate::config::{BodySide, QuantitySource, Route};
use crate::entitlement::{ratelimit_headers, Allowance, RateLimitHeaders, Reservation};
use crate::environment::Environment;
use crate::keys::KeyHash;
use crate::time::Timestamp;
use serde_json::Value;

/// Lazy access to response headers.
pub trait ResponseHeaders {
    /// A response header by lower-case name (`:status` included).
    fn header(&self, name: &str) -> Option<String>;
}

/// State carried from the request phase to metering.
#[derive(Debug)]
pub struct Exchange {
    pub(crate) route: usize,
    pub(crate) started_at: Timestamp,
    pub(crate) request_id: Option<String>,
    pub(crate) method: String,
    pub(crate) endpoint: String,
    pub(crate) customer_id: Option<String>,
    pub(crate) environment: Environment,
    pub(crate) key_id: Option<String>,
    pub(crate) allowance: Option<Allowance>,
    pub(crate) reservations: Vec<Reservation>,
    /// Shared usage counters (the quota, the daily credits) to add the real quantity to after
    /// the response.
    pub(crate) usage_counters: Vec<(String, Timestamp)>,
    pub(crate) counts_after_response: bool,
    /// Features whose units came from a quota lease (named in the first meter's event).
    pub(crate) leased: Vec<String>,
    pub(crate) status: Option<u16>,
    pub(crate) request_bytes: u64,
    pub(crate) response_bytes: u64,
    /// The quantity header of each meter that reads one (by the route's meter index).
    pub(crate) quantity_headers: Vec<Option<String>>,
    pub(crate) body: Vec<u8>,
    pub(crate) body_truncated: bool,
    /// The request body, kept (bounded) when a property reads it.
    pub(crate) request_body: Vec<u8>,
    pub(crate) request_body_truncated: bool,
    /// The request properties' values, read when the request ended (its body then dropped,
    /// so a long response does not keep it), by the route's property index.
    pub(crate) request_values: Option<Vec<Option<Value>>>,
    /// The response is `text/event-stream`: a JSON quantity is read from its events as they
    /// pass, not from a buffered body.
    pub(crate) event_stream: bool,
    pub(crate) stream: Option<StreamQuantity>,
    /// The upstream ended the response (its last body chunk was seen), rather than the
    /// exchange being cut off.
    pub(crate) response_complete: bool,
    /// Why a meter's quantity could not be observed at all (an access log without the
    /// field), by the route's meter index.
    pub(crate) unmeasured: Vec<Option<String>>,
    /// The hash of a consumer key presented before any snapshot could resolve it.
    pub(crate) pending_key: Option<KeyHash>,
}

impl Exchange {
    /// An exchange on `route` for `method` and `path`, both taken as they are read (the path
    /// keeps only its endpoint: no query, no fragment), so no copy is made per request.
    pub(crate) fn new(
        route: usize,
        now: Timestamp,
        request_id: Option<String>,
        method: String,
        mut path: String,
    ) -> Self {
        let end = path
            .bytes()
            .position(|b| b == b'?' || b == b'#')
            .unwrap_or(path.len());
        path.truncate(end);
        // A long query dropped: give its room back, since an exchange can outlive the request
        // (waiting for the first snapshot, counted by its bodies' bytes only).
        if path.capacity() > end.saturating_mul(2).max(256) {
            path.shrink_to_fit();
        }
        Exchange {
            route,
            started_at: now,
            request_id,
            method,
            endpoint: path,
            customer_id: None,
            environment: Environment::Sandbox,
            key_id: None,
            allowance: None,
            reservations: Vec::new(),
            usage_counters: Vec::new(),
            leased: Vec::new(),
            counts_after_response: false,
            status: None,
            request_bytes: 0,
            response_bytes: 0,
            quantity_headers: Vec::new(),
            body: Vec::new(),
            body_truncated: false,
            request_body: Vec::new(),
            request_body_truncated: false,
            request_values: None,
            event_stream: false,
            stream: None,
            response_complete: false,
            unmeasured: Vec::new(),
            pending_key: None,
        }
    }

    pub(crate) fn identify(
        &mut self,
        customer_id: String,
        env: Environment,
        key_id: Option<String>,
    ) {
        self.customer_id = Some(customer_id);
        self.environment = env;
        self.key_id = key_id;
    }

    pub(crate) fn is_identified(&self) -> bool {
        self.customer_id.is_some()
    }

    /// The customer this exchange is billed to.
    pub fn customer_id(&self) -> Option<&str> {
        self.customer_id.as_deref()
    }

    /// The environment its event belongs to.
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// The quota window the request was counted in (limit, remaining, reset), if any.
    pub fn allowance(&self) -> Option<Allowance> {
        self.allowance
    }

    /// The consumer key id that identified the caller, if any.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    /// Index of the matched route in the configuration.
    pub fn route_index(&self) -> usize {
        self.route
    }

    /// Counts response body bytes without copying them.
    pub fn add_response_bytes(&mut self, n: usize) {
        self.response_bytes += n as u64;
    }

    /// Counts request body bytes as they stream through.
    pub fn add_request_bytes(&mut self, n: usize) {
        self.request_bytes += n as u64;
    }

    /// Reads the status and what the quantity source needs from the response headers, and
    /// returns the `RateLimit-*` headers to add to the response.
    pub fn on_response_headers(
        &mut self,
        headers: &dyn ResponseHeaders,
        route: &Route,
        now: Timestamp,
    ) -> Option<RateLimitHeaders> {
        self.status = headers
            .header(":status")
            .and_then(|s| s.trim().parse().ok());
        for (i, m) in route.meters.iter().enumerate() {
            if let QuantitySource::ResponseHeader(name) = &m.quantity {
                if self.quantity_headers.len() <= i {
                    self.quantity_headers.resize(i + 1, None);
                }
                self.quantity_headers[i] = headers.header(name);
            }
        }
        if route.reads_json(BodySide::Response) {
            self.event_stream = headers.header("content-type").is_some_and(|t| {
                t.trim_start()
                    .get(..17)
                    .is_some_and(|p| p.eq_ignore_ascii_case("text/event-stream"))
            });
        }
        self.allowance.as_ref().map(|a| ratelimit_headers(a, now))
    }

    /// When the request arrived. Hosts pass it to [`Exchange::on_response_headers`] instead of
    /// reading the clock again: `RateLimit-Reset` moves by the request's latency at most, and a
    /// host call costs more than the rest of the response phase in some proxies.
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// Counts a response body chunk and keeps a bounded copy when the quantity is inside it;
    /// an event stream is read as it passes instead (bounded by one event, not the stream).
    pub fn on_response_body(&mut self, chunk: &[u8], route: &Route, max_body_bytes: usize) {
        self.response_bytes += chunk.len() as u64;
        if !route.reads_json(BodySide::Response) {
            return;
        }
        if self.event_stream {
            self.stream
                .get_or_insert_with(|| StreamQuantity::new(max_body_bytes, route))
                .feed(chunk, route);
        } else {
            keep_bounded(
                &mut self.body,
                &mut self.body_truncated,
                chunk,
                max_body_bytes,
            );
        }
    }

    /// Counts a request body chunk, and keeps a bounded copy when a property reads it.
    pub fn on_request_body(&mut self, chunk: &[u8], route: &Route, max_body_bytes: usize) {
        self.request_bytes += chunk.len() as u64;
        if route.reads_json(BodySide::Request) {
            keep_bounded(
                &mut self.request_body,
                &mut self.request_body_truncated,
                chunk,
                max_body_bytes,
            );
        }
    }

    /// The request ended: reads its properties from the kept body and drops the body.
    pub fn on_request_end(&mut self, route: &Route) {
        if self.request_values.is_some() || !route.reads_json(BodySide::Request) {
            return;
        }
        let body = parse_body(
            &self.request_body,
            self.request_body_truncated,
            "request body",
        )
        .ok();
        self.request_values = Some(
            route
                .properties
                .iter()
                .map(|p| match (p.from, &body) {
                    (BodySide::Request, Some(v)) => property_value(v.pointer(&p.pointer)),
                    _ => None,
                })
                .collect(),
        );
        self.request_body = Vec::new();
    }

    /// The bytes this exchange still holds once it is over (kept bodies), the stream reader's
    /// buffers freed first: what waiting for a snapshot costs.
    pub(crate) fn held_bytes(&mut self) -> usize {
        if let Some(s) = &mut self.stream {
            s.release();
        }
        self.body.len() + self.request_body.len()
    }

    /// The upstream's response ended (end of stream); without this call at the end of an
    /// exchange, the response was cut off (the client went away, or a reset).
    pub fn on_response_end(&mut self) {
        self.response_complete = true;
    }

    /// Whether the response body must be observed at all (to spare hosts the copies).
    pub fn wants_response_body(route: &Route) -> bool {
        route.needs_response_body()
    }
}

/// Appends `chunk` to `body` while the whole stays within `max`; past it, drops what was kept
/// and marks it truncated (a value from a partial JSON document would be a guess).
fn keep_bounded(body: &mut Vec<u8>, truncated: &mut bool, chunk: &[u8], max: usize) {
    if *truncated {
        return;
    }
    if body.len() + chunk.len() > max {
        *truncated = true;
        *body = Vec::new();
    } else {
        body.extend_from_slice(chunk);
    }
}

/// A body parsed once for every pointer that reads it, or why it cannot be read.
pub(crate) fn parse_body(body: &[u8], truncated: bool, what: &str) -> Result<Value, String> {
    if truncated {
        return Err(format!("{what} is larger than max_body_bytes"));
    }
    serde_json::from_slice(body).map_err(|e| format!("{what} is not JSON ({e})"))
}
