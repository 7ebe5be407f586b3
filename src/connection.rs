//! One open WebSocket connection, client or server side: the I/O around
//! [`protocol`](crate::protocol), keepalive, the closing handshake, and the
//! `Connection` handle Python sends through.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyString};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout, Instant};

use crate::config;
use crate::errors::{Error, Failure, ABNORMAL_CLOSURE};
use crate::events::{self, Event, EventSink};
use crate::outbox::{Closed, Outbox, BURST_WRITE_FROM, WRITE_WITH_GIL_MAX};
use crate::protocol::{opcode, Chunk, Framer, Incoming, Limits, Parser, Role, MAX_CONTROL_PAYLOAD};
use crate::receiver::{self, data_event, Read, Reading, Received, Receiver};
use crate::writer::{self, Outgoing};

/// How long we try to tell a peer that broke the protocol why we drop it.
const FAILURE_LINGER: Duration = Duration::from_secs(1);

/// 1005: the peer's close frame carried no code. Reported, never sent.
const NO_STATUS_RECEIVED: u16 = 1005;

/// Commands a connection handles in one pass before it reads again.
const COMMAND_BATCH: usize = 256;

/// 1011: what a peer that stops answering pings hears, if it still listens.
const INTERNAL_ERROR: u16 = 1011;

/// Longest close reason: a control frame holds 125 bytes, two are the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// How one connection behaves; each field is a property of the Python socket.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Larger messages go out as continuation frames of this size.
    pub outgoing_frame_size: usize,
    pub ping_interval: Option<Duration>,
    pub ping_timeout: Option<Duration>,
    pub close_timeout: Duration,
}

// Sockets get their settings from Python's properties; tests get these.
#[cfg(test)]
impl Default for Settings {
    fn default() -> Self {
        Settings {
            limits: Limits {
                max_frame_size: config::MAX_INCOMING_FRAME_SIZE,
                max_message_size: config::MAX_INCOMING_MESSAGE_SIZE,
            },
            outgoing_frame_size: config::OUTGOING_FRAME_SIZE,
            ping_interval: Some(config::PING_INTERVAL),
            ping_timeout: Some(config::PING_TIMEOUT),
            close_timeout: config::CLOSE_TIMEOUT,
        }
    }
}

/// A socket's properties as Python passes them, by their Python names.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct Options {
    pub max_allowed_incoming_frame_size: usize,
    pub max_allowed_incoming_message_size: usize,
    pub outgoing_frame_size: usize,
    pub ping_interval: Option<f64>,
    pub ping_timeout: Option<f64>,
    pub close_timeout: f64,
    pub handshake_timeout: f64,
}

/// Seconds from Python as a Duration; ValueError for negative or absurd values.
pub fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a number of seconds >= 0, not {value}"
        ))
    })
}

impl Options {
    pub fn settings(&self) -> PyResult<Settings> {
        let optional = |name, value: Option<f64>| value.map(|v| seconds(name, v)).transpose();
        if self.outgoing_frame_size == 0 {
            return Err(PyValueError::new_err(
                "outgoing_frame_size must be at least 1",
            ));
        }
        Ok(Settings {
            limits: Limits {
                max_frame_size: self.max_allowed_incoming_frame_size,
                max_message_size: self.max_allowed_incoming_message_size,
            },
            outgoing_frame_size: self.outgoing_frame_size,
            ping_interval: optional("ping_interval", self.ping_interval)?,
            ping_timeout: optional("ping_timeout", self.ping_timeout)?,
            close_timeout: seconds("close_timeout", self.close_timeout)?,
        })
    }
}

