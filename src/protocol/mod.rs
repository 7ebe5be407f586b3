//! The WebSocket protocol of RFC 6455, apart from any I/O: frames in and
//! out ([`Parser`], [`Framer`]), close codes ([`close`]), the opening
//! handshake ([`handshake`], [`url`], [`subprotocol`]) and the connection's
//! state machine ([`Session`]: the closing handshake, pings and keepalive).
//!
//! Nothing here touches a socket, a lock, tokio or Python; time comes in
//! as an argument. Every rule of the RFC is tested here without a network;
//! `conn/` does the I/O around it (see docs/architecture.md).

pub mod auth;
pub mod close;
pub mod deflate;
pub mod framer;
pub mod handshake;
pub mod http;
pub mod message;
pub mod parser;
pub mod session;
pub mod subprotocol;
pub mod url;

pub use close::{CloseCode, Failure};
pub use framer::{Chunk, Framer};
pub use message::{Binary, Text};
pub use parser::{Diverted, Incoming, Parser};
pub use session::Session;

/// Which end of the connection we are: a client masks what it sends, a
/// server requires masked frames (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// From this size on, a client's payload that the I/O thread is to write is
/// masked only as it is written (see [`Chunk`]); below it the sending thread
/// masks a copy before it hands the message over, which leaves the I/O
/// thread less to do when messages come thick and fast.
pub const MASK_AT_WRITE_FROM: usize = 256 << 10;

/// Longest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Longest frame header: 2 bytes, 8 of length, 4 of mask (§5.2).
pub const MAX_HEADER: usize = 14;

/// What an incoming message or frame may be at most; over it the connection
/// fails with 1009.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_frame_size: usize,
    pub max_message_size: usize,
}
