//! The boundary between tokio and Python.
//!
//! Tokio tasks push [`Event`]s into an [`EventQueue`] without the GIL; the
//! Python side takes everything that has accumulated in one call, so a burst
//! of messages costs one wake-up and one GIL acquisition. Each queue is
//! drained by exactly one Python thread (an asyncio loop or wsbind's event
//! thread), which is what keeps an object's handlers in order and never
//! concurrent. That thread also reads the plain TCP sockets of its objects
//! itself (see [`receiver`](crate::receiver)): the queue's
//! [`Poller`] tells it which are ready, and the wake-up pipe through which
//! tokio tasks wake it is one more descriptor in the same set.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use tokio::sync::{oneshot, watch, Notify};

use crate::config::{EVENT_SPIN, LEND_AFTER, MAX_PENDING_EVENT_BYTES};
use crate::connection::{Connection, Endpoints, Shared};
use crate::handshake::Headers;
use crate::landing::{Landing, Request, Spares};
use crate::poller::{Poller, Ready};
use crate::protocol::{Binary, Text};
use crate::proxy::{Credentials, ProxyAuthenticator};
use crate::receiver::Read as Reading;
use crate::server::OriginAuthenticator;

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
}

/// A server-side connection that finished its opening handshake.
pub struct Accepted {
    pub shared: Arc<Shared>,
    /// The full request URL: `ws://host[:port]/path?query`.
    pub url: String,
    pub requested_subprotocols: Vec<String>,
    pub negotiated_subprotocol: String,
    /// The request target: path and query.
    pub resource_name: String,
    pub headers: Headers,
    pub endpoints: Endpoints,
    /// The server's count of connections Python has not taken yet.
    pub pending: Arc<AtomicUsize>,
}

/// Something a tokio task learned that Python must hear about.
pub enum Event {
    /// A client's handshake succeeded; the server picked this subprotocol ("" for none).
    Connected {
        subprotocol: String,
        /// The request target as sent: path and query, percent-encoded.
        resource_name: String,
        endpoints: Endpoints,
    },
    Text(Text),
    Binary(Binary),
    /// A binary message read straight into its `bytes` object (see [`landing`](crate::landing)).
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
    /// TLS verification failed (Qt's `sslErrors`); for a server, a client's.
    SslErrors(Vec<String>),
    /// The connection is over. `error` is set when it ended in failure.
    Closed {
        code: u16,
        reason: String,
        error: Option<String>,
    },
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
    ServerError(u16),
    /// A server asks Python whether a client's origin may connect.
    OriginCheck(Arc<Question<bool>>),
    /// A server stopped listening and asked its clients to close.
    Stopped,
}

fn endpoints_py<'py>(py: Python<'py>, e: &Endpoints) -> PyResult<Bound<'py, PyTuple>> {
    let split = |a: Option<std::net::SocketAddr>| match a {
        Some(a) => (a.ip().to_string(), a.port()),
        None => (String::new(), 0),
    };
    let (peer, local) = (split(e.peer), split(e.local));
    (peer.0, peer.1, local.0, local.1).into_pyobject(py)
}

/// A Python bytes object holding `message`, written once (PyBytes::new_with
/// would zero it first: a second pass over a large message).
fn bytes_of<'py>(py: Python<'py>, message: &Binary) -> PyResult<Bound<'py, PyAny>> {
    let mut bytes = Landing::new(py, message.len())?;
    bytes.fill(message);
    Ok(bytes.into_bytes().into_bound(py))
}

impl Event {
    /// Bytes this event holds that count against [`MAX_PENDING_EVENT_BYTES`].
    fn weight(&self) -> usize {
        match self {
            Event::Text(t) => t.len(),
            Event::Binary(b) => b.len(),
            Event::Landed(b) => b.len(),
            _ => 0,
        }
    }

