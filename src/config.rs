//! Every limit and wait that wsbind applies, with its default and the reason for it.
//!
//! A peer, however broken or hostile, can only make wsbind use as much memory
//! or time as these bounds allow.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest incoming message: 64 MiB.
///
/// Big enough for any message a bot or a notebook exchanges in one piece (the
/// 16 MiB interop tests pass with room to spare), small enough that a peer
/// cannot make us buffer an unbounded message. Over the limit the connection
/// is closed with 1009.
pub const MAX_INCOMING_MESSAGE_SIZE: usize = 64 << 20;

/// Largest incoming frame payload: 16 MiB, tungstenite's default, for the same reason.
pub const MAX_INCOMING_FRAME_SIZE: usize = 16 << 20;

/// Bytes that `send_*` may queue on one socket before it refuses with
/// `BufferFullError`: 64 MiB.
///
/// Sending never blocks on the network, so without a bound a peer that stops
/// reading would let the queue grow until the process runs out of memory.
pub const MAX_OUTGOING_BUFFER: usize = 64 << 20;

/// Bytes of received messages that may wait for Python on one event queue
/// before the sockets that feed it stop reading: 16 MiB.
///
/// Slow handlers then push back on the peers through TCP instead of letting
/// the queue grow. A single larger message still passes: the check is made
/// before each read, not against the message.
pub const MAX_PENDING_EVENT_BYTES: usize = 16 << 20;

/// How long a server waits for a client to finish its opening handshake: 10 s, as Qt.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client waits for the TCP connection and the opening handshake: 10 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long we wait for the peer to answer our close frame before dropping
/// the connection: 10 s, as websockets' `close_timeout`.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Read buffer of a connection: 8 KiB. Small, so that thousands of idle
/// connections stay cheap; tungstenite grows it for larger messages.
pub const READ_BUFFER_SIZE: usize = 8 << 10;

/// The tungstenite configuration that applies the bounds above.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        // Frames leave as soon as the writer flushes; coalescing happens in the
        // writer, which feeds every queued message before one flush.
        .write_buffer_size(0)
        .max_message_size(Some(MAX_INCOMING_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_INCOMING_FRAME_SIZE))
}
