//! The ingest v1 contract, shared by every receiver (the agent, the replay harness's simulated
//! ingest) and every sender (which reads the answers): limits, body parsing, per-event outcomes.

mod ledger;
mod request;
mod response;

pub use ledger::{accept_batch, BatchOutcome, IdStore};
pub use request::{
    parse_batch, parse_batch_with_text, BatchError, ParsedBatch, MAX_BATCH_BYTES, MAX_BATCH_EVENTS,
};
pub use response::{FlaggedEvent, IngestAnswer, RejectedEvent};