/// Reads an HTTP head (up to its blank line) of at most `limit` bytes;
/// returns it and whatever arrived after it, or None if it is too large.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
) -> std::io::Result<Option<(BytesMut, BytesMut)>> {
    let mut buffer = BytesMut::with_capacity(1024);
    loop {
        if let Some(end) = crate::handshake::head_end(&buffer) {
            let head = buffer.split_to(end);
            return Ok(Some((head, buffer)));
        }
        if buffer.len() > limit {
            return Ok(None);
        }
        if stream.read_buf(&mut buffer).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// What Python asks a connection's task to do.
pub enum Command {
    Ping(Bytes),
    Close(u16, String),
    Abort,
    /// New limits, keepalive and timeouts, from the next frame on.
    Configure(Settings),
    /// What the Python thread that reads the socket leaves to the task.
    Received(Received),
}

/// Ids are unique across all objects, so that one queue can serve a server
/// and its connections.
pub fn next_id() -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The state a connection's task shares with the Python handle.
pub struct Shared {
    pub id: u64,
    /// Which end we are: a server's frames are the same for every peer.
    role: Role,
    commands: UnboundedSender<Command>,
    /// True from the end of the opening handshake until either side starts closing.
    open: AtomicBool,
    /// Payload bytes handed to `send_*` and not yet written.
    queued: AtomicUsize,
    /// Threads blocked in `flush()`, woken after each write.
    flushing: AtomicUsize,
    flushed: (std::sync::Mutex<()>, std::sync::Condvar),
    /// Qt's `outgoingFrameSize`, for the threads that frame what they send.
    frame_size: AtomicUsize,
    /// Each write is reported (a handler listens to `bytes_written`).
    report_writes: AtomicBool,
    /// The last burst of events in which a handler sent a small message here.
    burst: AtomicU64,
    /// Data frames are reported one by one (a handler listens to a frame
    /// signal); the parser looks before each pass, whichever thread reads.
    /// A server's connection starts with them on: its first bytes may be
    /// parsed before its `client_connected` handlers had a chance to listen,
    /// and the server settles it once they ran.
    report_frames: AtomicBool,
    pub outbox: Outbox,
    /// The receiver, while the Python thread reads the socket (plain TCP).
    reading: OnceLock<Reading>,
}

impl Shared {
    pub fn new(role: Role) -> (Arc<Shared>, UnboundedReceiver<Command>) {
        let (commands, receiver) = unbounded_channel();
        let shared = Shared {
            id: next_id(),
            role,
            commands,
            open: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            flushing: AtomicUsize::new(0),
            flushed: Default::default(),
            frame_size: AtomicUsize::new(config::OUTGOING_FRAME_SIZE),
            report_writes: AtomicBool::new(false),
            burst: AtomicU64::new(0),
            report_frames: AtomicBool::new(role == Role::Server),
            outbox: Outbox::default(),
            reading: OnceLock::new(),
        };
        (Arc::new(shared), receiver)
    }

    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }

    pub fn set_frame_size(&self, size: usize) {
        self.frame_size.store(size, Ordering::Relaxed);
    }

    /// Frames the message in the calling thread, which also writes it if
    /// nothing is queued ahead of it (see [`outbox`](crate::outbox)).
    fn send(&self, text: bool, payload: Bytes) -> Result<usize, Error> {
        let size = payload.len();
        self.admit(size)?;
        let frame_size = self.frame_size.load(Ordering::Relaxed);
        let chunks = Framer::new(self.role).message_chunks(text, payload, frame_size);
        // A reported write must come from the task, which reports it.
        let may_write = !self.report_writes.load(Ordering::Relaxed)
            && (size >= BURST_WRITE_FROM || self.first_in_burst());
        let sent = self.outbox.send(chunks, size, may_write);
        self.account(size, sent)
    }

    /// Whether the calling thread may write a small message here itself:
    /// it is not in a burst of events, or this is the first message it
    /// sends here in a burst of many sockets' events (see [`events::burst`]).
    fn first_in_burst(&self) -> bool {
        events::burst().is_none_or(|burst| {
            !burst.one_socket && self.burst.swap(burst.number, Ordering::Relaxed) != burst.number
        })
    }

    /// [`send`](Self::send) for Python, which a large message's write does not hold up.
    fn send_from_python(&self, py: Python<'_>, text: bool, payload: Bytes) -> Result<usize, Error> {
        if payload.len() > WRITE_WITH_GIL_MAX {
            py.detach(|| self.send(text, payload))
        } else {
            self.send(text, payload)
        }
    }

    /// Queues a message already framed (a broadcast's frames, shared by every peer).
    fn send_framed(&self, frame: Bytes, size: usize) -> Result<usize, Error> {
        self.admit(size)?;
        let sent = self.outbox.send(vec![Chunk::plain(frame)], size, false);
        self.account(size, sent)
    }

    /// Counts what a send completed (`done` payload bytes) as written, or
    /// the message of `size` bytes if it was not sent.
    fn account(&self, size: usize, sent: Result<usize, Closed>) -> Result<usize, Error> {
        match sent {
            Ok(done) => {
                self.written(done);
                Ok(size)
            }
            Err(Closed) => {
                self.written(size);
                Err(Error::NotOpen)
            }
        }
    }

    /// Writes what the socket did not take of messages written at once, on
    /// the thread that reads the socket, now that it takes more.
    pub fn write_held(&self) {
        self.written(self.outbox.write_held());
    }

    /// Counts `size` more bytes to write, unless the connection is not open
    /// or its outgoing buffer is full.
    fn admit(&self, size: usize) -> Result<(), Error> {
        if !self.open.load(Ordering::Acquire) {
            return Err(Error::NotOpen);
        }
        let queued = self.queued.fetch_add(size, Ordering::AcqRel);
        if queued > 0 && queued + size > config::MAX_OUTGOING_BUFFER {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            return Err(Error::BufferFull {
                queued,
                limit: config::MAX_OUTGOING_BUFFER,
            });
        }
        Ok(())
    }

    /// Starts the closing handshake; a connection that is already over ignores it.
    pub fn close(&self, code: u16, reason: String) {
        self.set_open(false);
        let _ = self.commands.send(Command::Close(code, reason));
    }

    fn command(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Reads the socket on the Python thread (see [`receiver`]).
    pub fn read(&self, events: &EventSink) -> Read {
        match self.reading.get() {
            Some(reading) => reading.read(events, self.frames(), |r| {
                self.command(Command::Received(r))
            }),
            None => Read::Over,
        }
    }

    fn frames(&self) -> bool {
        self.report_frames.load(Ordering::Relaxed)
    }

    /// The writer wrote `chunks` chunks carrying `payload` message bytes.
    pub fn batch_written(&self, payload: usize, chunks: usize, events: &EventSink) {
        if payload > 0 {
            let remaining = self.written(payload);
            if self.report_writes.load(Ordering::Relaxed) {
                events.send(Event::Written {
                    count: payload,
                    remaining,
                });
            }
        }
        // Only now may a sending thread write ahead of the queue.
        self.outbox.written(chunks);
    }

    fn written(&self, size: usize) -> usize {
        let remaining = self.queued.fetch_sub(size, Ordering::AcqRel) - size;
        // Only a change, and only for a thread waiting in flush(), is worth a wake-up.
        if size > 0 && self.flushing.load(Ordering::Acquire) > 0 {
            let _guard = self.flushed.0.lock().unwrap_or_else(|e| e.into_inner());
            self.flushed.1.notify_all();
        }
        remaining
    }

    /// Waits until every queued byte is written, or the connection is over,
    /// or `timeout` passes; returns whether nothing waits any more.
    fn wait_flushed(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        self.flushing.fetch_add(1, Ordering::AcqRel);
        let mut guard = self.flushed.0.lock().unwrap_or_else(|e| e.into_inner());
        let done = loop {
            if self.queued.load(Ordering::Acquire) == 0 {
                break true;
            }
            if self.commands.is_closed() {
                break false;
            }
            // Bounded waits, so that a connection that ends is noticed.
            let mut step = Duration::from_millis(100);
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break false;
                }
                step = step.min(left);
            }
            guard = self
                .flushed
                .1
                .wait_timeout(guard, step)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        drop(guard);
        self.flushing.fetch_sub(1, Ordering::AcqRel);
        done
    }
}

/// Checks a close code and reason as RFC 6455 §7.4 allows them to be sent.
pub fn check_close(code: u16, reason: &str) -> Result<(), String> {
    if !matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999) {
        return Err(format!(
            "close code {code} cannot be sent: use 1000-1003, 1007-1011 or 3000-4999"
        ));
    }
    if reason.len() > MAX_CLOSE_REASON {
        return Err(format!(
            "close reason is {} bytes of UTF-8, over the limit of {MAX_CLOSE_REASON}",
            reason.len()
        ));
    }
    Ok(())
}

