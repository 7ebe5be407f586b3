//! The handle Python holds to send on a connection and to close it, and
//! the broadcast of one message to many.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyUnicodeDecodeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyMemoryView, PyString};

use super::awaitable::awaitable;
use super::options::{seconds, Options};
use crate::conn::broadcast::broadcast_reporting as broadcast_to;
use crate::conn::connection::Flushed;
use crate::conn::server::Pending;
use crate::conn::Connection;
use crate::protocol::{close, MAX_CONTROL_PAYLOAD};

/// From this size on, a message sent from a `bytes` or `str` object is not
/// copied: the frames point into the Python object, which is kept alive (and
/// let go of without the GIL, through PyO3's reference pool) until written.
/// Below it a copy is cheaper than the bookkeeping.
const BORROW_FROM: usize = 8 << 10;

/// Largest message a Python thread writes with the GIL held: 64 KiB. It
/// writes larger ones without: its non-blocking writes copy (and a client's
/// mask) as much as the socket takes, which lets other threads run Python.
const WRITE_WITH_GIL_MAX: usize = 64 << 10;

/// Largest message a Python thread compresses with the GIL held: 8 KiB,
/// about 50 µs of deflate on JSON. Larger ones are compressed without it
/// (64 KiB: about 0.4 ms), so that other Python threads run meanwhile;
/// below it, letting go of the GIL and taking it back could cost more than
/// the compression when another thread holds it.
const COMPRESS_WITH_GIL_MAX: usize = 8 << 10;

/// The handle Python holds to send on a connection and to close it.
#[pyclass(name = "Connection", frozen, module = "wsbind._wsbind")]
pub struct PyConnection {
    pub(super) connection: Arc<Connection>,
    /// A server's count of accepted connections not yet handed to
    /// `client_connected`; this one leaves it when the server takes it.
    pending: Mutex<Option<Arc<Pending>>>,
}

impl From<Arc<Connection>> for PyConnection {
    fn from(connection: Arc<Connection>) -> Self {
        PyConnection {
            connection,
            pending: Mutex::new(None),
        }
    }
}

impl PyConnection {
    /// A server's connection, counted as pending until `taken()`.
    pub fn pending(connection: Arc<Connection>, pending: Arc<Pending>) -> Self {
        PyConnection {
            connection,
            pending: Mutex::new(Some(pending)),
        }
    }

    fn leave_pending(&self) {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(pending) = pending {
            pending.leave();
        }
    }

    /// Sends without holding up other Python threads on a large message's
    /// write or compression.
    fn send(&self, py: Python<'_>, text: bool, payload: Bytes) -> PyResult<usize> {
        let connection = &self.connection;
        let long = payload.len() > WRITE_WITH_GIL_MAX
            || (payload.len() > COMPRESS_WITH_GIL_MAX && connection.compresses());
        let sent = if long {
            py.detach(|| connection.send(text, payload))
        } else {
            connection.send(text, payload)
        };
        Ok(sent?)
    }
}

impl Drop for PyConnection {
    fn drop(&mut self) {
        self.leave_pending();
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn bytes_like(py: Python<'_>, data: &Bound<'_, PyAny>, method: &str) -> PyResult<Bytes> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        if bytes.as_bytes().len() >= BORROW_FROM {
            return Ok(Bytes::from_owner(PyBackedBytes::from(bytes.clone())));
        }
        return Ok(Bytes::copy_from_slice(bytes.as_bytes()));
    }
    if data.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{method}() takes a bytes-like object, not str"
        )));
    }
    let not_bytes_like = || {
        PyTypeError::new_err(format!(
            "{method}() takes a bytes-like object, not {}",
            type_name(data)
        ))
    };
    match PyBuffer::<u8>::get(data) {
        Ok(buffer) => Ok(Bytes::from(buffer.to_vec(py)?)),
        // Items other than bytes (an array of 'i', a memoryview cast to 'I')
        // are bytes-like too: their raw bytes, in C order, as bytes(data).
        Err(_) => {
            let view = PyMemoryView::from(data).map_err(|_| not_bytes_like())?;
            let raw = view.call_method0("tobytes")?;
            let raw = raw.cast::<PyBytes>().map_err(|_| not_bytes_like())?;
            Ok(Bytes::copy_from_slice(raw.as_bytes()))
        }
    }
}

