//! A proxy-wasm ABI 0.2.1 host on wasmtime: enough of Envoy's (or Kong's) behaviour to run the
//! real filter module, deterministically (virtual clock, seeded randomness).

mod imports;
mod memory;
mod profile;
mod state;
mod vm;
mod wasi;
mod world;

pub use profile::Profile;
pub use state::{CallAnswer, CallRequest, StreamData};
pub use vm::{compile, Outcome, Vm, VmError};
pub use world::{LogLine, SharedWorld, World};

/// proxy-wasm status codes.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// Not found.
    pub const NOT_FOUND: i32 = 1;
    /// Bad argument.
    pub const BAD_ARGUMENT: i32 = 2;
    /// Bad guest memory access.
    pub const INVALID_MEMORY_ACCESS: i32 = 6;
    /// Queue empty.
    pub const EMPTY: i32 = 7;
    /// CAS mismatch.
    pub const CAS_MISMATCH: i32 = 8;
    /// Internal failure.
    pub const INTERNAL_FAILURE: i32 = 10;
    /// Not implemented.
    pub const UNIMPLEMENTED: i32 = 12;
}