/// The handle Python holds to send on a connection and to close it.
#[pyclass(frozen, module = "wsbind._wsbind")]
pub struct Connection {
    shared: Arc<Shared>,
    /// A server's count of accepted connections not yet handed to
    /// `client_connected`; this one leaves it when the server takes it.
    pending: std::sync::Mutex<Option<Arc<AtomicUsize>>>,
}

impl From<Arc<Shared>> for Connection {
    fn from(shared: Arc<Shared>) -> Self {
        Connection {
            shared,
            pending: std::sync::Mutex::new(None),
        }
    }
}

impl Connection {
    /// A server's connection, counted as pending until `taken()`.
    pub fn pending(shared: Arc<Shared>, pending: Arc<AtomicUsize>) -> Self {
        Connection {
            shared,
            pending: std::sync::Mutex::new(Some(pending)),
        }
    }

    fn leave_pending(&self) {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(pending) = pending {
            pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.leave_pending();
    }
}

/// From this size on, a message sent from a `bytes` or `str` object is not
/// copied: the frames point into the Python object, which is kept alive (and
/// let go of without the GIL, through PyO3's reference pool) until written.
/// Below it a copy is cheaper than the bookkeeping.
const BORROW_FROM: usize = 8 << 10;

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
    let buffer = PyBuffer::<u8>::get(data).map_err(|_| {
        PyTypeError::new_err(format!(
            "{method}() takes a bytes-like object, not {}",
            type_name(data)
        ))
    })?;
    Ok(Bytes::from(buffer.to_vec(py)?))
}

