//! How one connection behaves: each field is a property of the Python socket
//! (or of the server that accepted it).

use crate::config;
use crate::protocol::session::Timers;
use crate::protocol::Limits;

#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Larger messages go out as continuation frames of this size.
    pub outgoing_frame_size: usize,
    /// Keepalive and the closing handshake's wait.
    pub timers: Timers,
}

/// The defaults of src/config.rs, which are also the Python properties'.
impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits {
                max_frame_size: config::MAX_INCOMING_FRAME_SIZE,
                max_message_size: config::MAX_INCOMING_MESSAGE_SIZE,
            },
            outgoing_frame_size: config::OUTGOING_FRAME_SIZE,
            timers: Timers {
                ping_interval: Some(config::PING_INTERVAL),
                ping_timeout: Some(config::PING_TIMEOUT),
                close_timeout: config::CLOSE_TIMEOUT,
            },
        }
    }
}