    fn into_py<'py>(self, py: Python<'py>, id: u64) -> PyResult<Bound<'py, PyTuple>> {
        let (kind, payload): (u8, Bound<'py, PyAny>) = match self {
            Event::Connected {
                subprotocol,
                resource_name,
                endpoints,
            } => {
                let payload = (subprotocol, resource_name, endpoints_py(py, &endpoints)?);
                (kind::CONNECTED, payload.into_pyobject(py)?.into_any())
            }
            Event::Text(text) => (kind::TEXT, PyString::new(py, text.as_str()).into_any()),
            Event::Binary(message) => (kind::BINARY, bytes_of(py, &message)?),
            Event::Landed(landing) => (kind::BINARY, landing.into_bytes().into_bound(py)),
            Event::TextFrame { text, last } => {
                (kind::TEXT_FRAME, (text, last).into_pyobject(py)?.into_any())
            }
            Event::BinaryFrame { data, last } => {
                let payload = (PyBytes::new(py, &data), last);
                (kind::BINARY_FRAME, payload.into_pyobject(py)?.into_any())
            }
            Event::Pong {
                elapsed_ms,
                payload,
            } => {
                let payload = (elapsed_ms, PyBytes::new(py, &payload));
                (kind::PONG, payload.into_pyobject(py)?.into_any())
            }
            Event::Written { count, remaining } => (
                kind::WRITTEN,
                (count, remaining).into_pyobject(py)?.into_any(),
            ),
            Event::Closing => (kind::CLOSING, py.None().into_bound(py)),
            Event::ProxyAuth(question) => {
                let authenticator = Bound::new(py, ProxyAuthenticator::from(question))?;
                (kind::PROXY_AUTH, authenticator.into_any())
            }
            Event::SslErrors(errors) => (kind::SSL_ERRORS, errors.into_pyobject(py)?.into_any()),
            Event::Closed {
                code,
                reason,
                error,
            } => (
                kind::CLOSED,
                (code, reason, error).into_pyobject(py)?.into_any(),
            ),
            Event::Listening { port } => (kind::LISTENING, port.into_pyobject(py)?.into_any()),
            Event::ListenFailed(message) => {
                (kind::LISTEN_FAILED, PyString::new(py, &message).into_any())
            }
            Event::ClientConnected(accepted) => {
                let Accepted {
                    shared,
                    url,
                    requested_subprotocols,
                    negotiated_subprotocol,
                    resource_name,
                    headers,
                    endpoints,
                    pending,
                } = *accepted;
                let connection = Bound::new(py, Connection::pending(shared, pending))?;
                let info = (
                    connection,
                    url,
                    requested_subprotocols,
                    negotiated_subprotocol,
                    resource_name,
                    headers,
                    endpoints_py(py, &endpoints)?,
                );
                (kind::CLIENT_CONNECTED, info.into_pyobject(py)?.into_any())
            }
            Event::AcceptFailed(message) => {
                (kind::ACCEPT_FAILED, PyString::new(py, &message).into_any())
            }
            Event::ServerError(code) => (kind::SERVER_ERROR, code.into_pyobject(py)?.into_any()),
            Event::OriginCheck(question) => {
                let authenticator = Bound::new(py, OriginAuthenticator::from(question))?;
                (kind::ORIGIN_CHECK, authenticator.into_any())
            }
            Event::Stopped => (kind::STOPPED, py.None().into_bound(py)),
        };
        (id, kind, payload).into_pyobject(py)
    }
}

struct Pending {
    events: Vec<(u64, Event)>,
    /// Bytes objects the I/O thread waits for (see [`landing`](crate::landing)).
    requests: Vec<Arc<Request>>,
    closed: bool,
    /// Threads asleep in [`EventQueue::wait`]: only they need a wake-up.
    sleepers: usize,
}

/// The poller's key for the wake-up pipe; the others are connection ids.
const WAKE: u64 = u64::MAX;

/// The connections whose sockets the queue's thread reads.
#[derive(Default)]
struct Readers {
    connections: HashMap<u64, Arc<Shared>>,
    /// Whether a [`lend_while_away`] task runs for the queue.
    watched: bool,
}

struct Inner {
    pending: Mutex<Pending>,
    /// The wake-up pipe, written when events arrive for a thread asleep in
    /// the poller, or for an asyncio loop (which watches the poller).
    wake: UnixStream,
    wake_reader: UnixStream,
    /// Whether an asyncio loop watches `fileno()`: then every batch wakes it.
    for_loop: bool,
    poller: Arc<Poller>,
    readers: Mutex<Readers>,
    /// How often the thread looked at its sockets: whether it is away.
    polls: AtomicU64,
    /// True while the connections' tasks read their sockets, because the
    /// thread left ready sockets unread (see [`receiver`](crate::receiver)).
    lent: watch::Sender<bool>,
    /// Bytes of messages waiting for Python.
    weight: AtomicUsize,
    /// Signalled when Python takes events, to resume readers that paused.
    drained: Notify,
    /// Whether `pending` holds events: what a spinning thread watches, lock-free.
    filled: AtomicBool,
    /// Blank bytes objects for the I/O threads to copy messages into.
    spares: Spares,
}