#[pymethods]
impl Connection {
    /// The id under which this connection's events arrive.
    #[getter]
    fn id(&self) -> u64 {
        self.shared.id
    }

    /// Payload bytes queued by `send_*` and not yet written.
    #[getter]
    fn bytes_to_write(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Queues a text message; returns its size in bytes of UTF-8.
    fn send_text(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text: PyBackedStr = message.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "send_text_message() takes a str, not {}",
                type_name(message)
            ))
        })?;
        let payload = if text.len() >= BORROW_FROM {
            Bytes::from_owner(text)
        } else {
            Bytes::copy_from_slice(text.as_bytes())
        };
        Ok(self.shared.send_from_python(py, true, payload)?)
    }

    /// Queues a binary message from any bytes-like object; returns its size.
    fn send_binary(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let payload = bytes_like(py, data, "send_binary_message")?;
        Ok(self.shared.send_from_python(py, false, payload)?)
    }

    /// Waits, without the GIL, until everything queued is written; returns
    /// whether it was before `timeout` seconds (None: no limit) passed.
    #[pyo3(signature = (timeout = None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        let shared = Arc::clone(&self.shared);
        Ok(py.detach(move || shared.wait_flushed(timeout)))
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
        if !self.shared.open.load(Ordering::Acquire) {
            return Err(Error::NotOpen.into());
        }
        self.shared.command(Command::Ping(payload));
        Ok(())
    }

    /// Starts the closing handshake with `code` and `reason`.
    #[pyo3(signature = (code = 1000, reason = ""))]
    fn close(&self, code: u16, reason: &str) -> PyResult<()> {
        check_close(code, reason).map_err(PyValueError::new_err)?;
        self.shared.close(code, reason.to_string());
        Ok(())
    }

    /// Drops the TCP connection without a closing handshake.
    fn abort(&self) {
        self.shared.set_open(false);
        self.shared.command(Command::Abort);
    }

    /// Whether data frames are reported one by one, besides whole messages.
    fn report_frames(&self, on: bool) {
        self.shared.report_frames.store(on, Ordering::Relaxed);
    }

    /// The server takes this connection for its handlers: it is no longer pending.
    fn taken(&self) {
        self.leave_pending();
    }

    /// Applies a socket's limits, keepalive and timeouts to the open connection.
    fn configure(&self, options: Options) -> PyResult<()> {
        let settings = options.settings()?;
        self.shared.set_frame_size(settings.outgoing_frame_size);
        self.shared.command(Command::Configure(settings));
        Ok(())
    }

    /// Whether each write is reported (for `bytes_written`).
    fn report_writes(&self, on: bool) {
        self.shared.report_writes.store(on, Ordering::Relaxed);
    }
}

/// A message from Python for a broadcast: text for a str, binary for any bytes-like object.
pub fn message_of(py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<(bool, Bytes)> {
    match message.extract::<&str>() {
        Ok(text) => Ok((true, Bytes::copy_from_slice(text.as_bytes()))),
        Err(_) => Ok((false, bytes_like(py, message, "broadcast")?)),
    }
}

/// Queues a message on every open connection of `connections`; returns how
/// many took it. A server's connections share one set of frames (they are
/// not masked); a client's are framed each, with their own masks. Closed
/// connections and those whose queue is full are skipped, as websockets'
/// `broadcast()` skips them.
pub fn broadcast_to<'a>(
    connections: impl IntoIterator<Item = &'a Arc<Shared>>,
    text: bool,
    payload: &Bytes,
) -> usize {
    let size = payload.len();
    let mut frames: Option<Bytes> = None;
    let mut reached = 0;
    for conn in connections {
        let sent = match conn.role {
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
                conn.send_framed(frames.clone(), size)
            }
            Role::Client => conn.send(text, payload.clone()),
        };
        reached += usize::from(sent.is_ok());
    }
    reached
}

/// Sends `message` to every open connection in `connections`, framed once
/// for all a server's connections; returns how many took it.
#[pyfunction]
pub fn broadcast(
    py: Python<'_>,
    connections: Vec<PyRef<'_, Connection>>,
    message: &Bound<'_, PyAny>,
) -> PyResult<usize> {
    let (text, payload) = message_of(py, message)?;
    let shared: Vec<Arc<Shared>> = connections.iter().map(|c| Arc::clone(&c.shared)).collect();
    Ok(py.detach(|| broadcast_to(&shared, text, &payload)))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// How a connection ended.
enum End {
    /// The closing handshake is complete.
    Closed,
    Failed(Failure),
    /// Python asked to drop the connection, or let go of it.
    Aborted,
}

/// A sent ping awaiting its pong.
struct Ping {
    payload: Bytes,
    sent: Instant,
    /// Sent by `ping()`, as opposed to keepalive.
    by_user: bool,
}

/// The protocol side of a running connection: what to send and what it means.
struct Session<'a> {
    role: Role,
    settings: Settings,
    framer: Framer,
    events: &'a EventSink,
    shared: &'a Shared,
    /// Our close frame (or our echo of the peer's) is out.
    close_sent: bool,
    /// The peer's close frame, once it arrived.
    peer_close: Option<Option<(u16, String)>>,
    /// When to give up on the closing handshake.
    close_deadline: Option<Instant>,
    pings: VecDeque<Ping>,
    next_keepalive: Option<Instant>,
}

