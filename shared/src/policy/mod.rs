//! The decision and metering calls of hosts that are not proxies (the agent's WASI component,
//! the AWS Lambda authorizer and usage handler): plain requests in, plain answers out, so each
//! host binding only converts types and every rule stays here.

mod access;
mod meter;

pub use access::{can_access, AccessAnswer, AccessQuery};
pub use meter::{build_event, event_as_given, MeterQuery, Rejection};
