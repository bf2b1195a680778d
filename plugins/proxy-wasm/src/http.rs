//! The HTTP context: decide on request headers, observe the response, meter at the end.

use crate::abi::{self, Action, Buffer, HeaderMap};
use crate::host::{send_reply, ProxyHost};
use crate::metrics::MetricIds;
use crate::root::Shared;
use aforo_core::config::{BodyNeeds, Route};
use aforo_core::gateway::{Exchange, RequestVerdict, RequestView, ResponseHeaders};
use std::rc::Rc;

/// Per-request state.
pub struct Http {
    gateway: Option<Shared>,
    metrics: Rc<MetricIds>,
    exchange: Option<Box<Exchange>>,
    /// What the body phases observe for the matched route, decided once per request.
    observe: BodyNeeds,
    max_body: usize,
    /// The quota lease ask this paused request waits on.
    asking: Option<u32>,
    /// The request body Envoy buffered while the ask was out (its size, whether it ended).
    held_body: Option<(usize, bool)>,
}

impl Http {
    pub fn new(gateway: Option<Shared>, metrics: Rc<MetricIds>) -> Self {
        Http {
            gateway,
            metrics,
            exchange: None,
            observe: BodyNeeds::default(),
            max_body: 0,
            asking: None,
            held_body: None,
        }
    }

    /// A request with no configuration to apply (it passes untouched).
    pub fn detached() -> Self {
        Http::new(None, Rc::default())
    }
}

struct Headers(HeaderMap);

/// The request headers, fetched from the host in one call on first use: a host call (and the
/// allocation callback it makes into the module) costs about as much as the whole decision in
/// Envoy's V8, and the engine reads four or five headers.
struct RequestHeaders {
    all: std::cell::OnceCell<abi::HeaderPairs>,
}

impl RequestHeaders {
    fn new() -> Self {
        RequestHeaders {
            all: std::cell::OnceCell::new(),
        }
    }
}

impl RequestView for RequestHeaders {
    fn header(&self, name: &str) -> Option<String> {
        // Values as bytes: a Latin-1 byte in any header (Envoy accepts them) must not trap the
        // VM. A value that is not UTF-8 reads as absent.
        self.all
            .get_or_init(|| abi::header_pairs(HeaderMap::Request))
            .get(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    }

    fn peer_address(&self) -> Option<String> {
        Headers(HeaderMap::Request).peer_address()
    }

    fn runs_in_nginx(&self) -> bool {
        // An nginx variable every nginx has; Envoy answers NotFound.
        abi::property(&["ngx", "pid"]).is_some()
    }
}

/// One header value as text; not UTF-8 reads as absent (see `RequestHeaders::header`).
fn header_text(map: HeaderMap, name: &str) -> Option<String> {
    abi::header(map, name).and_then(|v| String::from_utf8(v).ok())
}

impl RequestView for Headers {
    fn header(&self, name: &str) -> Option<String> {
        header_text(self.0, name)
    }

    fn peer_address(&self) -> Option<String> {
        // Envoy: source.address ("ip:port"); Kong/ngx_wasm_module: ngx.remote_addr.
        let paths: [&[&str]; 2] = [&["source", "address"], &["ngx", "remote_addr"]];
        for path in paths {
            if let Some(bytes) = abi::property(path) {
                if let Ok(s) = String::from_utf8(bytes) {
                    return Some(s);
                }
            }
        }
        None
    }
}

impl ResponseHeaders for Headers {
    fn header(&self, name: &str) -> Option<String> {
        header_text(self.0, name)
    }
}

impl Http {
    /// Decides the request (again, after a lease answer): Continue, or Pause with a reply sent
    /// or a lease ask out.
    fn decide(&mut self) -> Action {
        let Some(gw) = &self.gateway else {
            return Action::Continue;
        };
        let mut host = ProxyHost::new(&self.metrics);
        let verdict = match gw.try_borrow_mut() {
            Ok(mut g) => {
                let v = g.on_request(&mut host, &RequestHeaders::new());
                if let RequestVerdict::Continue {
                    exchange: Some(ex), ..
                } = &v
                {
                    if let Some(r) = g.config().routes.get(ex.route_index()) {
                        self.observe = r.body_needs();
                    }
                    self.max_body = g.config().max_body_bytes;
                }
                v
            }
            Err(_) => return Action::Continue,
        };
        if let Some(reply) = host.reply.take() {
            send_reply(&reply);
            return Action::Pause;
        }
        match verdict {
            RequestVerdict::Denied(_) => Action::Pause,
            RequestVerdict::Asking(token) => {
                self.asking = Some(token);
                Action::Pause
            }
            RequestVerdict::Continue {
                exchange,
                upstream_headers,
            } => {
                for (k, v) in &upstream_headers {
                    abi::set_header(HeaderMap::Request, k, v);
                }
                self.exchange = exchange;
                Action::Continue
            }
        }
    }