impl Inner {
    fn readers(&self) -> MutexGuard<'_, Readers> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads what the ready sockets hold into events, waiting up to
    /// `timeout_ms` for something to be ready; takes the sockets back from
    /// their tasks if they were lent. Returns whether any bytes came.
    fn poll(self: &Arc<Self>, ready: &mut Vec<Ready>, timeout_ms: i32) -> bool {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.lent
            .send_if_modified(|lent| std::mem::replace(lent, false));
        self.poller.wait(ready, timeout_ms);
        let mut lent = 0;
        let mut came = false;
        for &Ready {
            key: id,
            read,
            write,
        } in ready.iter()
        {
            if id == WAKE {
                let mut buf = [0u8; 256];
                while matches!((&self.wake_reader).read(&mut buf), Ok(n) if n > 0) {}
                continue;
            }
            let Some(shared) = self.readers().connections.get(&id).cloned() else {
                continue;
            };
            if write {
                shared.write_held();
            }
            // Enough for one batch: the rest stay ready for the next.
            if !read || self.weight.load(Ordering::Acquire) > MAX_PENDING_EVENT_BYTES {
                continue;
            }
            let sink = EventSink {
                inner: self.clone(),
                id,
            };
            match shared.read(&sink) {
                Reading::Data => came = true,
                Reading::Nothing | Reading::Over => {}
                Reading::Lent => lent += 1,
            }
        }
        // Sockets still with their tasks, which give them back soon.
        if lent > 0 {
            std::thread::yield_now();
        }
        came
    }

    /// Waits up to `timeout` for events, reading the sockets meanwhile: for
    /// the spin's length after the last bytes came it looks without
    /// sleeping, then it sleeps in the poller.
    fn wait(self: &Arc<Self>, timeout: Duration) -> Batch {
        let began = Instant::now();
        let mut spinning = began;
        let spin = spin();
        let mut ready = Vec::new();
        loop {
            let came = self.poll(&mut ready, 0);
            if self.filled.load(Ordering::Acquire) {
                break;
            }
            let elapsed = began.elapsed();
            if elapsed >= timeout {
                break;
            }
            if came {
                // Part of a large message: the rest is on its way.
                spinning = Instant::now();
                continue;
            }
            if spinning.elapsed() < spin {
                std::thread::yield_now();
                continue;
            }
            {
                let mut pending = self.lock();
                if !pending.events.is_empty() || !pending.requests.is_empty() || pending.closed {
                    break;
                }
                pending.sleepers += 1;
            }
            // Rounded up, so that a wait does not end just short of its timeout.
            let left = (timeout - elapsed).as_micros().div_ceil(1000);
            self.poll(&mut ready, i32::try_from(left).unwrap_or(i32::MAX));
            self.lock().sleepers -= 1;
        }
        self.take(&mut self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the Vec inconsistent,
        // so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, pending: &mut Pending) -> Batch {
        let requests = std::mem::take(&mut pending.requests);
        let events = std::mem::take(&mut pending.events);
        self.filled.store(false, Ordering::Release);
        let weight: usize = events.iter().map(|(_, e)| e.weight()).sum();
        if weight > 0 {
            self.weight.fetch_sub(weight, Ordering::AcqRel);
            self.drained.notify_waiters();
        }
        Batch { events, requests }
    }
}

/// What a Python thread takes from the queue at once.
struct Batch {
    events: Vec<(u64, Event)>,
    requests: Vec<Arc<Request>>,
}

impl Batch {
    /// Makes the bytes objects the I/O threads asked for first (the
    /// requests, which they wait for, and the spares), then turns the
    /// events into `(id, kind, payload)` tuples.
    fn into_py<'py>(self, py: Python<'py>, spares: &Spares) -> PyResult<Bound<'py, PyList>> {
        for request in self.requests {
            request.fulfil(py);
        }
        spares.refill(|len| Landing::new(py, len).ok());
        IN_BURST.set(match self.events.first() {
            Some(&(first, _)) if self.events.len() > 1 => {
                static BURSTS: AtomicU64 = AtomicU64::new(1);
                Some(Burst {
                    number: BURSTS.fetch_add(1, Ordering::Relaxed),
                    one_socket: self.events.iter().all(|&(id, _)| id == first),
                })
            }
            _ => None,
        });
        let list = PyList::empty(py);
        for (id, event) in self.events {
            list.append(event.into_py(py, id)?)?;
        }
        Ok(list)
    }
}

