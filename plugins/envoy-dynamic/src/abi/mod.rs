//! Everything that touches Envoy's C ABI, and the only code here allowed `unsafe`: the
//! declarations (`raw`), safe handles over them (`handles`), and the exported hooks (`hooks`).
#![allow(unsafe_code)]
#![allow(missing_docs)]

mod handles;
mod hooks;
mod raw;

pub use handles::{log, Config, Filter, Level, Scheduler, Side};
