//! Per-VM host state: the current stream's data, outbound calls, timers, the virtual clock.

use super::world::SharedWorld;
use wasmtime::{Memory, StoreLimits, TypedFunc};

/// Headers and bodies of the stream (or call answer) being processed.
#[derive(Clone, Debug, Default)]
pub struct StreamData {
    /// Request headers (with `:method`, `:path`, `:authority`, `:scheme`).
    pub request_headers: Vec<(String, String)>,
    /// Request body.
    pub request_body: Vec<u8>,
    /// Response headers (with `:status`).
    pub response_headers: Vec<(String, String)>,
    /// Response body.
    pub response_body: Vec<u8>,
    /// Headers of the outbound call answer being delivered.
    pub call_headers: Vec<(String, String)>,
    /// Body of the outbound call answer being delivered.
    pub call_body: Vec<u8>,
    /// Downstream peer (`ip:port`).
    pub peer: String,
}

impl StreamData {
    /// Starts a new stream with these request headers and peer, the rest empty. Keeps the
    /// buffers of the stream before it, so a long replay does not allocate them per request.
    pub fn begin<'a>(
        &mut self,
        request_headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        peer: &str,
    ) {
        refill_pairs(&mut self.request_headers, request_headers);
        self.request_body.clear();
        self.response_headers.clear();
        self.response_body.clear();
        self.call_headers.clear();
        self.call_body.clear();
        self.peer.clear();
        self.peer.push_str(peer);
    }
}

/// Replaces `pairs` with `with`, reusing the strings already there.
pub fn refill_pairs<'a>(
    pairs: &mut Vec<(String, String)>,
    with: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    let mut n = 0;
    for (k, v) in with {
        match pairs.get_mut(n) {
            Some((pk, pv)) => {
                pk.clear();
                pk.push_str(k);
                pv.clear();
                pv.push_str(v);
            }
            None => pairs.push((k.to_string(), v.to_string())),
        }
        n += 1;
    }
    pairs.truncate(n);
}

/// An answer to an outbound call: status, headers, body.
pub type CallAnswer = (u16, Vec<(String, String)>, Vec<u8>);

/// An outbound HTTP call the module started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRequest {
    /// Token the answer must carry.
    pub token: u32,
    /// Context that was effective when the call was made (answers go to the root, with the
    /// root's id, as in Envoy and Kong).
    pub context_id: u32,
    /// Upstream (cluster, or host:port).
    pub upstream: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
    /// The host would fail this call without sending it (Kong: not a host:port).
    pub fails_at_host: bool,
}

/// A local reply the module sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalReply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// The phase the module is in (Kong only allows dispatch in some).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// VM start and configuration.
    Start,
    /// Request headers or body.
    Request,
    /// Response headers or body.
    Response,
    /// The log phase.
    Log,
    /// A tick.
    Tick,
    /// An outbound call answer.
    CallResponse,
    /// The root's `on_done`, before the VM goes away.
    Done,
}

/// Everything a host function may need, per VM.
pub struct HostState {
    /// The proxy-wide world.
    pub world: SharedWorld,
    /// Virtual time, nanoseconds since the epoch.
    pub now_nanos: i64,
    /// Plugin configuration bytes.
    pub plugin_config: Vec<u8>,
    /// VM configuration bytes.
    pub vm_config: Vec<u8>,
    /// Environment variables the module sees (WASI `environ_get`).
    pub env: Vec<(String, String)>,
    /// Tick period set by the module (0 = none).
    pub tick_period_ms: u64,
    /// The context the module said it is working for.
    pub effective_context: u32,
    /// Current stream data.
    pub stream: StreamData,
    /// Calls started since the driver last looked.
    pub calls: Vec<CallRequest>,
    /// Next call token.
    pub next_token: u32,
    /// The local reply of the current stream.
    pub local_reply: Option<LocalReply>,
    /// The current phase.
    pub phase: Phase,
    /// Seeded randomness (WASI `random_get`).
    pub rng: u64,
    /// Guest memory, cached after instantiation.
    pub memory: Option<Memory>,
    /// Guest allocator, cached after instantiation.
    pub alloc: Option<TypedFunc<i32, i32>>,
    /// Text the module wrote to stdout/stderr.
    pub stdio: Vec<u8>,
    /// Memory limits of the store.
    pub limits: StoreLimits,
}
