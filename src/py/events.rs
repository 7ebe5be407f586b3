//! The event queue as Python sees it, and each [`Event`] as the Python
//! object its dispatch reads: `(id, kind, payload)`, where `kind` is one of
//! the `EVENT_*` numbers (`wsbind.dispatch.EventKind` names them) and the
//! payload a `str` or `bytes` for a message, or an object with named fields.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::client::Authenticator;
use super::connection::PyConnection;
use super::http::PyHttpRequest;
use super::proxy::ProxyAuthenticator;
use super::server::OriginAuthenticator;
use crate::bridge::Landing;
use crate::conn::{Accepted, Agreed, Event, EventQueue};
use crate::net::Endpoints;
use crate::protocol::handshake::Headers;
use crate::protocol::session::Outcome;
use crate::protocol::Binary;

/// Event kinds, as the Python side reads them from `(id, kind, payload)`.
pub mod kind {
    pub const CONNECTED: u8 = 0;
    pub const TEXT: u8 = 1;
    pub const BINARY: u8 = 2;
    pub const CLOSING: u8 = 3;
    pub const CLOSED: u8 = 4;
    pub const TEXT_FRAME: u8 = 5;
    pub const BINARY_FRAME: u8 = 6;
    pub const PONG: u8 = 7;
    pub const WRITTEN: u8 = 8;
    pub const LISTENING: u8 = 10;
    pub const LISTEN_FAILED: u8 = 11;
    pub const CLIENT_CONNECTED: u8 = 12;
    pub const ACCEPT_FAILED: u8 = 13;
    pub const STOPPED: u8 = 14;
    pub const SERVER_ERROR: u8 = 15;
    pub const ORIGIN_CHECK: u8 = 16;
    pub const SSL_ERRORS: u8 = 17;
    pub const PROXY_AUTH: u8 = 18;
    pub const AUTHENTICATE: u8 = 19;
    pub const HTTP_REQUEST: u8 = 20;
    pub const BROKER: u8 = 21;
    pub const REJECTED: u8 = 22;
    pub const FENCE: u8 = 23;

    /// Every kind with its Python name, for the module's constants.
    pub const ALL: [(&str, u8); 23] = [
        ("EVENT_CONNECTED", CONNECTED),
        ("EVENT_TEXT", TEXT),
        ("EVENT_BINARY", BINARY),
        ("EVENT_CLOSING", CLOSING),
        ("EVENT_CLOSED", CLOSED),
        ("EVENT_TEXT_FRAME", TEXT_FRAME),
        ("EVENT_BINARY_FRAME", BINARY_FRAME),
        ("EVENT_PONG", PONG),
        ("EVENT_WRITTEN", WRITTEN),
        ("EVENT_LISTENING", LISTENING),
        ("EVENT_LISTEN_FAILED", LISTEN_FAILED),
        ("EVENT_CLIENT_CONNECTED", CLIENT_CONNECTED),
        ("EVENT_ACCEPT_FAILED", ACCEPT_FAILED),
        ("EVENT_STOPPED", STOPPED),
        ("EVENT_SERVER_ERROR", SERVER_ERROR),
        ("EVENT_ORIGIN_CHECK", ORIGIN_CHECK),
        ("EVENT_SSL_ERRORS", SSL_ERRORS),
        ("EVENT_PROXY_AUTH", PROXY_AUTH),
        ("EVENT_AUTHENTICATE", AUTHENTICATE),
        ("EVENT_HTTP_REQUEST", HTTP_REQUEST),
        ("EVENT_BROKER", BROKER),
        ("EVENT_REJECTED", REJECTED),
        ("EVENT_FENCE", FENCE),
    ];
}

/// Where a connection runs between, as Python reads it.
#[pyclass(frozen, get_all, module = "wsbind._wsbind")]
pub struct Addresses {
    /// The peer's address and port ("" and 0 when unknown).
    pub peer_address: String,
    pub peer_port: u16,
    /// Our end's address and port.
    pub local_address: String,
    pub local_port: u16,
}

impl From<&Endpoints> for Addresses {
    fn from(endpoints: &Endpoints) -> Self {
        let split = |a: Option<std::net::SocketAddr>| match a {
            Some(a) => (a.ip().to_string(), a.port()),
            None => (String::new(), 0),
        };
        let (peer_address, peer_port) = split(endpoints.peer);
        let (local_address, local_port) = split(endpoints.local);
        Addresses {
            peer_address,
            peer_port,
            local_address,
            local_port,
        }
    }
}

/// EVENT_CONNECTED: a client's opening handshake succeeded.
#[pyclass(frozen, get_all, module = "wsbind._wsbind")]
pub struct Connected {
    /// The subprotocol the server picked ("" for none).
    pub subprotocol: String,
    /// The extensions the server accepted, as it wrote them ("" for none).
    pub extensions: String,
    /// The request target as sent: path and query, percent-encoded.
    pub resource_name: String,
    /// The server's 101 response's headers, in order, as (name, value).
    pub headers: Headers,
    pub addresses: Py<Addresses>,
}