impl Session<'_> {
    fn control(&mut self, op: u8, payload: &[u8]) {
        let mut bytes = BytesMut::new();
        self.framer.frame(&mut bytes, op, true, payload);
        self.queue_own(bytes.freeze(), false);
    }

    /// Queues a frame the session makes itself (a ping, a pong, our close).
    fn queue_own(&mut self, frame: Bytes, close: bool) {
        let chunk = Chunk::plain(frame);
        self.shared
            .outbox
            .queue(Outgoing { chunk, payload: 0 }, close);
    }

    fn send_close(&mut self, frame: Option<(u16, &str)>) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        self.shared.set_open(false);
        let mut bytes = BytesMut::new();
        self.framer.close(&mut bytes, frame);
        self.queue_own(bytes.freeze(), true);
        self.close_deadline = Some(Instant::now() + self.settings.close_timeout);
    }

    /// Sends the close frame that fails the connection, and ends it.
    fn fail(&mut self, failure: Failure) -> End {
        if failure.is_sent() {
            self.send_close(Some((failure.code, "")));
        }
        End::Failed(failure)
    }

    fn ping(&mut self, payload: Bytes, by_user: bool) {
        self.control(opcode::PING, &payload);
        self.pings.push_back(Ping {
            payload,
            sent: Instant::now(),
            by_user,
        });
    }

    /// Runs `f` on the parser, with the task or with the Python thread.
    fn with_parser(&self, local: &mut Option<Receiver>, f: impl FnOnce(&mut Parser)) {
        match (local, self.shared.reading.get()) {
            (Some(receiver), _) => f(&mut receiver.parser),
            (None, Some(reading)) => reading.with_parser(f),
            (None, None) => {}
        }
    }

    fn command(&mut self, command: Command, local: &mut Option<Receiver>) -> Option<End> {
        match command {
            Command::Ping(payload) => {
                if !self.close_sent {
                    self.ping(payload, true);
                }
            }
            Command::Close(code, reason) => self.send_close(Some((code, &reason))),
            Command::Abort => return Some(End::Aborted),
            Command::Configure(settings) => {
                self.with_parser(local, |parser| parser.set_limits(settings.limits));
                self.next_keepalive = settings.ping_interval.map(|i| Instant::now() + i);
                self.settings = settings;
            }
            Command::Received(received) => {
                return match received {
                    Received::Control(incoming) => self.incoming(incoming),
                    Received::Eof => Some(self.eof()),
                    Received::Lost(e) => Some(lost(e)),
                    Received::Failed(failure) => Some(self.fail(failure)),
                }
            }
        }
        None
    }

    fn incoming(&mut self, event: Incoming) -> Option<End> {
        let control = match data_event(event, self.events) {
            Ok(event) => {
                self.events.send(event);
                return None;
            }
            Err(control) => control,
        };
        match control {
            Incoming::Ping(payload) => {
                if !self.close_sent {
                    self.control(opcode::PONG, &payload);
                }
                None
            }
            Incoming::Pong(payload) => self.pong(payload),
            Incoming::Close(frame) => {
                if !self.close_sent {
                    self.events.send(Event::Closing);
                    // Echo the frame, as §5.5.1 asks (and websockets does).
                    self.send_close(
                        frame
                            .as_ref()
                            .map(|(code, reason)| (*code, reason.as_str())),
                    );
                }
                self.peer_close = Some(frame);
                // The server closes the TCP connection first (§7.1.1); a
                // client waits for it, up to the close timeout.
                match self.role {
                    Role::Server => Some(End::Closed),
                    Role::Client => None,
                }
            }
            // data_event took every data message and frame.
            _ => None,
        }
    }

    fn pong(&mut self, payload: Bytes) -> Option<End> {
        // A pong answers the ping with its payload and, implicitly, every
        // ping sent before it (§5.5.3).
        let now = Instant::now();
        match self.pings.iter().position(|p| p.payload == payload) {
            Some(index) => {
                let ping = self.pings.drain(..=index).last()?;
                if ping.by_user {
                    let elapsed_ms = (now - ping.sent).as_secs_f64() * 1000.0;
                    self.events.send(Event::Pong {
                        elapsed_ms,
                        payload,
                    });
                }
            }
            // Unsolicited: Qt reports it too.
            None => self.events.send(Event::Pong {
                elapsed_ms: 0.0,
                payload,
            }),
        }
        None
    }

    /// The next moment something must happen without the peer: a keepalive
    /// ping, a pong deadline, or the end of the closing handshake.
    fn deadline(&self) -> Option<Instant> {
        let pong_due = self
            .settings
            .ping_timeout
            .and_then(|t| self.pings.iter().find(|p| !p.by_user).map(|p| p.sent + t));
        let keepalive = if self.close_sent {
            None
        } else {
            self.next_keepalive
        };
        [pong_due, keepalive, self.close_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    fn timer(&mut self) -> Option<End> {
        let now = Instant::now();
        if self.close_deadline.is_some_and(|d| now >= d) {
            if self.peer_close.is_some() {
                // The handshake is complete; only the server's TCP close is late.
                return Some(End::Closed);
            }
            return Some(End::Failed(Failure::new(
                ABNORMAL_CLOSURE,
                format!(
                    "close timeout: the peer did not finish the closing handshake within {} s",
                    self.settings.close_timeout.as_secs_f64()
                ),
            )));
        }
        if let Some(timeout) = self.settings.ping_timeout {
            if self
                .pings
                .iter()
                .any(|p| !p.by_user && now >= p.sent + timeout)
            {
                return Some(self.fail(Failure::new(
                    INTERNAL_ERROR,
                    format!(
                        "keepalive ping timeout: no pong within {} s",
                        timeout.as_secs_f64()
                    ),
                )));
            }
        }
        if let (Some(due), Some(interval)) = (self.next_keepalive, self.settings.ping_interval) {
            if now >= due && !self.close_sent {
                let payload = Bytes::copy_from_slice(&rand::random::<[u8; 4]>());
                self.ping(payload, false);
                self.next_keepalive = Some(now + interval);
            }
        }
        None
    }

    fn eof(&mut self) -> End {
        if self.peer_close.is_some() {
            End::Closed
        } else {
            End::Failed(Failure::new(
                ABNORMAL_CLOSURE,
                "connection lost: the peer closed the connection without a close frame",
            ))
        }
    }
}

/// Runs an open connection until it is over, then sends `Event::Closed`.
///
/// `received` holds bytes that arrived with the opening handshake; `socket`
/// is the plain TCP socket under `stream`, that sending threads may write
/// to while the connection runs (see [`outbox`](crate::outbox)).
#[allow(
    clippy::too_many_arguments,
    reason = "one call site per role; a struct would only rename them"
)]
pub async fn run<S>(
    stream: S,
    role: Role,
    settings: Settings,
    received: BytesMut,
    socket: Option<RawFd>,
    shared: Arc<Shared>,
    mut commands: UnboundedReceiver<Command>,
    events: EventSink,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // A connection runs once: the queue is there unless this is a second run.
    let Some(queue) = shared.outbox.take_queue() else {
        return;
    };
    let (mut reader, writer) = tokio::io::split(stream);
    let mut parser = Parser::new(role, settings.limits);
    parser.buffer().extend_from_slice(&received);
    // The task's while it reads; the Python thread's (in `shared.reading`)
    // while that thread reads a plain TCP socket, unless lent back.
    let mut local = Some(Receiver::new(parser));
    let mut direct = socket.map(|fd| (fd, events.lending()));
    let mut watched = false;
    // The plain socket's readiness while the task reads it.
    let mut readable = None;
    let mut session = Session {
        role,
        next_keepalive: settings.ping_interval.map(|i| Instant::now() + i),
        framer: Framer::new(role),
        settings,
        events: &events,
        shared: &shared,
        close_sent: false,
        peer_close: None,
        close_deadline: None,
        pings: VecDeque::new(),
    };
    shared.outbox.attach(socket);
    let writing = writer::write(writer, queue, &shared, &events);
    tokio::pin!(writing);
    // A finished future must not be polled again.
    let mut writer_done = false;
    // One timer for the connection's life, moved only when the deadline
    // does: a timer made anew each pass cost a trip through tokio's timer
    // wheel, under its lock, for every message.
    let timer = sleep_until(Instant::now());
    tokio::pin!(timer);
    let end = 'run: loop {
        if let Some(receiver) = local.as_mut() {
            receiver.parser.frames = shared.frames();
            loop {
                match receiver.parser.next_event() {
                    Ok(Some(event)) => {
                        if let Some(end) = session.incoming(event) {
                            break 'run end;
                        }
                    }
                    Ok(None) => break,
                    Err(failure) => break 'run session.fail(failure),
                }
            }
            receiver.prepare(&events);
        }
        if let Some((fd, lending)) = direct.as_mut() {
            let reading = shared.reading.get_or_init(|| Reading::new(*fd));
            let lent = *lending.borrow_and_update();
            if lent && local.is_none() {
                local = reading.take();
                if local.is_some() {
                    // The writer writes what the Python thread held, too.
                    shared.outbox.unwatch();
                    // Parsed and prepared at the top, as the task's own.
                    continue;
                }
            } else if !lent && local.is_some() {
                if let Some(receiver) = local.take() {
                    reading.put(receiver);
                }
                if watched {
                    events.watch_writes(&shared);
                } else {
                    watched = events.watch(Arc::clone(&shared), *fd).is_ok();
                    if !watched {
                        // The poller refused it: the task reads, as over TLS.
                        local = reading.take();
                        direct = None;
                    }
                }
            }
        }
        match (socket, &local) {
            (Some(fd), Some(_)) if readable.is_none() => match receiver::readiness(fd) {
                Ok(io) => readable = Some(io),
                Err(e) => break lost(e),
            },
            (_, None) => readable = None,
            _ => {}
        }
        let room = events.has_room();
        let deadline = session.deadline();
        if let Some(at) = deadline.filter(|&at| timer.deadline() != at) {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            biased;
            written = &mut writing => {
                writer_done = true;
                break match written {
                    Err(e) => lost(e),
                    Ok(()) => session.eof(),
                };
            }
            command = commands.recv() => {
                // Whatever else is queued is handled in the same pass (up to a
                // bound, for fairness to reading), so that a burst of pings or
                // of what the Python thread read costs one trip through this
                // loop, not one each.
                let mut next = command;
                let mut handled = 0;
                let ended = loop {
                    let Some(command) = next.take() else { break None };
                    if let Some(end) = session.command(command, &mut local) {
                        break Some(end);
                    }
                    handled += 1;
                    if handled < COMMAND_BATCH {
                        next = commands.try_recv().ok();
                    }
                };
                if let Some(end) = ended {
                    break end;
                }
                if handled == 0 {
                    // The channel closed: every handle let go.
                    break End::Aborted;
                }
            },
            read = read_some(&mut reader, readable.as_ref(), local.as_mut()), if room && local.is_some() => match read {
                Ok(0) => break session.eof(),
                Ok(read) => {
                    if let Some(receiver) = local.as_mut() {
                        receiver.received(read, &events);
                    }
                }
                Err(e) => break lost(e),
            },
            () = lending_changed(direct.as_mut().map(|(_, lending)| lending)) => {}
            () = events.wait_for_room(), if !room => {}
            () = &mut timer, if deadline.is_some() => {
                if let Some(end) = session.timer() {
                    break end;
                }
            }
        }
    };
    shared.set_open(false);
    // The Python thread stops reading before the socket is closed.
    if let Some((fd, _)) = direct {
        if watched {
            events.unwatch(fd);
        }
        if let Some(reading) = shared.reading.get() {
            reading.take();
        }
    }
    // Lets the writer send what is queued (our close frame) and close its
    // side, unless the connection is to be dropped at once.
    shared.outbox.detach();
    let linger = match end {
        End::Closed => session.settings.close_timeout,
        End::Failed(_) => FAILURE_LINGER,
        End::Aborted => Duration::ZERO,
    };
    if !linger.is_zero() && !writer_done {
        let _ = timeout(linger, &mut writing).await;
    }
    let peer_close = session.peer_close.take();
    let (code, reason, error) = match end {
        End::Closed => match peer_close.flatten() {
            Some((code, reason)) => (code, reason, None),
            None => (NO_STATUS_RECEIVED, String::new(), None),
        },
        End::Failed(Failure { code, message }) => (code, String::new(), Some(message)),
        End::Aborted => (ABNORMAL_CLOSURE, String::new(), None),
    };
    events.send(Event::Closed {
        code,
        reason,
        error,
    });
}

