//! aforo-host-tests: the pre-production sandbox. A proxy-wasm host on wasmtime that replays
//! recorded traffic through the real `aforo_metering.wasm` with a virtual clock and a simulated
//! ingest (`aforo-replay`), and the helpers the end-to-end tests use to run a real Envoy.

pub mod abi;
pub mod artifacts;
pub mod envoy;
pub mod faults;
pub mod http1;
pub mod ingest_sim;
pub mod replay;
pub mod send;
pub mod servers;
pub mod sse_upstream;
pub mod traffic;
