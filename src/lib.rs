//! wsbind's native core: sockets, TLS and the WebSocket protocol on tokio,
//! under the Python package `wsbind` as its private module `_wsbind`.
//!
//! Each folder is a layer and knows only the layers before it in this list
//! (`make lint` checks it; docs/architecture.md walks a message through them):
//!
//! - [`protocol`]: RFC 6455 without I/O: frames, close codes, the handshake,
//!   and the session's state machine.
//! - [`net`]: the byte stream: TCP, TLS, proxies, the runtime.
//! - [`bridge`]: the queue of events to a Python thread, and that thread's poller.
//! - [`conn`]: connections at work: tasks, outbox, writer, receiver, client, server.
//! - [`py`]: every class and function Python sees.
//!
//! [`config`] (every limit, with its reason) and [`errors`] (the caller's
//! misuse) are used by all.

pub mod config;
pub mod errors;

pub mod protocol;

pub mod bridge;
pub mod net;

pub mod conn;

pub mod py;

/// Rust's allocations only (message buffers, frames); Python's objects keep
/// Python's allocator. See Cargo.toml for why. Not under the fuzzer
/// (`make fuzz`), whose address sanitizer must see every allocation.
#[cfg(not(fuzzing))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
