//! What a connection receives, and which thread reads it.
//!
//! A [`Receiver`] holds what arrived and is not parsed yet (its
//! [`Parser`]), how much to read next, and the large binary message being
//! read straight into its `bytes` object (see [`landing`](crate::bridge::landing)).
//!
//! On a plain TCP socket the Python thread that handles a connection's
//! events reads the socket itself, as picows does: when it has handled a
//! batch and looks for the next, it reads the sockets its queue's
//! [`Poller`](crate::bridge::Poller) reports ready, without the GIL, and
//! turns what came into events. A message then costs no hand-off between
//! threads, and in an echo the I/O thread has nothing to do. Control
//! frames go to the connection's [`Session`](crate::protocol::Session) at
//! once, on the thread that read them (a ping's pong is queued before
//! anything a handler sends in answer to later data); the end of the stream
//! and broken rules go on to the connection's task.
//!
//! A Python thread busy in a handler reads nothing, yet pings must be
//! answered and a peer's close frame echoed. When its queue has had
//! something ready for [`LEND_AFTER`](config::LEND_AFTER) and the thread has not come for it,
//! the tasks take their receivers and read, as they do over TLS, until the
//! thread looks for events again (see [`Queue`](crate::bridge::Queue)): the
//! receiver is lent to the task. A [`ReceiverSlot`] holds it while the
//! Python thread has it.
//!
//! While reading is paused (Python holds as many messages as it may, or
//! the outgoing queue is full) the socket is out of the thread's poller.
//! The Python thread that pauses a socket whose receiver it holds moves it
//! out and back itself: no task reads it then, and a program that takes
//! its messages as fast as they come pauses every few dozen.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, Interest};

use super::event::{Event, EventSink};
use super::outbox::Outbox;
use crate::bridge::{Landing, Poller, ReadOutcome, Request};
use crate::config;
use crate::protocol::{Diverted, Failure, Incoming, Parser};

/// How much to read next: small while a connection is quiet, doubling while
/// reads come back full, halving again after reads that were mostly empty.
struct ReadSize {
    next: usize,
}

impl ReadSize {
    fn new() -> Self {
        ReadSize {
            next: config::MIN_READ_SIZE,
        }
    }

    fn record(&mut self, read: usize) {
        if read >= self.next {
            self.next = (self.next * 2).min(config::MAX_READ_SIZE);
        } else if read < self.next / 4 {
            self.next = (self.next / 2).max(config::MIN_READ_SIZE);
        }
    }
}

/// The receiving side of one connection, read by its task or by a Python thread.
pub struct Receiver {
    pub parser: Parser,
    read_size: ReadSize,
    /// Whether the last read into the buffer filled all it was given: more
    /// may be waiting. Never after a read into a large message's bytes,
    /// whose message is better handed over at once.
    filled: bool,
    /// The bytes object asked of Python for a large binary message.
    requested: Option<Arc<Request>>,
    /// That bytes object, once it came, and the message being read into it.
    diverting: Option<(Landing, Diverted)>,
}

impl Receiver {
    pub fn new(parser: Parser) -> Self {
        Receiver {
            parser,
            read_size: ReadSize::new(),
            filled: false,
            requested: None,
            diverting: None,
        }
    }

    /// Gets ready to read: asks Python for the bytes object of a large
    /// binary message whose header came, or starts reading into it once it
    /// is there.
    pub fn prepare(&mut self, events: &EventSink) {
        if self.diverting.is_none() {
            match self.parser.arriving_binary(config::LAND_FROM) {
                Some(len) => {
                    if self.requested.as_ref().is_none_or(|r| r.size() != len) {
                        let request = Request::new(len);
                        events.reserve(request.clone());
                        self.requested = Some(request);
                    }
                    if let Some(landing) = self.requested.as_ref().and_then(|r| r.take()) {
                        self.divert(landing);
                    }
                }
                None => self.requested = None,
            }
        }
    }