    /// The answer to a call this request sent: only a quota lease ask is sent from a request.
    pub fn on_call_response(&mut self, token: u32, body_size: usize) {
        // Its answer, then the decision again.
        let Some(gw) = &self.gateway else { return };
        let response = crate::root::call_response(body_size);
        let mut host = ProxyHost::new(&self.metrics);
        if let Ok(mut g) = gw.try_borrow_mut() {
            g.on_lease_answer(&mut host, token, response);
        }
        if self.asking != Some(token) {
            return;
        }
        // Decided again whatever the answer was (a lost or late one is decided as the agent
        // not answering): a paused request is always resumed or answered.
        self.asking = None;
        if let Action::Continue = self.decide() {
            match self.held_body.take() {
                // The whole body Envoy buffered meanwhile, observed now as one chunk.
                Some((size, true)) => {
                    self.on_request_body(size, true);
                }
                // Part of it: the next body callback observes all that was buffered and lets
                // it through (resuming now would pass on an empty frame and lose a chunk).
                Some((_, false)) => return,
                // Envoy held the body itself (headers paused stop every callback by default).
                None => {}
            }
            abi::continue_request();
        }
    }

    /// The request's headers: the decision.
    pub fn on_request_headers(&mut self) -> Action {
        self.decide()
    }

    /// A chunk of the request body.
    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.asking.is_some() {
            // Undecided yet: held (Envoy buffers the body) until the lease answer, which reads
            // what was buffered (`Continue` here would send the request on undecided).
            self.held_body = Some((body_size, end_of_stream));
            return Action::Pause;
        }
        let Some(ex) = &mut self.exchange else {
            return Action::Continue;
        };
        if self.observe.request_json {
            let chunk = abi::buffer(Buffer::RequestBody, 0, body_size);
            with_route(&self.gateway, ex.route_index(), |route| {
                ex.on_request_body(&chunk, route, self.max_body);
                if end_of_stream {
                    // Its properties are read now and its copy dropped.
                    ex.on_request_end(route);
                }
            });
        } else if self.observe.request_bytes {
            ex.add_request_bytes(body_size);
        }
        Action::Continue
    }

    /// The request's trailers (held while a lease ask is out).
    pub fn on_request_trailers(&mut self) -> Action {
        if self.asking.is_some() {
            return Action::Pause;
        }
        Action::Continue
    }

    /// The response's headers: the status, and the `RateLimit-*` headers added.
    pub fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(ex) = &mut self.exchange else {
            return Action::Continue;
        };
        if end_of_stream {
            ex.on_response_end();
        }
        let now = ex.started_at();
        let mut added = None;
        with_route(&self.gateway, ex.route_index(), |route| {
            added = ex.on_response_headers(&Headers(HeaderMap::Response), route, now)
        });
        for (k, v) in added.iter().flatten() {
            abi::set_header(HeaderMap::Response, k, v.as_str());
        }
        Action::Continue
    }

    /// A chunk of the response body.
    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(ex) = &mut self.exchange else {
            return Action::Continue;
        };
        if self.observe.response_json {
            // Each chunk is read and passed on at once (Continue): nothing is buffered in
            // Envoy, so a stream reaches the client as fast as without the filter.
            let chunk = abi::buffer(Buffer::ResponseBody, 0, body_size);
            with_route(&self.gateway, ex.route_index(), |route| {
                ex.on_response_body(&chunk, route, self.max_body)
            });
        } else if self.observe.response_bytes {
            ex.add_response_bytes(body_size);
        }
        if end_of_stream {
            ex.on_response_end();
        }
        Action::Continue
    }

    /// The request is over: its event is metered.
    pub fn on_log(&mut self) {
        if let (Some(gw), Some(token)) = (&self.gateway, self.asking.take()) {
            // Gone while its ask was out: the host drops the answer with the request.
            if let Ok(mut g) = gw.try_borrow_mut() {
                g.abandon_lease_ask(token);
            }
        }
        let (Some(gw), Some(ex)) = (&self.gateway, self.exchange.take()) else {
            return;
        };
        let mut host = ProxyHost::new(&self.metrics);
        if let Ok(mut g) = gw.try_borrow_mut() {
            g.finish(&mut host, *ex);
        }
    }
}

/// Runs `f` with the configured route `index` (a shared borrow of the engine: no copy per
/// request). The engine is never borrowed mutably while a body callback runs; if it were, the
/// chunk is not read, and a quantity it held is refused as missing, never a guess.
fn with_route(gateway: &Option<Shared>, index: usize, f: impl FnOnce(&Route)) {
    if let Some(gw) = gateway {
        if let Ok(g) = gw.try_borrow() {
            if let Some(route) = g.config().routes.get(index) {
                f(route);
            }
        }
    }
}
