//! Validation before an event is queued or stored: field syntax, environment, timestamp windows.

mod fields;
mod timestamp;

pub use fields::{check_fields, is_name};
pub use timestamp::{check_timestamp, TimestampFlag, LATE_AFTER, MAX_AGE, MAX_FUTURE_SKEW};

use crate::environment::Environment;
use crate::event::UsageEvent;
use crate::time::Timestamp;
use std::fmt;

/// Stable machine-readable reason an event was refused (the ingest's `rejected[].code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectCode {
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong type or syntax, or is unknown.
    InvalidField,
    /// The quantity is not a finite decimal >= 0.
    InvalidQuantity,
    /// The timestamp is not RFC 3339.
    InvalidTimestamp,
    /// More than 5 minutes in the future.
    TimestampInFuture,
    /// Older than 90 days.
    TimestampTooOld,
    /// The event's environment is not the sending key's.
    EnvironmentMismatch,
    /// The gateway could not determine the quantity (header or JSON field missing).
    QuantityUnavailable,
}

impl RejectCode {
    /// The wire code.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectCode::MissingField => "missing_field",
            RejectCode::InvalidField => "invalid_field",
            RejectCode::InvalidQuantity => "invalid_quantity",
            RejectCode::InvalidTimestamp => "invalid_timestamp",
            RejectCode::TimestampInFuture => "timestamp_in_future",
            RejectCode::TimestampTooOld => "timestamp_too_old",
            RejectCode::EnvironmentMismatch => "environment_mismatch",
            RejectCode::QuantityUnavailable => "quantity_unavailable",
        }
    }

    /// Parses a wire code.
    pub fn from_wire(s: &str) -> Option<Self> {
        ALL_CODES.iter().copied().find(|c| c.as_str() == s)
    }
}

/// Every rejection code, for reports that list counts by code.
pub const ALL_CODES: [RejectCode; 8] = [
    RejectCode::MissingField,
    RejectCode::InvalidField,
    RejectCode::InvalidQuantity,
    RejectCode::InvalidTimestamp,
    RejectCode::TimestampInFuture,
    RejectCode::TimestampTooOld,
    RejectCode::EnvironmentMismatch,
    RejectCode::QuantityUnavailable,
];

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one event was refused, precise enough to fix the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable code.
    pub code: RejectCode,
    /// The offending field, when there is one.
    pub field: Option<&'static str>,
    /// What was wrong and what is allowed.
    pub message: String,
}

impl Rejection {
    /// A rejection with its code, field and message.
    pub fn new(code: RejectCode, field: Option<&'static str>, message: impl Into<String>) -> Self {
        Rejection {
            code,
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{}: {field}: {}", self.code, self.message),
            None => write!(f, "{}: {}", self.code, self.message),
        }
    }
}

/// Full validation of an event relative to `now` and the environment of the key sending it.
///
/// `Ok(Some(Late))` means accepted but flagged; errors carry the rejection code.
pub fn validate_event(
    event: &UsageEvent,
    now: Timestamp,
    key_environment: Environment,
) -> Result<Option<TimestampFlag>, Rejection> {
    check_fields(event)?;
    if event.environment != key_environment {
        return Err(Rejection::new(
            RejectCode::EnvironmentMismatch,
            Some("environment"),
            format!(
                "is {} but the key is a {} key; sandbox and production never mix",
                event.environment, key_environment
            ),
        ));
    }
    check_timestamp(event.timestamp, now)
}
