//! The delivery machine: a bounded buffer, batches on size or deadline, retries with backoff
//! and jitter, per-event outcomes, dead letters, and counters that always balance:
//! `received = delivered + rejected + dead_lettered + buffered`.
//!
//! It does no I/O: hosts ask it for the next batch (`poll`), send it however they send, and
//! report the answer (`on_response`). Time comes in as arguments.

mod backoff;
mod counters;
mod dead_letter;
mod machine;

pub use backoff::{backoff_delay_ms, SplitMix64};
pub use counters::Counters;
pub use dead_letter::{DeadLetter, DeadLetterReason, DeadLetterStore};
pub use machine::{Batch, CallOutcome, Delivery, DeliveryConfig, Enqueued, Report};
