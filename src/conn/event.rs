//! What a connection's or a server's task tells Python: one [`Event`] at a
//! time, through the [`EventSink`] of its object, in the order it happened.
//! `py/events.rs` turns each into the object Python's dispatch reads.

use std::sync::Arc;

use bytes::Bytes;

use super::broker::BrokerState;
use super::connection::Connection;
use super::http::HttpAsk;
use super::server::Pending;
use crate::bridge::{self, Landing, Question, Weigh};
use crate::net::proxy::Credentials;
use crate::net::Endpoints;
use crate::protocol::handshake::Headers;
use crate::protocol::session::Outcome;
use crate::protocol::{Binary, CloseCode, Text};

/// Where the tokio side of one object sends its events.
pub type EventSink = bridge::Sink<Event>;

/// The queue of one Python thread's events.
pub type EventQueue = bridge::Queue<Event>;

/// A server-side connection that finished its opening handshake.
pub struct Accepted {
    pub connection: Arc<Connection>,
    /// The full request URL: `ws://host[:port]/path?query`.
    pub url: String,
    pub requested_subprotocols: Vec<String>,
    pub negotiated_subprotocol: String,
    /// The extensions the server accepted, as its response wrote them.
    pub extensions: String,
    /// The request target: path and query.
    pub resource_name: String,
    pub headers: Headers,
    pub endpoints: Endpoints,
    /// The server's count of connections Python has not taken yet.
    pub pending: Arc<Pending>,
}

/// What a client and its server agreed on in the opening handshake.
pub struct Agreed {
    /// The subprotocol the server picked ("" for none).
    pub subprotocol: String,
    /// The extensions the server accepted, as it wrote them ("" for none).
    pub extensions: String,
    /// The request target as sent: path and query, percent-encoded.
    pub resource_name: String,
    /// The server's 101 response's headers, in order.
    pub headers: Headers,
    pub endpoints: Endpoints,
}

/// Something a tokio task (or the thread that reads a socket) learned that
/// Python must hear about.
pub enum Event {
    /// A client's handshake succeeded. Boxed, as [`Closed`](Event::Closed):
    /// every message is an event, queued and moved, and this one would make
    /// each 136 bytes rather than 48.
    Connected(Box<Agreed>),
    Text(Text),
    Binary(Binary),
    /// A binary message read straight into its `bytes` object (see
    /// [`landing`](crate::bridge::landing)).
    Landed(Landing),
    TextFrame {
        text: String,
        last: bool,
    },
    BinaryFrame {
        data: Bytes,
        last: bool,
    },
    /// The answer to a ping, `elapsed_ms` after it was sent.
    Pong {
        elapsed_ms: f64,
        payload: Bytes,
    },
    /// Message bytes went out; `remaining` still wait.
    Written {
        count: usize,
        remaining: usize,
    },
    /// The peer started the closing handshake.
    Closing,
    /// A proxy asks for credentials and Python handles `proxy_authentication_required`.
    ProxyAuth(Arc<Question<Option<Credentials>>>),
    /// A server answered 401 and Python handles `authentication_required`;
    /// the subject is the realm it names.
    Authenticate(Arc<Question<Option<Credentials>>>),
    /// TLS verification failed (Qt's `sslErrors`); for a server, a client's.
    SslErrors(Vec<String>),
    /// The server refused the opening handshake with a response of these
    /// headers; the `Closed` that follows says why, with the status.
    Rejected(Headers),
    /// Python has handled every event before this one when it lets go of
    /// this one: the sender is dropped then, and the task that sent it
    /// learns it from its receiver.
    Fence(tokio::sync::oneshot::Sender<()>),
    /// The connection is over: how, and the close frames each way. Boxed:
    /// it would be the largest event, and every message is an event.
    Closed(Box<Outcome>),
    /// A server listens on this port.
    Listening {
        port: u16,
    },
    ListenFailed(String),
    ClientConnected(Box<Accepted>),
    /// accept() failed (for instance out of file descriptors); the server goes on.
    AcceptFailed(String),
    /// A server dropped a connection for this reason, as a close code
    /// (Qt's `serverError`): 1008 for a refused origin, 1006 for too many pending.
    ServerError(CloseCode),
    /// A server asks Python whether a client's origin may connect.
    OriginCheck(Arc<Question<bool>>),
    /// A server stopped listening and asked its clients to close.
    Stopped,
    /// A server asks Python to answer an HTTP request (or to let an upgrade go on).
    HttpRequest(Box<HttpAsk>),
    /// A server's broker changed state; `error` says why when it is
    /// [`BrokerState::Error`].
    Broker {
        state: BrokerState,
        error: String,
    },
}

impl Weigh for Event {
    fn weight(&self) -> usize {
        match self {
            Event::Text(t) => t.len(),
            Event::Binary(b) => b.len(),
            Event::Landed(b) => b.len(),
            _ => 0,
        }
    }
}

impl Event {
    /// What a connection that ended without a word from the peer tells
    /// Python: 1006, and the reason in `error_string`, if any.
    pub fn abnormal(error: Option<String>) -> Event {
        Event::Closed(Box::new(Outcome {
            code: CloseCode::ABNORMAL_CLOSURE,
            reason: String::new(),
            error,
            received: None,
            sent: None,
            received_first: false,
        }))
    }

    /// The event for a binary message: copied now into a blank bytes object
    /// if one of its size is ready, else left for the Python thread to copy.
    pub fn binary(message: Binary, events: &EventSink) -> Event {
        match events.spare(message.len()) {
            Some(mut blank) => {
                blank.fill(&message);
                Event::Landed(blank)
            }
            None => Event::Binary(message),
        }
    }
}

/// What arrived, in words, for tests that run without Python.
#[cfg(test)]
pub fn summary(queue: &Arc<EventQueue>) -> Vec<(u64, String)> {
    queue
        .take()
        .into_events()
        .into_iter()
        .map(|(id, event)| {
            let text = match event {
                Event::Text(t) => format!("text {}", t.as_str()),
                Event::Binary(b) => format!("binary {}", String::from_utf8_lossy(&b.to_vec())),
                Event::Closed(outcome) => match outcome.error {
                    Some(e) => format!("failed {} {e}", outcome.code),
                    None => format!("closed {} {}", outcome.code, outcome.reason),
                },
                Event::Closing => "closing".into(),
                Event::Pong { payload, .. } => {
                    format!("pong {}", String::from_utf8_lossy(&payload))
                }
                _ => "other".into(),
            };
            (id, text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Event;

    #[test]
    fn an_event_is_no_larger_than_a_binary_message_and_its_tag() {
        // Every message is an event: a rare one that grows (a handshake's
        // strings, a close's frames) belongs in a box.
        assert!(std::mem::size_of::<Event>() <= 48);
    }
}