/// EVENT_CLIENT_CONNECTED: a server accepted a client.
#[pyclass(frozen, get_all, module = "wsbind._wsbind")]
pub struct ClientConnected {
    pub connection: Py<PyConnection>,
    /// The full request URL: `ws://host[:port]/path?query`.
    pub url: String,
    pub requested_subprotocols: Vec<String>,
    pub negotiated_subprotocol: String,
    /// The extensions the server accepted, as its response wrote them.
    pub extensions: String,
    /// The request target: path and query.
    pub resource_name: String,
    /// The request's headers, in order, as (name, value).
    pub headers: Headers,
    pub addresses: Py<Addresses>,
}

/// EVENT_CLOSED: the connection is over.
#[pyclass(frozen, get_all, module = "wsbind._wsbind")]
pub struct Closed {
    /// The close code (1005 for a close frame without one, 1006 for none).
    pub code: u16,
    pub reason: String,
    /// Why it failed, for `error_string`; None for a normal close.
    pub error: Option<String>,
    /// The peer's close frame as (code, reason), if one came.
    pub received: Option<(u16, String)>,
    /// Ours, or our echo of the peer's, if it went out.
    pub sent: Option<(u16, String)>,
    /// Whether the peer's came before ours went out.
    pub received_first: bool,
}

/// EVENT_TEXT_FRAME and EVENT_BINARY_FRAME: one data frame.
#[pyclass(frozen, get_all, module = "wsbind._wsbind")]
pub struct Frame {
    /// A str for a text frame, bytes for a binary one.
    pub data: Py<PyAny>,
    /// Whether it ends its message.
    pub last: bool,
}

/// EVENT_PONG: the answer to a ping.
#[pyclass(frozen, get_all, module = "wsbind._wsbind")]
pub struct Pong {
    /// Milliseconds since our ping (0 for a pong nobody asked for).
    pub elapsed_ms: f64,
    pub payload: Py<PyBytes>,
}

/// EVENT_WRITTEN: message bytes went out.
#[pyclass(frozen, get_all, module = "wsbind._wsbind")]
pub struct Written {
    pub count: usize,
    /// Bytes that still wait.
    pub remaining: usize,
}

/// EVENT_FENCE: nothing for handlers. Dropped once the events before it
/// were handled, which tells the task that sent it.
#[pyclass(frozen, module = "wsbind._wsbind")]
pub struct Fence {
    _handled: tokio::sync::oneshot::Sender<()>,
}

/// A Python bytes object holding `message`, written once (PyBytes::new_with
/// would zero it first: a second pass over a large message).
fn bytes_of<'py>(py: Python<'py>, message: &Binary) -> PyResult<Bound<'py, PyAny>> {
    let mut bytes = Landing::new(py, message.len())?;
    bytes.fill(message);
    Ok(bytes.into_bytes().into_bound(py))
}

fn object<'py, T: pyo3::PyClass + Into<pyo3::PyClassInitializer<T>>>(
    py: Python<'py>,
    value: T,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(Bound::new(py, value)?.into_any())
}