    /// Makes room in the buffer for the next read, just before it, so that
    /// an idle connection holds no buffer until something comes.
    fn make_room(&mut self) {
        // Without it a full buffer would grow by 64 bytes a read. Not while
        // it holds the start of a large frame, which the parser has made
        // room for: growing it then would copy all that came so far.
        if self.diverting.is_none() && self.parser.buffer().len() < config::MAX_READ_SIZE {
            self.parser.buffer().reserve(self.read_size.next);
        }
    }

    /// On the Python thread: makes the bytes object of a large binary
    /// message whose header came at once, taking the GIL for it, so that
    /// the rest of the message is read straight into it.
    fn land_now(&mut self) {
        if self.diverting.is_some() {
            return;
        }
        let Some(len) = self.parser.arriving_binary(config::LAND_FROM) else {
            return;
        };
        if let Some(landing) = Landing::new_with_gil(len) {
            self.divert(landing);
        }
    }

    /// Reads the rest of the arriving message into `landing`; no request waits any more.
    fn divert(&mut self, mut landing: Landing) {
        self.requested = None;
        self.diverting = self
            .parser
            .divert(landing.as_mut_slice())
            .map(|diverted| (landing, diverted));
    }

    /// Reads what came from a task's stream: into the parser's buffer, or
    /// into the bytes object of the message being diverted.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> io::Result<usize> {
        self.make_room();
        match &mut self.diverting {
            Some((landing, diverted)) => reader.read(diverted.rest(landing.as_mut_slice())).await,
            None => reader.read_buf(self.parser.buffer()).await,
        }
    }

    /// Reads what came on a socket the Python thread reads when it is
    /// there (see [`readiness`]), the same way.
    pub async fn read_socket(&mut self, io: &AsyncFd<OwnedFd>) -> io::Result<usize> {
        loop {
            let mut guard = io.readable().await?;
            if let Ok(result) = guard.try_io(|io| self.recv(io.as_raw_fd())) {
                return result;
            }
        }
    }

    /// One non-blocking read of `socket`, the same way. Into the buffer,
    /// at most the read size: the parser makes room for a whole frame, and
    /// a large message's bytes are better read into its bytes object.
    fn recv(&mut self, socket: RawFd) -> io::Result<usize> {
        self.make_room();
        let (dest, len) = match &mut self.diverting {
            Some((landing, diverted)) => {
                let rest = diverted.rest(landing.as_mut_slice());
                (rest.as_mut_ptr(), rest.len())
            }
            None => {
                let buffer = self.parser.buffer();
                if buffer.capacity() == buffer.len() {
                    // A large frame's start fills what the parser made room for.
                    buffer.reserve(config::MIN_READ_SIZE);
                }
                let spare = buffer.spare_capacity_mut();
                (
                    spare.as_mut_ptr().cast::<u8>(),
                    spare.len().min(self.read_size.next),
                )
            }
        };
        let read = loop {
            // SAFETY: `dest` is `len` writable bytes that nothing else uses now.
            let read = unsafe { libc::recv(socket, dest.cast(), len, libc::MSG_DONTWAIT) };
            match usize::try_from(read) {
                Ok(read) => break read,
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        };
        self.filled = read == len && self.diverting.is_none();
        if self.diverting.is_none() {
            let buffer = self.parser.buffer();
            // SAFETY: the kernel initialized `read` bytes of the spare capacity.
            unsafe { buffer.set_len(buffer.len() + read) };
        }
        Ok(read)
    }

    /// Takes `count` bytes just read, which may complete the diverted message.
    pub fn received(&mut self, count: usize, events: &EventSink) {
        match &mut self.diverting {
            Some((landing, diverted)) => {
                if diverted.received(landing.as_mut_slice(), count) {
                    if let Some((landing, _)) = self.diverting.take() {
                        events.send(Event::Landed(landing));
                    }
                }
            }
            None => self.read_size.record(count),
        }
    }
}