/// The UTF-8 of `value` if it is a str; the UnicodeEncodeError of a str
/// with lone surrogates, which has none (websockets raises the same).
fn utf8(value: &Bound<'_, PyAny>) -> Option<PyResult<PyBackedStr>> {
    value
        .is_instance_of::<PyString>()
        .then(|| value.extract::<PyBackedStr>())
}

/// A str's UTF-8 as a payload: borrowed from the str from BORROW_FROM on.
fn text_payload(text: PyBackedStr) -> Bytes {
    if text.len() >= BORROW_FROM {
        Bytes::from_owner(text)
    } else {
        Bytes::copy_from_slice(text.as_bytes())
    }
}

/// A message from Python for a broadcast: text for a str, binary for any bytes-like object.
pub fn message_of(py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<(bool, Bytes)> {
    match utf8(message).transpose()? {
        Some(text) => Ok((true, text_payload(text))),
        None => Ok((false, bytes_like(py, message, "broadcast")?)),
    }
}

#[pymethods]
impl PyConnection {
    /// The id under which this connection's events arrive.
    #[getter]
    fn id(&self) -> u64 {
        self.connection.id
    }

    /// Payload bytes queued by `send_*` and not yet written.
    #[getter]
    fn bytes_to_write(&self) -> usize {
        self.connection.bytes_to_write()
    }

    /// Seconds between the last ping answered (keepalive's too) and its
    /// pong; 0 before the first.
    #[getter]
    fn latency(&self) -> f64 {
        self.connection.latency().as_secs_f64()
    }

    /// Queues a text message; returns its size in bytes of UTF-8.
    fn send_text(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = utf8(message).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "send_text_message() takes a str, not {}",
                type_name(message)
            ))
        })??;
        self.send(py, true, text_payload(text))
    }

    /// Queues a binary message from any bytes-like object; returns its size.
    fn send_binary(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let payload = bytes_like(py, data, "send_binary_message")?;
        self.send(py, false, payload)
    }

    /// Queues a whole message, text for a str and binary for any other
    /// bytes-like object, unless `text` says which (websockets'
    /// `send(text=)`): True sends bytes that hold UTF-8 as text, checked
    /// here (a peer would fail the connection with 1007), False a str's
    /// UTF-8 as binary. Returns the bytes then waiting to be written, so
    /// that the asyncio `send()` learns whether to wait with the same call.
    #[pyo3(signature = (message, text = None))]
    fn send_message(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        text: Option<bool>,
    ) -> PyResult<usize> {
        match (utf8(message).transpose()?, text) {
            (Some(string), None | Some(true)) => self.send(py, true, text_payload(string))?,
            (Some(string), Some(false)) => self.send(py, false, text_payload(string))?,
            (None, None | Some(false)) => self.send_binary(py, message)?,
            (None, Some(true)) => {
                let payload = bytes_like(py, message, "send")?;
                if let Err(error) = std::str::from_utf8(&payload) {
                    let error = PyUnicodeDecodeError::new_utf8(py, &payload, error)?;
                    return Err(PyErr::from_value(error.into_any()));
                }
                self.send(py, true, payload)?
            }
        };
        Ok(self.connection.bytes_to_write())
    }

    /// Queues one fragment of a message sent in several: a str continues
    /// (or opens) a text message, a bytes-like object a binary one; `last`
    /// ends it. Until then, other messages sent here wait for its end.
    /// Returns the fragment's size in bytes.
    fn send_fragment(
        &self,
        py: Python<'_>,
        fragment: &Bound<'_, PyAny>,
        last: bool,
    ) -> PyResult<usize> {
        let (text, payload) = match utf8(fragment).transpose()? {
            Some(text) => (true, text_payload(text)),
            None => (false, bytes_like(py, fragment, "send")?),
        };
        let connection = &self.connection;
        let sent = if payload.len() > WRITE_WITH_GIL_MAX {
            py.detach(|| connection.send_fragment(text, payload, last))
        } else {
            connection.send_fragment(text, payload, last)
        };
        Ok(sent?)
    }

    /// Waits, without the GIL, until everything queued is written; returns
    /// whether it was before `timeout` seconds (None: no limit) passed.
    #[pyo3(signature = (timeout = None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        let connection = Arc::clone(&self.connection);
        Ok(py.detach(move || connection.wait_written(0, timeout)) == Flushed::Below)
    }

    /// Waits, without the GIL, until at most `low` bytes wait to be written
    /// or the connection is over; False if `timeout` seconds passed first.
    /// The blocking twin of `drained()`.
    #[pyo3(signature = (low, timeout = None))]
    fn wait_written(&self, py: Python<'_>, low: usize, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        let connection = Arc::clone(&self.connection);
        Ok(py.detach(move || connection.wait_written(low, timeout)) != Flushed::TimedOut)
    }

    /// An awaitable, done once at most `low` bytes wait to be written or
    /// the connection is over (then `bytes_to_write` says which).
    fn drained<'py>(&self, py: Python<'py>, low: usize) -> PyResult<Bound<'py, PyAny>> {
        let connection = Arc::clone(&self.connection);
        awaitable(py, async move {
            connection.drained(low).await;
            Ok(())
        })
    }

    /// Sends a ping with `payload` (at most 125 bytes).
    fn ping(&self, py: Python<'_>, payload: &Bound<'_, PyAny>) -> PyResult<()> {
        let payload = bytes_like(py, payload, "ping")?;
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(PyValueError::new_err(format!(
                "ping payload is {} bytes, over the limit of {MAX_CONTROL_PAYLOAD}",
                payload.len()
            )));
        }
        Ok(self.connection.ping(payload)?)
    }

    /// Starts the closing handshake with `code` and `reason`.
    #[pyo3(signature = (code = 1000, reason = ""))]
    fn close(&self, code: u16, reason: &str) -> PyResult<()> {
        close::check_sendable(code, reason).map_err(PyValueError::new_err)?;
        self.connection.close(code, reason.to_string());
        Ok(())
    }

    /// Drops the TCP connection without a closing handshake.
    fn abort(&self) {
        self.connection.abort();
    }

    /// Whether data frames are reported one by one, besides whole messages.
    fn report_frames(&self, on: bool) {
        self.connection.set_report_frames(on);
    }

    /// The server takes this connection for its handlers: it is no longer pending.
    fn taken(&self) {
        self.leave_pending();
    }

    /// Applies a socket's limits, keepalive and timeouts to the open connection.
    fn configure(&self, options: Options) -> PyResult<()> {
        self.connection.configure(options.settings()?);
        Ok(())
    }

    /// Stops (True) or resumes (False) reading the socket, so that TCP
    /// pushes back on the peer while Python holds as many messages as it may.
    fn pause_reading(&self, paused: bool) {
        self.connection.pause_reading(paused);
    }

    /// Whether each write is reported (for `bytes_written`).
    fn report_writes(&self, on: bool) {
        self.connection.set_report_writes(on);
    }
}

/// Sends `message` to every open connection in `connections`, framed once
/// for all a server's connections; returns how many took it, and the open
/// ones that did not (their queue is full) by their place in
/// `connections`, each with its error.
#[pyfunction]
pub fn broadcast(
    py: Python<'_>,
    connections: Vec<PyRef<'_, PyConnection>>,
    message: &Bound<'_, PyAny>,
) -> PyResult<(usize, Vec<(usize, PyErr)>)> {
    let (text, payload) = message_of(py, message)?;
    let connections: Vec<Arc<Connection>> = connections
        .iter()
        .map(|c| Arc::clone(&c.connection))
        .collect();
    let mut skipped = Vec::new();
    let reached = py.detach(|| {
        broadcast_to(&connections, text, &payload, |place, error| {
            skipped.push((place, error))
        })
    });
    let skipped = skipped
        .into_iter()
        .map(|(place, error)| (place, PyErr::from(error)))
        .collect();
    Ok((reached, skipped))
}
