//! `aforo-replay`: replay traffic through the real module (`run`), rate events (`rate`),
//! replay against a live gateway (`send`).

mod progress;
pub mod rate;
pub mod report;
pub mod results;
mod run;
pub mod scenario;

pub use progress::Progress;
pub use report::{decision_of, Decisions, EventOutcome, RequestResult, RunReport};
pub use run::{run, RunError, RunOptions};