/// A question a tokio task asks Python's handlers and waits for: the origin
/// of a client, the credentials for a proxy. The answer starts as a default,
/// handlers change it, and it is sent once, when the handlers are done or
/// when Python drops the object that carried the question, so that a task
/// never waits on a question nobody saw. The asker bounds the wait.
pub struct Question<T> {
    /// What is asked about, for the handlers.
    pub subject: String,
    answer: Mutex<T>,
    reply: Mutex<Option<oneshot::Sender<T>>>,
}

impl<T: Clone> Question<T> {
    /// Asks Python through `event`; None if the answer never came.
    pub async fn ask(
        events: &EventSink,
        subject: String,
        default: T,
        event: impl FnOnce(Arc<Question<T>>) -> Event,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        events.send(event(Arc::new(Question {
            subject,
            answer: Mutex::new(default),
            reply: Mutex::new(Some(reply)),
        })));
        answer.await.ok()
    }

    pub fn get(&self) -> T {
        self.answer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set(&self, answer: T) {
        *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = answer;
    }

    /// Sends the answer to the asker; later calls change nothing.
    pub fn reply(&self) {
        let reply = self.reply.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reply) = reply {
            let _ = reply.send(self.get());
        }
    }
}

/// Where the tokio side of one object sends its events.
#[derive(Clone)]
pub struct EventSink {
    inner: Arc<Inner>,
    id: u64,
}

impl EventSink {
    /// The same queue, for another object (a server's accepted connections).
    pub fn for_id(&self, id: u64) -> EventSink {
        EventSink {
            inner: self.inner.clone(),
            id,
        }
    }

    pub fn send(&self, event: Event) {
        let weight = event.weight();
        self.push(|pending| {
            if weight > 0 {
                self.inner.weight.fetch_add(weight, Ordering::AcqRel);
            }
            pending.events.push((self.id, event));
        });
    }

    /// The event for a binary message: copied now into a blank bytes object
    /// if one of its size is ready, else left for the Python thread to copy.
    pub fn binary(&self, message: Binary) -> Event {
        match self.inner.spares.take(message.len()) {
            Some(mut blank) => {
                blank.fill(&message);
                Event::Landed(blank)
            }
            None => Event::Binary(message),
        }
    }

    /// Lets the queue's thread read `shared`'s socket (see
    /// [`receiver`](crate::receiver)); from a task on the runtime.
    pub fn watch(&self, shared: Arc<Shared>, socket: std::os::fd::RawFd) -> std::io::Result<()> {
        let mut readers = self.inner.readers();
        readers.connections.insert(self.id, shared.clone());
        if let Err(e) = self.inner.poller.add(socket, self.id) {
            readers.connections.remove(&self.id);
            return Err(e);
        }
        self.watch_writes(&shared);
        if !readers.watched {
            readers.watched = true;
            tokio::spawn(lend_while_away(self.inner.clone()));
        }
        Ok(())
    }

    /// Lets the queue's thread write what the socket did not take of
    /// messages written at once (see [`outbox`](crate::outbox)), as it
    /// reads the socket.
    pub fn watch_writes(&self, shared: &Shared) {
        shared.outbox.watch(self.inner.poller.clone(), self.id);
    }

    /// Stops reporting `socket` to the queue's thread, which read its end.
    pub fn stop_reading(&self, socket: std::os::fd::RawFd) {
        self.inner.poller.remove(socket);
        let shared = self.inner.readers().connections.get(&self.id).cloned();
        if let Some(shared) = shared {
            shared.outbox.unwatch();
        }
    }

    /// Stops the queue's thread from reading `socket`, before it is closed.
    pub fn unwatch(&self, socket: std::os::fd::RawFd) {
        self.stop_reading(socket);
        self.inner.readers().connections.remove(&self.id);
    }

    /// Whether the tasks are to read their sockets now, and its changes.
    pub fn lending(&self) -> watch::Receiver<bool> {
        self.inner.lent.subscribe()
    }

