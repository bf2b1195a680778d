//! One request: decide on its headers, observe the response, meter at the end of the stream.
//! It runs on its worker's engine, under that engine's lock, which no other worker takes.

use crate::abi::{Filter, Side};
use crate::host::{NativeHost, Site};
use crate::module::Module;
use aforo_core::config::{BodyNeeds, Route};
use aforo_core::entitlement::LocalReply;
use aforo_core::gateway::{Exchange, RequestVerdict, RequestView, ResponseHeaders};
use std::sync::Arc;

/// What the request-headers hook tells Envoy.
#[derive(Debug)]
pub enum Next {
    /// Go on to the next filter.
    Continue,
    /// Answer locally with this reply, and stop (the hook sends it as its last action: the
    /// reply can end the stream, and with it this filter, at once).
    Reply(LocalReply),
    /// Stop: the answer was already given.
    Stop,
}

/// Per-request state.
pub struct RequestFilter {
    module: Arc<Module>,
    worker: Option<usize>,
    exchange: Option<Box<Exchange>>,
    needs: BodyNeeds,
}

/// The request headers, each read from Envoy when the engine asks (a native call costs less
/// than copying every header).
struct RequestHeaders {
    filter: Filter,
}

impl RequestView for RequestHeaders {
    fn header(&self, name: &str) -> Option<String> {
        // A value that is not UTF-8 reads as absent, as in the Wasm filter.
        self.filter
            .header(Side::Request, name)
            .and_then(|v| String::from_utf8(v).ok())
    }

    fn peer_address(&self) -> Option<String> {
        self.filter.source_address()
    }
}

struct Headers(Filter, Side);

impl ResponseHeaders for Headers {
    fn header(&self, name: &str) -> Option<String> {
        self.0
            .header(self.1, name)
            .and_then(|v| String::from_utf8(v).ok())
    }
}

impl RequestFilter {
    /// A filter for a new request.
    pub fn new(module: Arc<Module>) -> Self {
        RequestFilter {
            module,
            worker: None,
            exchange: None,
            needs: BodyNeeds::default(),
        }
    }

    /// Runs `f` with this request's engine (and wakes the main thread for calls it queued);
    /// `None` when the engine is gone (the configuration is being replaced).
    fn with_engine<T>(
        &mut self,
        filter: Filter,
        f: impl FnOnce(&mut aforo_core::gateway::Gateway, &mut NativeHost) -> T,
    ) -> Option<(T, Option<LocalReply>)> {
        let worker = *self.worker.get_or_insert_with(|| filter.worker_index());
        let module = &*self.module;
        let mut host = NativeHost::new(module, worker, Site::Worker(filter), &module.namespace);
        let out = {
            let mut slot = module.engine(worker);
            f(slot.as_mut()?, &mut host)
        };
        if host.queued_call {
            module.wake_for_calls();
        }
        Some((out, host.reply))
    }

    /// Request headers: the decision.
    pub fn on_request_headers(&mut self, filter: Filter) -> Next {
        let view = RequestHeaders { filter };
        let Some(((verdict, needs), reply)) = self.with_engine(filter, |g, host| {
            let v = g.on_request(host, &view);
            let needs = match &v {
                RequestVerdict::Continue {
                    exchange: Some(ex), ..
                } => g
                    .config()
                    .routes
                    .get(ex.route_index())
                    .map(Route::body_needs)
                    .unwrap_or_default(),
                _ => BodyNeeds::default(),
            };
            (v, needs)
        }) else {
            return Next::Continue;
        };
        if let Some(reply) = reply {
            return Next::Reply(reply);
        }
        match verdict {
            RequestVerdict::Denied(_) => Next::Stop,
            // Never: `quota_leases` is refused at configuration (lib.rs). Were it not, the
            // request would pass undecided; stopping it is the safe side.
            RequestVerdict::Asking(_) => Next::Stop,
            RequestVerdict::Continue {
                exchange,
                upstream_headers,
            } => {
                for (k, v) in &upstream_headers {
                    filter.set_header(Side::Request, k, v);
                }
                self.needs = needs;
                self.exchange = exchange;
                Next::Continue
            }
        }
    }

    /// A chunk of the request body.
    pub fn on_request_body(&mut self, filter: Filter, end_of_stream: bool) {
        if self.exchange.is_none() {
            return;
        }
        if self.needs.request_json {
            let chunk = filter.received_body(Side::Request);
            self.with_route(filter, |ex, route, max| {
                ex.on_request_body(&chunk, route, max);
                if end_of_stream {
                    ex.on_request_end(route);
                }
            });
        } else if self.needs.request_bytes {
            let n = filter.received_body_len(Side::Request);
            if let Some(ex) = &mut self.exchange {
                ex.add_request_bytes(n);
            }
        }
    }

    /// The response headers: `RateLimit-*` and the like are added here.
    pub fn on_response_headers(&mut self, filter: Filter, end_of_stream: bool) {
        let mut added = None;
        self.with_route(filter, |ex, route, _| {
            if end_of_stream {
                ex.on_response_end();
            }
            let now = ex.started_at();
            added = ex.on_response_headers(&Headers(filter, Side::Response), route, now);
        });
        for (k, v) in added.iter().flatten() {
            filter.set_header(Side::Response, k, v.as_str());
        }
    }

    /// A chunk of the response body, passed on at once.
    pub fn on_response_body(&mut self, filter: Filter, end_of_stream: bool) {
        if self.exchange.is_none() {
            return;
        }
        if self.needs.response_json {
            let chunk = filter.received_body(Side::Response);
            self.with_route(filter, |ex, route, max| {
                ex.on_response_body(&chunk, route, max)
            });
        } else if self.needs.response_bytes {
            let n = filter.received_body_len(Side::Response);
            if let Some(ex) = &mut self.exchange {
                ex.add_response_bytes(n);
            }
        }
        if end_of_stream {
            if let Some(ex) = &mut self.exchange {
                ex.on_response_end();
            }
        }
    }

    /// The stream is done: meter it.
    pub fn on_stream_complete(&mut self, filter: Filter) {
        let Some(ex) = self.exchange.take() else {
            return;
        };
        self.with_engine(filter, |g, host| g.finish(host, *ex));
    }

    /// Runs `f` with the exchange and its configured route (under the engine's lock: no copy).
    fn with_route(&mut self, filter: Filter, f: impl FnOnce(&mut Exchange, &Route, usize)) {
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        let worker = *self.worker.get_or_insert_with(|| filter.worker_index());
        let max = self.module.max_body;
        let slot = self.module.engine(worker);
        if let Some(route) = slot
            .as_ref()
            .and_then(|g| g.config().routes.get(ex.route_index()))
        {
            f(ex, route, max);
        }
    }
}
