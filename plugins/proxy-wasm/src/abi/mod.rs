//! Everything that touches the proxy-wasm ABI (0.2.1), and the only code of the filter allowed
//! `unsafe`: the host's functions (`raw`), safe calls over them (`calls`), and the callbacks
//! the host calls (`exports`), dispatched to the root and HTTP contexts.
//!
//! Written here rather than taken from the proxy-wasm crate: the crate's dispatcher carries
//! gRPC, TCP-stream and queue callbacks this filter never uses (53 KB of cargo's module with its
//! functions; 41.5 KB of the shipped one), and it traps on a host status it does not expect
//! where this code returns an error.
#![allow(unsafe_code)]

mod calls;
mod exports;
mod raw;

pub use calls::{
    buffer, continue_request, define_metric, header, header_pairs, http_call, increment_metric,
    log, now_nanos, property, property_answered, record_metric, send_local_response, set_header,
    set_tick_period, shared_get, shared_set, Action, Buffer, HeaderMap, HeaderPairs, MetricKind,
    Status,
};
