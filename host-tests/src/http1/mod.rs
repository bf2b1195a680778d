//! A small HTTP/1.1 client and server on std sockets, for the end-to-end tests, the demo
//! upstream and `aforo-replay send` (loopback only; keep-alive; content-length and chunked).

mod client;
mod server;
pub mod wire;

pub use client::Client;
pub use server::{serve, serve_on, Handler, Server};
pub use wire::{Request, Response};
