//! The byte stream under a WebSocket: TCP, TLS, proxies, reading an HTTP
//! head, and the tokio runtime that owns every socket. Knows the protocol
//! (for the handshake's head), never Python.

pub mod head;
pub mod listener;
pub mod proxy;
pub mod runtime;
pub mod stream;
pub mod tls;

pub use head::read_head;
pub use stream::{Endpoints, Stream, Transport};