/// The readiness of `socket` for its task, while the task reads it: tokio
/// watches the stream itself for writing only (see [`Stream`](crate::stream::Stream)),
/// so a duplicate of its descriptor is watched for reading.
pub fn readiness(socket: RawFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the connection's socket is open while its task runs.
    let socket = unsafe { BorrowedFd::borrow_raw(socket) }.try_clone_to_owned()?;
    // SAFETY: `socket` owns the duplicate, open until the AsyncFd drops it.
    Ok(unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE)? })
}

/// The event for a data message or frame; a control frame comes back.
pub fn data_event(incoming: Incoming, events: &EventSink) -> Result<Event, Incoming> {
    Ok(match incoming {
        Incoming::Text(text) => Event::Text(text),
        Incoming::Binary(data) => Event::binary(data, events),
        Incoming::TextFrame { text, last } => Event::TextFrame { text, last },
        Incoming::BinaryFrame { data, last } => Event::BinaryFrame { data, last },
        control => return Err(control),
    })
}

/// How the Python thread's reading of a connection ended, for its task.
pub enum Received {
    /// The peer closed the TCP connection.
    Eof,
    /// Reading failed.
    Lost(io::Error),
    /// The peer broke the protocol.
    Failed(Failure),
}

/// A connection's receiver while a Python thread may read its socket;
/// empty while the task has it.
pub struct ReceiverSlot {
    socket: RawFd,
    state: Mutex<SlotState>,
    /// The Python thread's poller and the socket's key in it, once watched.
    poller: OnceLock<(Arc<Poller>, u64)>,
}

struct SlotState {
    receiver: Option<Box<Receiver>>,
    /// Reading is paused: the socket is out of the poller, or its end
    /// would be reported again and again.
    out_of_poller: bool,
}

/// The poller refused the socket back: the task must read it.
pub struct Refused;

