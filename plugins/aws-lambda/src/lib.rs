//! aforo-gateway's core for Node.js: the engine behind the AWS API Gateway Lambda authorizer
//! and the access-log usage handler. The decision, the metering and the delivery rules are the
//! core's (the same code as the proxy-wasm filter); this crate only converts JSON and time.

mod engine;
mod host;
mod request;

pub use engine::Engine;
