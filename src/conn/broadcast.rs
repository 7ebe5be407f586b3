//! One message to many connections, framed (and compressed) once where
//! the connections allow it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::connection::Connection;
use crate::config;
use crate::errors::Error;
use crate::protocol::deflate::Negotiated;
use crate::protocol::{Framer, Role};

/// Queues a message on every open connection of `connections`; returns how
/// many took it. A server's connections share one set of frames (they are
/// not masked): one plain set, and one compressed set for each window size
/// among the connections whose compressor starts every message afresh. The
/// others — a client's, framed each with its own masks, and those whose
/// compressor keeps a context — are sent to one by one. Closed connections
/// and those whose queue is full are skipped, as websockets' `broadcast()`
/// skips them.
pub fn broadcast<'a>(
    connections: impl IntoIterator<Item = &'a Arc<Connection>>,
    text: bool,
    payload: &Bytes,
) -> usize {
    broadcast_reporting(connections, text, payload, |_, _| {})
}

/// As [`broadcast`], and tells `skipped` of each open connection that did
/// not take the message (its queue is full), by its place in
/// `connections`, for websockets' `broadcast(raise_exceptions=True)`.
pub fn broadcast_reporting<'a>(
    connections: impl IntoIterator<Item = &'a Arc<Connection>>,
    text: bool,
    payload: &Bytes,
    mut skipped: impl FnMut(usize, Error),
) -> usize {
    let size = payload.len();
    let mut plain: Option<Bytes> = None;
    let mut compressed: HashMap<u8, Bytes> = HashMap::new();
    let mut reached = 0;
    for (place, connection) in connections.into_iter().enumerate() {
        let shared = match connection.role {
            Role::Client => None,
            Role::Server if !connection.compresses() || size < config::COMPRESS_FROM => Some(
                &*plain.get_or_insert_with(|| frames(Framer::new(Role::Server), text, payload)),
            ),
            Role::Server => connection.stateless_compression().map(|bits| {
                &*compressed
                    .entry(bits)
                    .or_insert_with(|| compress_once(bits, text, payload))
            }),
        };
        let sent = match shared {
            Some(frames) => connection.send_framed(frames, size),
            None => connection.send(text, payload.clone()),
        };
        match sent {
            Ok(_) => reached += 1,
            Err(Error::NotOpen) => {}
            Err(error) => skipped(place, error),
        }
    }
    reached
}

fn frames(framer: Framer, text: bool, payload: &[u8]) -> Bytes {
    let mut bytes = BytesMut::new();
    framer.message(&mut bytes, text, payload, config::OUTGOING_FRAME_SIZE);
    bytes.freeze()
}

/// A server's frames of `payload` compressed on its own with a window of
/// `bits`, which every peer that agreed to no context takeover inflates.
fn compress_once(bits: u8, text: bool, payload: &[u8]) -> Bytes {
    let stateless = Negotiated {
        local_no_context_takeover: true,
        remote_no_context_takeover: true,
        local_window_bits: bits,
        remote_window_bits: bits,
    };
    let compressed = stateless
        .compressor(config::DEFLATE_LEVEL)
        .compress(payload);
    frames(Framer::compressed(Role::Server), text, &compressed)
}