    /// Asks the Python thread for a bytes object to read a message into.
    pub fn reserve(&self, request: Arc<Request>) {
        self.push(|pending| pending.requests.push(request));
    }

    fn push(&self, add: impl FnOnce(&mut Pending)) {
        let (was_empty, asleep) = {
            let mut pending = self.inner.lock();
            if pending.closed {
                return;
            }
            let was_empty = pending.events.is_empty() && pending.requests.is_empty();
            add(&mut pending);
            self.inner.filled.store(true, Ordering::Release);
            (was_empty, pending.sleepers > 0)
        };
        // Only the first event of a batch wakes Python; the rest ride along.
        if was_empty && (self.inner.for_loop || asleep) {
            // A full pipe already holds a wake-up, so WouldBlock is fine.
            let _ = (&self.inner.wake).write(&[1]);
        }
    }

    /// Whether Python is not behind: readers may read.
    pub fn has_room(&self) -> bool {
        self.inner.weight.load(Ordering::Acquire) <= MAX_PENDING_EVENT_BYTES
    }

    /// Waits while Python has more than [`MAX_PENDING_EVENT_BYTES`] of
    /// messages to handle, so that slow handlers push back on the peer.
    pub async fn wait_for_room(&self) {
        loop {
            let drained = self.inner.drained.notified();
            if self.inner.weight.load(Ordering::Acquire) <= MAX_PENDING_EVENT_BYTES
                || self.inner.lock().closed
            {
                return;
            }
            drained.await;
        }
    }
}

/// A batch of several events that a thread is handling.
#[derive(Clone, Copy)]
pub struct Burst {
    /// Numbered across threads, from 1.
    pub number: u64,
    /// All its events are of one object (a pipelined connection).
    pub one_socket: bool,
}

thread_local! {
    static IN_BURST: Cell<Option<Burst>> = const { Cell::new(None) };
}

/// The batch of several events the calling thread is handling, if it is.
/// Small messages its handlers send to a socket are then left to the I/O
/// thread, which writes them together while Python goes on with the batch,
/// rather than one system call each by the busy Python thread; but in a
/// batch of many sockets' events (many clients, one message each), the
/// first message to each socket is written at once.
pub fn burst() -> Option<Burst> {
    IN_BURST.get()
}

/// [`EVENT_SPIN`], or `WSBIND_SPIN_US` microseconds when it is set.
fn spin() -> Duration {
    static SPIN: OnceLock<Duration> = OnceLock::new();
    *SPIN.get_or_init(|| {
        std::env::var("WSBIND_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(EVENT_SPIN, Duration::from_micros)
    })
}

/// A queue of events for the Python objects that one thread serves.
///
/// With `wakeup_fd=True`, `fileno()` becomes readable when events arrive
/// or sockets are ready, for `loop.add_reader`, and `take` gets them;
/// otherwise a thread blocks in `wait`.
#[pyclass(frozen, module = "wsbind._wsbind")]
pub struct EventQueue {
    inner: Arc<Inner>,
}

impl EventQueue {
    pub fn sink(&self, id: u64) -> EventSink {
        EventSink {
            inner: self.inner.clone(),
            id,
        }
    }

    /// What arrived, in words, for tests that run without Python.
    #[cfg(test)]
    pub fn summary(&self) -> Vec<(u64, String)> {
        let batch = self.inner.take(&mut self.inner.lock());
        batch
            .events
            .into_iter()
            .map(|(id, event)| {
                let text = match event {
                    Event::Text(t) => format!("text {}", t.as_str()),
                    Event::Binary(b) => format!("binary {}", String::from_utf8_lossy(&b.to_vec())),
                    Event::Closed {
                        code,
                        reason,
                        error,
                    } => match error {
                        Some(e) => format!("failed {code} {e}"),
                        None => format!("closed {code} {reason}"),
                    },
                    Event::Closing => "closing".into(),
                    _ => "other".into(),
                };
                (id, text)
            })
            .collect()
    }
}

#[pymethods]
impl EventQueue {
    #[new]
    #[pyo3(signature = (*, wakeup_fd = false))]
    pub fn new(wakeup_fd: bool) -> PyResult<Self> {
        let (wake, wake_reader) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_reader.set_nonblocking(true)?;
        let poller = Poller::new()?;
        poller.add(wake_reader.as_raw_fd(), WAKE)?;
        Ok(EventQueue {
            inner: Arc::new(Inner {
                pending: Mutex::new(Pending {
                    events: Vec::new(),
                    requests: Vec::new(),
                    closed: false,
                    sleepers: 0,
                }),
                wake,
                wake_reader,
                for_loop: wakeup_fd,
                poller: Arc::new(poller),
                readers: Mutex::default(),
                polls: AtomicU64::new(0),
                lent: watch::Sender::new(false),
                weight: AtomicUsize::new(0),
                drained: Notify::new(),
                filled: AtomicBool::new(false),
                spares: Spares::default(),
            }),
        })
    }

    /// The file descriptor that becomes readable when events arrive, or None.
    fn fileno(&self) -> Option<i32> {
        self.inner.for_loop.then(|| self.inner.poller.as_raw_fd())
    }

    /// Every event that has arrived, and what the ready sockets hold, as
    /// `(id, kind, payload)` tuples; never blocks.
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let inner = self.inner.clone();
        let batch = py.detach(move || {
            inner.poll(&mut Vec::new(), 0);
            let mut pending = inner.lock();
            inner.take(&mut pending)
        });
        batch.into_py(py, &self.inner.spares)
    }

    /// Blocks, without the GIL, until events arrive, `timeout` seconds pass or
    /// the queue is closed; returns what arrived.
    fn wait<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Bound<'py, PyList>> {
        let timeout = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::MAX);
        let inner = self.inner.clone();
        let batch = py.detach(move || inner.wait(timeout));
        batch.into_py(py, &self.inner.spares)
    }

    /// Wakes every waiter for good; later events are dropped.
    fn close(&self) {
        self.inner.lock().closed = true;
        let _ = (&self.inner.wake).write(&[1]);
        self.inner.drained.notify_waiters();
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.lock().closed
    }
}

