//! One message to many connections, framed once.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::connection::Connection;
use crate::config;
use crate::protocol::{Framer, Role};

/// Queues a message on every open connection of `connections`; returns how
/// many took it. A server's connections share one set of frames (they are
/// not masked); a client's are framed each, with their own masks. Closed
/// connections and those whose queue is full are skipped, as websockets'
/// `broadcast()` skips them.
pub fn broadcast<'a>(
    connections: impl IntoIterator<Item = &'a Arc<Connection>>,
    text: bool,
    payload: &Bytes,
) -> usize {
    let size = payload.len();
    let mut frames: Option<Bytes> = None;
    let mut reached = 0;
    for connection in connections {
        let sent = match connection.role {
            Role::Server => {
                let frames = frames.get_or_insert_with(|| {
                    let mut bytes = BytesMut::new();
                    Framer::new(Role::Server).message(
                        &mut bytes,
                        text,
                        payload,
                        config::OUTGOING_FRAME_SIZE,
                    );
                    bytes.freeze()
                });
                connection.send_framed(frames.clone(), size)
            }
            Role::Client => connection.send(text, payload.clone()),
        };
        reached += usize::from(sent.is_ok());
    }
    reached
}
