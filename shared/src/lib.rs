//! aforo-core: every metering and entitlement rule of aforo-gateway, with no I/O.
//!
//! Hosts (the proxy-wasm filter, the WASI component, the agent, the replay harness, the
//! Lambda handlers) implement [`host::Host`] and call into this crate; the rules live here once
//! and are tested natively.

pub mod config;
pub mod dedup;
pub mod delivery;
pub mod entitlement;
pub mod environment;
pub mod event;
pub mod gateway;
pub mod host;
pub mod ingest;
pub mod keys;
pub mod option_table;
pub mod policy;
pub mod ratelimit;
#[cfg(feature = "rating")]
pub mod rating;
pub mod redact;
pub mod sse;
pub mod strict_json;
pub mod time;
pub mod validate;
pub mod webhook_signature;

pub use environment::Environment;
pub use time::Timestamp;