/// While connections of the queue are read by its thread: lends their
/// sockets to their tasks when something stayed ready for a whole tick
/// while the thread did not look (a handler is busy, an asyncio loop is
/// blocked). The thread takes them back when it looks again.
async fn lend_while_away(inner: Arc<Inner>) {
    let mut seen = inner.polls.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(LEND_AFTER).await;
        {
            let mut readers = inner.readers();
            if readers.connections.is_empty() {
                readers.watched = false;
                return;
            }
        }
        let polls = inner.polls.load(Ordering::Relaxed);
        if polls == seen && !*inner.lent.borrow() && inner.poller.any_ready() {
            inner.lent.send_replace(true);
        }
        seen = polls;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> EventQueue {
        EventQueue::new(true).expect("a queue with a wake-up pipe")
    }

    fn pending(queue: &EventQueue) -> usize {
        queue.inner.lock().events.len()
    }

    fn wake_bytes(queue: &EventQueue) -> usize {
        let mut buf = [0u8; 64];
        (&queue.inner.wake_reader).read(&mut buf).unwrap_or(0)
    }

    #[test]
    fn a_batch_wakes_python_once() {
        let queue = queue();
        let sink = queue.sink(7);
        for _ in 0..100 {
            sink.send(Event::Closing);
        }
        assert_eq!(pending(&queue), 100);
        assert_eq!(wake_bytes(&queue), 1);
        let taken = queue.inner.take(&mut queue.inner.lock()).events;
        assert_eq!(taken.len(), 100);
        assert!(taken.iter().all(|(id, _)| *id == 7));
        sink.send(Event::Closing);
        assert_eq!(wake_bytes(&queue), 1, "the next batch wakes again");
    }

    #[test]
    fn closed_queues_drop_events() {
        let queue = queue();
        queue.close();
        queue.sink(1).send(Event::Text("x".into()));
        assert_eq!(pending(&queue), 0);
        assert_eq!(queue.inner.weight.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn readers_pause_while_python_is_behind() {
        let queue = queue();
        let sink = queue.sink(1);
        sink.send(Event::Binary(
            Bytes::from(vec![0; MAX_PENDING_EVENT_BYTES + 1]).into(),
        ));
        let waiting = tokio::spawn({
            let sink = sink.clone();
            async move { sink.wait_for_room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "over the bound, readers wait");
        queue.inner.take(&mut queue.inner.lock());
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("taking the events lets readers go on")
            .unwrap();
    }
}