/// An event as `(id, kind, payload)`.
fn to_python<'py>(py: Python<'py>, id: u64, event: Event) -> PyResult<Bound<'py, PyTuple>> {
    let (kind, payload): (u8, Bound<'py, PyAny>) = match event {
        Event::Connected(agreed) => {
            let Agreed {
                subprotocol,
                extensions,
                resource_name,
                headers,
                endpoints,
            } = *agreed;
            let connected = Connected {
                subprotocol,
                extensions,
                resource_name,
                headers,
                addresses: Py::new(py, Addresses::from(&endpoints))?,
            };
            (kind::CONNECTED, object(py, connected)?)
        }
        Event::Text(text) => (kind::TEXT, PyString::new(py, text.as_str()).into_any()),
        Event::Binary(message) => (kind::BINARY, bytes_of(py, &message)?),
        Event::Landed(landing) => (kind::BINARY, landing.into_bytes().into_bound(py)),
        Event::TextFrame { text, last } => {
            let data = PyString::new(py, &text).into_any().unbind();
            (kind::TEXT_FRAME, object(py, Frame { data, last })?)
        }
        Event::BinaryFrame { data, last } => {
            let data = PyBytes::new(py, &data).into_any().unbind();
            (kind::BINARY_FRAME, object(py, Frame { data, last })?)
        }
        Event::Pong {
            elapsed_ms,
            payload,
        } => {
            let payload = PyBytes::new(py, &payload).unbind();
            let pong = Pong {
                elapsed_ms,
                payload,
            };
            (kind::PONG, object(py, pong)?)
        }
        Event::Written { count, remaining } => {
            (kind::WRITTEN, object(py, Written { count, remaining })?)
        }
        Event::Closing => (kind::CLOSING, py.None().into_bound(py)),
        Event::ProxyAuth(question) => (
            kind::PROXY_AUTH,
            object(py, ProxyAuthenticator::from(question))?,
        ),
        Event::Authenticate(question) => (
            kind::AUTHENTICATE,
            object(py, Authenticator::from(question))?,
        ),
        Event::SslErrors(errors) => (kind::SSL_ERRORS, errors.into_pyobject(py)?.into_any()),
        Event::Fence(handled) => (kind::FENCE, object(py, Fence { _handled: handled })?),
        Event::Rejected(headers) => (kind::REJECTED, headers.into_pyobject(py)?.into_any()),
        Event::Closed(outcome) => {
            let Outcome {
                code,
                reason,
                error,
                received,
                sent,
                received_first,
            } = *outcome;
            let closed = Closed {
                code: code.0,
                reason,
                error,
                received,
                sent,
                received_first,
            };
            (kind::CLOSED, object(py, closed)?)
        }
        Event::Listening { port } => (kind::LISTENING, port.into_pyobject(py)?.into_any()),
        Event::ListenFailed(message) => {
            (kind::LISTEN_FAILED, PyString::new(py, &message).into_any())
        }
        Event::ClientConnected(accepted) => {
            let Accepted {
                connection,
                url,
                requested_subprotocols,
                negotiated_subprotocol,
                extensions,
                resource_name,
                headers,
                endpoints,
                pending,
            } = *accepted;
            let client = ClientConnected {
                connection: Py::new(py, PyConnection::pending(connection, pending))?,
                url,
                requested_subprotocols,
                negotiated_subprotocol,
                extensions,
                resource_name,
                headers,
                addresses: Py::new(py, Addresses::from(&endpoints))?,
            };
            (kind::CLIENT_CONNECTED, object(py, client)?)
        }
        Event::AcceptFailed(message) => {
            (kind::ACCEPT_FAILED, PyString::new(py, &message).into_any())
        }
        Event::ServerError(code) => (kind::SERVER_ERROR, code.0.into_pyobject(py)?.into_any()),
        Event::OriginCheck(question) => (
            kind::ORIGIN_CHECK,
            object(py, OriginAuthenticator::from(question))?,
        ),
        Event::Stopped => (kind::STOPPED, py.None().into_bound(py)),
        Event::HttpRequest(ask) => (
            kind::HTTP_REQUEST,
            object(py, PyHttpRequest::new(py, *ask)?)?,
        ),
        Event::Broker { state, error } => (
            kind::BROKER,
            (state as u8, error).into_pyobject(py)?.into_any(),
        ),
    };
    (id, kind, payload).into_pyobject(py)
}

/// A queue of events for the Python objects that one thread serves.
///
/// With `wakeup_fd=True`, `fileno()` becomes readable when events arrive
/// or sockets are ready, for `loop.add_reader`, and `take` gets them;
/// otherwise a thread blocks in `wait`.
#[pyclass(name = "EventQueue", frozen, module = "wsbind._wsbind")]
pub struct PyEventQueue {
    pub queue: Arc<EventQueue>,
}

impl PyEventQueue {
    /// The events of a batch as `(id, kind, payload)` tuples.
    fn to_python<'py>(
        &self,
        py: Python<'py>,
        batch: crate::bridge::Batch<Event>,
    ) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (id, event) in batch.open(py, self.queue.spares()) {
            list.append(to_python(py, id, event)?)?;
        }
        Ok(list)
    }
}

#[pymethods]
impl PyEventQueue {
    #[new]
    #[pyo3(signature = (*, wakeup_fd = false))]
    fn new(wakeup_fd: bool) -> PyResult<Self> {
        Ok(PyEventQueue {
            queue: EventQueue::new(wakeup_fd)?,
        })
    }

    /// The file descriptor that becomes readable when events arrive, or None.
    fn fileno(&self) -> Option<i32> {
        self.queue.fileno()
    }

    /// Every event that has arrived, and what the ready sockets hold, as
    /// `(id, kind, payload)` tuples; never blocks.
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let queue = self.queue.clone();
        let batch = py.detach(move || queue.take());
        self.to_python(py, batch)
    }

    /// Blocks, without the GIL, until events arrive, `timeout` seconds pass or
    /// the queue is closed; returns what arrived.
    fn wait<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Bound<'py, PyList>> {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        let queue = self.queue.clone();
        let batch = py.detach(move || queue.wait(timeout));
        self.to_python(py, batch)
    }

    /// Looks for events as ``wait()`` does before it sleeps, without the
    /// GIL, and returns what came instead of sleeping.
    fn look<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let queue = self.queue.clone();
        let batch = py.detach(move || queue.look());
        self.to_python(py, batch)
    }

    /// Makes the queue's thread return from ``wait()`` soon (a loop's
    /// descriptor becomes readable), even if no event comes: another thread
    /// handed it work.
    fn wake(&self) {
        self.queue.wake();
    }

    /// Wakes every waiter for good; later events are dropped.
    fn close(&self) {
        self.queue.close();
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.queue.is_closed()
    }
}