/// Reads what came, if the task has the receiver: from the plain socket
/// when it has its readiness, else from the stream; never ready otherwise.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    readable: Option<&AsyncFd<OwnedFd>>,
    receiver: Option<&mut Receiver>,
) -> std::io::Result<usize> {
    match (receiver, readable) {
        (Some(receiver), Some(io)) => receiver.read_socket(io).await,
        (Some(receiver), None) => receiver.read(reader).await,
        (None, _) => std::future::pending().await,
    }
}

/// Ready when the queue's thread lends its sockets or takes them back.
async fn lending_changed(lending: Option<&mut watch::Receiver<bool>>) {
    if let Some(lending) = lending {
        if lending.changed().await.is_ok() {
            return;
        }
    }
    // No socket to lend, or no queue any more: nothing changes.
    std::future::pending().await
}

fn lost(e: std::io::Error) -> End {
    End::Failed(Failure::new(
        ABNORMAL_CLOSURE,
        format!("connection lost: {e}"),
    ))
}

/// Where a connection runs between: its peer and our end.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub peer: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
}

impl Endpoints {
    pub fn of(stream: &tokio::net::TcpStream) -> Self {
        Endpoints {
            peer: stream.peer_addr().ok(),
            local: stream.local_addr().ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MASK_AT_WRITE_FROM;

    #[test]
    fn close_codes_and_reasons_are_checked() {
        assert!(check_close(1000, "bye").is_ok());
        assert!(check_close(4999, "").is_ok());
        for code in [999, 1004, 1005, 1006, 1012, 1015, 2999, 5000] {
            assert!(check_close(code, "").is_err(), "{code}");
        }
        assert!(check_close(1000, &"x".repeat(MAX_CLOSE_REASON)).is_ok());
        assert!(check_close(1000, &"x".repeat(MAX_CLOSE_REASON + 1)).is_err());
    }

    #[test]
    fn sending_before_open_is_refused() {
        let (shared, _rx) = Shared::new(Role::Client);
        assert_eq!(
            shared.send(true, Bytes::from_static(b"x")),
            Err(Error::NotOpen)
        );
        shared.set_open(true);
        assert_eq!(shared.send(true, Bytes::from_static(b"x")), Ok(1));
    }

    #[test]
    fn the_outgoing_queue_is_bounded() {
        let (shared, _rx) = Shared::new(Role::Client);
        shared.set_open(true);
        assert!(shared
            .send(false, Bytes::from(vec![0; config::MAX_OUTGOING_BUFFER]))
            .is_ok());
        assert!(matches!(
            shared.send(false, Bytes::from_static(b"x")),
            Err(Error::BufferFull { .. })
        ));
    }

    #[test]
    fn a_client_masks_smaller_messages_it_queues_and_leaves_larger_ones_to_the_writer() {
        let (shared, _commands) = Shared::new(Role::Client);
        let mut queue = shared.outbox.take_queue().unwrap();
        shared.set_open(true);
        for (size, masked_later) in [(64 << 10, false), (MASK_AT_WRITE_FROM, true)] {
            shared.send(false, Bytes::from(vec![1; size])).unwrap();
            let mut chunks = Vec::new();
            while let Ok(outgoing) = queue.try_recv() {
                chunks.push(outgoing);
            }
            assert_eq!(chunks.last().map(|o| o.payload), Some(size));
            assert_eq!(
                chunks.iter().any(|o| o.chunk.mask.is_some()),
                masked_later,
                "{size}"
            );
        }
        shared.outbox.detach();
        assert!(matches!(
            shared.send(false, Bytes::from_static(b"x")),
            Err(Error::NotOpen)
        ));
    }

    /// A client and a server session over an in-memory pipe: a message each
    /// way, then the closing handshake started by the client.
    #[tokio::test]
    async fn two_sessions_talk_and_close() {
        use crate::events::EventQueue;
        let (a, b) = tokio::io::duplex(1 << 16);
        let queue = EventQueue::new(false).unwrap();
        let (client, client_rx) = Shared::new(Role::Client);
        let (server, server_rx) = Shared::new(Role::Server);
        client.set_open(true);
        server.set_open(true);
        let settings = Settings::default();
        let c = tokio::spawn(run(
            a,
            Role::Client,
            settings.clone(),
            BytesMut::new(),
            None,
            client.clone(),
            client_rx,
            queue.sink(1),
        ));
        let s = tokio::spawn(run(
            b,
            Role::Server,
            settings,
            BytesMut::new(),
            None,
            server.clone(),
            server_rx,
            queue.sink(2),
        ));
        client.send(true, Bytes::from_static(b"hi")).unwrap();
        server.send(false, Bytes::from_static(b"yo")).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.close(4000, "done".into());
        timeout(Duration::from_secs(5), c).await.unwrap().unwrap();
        timeout(Duration::from_secs(5), s).await.unwrap().unwrap();
        let summary = queue.summary();
        assert!(summary.contains(&(2, "text hi".to_string())), "{summary:?}");
        assert!(
            summary.contains(&(1, "binary yo".to_string())),
            "{summary:?}"
        );
        assert!(
            summary.contains(&(1, "closed 4000 done".to_string())),
            "{summary:?}"
        );
        assert!(
            summary.contains(&(2, "closed 4000 done".to_string())),
            "{summary:?}"
        );
    }
}