impl ReceiverSlot {
    pub fn new(socket: RawFd) -> Self {
        ReceiverSlot {
            socket,
            state: Mutex::new(SlotState {
                receiver: None,
                out_of_poller: false,
            }),
            poller: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the receiver back for the task.
    pub fn take(&self) -> Option<Box<Receiver>> {
        self.lock().receiver.take()
    }

    /// Gives the receiver to the Python thread.
    pub fn put(&self, receiver: Box<Receiver>) {
        self.lock().receiver = Some(receiver);
    }

    /// Runs `f` on the parser, if the Python thread has it.
    pub fn with_parser(&self, f: impl FnOnce(&mut Parser)) {
        if let Some(receiver) = self.lock().receiver.as_mut() {
            f(&mut receiver.parser);
        }
    }

    /// The socket is in `poller` as `key`, for the Python thread to read.
    pub fn watched(&self, poller: Arc<Poller>, key: u64) {
        let _ = self.poller.set((poller, key));
    }

    /// Whether reading is paused and the socket out of the poller.
    pub fn out_of_poller(&self) -> bool {
        self.lock().out_of_poller
    }

    /// Puts the socket out of the Python thread's poller while `paused()`,
    /// and back in when not; while the receiver is in the slot, that
    /// thread also writes what the socket does not take (see
    /// [`outbox`](super::outbox)). Does nothing before the socket was
    /// watched. `paused` is asked under the slot's lock, so that of two
    /// threads following a pause and its end, the later one leaves the
    /// poller as the latest word says.
    pub fn follow_pause(&self, paused: impl Fn() -> bool, outbox: &Outbox) -> Result<(), Refused> {
        let mut state = self.lock();
        self.follow(&mut state, paused(), outbox)
    }

    /// [`follow_pause`](Self::follow_pause) on the Python thread while it
    /// holds the receiver, which no task then reads: the pause needs no
    /// wake-up of the task. False if the task has to follow it.
    pub fn follow_pause_here(&self, paused: impl Fn() -> bool, outbox: &Outbox) -> bool {
        let mut state = self.lock();
        state.receiver.is_some()
            && self.poller.get().is_some()
            && self.follow(&mut state, paused(), outbox).is_ok()
    }

    fn follow(&self, state: &mut SlotState, paused: bool, outbox: &Outbox) -> Result<(), Refused> {
        let Some((poller, key)) = self.poller.get() else {
            return Ok(());
        };
        if paused == state.out_of_poller {
            return Ok(());
        }
        if paused {
            poller.remove(self.socket);
            outbox.unwatch();
        } else {
            poller.add(self.socket, *key).map_err(|_| Refused)?;
            if state.receiver.is_some() {
                outbox.watch(poller.clone(), *key);
            }
        }
        state.out_of_poller = paused;
        Ok(())
    }

    /// Reads the socket on the Python thread, and sends what came: data as
    /// events (`frames`: data frames too), control frames to `control`, the
    /// end to the task through `to_task`. While reads come back full it
    /// reads again, up to [`READ_BURST`](config::READ_BURST) bytes and while
    /// `more()`, each read parsed before the next.
    pub fn read(
        &self,
        events: &EventSink,
        frames: bool,
        mut control: impl FnMut(Incoming),
        to_task: impl Fn(Received),
        more: impl Fn() -> bool,
    ) -> ReadOutcome {
        let mut slot = self.lock();
        let Some(receiver) = slot.receiver.as_mut() else {
            return ReadOutcome::Lent;
        };
        // Under the lock, which the task takes before it closes the socket:
        // the descriptor cannot be another connection's yet.
        let over = |received| {
            to_task(received);
            events.stop_reading(self.socket);
            ReadOutcome::Over
        };
        receiver.parser.frames = frames;
        let mut taken = 0;
        loop {
            receiver.land_now();
            receiver.prepare(events);
            match receiver.recv(self.socket) {
                Ok(0) => return over(Received::Eof),
                Ok(count) => {
                    receiver.received(count, events);
                    taken += count;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if taken > 0 {
                        ReadOutcome::Data
                    } else {
                        ReadOutcome::Nothing
                    };
                }
                Err(e) => return over(Received::Lost(e)),
            }
            loop {
                match receiver.parser.next_event() {
                    Ok(Some(incoming)) => match data_event(incoming, events) {
                        Ok(event) => events.send(event),
                        Err(incoming) => control(incoming),
                    },
                    Ok(None) => break,
                    Err(failure) => return over(Received::Failed(failure)),
                }
            }
            if !receiver.filled || taken >= config::READ_BURST || !more() {
                return ReadOutcome::Data;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::event::{summary, EventQueue};
    use crate::protocol::{opcode, Framer, Limits, Role};
    use bytes::BytesMut;
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::sync::Mutex as StdMutex;

    fn server_parser() -> Parser {
        let limits = Limits {
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
        };
        Parser::new(Role::Server, limits)
    }

    fn frame(opcode: u8, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        Framer::new(Role::Client).frame(&mut out, opcode, true, payload);
        out
    }

    /// A server's socket read as the Python thread reads it: data becomes
    /// events, control frames go to the session, the end to the task, and
    /// nothing is read after the end.
    #[test]
    fn the_python_thread_reads_data_and_leaves_the_rest_to_the_task() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let queue = EventQueue::new(false).unwrap();
        let events = queue.sink(3);
        let slot = ReceiverSlot::new(ours.as_raw_fd());
        let log = StdMutex::new(Vec::new());
        let read = || {
            slot.read(
                &events,
                false,
                |incoming| log.lock().unwrap().push(format!("{incoming:?}")),
                |r| {
                    log.lock().unwrap().push(match r {
                        Received::Eof => "eof".into(),
                        Received::Lost(e) => format!("lost {e}"),
                        Received::Failed(f) => format!("failed {}", f.code),
                    })
                },
                || true,
            )
        };
        assert_eq!(read(), ReadOutcome::Lent, "the task has the receiver");
        slot.put(Box::new(Receiver::new(server_parser())));
        assert_eq!(read(), ReadOutcome::Nothing);

        peer.write_all(&frame(opcode::TEXT, b"hi")).unwrap();
        peer.write_all(&frame(opcode::PING, b"p")).unwrap();
        assert_eq!(read(), ReadOutcome::Data);
        assert_eq!(summary(&queue), [(3, "text hi".to_string())]);
        assert_eq!(*log.lock().unwrap(), ["Ping(b\"p\")"]);

        // Unmasked, from a client: the rules are broken, and the task hears why.
        let mut bad = BytesMut::new();
        Framer::new(Role::Server).frame(&mut bad, opcode::TEXT, true, b"x");
        peer.write_all(&bad).unwrap();
        assert_eq!(read(), ReadOutcome::Over);
        assert_eq!(log.lock().unwrap().last().unwrap(), "failed 1002");

        drop(peer);
        slot.put(Box::new(Receiver::new(server_parser())));
        assert_eq!(read(), ReadOutcome::Over);
        assert_eq!(log.lock().unwrap().last().unwrap(), "eof");
        assert!(slot.take().is_some(), "the task takes it back at the end");
    }

    /// While reads come back full the Python thread reads on, each read
    /// parsed before the next, unless `more()` says to stop: a fast peer's
    /// messages come in one batch, not one read's worth a batch.
    #[test]
    fn full_reads_are_followed_by_more_while_there_is_room() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let queue = EventQueue::new(false).unwrap();
        let events = queue.sink(1);
        let slot = ReceiverSlot::new(ours.as_raw_fd());
        slot.put(Box::new(Receiver::new(server_parser())));
        let message = frame(opcode::TEXT, &[b'x'; 100]);
        let count = 8 * config::MIN_READ_SIZE / message.len();
        for _ in 0..count {
            peer.write_all(&message).unwrap();
        }
        let read = |more: bool| slot.read(&events, false, |_| {}, |_| {}, || more);

        // The first read is of MIN_READ_SIZE: a few messages, then it stops.
        assert_eq!(read(false), ReadOutcome::Data);
        let first = summary(&queue).len();
        assert!(first > 0 && first < count, "{first} of {count}");
        assert_eq!(read(true), ReadOutcome::Data);
        assert_eq!(summary(&queue).len(), count - first, "the rest at once");
        assert_eq!(read(true), ReadOutcome::Nothing);
    }

    /// A pause takes the socket out of the Python thread's poller and its
    /// end puts it back; the thread that holds the receiver does it itself,
    /// and leaves it to the task while the task holds it.
    #[test]
    fn a_pause_takes_the_socket_out_of_the_poller_on_the_thread_that_holds_the_receiver() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let poller = Arc::new(Poller::new().unwrap());
        let ready = |poller: &Poller| {
            let mut ready = Vec::new();
            poller.wait(&mut ready, 0);
            ready.iter().map(|r| r.key).collect::<Vec<_>>()
        };
        peer.write_all(b"x").unwrap();
        let slot = ReceiverSlot::new(ours.as_raw_fd());
        let outbox = Outbox::default();
        assert!(!slot.follow_pause_here(|| true, &outbox), "not watched yet");
        poller.add(ours.as_raw_fd(), 7).unwrap();
        slot.watched(poller.clone(), 7);
        assert!(
            !slot.follow_pause_here(|| true, &outbox),
            "the task holds it"
        );
        slot.put(Box::new(Receiver::new(server_parser())));
        assert_eq!(ready(&poller), [7]);

        assert!(slot.follow_pause_here(|| true, &outbox));
        assert!(slot.out_of_poller());
        assert_eq!(ready(&poller), Vec::<u64>::new(), "readable, but paused");
        assert!(slot.follow_pause_here(|| false, &outbox));
        assert_eq!(ready(&poller), [7]);

        // The task follows a pause whoever holds the receiver.
        let receiver = slot.take();
        assert!(slot.follow_pause(|| true, &outbox).is_ok());
        assert_eq!(ready(&poller), Vec::<u64>::new());
        assert!(!slot.follow_pause_here(|| false, &outbox));
        assert!(slot.out_of_poller(), "left to the task");
        slot.put(receiver.unwrap());
        assert!(slot.follow_pause(|| false, &outbox).is_ok());
        assert_eq!(ready(&poller), [7]);
    }
}
