//! One WebSocket connection, client or server side, as every thread sees
//! it: the threads that send (any Python thread), the thread that reads its
//! socket (a Python thread, or the connection's task; see
//! [`receiver`](super::receiver)), and the task that owns its stream (see
//! [`task`](super::task)).

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use super::commands::{Command, CommandReceiver, Commands};
use super::event::{Event, EventSink};
use super::outbox::{Closed, Outbox, BURST_WRITES, BURST_WRITE_FROM};
use super::receiver::{data_event, ReceiverSlot};
use super::settings::Settings;
use super::writer::{Outgoing, Written};
use crate::bridge::{self, ReadOutcome, Reader};
use crate::config;
use crate::errors::Error;
use crate::protocol::deflate::{Compressor, Negotiated};
use crate::protocol::session::{End, Output};
use crate::protocol::{Chunk, Framer, Incoming, Role, Session, MAX_HEADER};

/// How a wait for queued bytes to be written ended (see [`Connection::wait_written`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flushed {
    /// No more than the bytes waited for are left.
    Below,
    /// The connection ended first, with more left.
    Over,
    /// The time given ran out first.
    TimedOut,
}

/// Ids are unique across all objects, so that one queue can serve a server
/// and its connections.
pub fn next_id() -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The state of one connection that its task, its Python handle and the
/// threads that send or read share.
pub struct Connection {
    pub id: u64,
    /// Which end we are: a server's frames are the same for every peer.
    pub role: Role,
    pub(super) commands: Commands,
    /// True from the end of the opening handshake until either side starts closing.
    open: AtomicBool,
    /// What the outgoing queue holds, counted against the send limit: the
    /// frames of each message and frame not yet written, and a fixed cost
    /// for each (see [`message_cost`]).
    queued: AtomicUsize,
    /// A message was refused for the send limit, or a frame passed it:
    /// nothing is read from the socket until the queue is down to half the
    /// limit, so that TCP pushes back on a peer that makes us send (pings
    /// answered, messages echoed) and does not read.
    outgoing_full: AtomicBool,
    /// A [`Command::Wake`] is on its way to the task.
    wake_pending: AtomicBool,
    /// Threads blocked in `flush()` and futures in `drained()`, woken after each write.
    flushing: AtomicUsize,
    flushed: (Mutex<()>, Condvar),
    drained: Notify,
    /// Qt's `outgoingFrameSize`, for the threads that frame what they send.
    frame_size: AtomicUsize,
    /// Each write is reported (a handler listens to `bytes_written`).
    report_writes: AtomicBool,
    /// The last burst of events in which a handler sent a small message
    /// here, and how many (see `may_write_in_burst`).
    burst: AtomicU64,
    /// Data frames are reported one by one (a handler listens to a frame
    /// signal); the parser looks before each pass, whichever thread reads.
    /// A server's connection starts with them on: its first bytes may be
    /// parsed before its `client_connected` handlers had a chance to listen,
    /// and the server settles it once they ran.
    report_frames: AtomicBool,
    /// Python holds as many received messages as it may: nothing more is
    /// read from the socket until it takes some (see [`pause_reading`](Self::pause_reading)).
    reading_paused: AtomicBool,
    pub outbox: Outbox,
    /// permessage-deflate's compressor, when the handshake agreed to it.
    /// Held while a message is compressed and handed to the outbox, so that
    /// messages enter the compressor's context in the order they go out.
    compressor: OnceLock<Mutex<Compressor>>,
    /// A message sent in fragments over time, and the data sent meanwhile,
    /// which waits for its end (§5.4: no data frame between its frames).
    /// Held by every data send from its check to its place in the outbox,
    /// so that no message slips in between a fragmented message's frames.
    fragmenting: Mutex<Fragmenting>,
    /// The closing handshake, pings and keepalive, driven by whichever
    /// thread reads a control frame, and by the task for commands and time.
    session: Mutex<Session>,
    /// The receiver, while the Python thread reads the socket (plain TCP).
    pub(super) receiver_slot: OnceLock<ReceiverSlot>,
}

impl Connection {
    pub fn new(role: Role) -> (Arc<Connection>, CommandReceiver) {
        let connection = Connection {
            id: next_id(),
            role,
            commands: Commands::default(),
            open: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
            outgoing_full: AtomicBool::new(false),
            wake_pending: AtomicBool::new(false),
            flushing: AtomicUsize::new(0),
            flushed: Default::default(),
            drained: Notify::new(),
            frame_size: AtomicUsize::new(config::OUTGOING_FRAME_SIZE),
            report_writes: AtomicBool::new(false),
            burst: AtomicU64::new(0),
            report_frames: AtomicBool::new(role == Role::Server),
            reading_paused: AtomicBool::new(false),
            outbox: Outbox::default(),
            compressor: OnceLock::new(),
            fragmenting: Mutex::default(),
            session: Mutex::new(Session::new(
                role,
                Settings::default().timers,
                Instant::now(),
            )),
            receiver_slot: OnceLock::new(),
        };
        let connection = Arc::new(connection);
        (connection.clone(), CommandReceiver::new(connection))
    }

    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }

    /// Whether messages may be sent: the handshake is over and nobody closes.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub fn set_frame_size(&self, size: usize) {
        self.frame_size.store(size, Ordering::Relaxed);
    }

    /// What the outgoing queue holds: its frames' bytes, and a fixed cost
    /// per queued message and frame (see [`message_cost`]).
    pub fn bytes_to_write(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Whether data frames are reported one by one, besides whole messages.
    pub fn set_report_frames(&self, on: bool) {
        self.report_frames.store(on, Ordering::Relaxed);
    }

    /// Whether each write is reported (for `bytes_written`, and Python's
    /// `await send()` waiting for the queue to go down).
    pub fn set_report_writes(&self, on: bool) {
        self.report_writes.store(on, Ordering::Relaxed);
        if on {
            // Only the writer reports its writes; what a sending thread left
            // held for the Python thread would go out unreported.
            self.outbox.hand_over();
        }
    }

    /// Stops (true) or resumes (false) reading the socket, so that TCP
    /// pushes back on a peer that sends faster than the program takes its
    /// messages. What arrived before still comes; while paused, nothing is
    /// read at all — a pong or a close frame waits too, so a long pause can
    /// end in a keepalive timeout, as in websockets.
    pub fn pause_reading(&self, paused: bool) {
        if self.reading_paused.swap(paused, Ordering::AcqRel) == paused {
            return;
        }
        // A program that takes its messages as fast as they come pauses and
        // resumes every few dozen (asyncio's max_queue): the Python thread
        // that holds the receiver moves the socket out of its poller and
        // back itself, rather than wake the task twice each time.
        let here = self
            .receiver_slot
            .get()
            .is_some_and(|slot| slot.follow_pause_here(|| self.reading_paused(), &self.outbox));
        if !here {
            self.wake();
        }
    }

    pub(super) fn reading_paused(&self) -> bool {
        self.reading_paused.load(Ordering::Acquire) || self.outgoing_full.load(Ordering::Acquire)
    }

    /// Marks the outgoing queue full or not, waking the task to stop or
    /// resume reading.
    fn set_outgoing_full(&self, full: bool) {
        if self.outgoing_full.swap(full, Ordering::AcqRel) != full {
            self.wake();
        }
    }

    pub(super) fn report_frames(&self) -> bool {
        self.report_frames.load(Ordering::Relaxed)
    }

    /// The round trip of the last ping answered (keepalive's too); zero
    /// before the first.
    pub fn latency(&self) -> Duration {
        self.session().latency()
    }

    pub(super) fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Compresses the messages sent from now on, as the handshake agreed
    /// (before the connection opens).
    pub fn set_compression(&self, negotiated: Negotiated, level: u32) {
        let _ = self
            .compressor
            .set(Mutex::new(negotiated.compressor(level)));
    }

    /// Whether messages are compressed (permessage-deflate was agreed).
    pub fn compresses(&self) -> bool {
        self.compressor.get().is_some()
    }

    /// Frames the message in the calling thread, which also writes it if
    /// nothing is queued ahead of it (see [`outbox`](super::outbox));
    /// compresses it first where permessage-deflate was agreed. While a
    /// fragmented message is open it waits, counted, for that one's end.
    pub fn send(&self, text: bool, payload: Bytes) -> Result<usize, Error> {
        let size = payload.len();
        let frame_size = self.frame_size.load(Ordering::Relaxed);
        let cost = message_cost(size, frame_size);
        self.admit(cost)?;
        let mut fragmenting = self.fragmenting();
        if fragmenting.open.is_some() {
            fragmenting.waiting.push_back(Waiting::Message {
                text,
                payload,
                cost,
            });
            return Ok(size);
        }
        self.send_admitted(text, payload, cost)
    }

    /// Frames and sends a message already counted as `cost`.
    fn send_admitted(&self, text: bool, payload: Bytes, cost: usize) -> Result<usize, Error> {
        let size = payload.len();
        let frame_size = self.frame_size.load(Ordering::Relaxed);
        let may_write = self.may_write(size);
        let sent = match self.compressor.get() {
            Some(compressor) if size >= config::COMPRESS_FROM => {
                let mut compressor = compressor.lock().unwrap_or_else(|e| e.into_inner());
                let compressed = Bytes::from(compressor.compress(&payload));
                let chunks =
                    Framer::compressed(self.role).message_chunks(text, compressed, frame_size);
                self.outbox.send(chunks, size, cost, may_write)
            }
            _ => {
                let chunks = Framer::new(self.role).message_chunks(text, payload, frame_size);
                self.outbox.send(chunks, size, cost, may_write)
            }
        };
        self.account(size, cost, sent)
    }

    /// Whether the calling thread may write a message of `size` itself.
    fn may_write(&self, size: usize) -> bool {
        // A reported write must come from the task, which reports it.
        !self.report_writes.load(Ordering::Relaxed)
            && (size >= BURST_WRITE_FROM || self.may_write_in_burst())
    }

    fn fragmenting(&self) -> MutexGuard<'_, Fragmenting> {
        self.fragmenting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one fragment of a message given in several (§5.4), as its own
    /// frames: the first fragment opens the message (text or binary), the
    /// `last` ends it; returns the fragment's size. Between them no other
    /// data frame goes out: messages sent meanwhile wait, counted against
    /// the send limit, and follow the last fragment in the order they were
    /// sent; pings, pongs and the close frame do not wait. One fragmented
    /// message at a time: its sender gives its fragments in order.
    ///
    /// Where permessage-deflate was agreed the whole message is one
    /// compressed stream, however small (RSV1 is on its first frame, before
    /// its size is known). Fails with [`Error::FragmentKind`] for a fragment
    /// of the other kind than the open message's.
    pub fn send_fragment(&self, text: bool, payload: Bytes, last: bool) -> Result<usize, Error> {
        let size = payload.len();
        let frame_size = self.frame_size.load(Ordering::Relaxed);
        let mut fragmenting = self.fragmenting();
        let first = match fragmenting.open {
            None => true,
            Some(open) if open == text => false,
            Some(open) => return Err(Error::FragmentKind { text: open }),
        };
        let cost = message_cost(size, frame_size);
        self.admit(cost)?;
        if first {
            self.outbox.set_fragmenting(true);
        }
        let may_write = self.may_write(size);
        let sent = match self.compressor.get() {
            Some(compressor) => {
                let mut compressor = compressor.lock().unwrap_or_else(|e| e.into_inner());
                let compressed = Bytes::from(compressor.compress_fragment(&payload, last));
                let chunks = Framer::compressed(self.role)
                    .fragment_chunks(text, first, last, compressed, frame_size);
                self.outbox.send(chunks, size, cost, may_write)
            }
            None => {
                let chunks =
                    Framer::new(self.role).fragment_chunks(text, first, last, payload, frame_size);
                self.outbox.send(chunks, size, cost, may_write)
            }
        };
        fragmenting.open = (!last).then_some(text);
        let sent = self.account(size, cost, sent);
        if last {
            // Still under the lock: what waited goes before anything sent later.
            for waiting in std::mem::take(&mut fragmenting.waiting) {
                // A failure here is the connection's end, which each of
                // these messages' cost was given back for; their senders
                // were told they were queued, as for any message queued
                // when the connection ends.
                let _ = match waiting {
                    Waiting::Message {
                        text,
                        payload,
                        cost,
                    } => self.send_admitted(text, payload, cost),
                    Waiting::Framed { frame, size, cost } => {
                        let sent = self
                            .outbox
                            .send(vec![Chunk::plain(frame)], size, cost, false);
                        self.account(size, cost, sent)
                    }
                };
            }
            self.outbox.set_fragmenting(false);
        }
        sent
    }

    /// The compressed frames of a message for every connection whose
    /// compressor starts each message afresh with a window of `window_bits`
    /// (see [`broadcast`](super::broadcast)); None when this connection's
    /// compressor keeps a context, or compresses with another window.
    pub fn stateless_compression(&self) -> Option<u8> {
        let compressor = self.compressor.get()?;
        let compressor = compressor.lock().unwrap_or_else(|e| e.into_inner());
        compressor.is_stateless().then(|| compressor.window_bits())
    }

    /// Whether the calling thread may write a small message here itself:
    /// it is not in a burst of events, or this is one of the first
    /// [`BURST_WRITES`] messages it sends here in a burst of many sockets'
    /// events (see [`bridge::burst`]).
    fn may_write_in_burst(&self) -> bool {
        bridge::burst().is_none_or(|burst| {
            if burst.one_socket {
                return false;
            }
            // The burst's number, then the messages sent here in it in the
            // low byte; only the thread that handles the burst writes it.
            let seen = self.burst.load(Ordering::Relaxed);
            let count = if seen >> 8 == burst.number {
                seen & 0xff
            } else {
                0
            };
            if count >= BURST_WRITES {
                return false;
            }
            self.burst
                .store(burst.number << 8 | (count + 1), Ordering::Relaxed);
            true
        })
    }

    /// Queues a message already framed (a broadcast's frames, shared by every peer).
    pub fn send_framed(&self, frame: &Bytes, size: usize) -> Result<usize, Error> {
        let cost = frame.len() + config::QUEUED_MESSAGE_COST;
        self.admit(cost)?;
        // The outbox says whether a fragmented message is open: the
        // fragmenting lock is taken only then.
        let sent = match self.outbox.queue_shared(frame, size, cost) {
            Some(sent) => sent,
            None => {
                let mut fragmenting = self.fragmenting();
                if fragmenting.open.is_some() {
                    fragmenting.waiting.push_back(Waiting::Framed {
                        frame: frame.clone(),
                        size,
                        cost,
                    });
                    return Ok(size);
                }
                // It ended meanwhile, and what waited for it was sent.
                self.outbox
                    .send(vec![Chunk::plain(frame.clone())], size, cost, false)
            }
        };
        self.account(size, cost, sent)
    }

    /// Counts what a send completed (`done`, in cost) as written, or the
    /// message's `cost` if it was not sent; returns its `size`.
    fn account(
        &self,
        size: usize,
        cost: usize,
        sent: Result<usize, Closed>,
    ) -> Result<usize, Error> {
        match sent {
            Ok(done) => {
                // Queued, not written: no change to count, and a locked
                // update of the count the writer also updates would move
                // its cache line here for nothing.
                if done > 0 {
                    self.written(done);
                }
                Ok(size)
            }
            Err(Closed) => {
                self.written(cost);
                Err(Error::NotOpen)
            }
        }
    }

    /// Counts a message of `cost` as queued, unless the connection is not
    /// open or the queue would pass the send limit (a single message over
    /// it still goes when nothing is queued).
    fn admit(&self, cost: usize) -> Result<(), Error> {
        if !self.is_open() {
            return Err(Error::NotOpen);
        }
        let queued = self.queued.fetch_add(cost, Ordering::AcqRel);
        if queued > 0 && queued + cost > config::MAX_OUTGOING_BUFFER {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            self.set_outgoing_full(true);
            return Err(Error::BufferFull {
                queued,
                limit: config::MAX_OUTGOING_BUFFER,
            });
        }
        Ok(())
    }

    /// Queues a frame the session made (a ping, a pong, our close frame when
    /// `close`): counted, never refused, but past the limit it stops reading.
    fn queue_control(&self, frame: Bytes, pong: bool, close: bool) {
        let cost = frame.len() + config::QUEUED_MESSAGE_COST;
        let queued = self.queued.fetch_add(cost, Ordering::AcqRel) + cost;
        if queued > config::MAX_OUTGOING_BUFFER {
            self.set_outgoing_full(true);
        }
        let outgoing = Outgoing {
            chunk: Chunk::plain(frame),
            payload: 0,
            cost,
            pong,
        };
        if !self.outbox.queue(outgoing, close) {
            self.written(cost);
        }
    }

    /// Sends a ping; the caller checked its payload.
    pub fn ping(&self, payload: Bytes) -> Result<(), Error> {
        if !self.is_open() {
            return Err(Error::NotOpen);
        }
        self.command(Command::Ping(payload));
        Ok(())
    }

    /// Starts the closing handshake; a connection that is already over ignores it.
    pub fn close(&self, code: u16, reason: String) {
        self.set_open(false);
        self.end_fragmenting();
        self.command(Command::Close(code, reason));
    }

    /// Drops the TCP connection without a closing handshake.
    pub fn abort(&self) {
        self.set_open(false);
        self.end_fragmenting();
        self.command(Command::Abort);
    }

    /// Closing cuts a fragmented message short: the peer sees our close
    /// frame before its end (a failed iterator closes with 1011), and what
    /// waited for that end is not sent, its cost given back.
    fn end_fragmenting(&self) {
        let mut fragmenting = self.fragmenting();
        fragmenting.open = None;
        for waiting in std::mem::take(&mut fragmenting.waiting) {
            match waiting {
                Waiting::Message { cost, .. } | Waiting::Framed { cost, .. } => {
                    self.written(cost);
                }
            }
        }
        self.outbox.set_fragmenting(false);
    }

    /// Applies new limits, keepalive and timeouts to the open connection.
    pub fn configure(&self, settings: Settings) {
        self.set_frame_size(settings.outgoing_frame_size);
        // The Python thread may read the socket before the task sees the
        // command: a message sent after a lowered limit must meet it there
        // too. (The task sets it again on whichever side holds the parser.)
        if let Some(slot) = self.receiver_slot.get() {
            let limits = settings.limits;
            slot.with_parser(|parser| parser.set_limits(limits));
        }
        self.command(Command::Configure(settings));
    }

    /// Has the task look at the connection again. One wake-up waits at a
    /// time: a peer that floods us with pings, each read by the Python
    /// thread, must not fill the command queue with one each.
    pub(super) fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.command(Command::Wake);
        }
    }

    /// The task took the wake-up: the next one is sent.
    pub(super) fn woken(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }

    pub(super) fn command(&self, command: Command) {
        self.commands.send(command);
    }

    /// Carries out what the session asked for: its frames go into the
    /// outbox at once, under its lock, so that nothing sent later overtakes
    /// them; what Python must hear goes to `events`.
    pub(super) fn carry_out(&self, session: &mut Session, events: &EventSink) {
        for output in session.output() {
            match output {
                Output::Frame(frame) => self.queue_control(frame, false, false),
                Output::PongFrame(frame) => self.queue_control(frame, true, false),
                Output::CloseFrame(frame) => {
                    self.set_open(false);
                    self.queue_control(frame, false, true);
                    // Nothing more goes out after it: what waited for a
                    // fragmented message's end is given back.
                    self.end_fragmenting();
                }
                Output::Closing => events.send(Event::Closing),
                Output::Pong { elapsed, payload } => events.send(Event::Pong {
                    elapsed_ms: elapsed.as_secs_f64() * 1000.0,
                    payload,
                }),
            }
        }
    }

    /// A control frame read by whichever thread reads the socket: the
    /// session answers it there and then.
    pub(super) fn control(&self, incoming: Incoming, events: &EventSink) -> Option<End> {
        let mut session = self.session();
        let end = session.received(incoming, Instant::now());
        self.carry_out(&mut session, events);
        end
    }

    /// The event for a data message or frame, sent; a control frame goes
    /// to the session. Returns the end of the connection, if it came.
    pub(super) fn incoming(&self, incoming: Incoming, events: &EventSink) -> Option<End> {
        match data_event(incoming, events) {
            Ok(event) => {
                events.send(event);
                None
            }
            Err(control) => self.control(control, events),
        }
    }

    /// The writer wrote a batch of its queue.
    pub(super) fn batch_written(&self, done: Written, events: &EventSink) {
        let remaining = self.written(done.cost);
        if done.payload > 0 && self.report_writes.load(Ordering::Relaxed) {
            events.send(Event::Written {
                count: done.payload,
                remaining,
            });
        }
        if done.pongs > 0 {
            let mut session = self.session();
            session.pongs_written(done.pongs);
            self.carry_out(&mut session, events);
        }
        // Only now may a sending thread write ahead of the queue.
        self.outbox.written(done.chunks);
    }

    /// Counts `size` (in cost) as no longer queued; returns what is left.
    fn written(&self, size: usize) -> usize {
        let remaining = self.queued.fetch_sub(size, Ordering::AcqRel) - size;
        if remaining <= config::MAX_OUTGOING_BUFFER / 2
            && self.outgoing_full.load(Ordering::Acquire)
        {
            self.set_outgoing_full(false);
        }
        // Only a change, and only for a thread waiting in flush(), is worth a wake-up.
        if size > 0 && self.flushing.load(Ordering::Acquire) > 0 {
            let _guard = self.flushed.0.lock().unwrap_or_else(|e| e.into_inner());
            self.flushed.1.notify_all();
            self.drained.notify_waiters();
        }
        remaining
    }

    /// Returns once at most `low` bytes wait to be written (as
    /// [`bytes_to_write`](Self::bytes_to_write) counts them), or the
    /// connection is over: the backpressure of an asyncio `send()`.
    pub async fn drained(&self, low: usize) {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.flushing.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.flushing);
        loop {
            let written = self.drained.notified();
            tokio::pin!(written);
            // Registered before the look, so that a write in between is not missed.
            written.as_mut().enable();
            if self.bytes_to_write() <= low {
                return;
            }
            tokio::select! {
                () = written => {}
                () = self.commands.closed() => return,
            }
        }
    }

    /// Waits, blocking the calling thread, until at most `low` bytes wait to
    /// be written, or the connection is over, or `timeout` passes: the
    /// blocking twin of [`drained`](Self::drained), for `flush()` and the
    /// blocking `send()`'s backpressure.
    pub fn wait_written(&self, low: usize, timeout: Option<Duration>) -> Flushed {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        self.flushing.fetch_add(1, Ordering::AcqRel);
        let mut guard = self.flushed.0.lock().unwrap_or_else(|e| e.into_inner());
        let done = loop {
            if self.queued.load(Ordering::Acquire) <= low {
                break Flushed::Below;
            }
            if self.commands.is_closed() {
                break Flushed::Over;
            }
            // Bounded waits, so that a connection that ends is noticed.
            let mut step = Duration::from_millis(100);
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break Flushed::TimedOut;
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

    /// Lets the thread of `events`'s queue read the socket and write what
    /// the socket did not take of messages written at once.
    pub(super) fn watch(self: &Arc<Self>, socket: RawFd, events: &EventSink) -> bool {
        let reader: Arc<dyn Reader<Event>> = self.clone();
        let watched = events.watch(reader, socket).is_ok();
        if watched {
            if let Some(slot) = self.receiver_slot.get() {
                slot.watched(events.poller(), events.id());
            }
            self.watch_writes(events);
        }
        watched
    }

    /// Lets the thread of `events`'s queue write what the socket did not
    /// take (see [`outbox`](super::outbox)), as it reads the socket.
    pub(super) fn watch_writes(&self, events: &EventSink) {
        self.outbox.watch(events.poller(), events.id());
    }
}

/// A fragmented message being sent, and what waits for its end.
#[derive(Default)]
struct Fragmenting {
    /// Between the first and the last fragment: whether the message is text.
    open: Option<bool>,
    /// Data sent meanwhile, counted against the send limit, in order.
    waiting: VecDeque<Waiting>,
}

/// A message that waits for a fragmented message's end.
enum Waiting {
    /// Not compressed yet: it must enter the compressor after the
    /// fragmented message, in the order it goes out.
    Message {
        text: bool,
        payload: Bytes,
        cost: usize,
    },
    /// A broadcast's frames, shared by every peer.
    Framed {
        frame: Bytes,
        size: usize,
        cost: usize,
    },
}

/// What a message of `size` payload bytes, sent in frames of at most
/// `frame_size`, counts against the send limit: its bytes, the longest
/// header of each frame, and [`config::QUEUED_MESSAGE_COST`], so that the
/// limit bounds the memory of a queue of empty messages as of large ones.
pub fn message_cost(size: usize, frame_size: usize) -> usize {
    let frames = size.div_ceil(frame_size.max(1)).max(1);
    size + frames * MAX_HEADER + config::QUEUED_MESSAGE_COST
}

/// How the thread of a queue reads and writes this connection's socket.
impl Reader<Event> for Connection {
    fn read(&self, events: &EventSink) -> ReadOutcome {
        let Some(slot) = self.receiver_slot.get() else {
            return ReadOutcome::Over;
        };
        if self.reading_paused() {
            // At once, not when the task gets round to taking the receiver
            // and the socket out of the poller: until then it is as lent.
            return ReadOutcome::Lent;
        }
        slot.read(
            events,
            self.report_frames(),
            |incoming| match self.control(incoming, events) {
                Some(end) => self.command(Command::Ended(end)),
                None => self.wake(),
            },
            |received| self.command(Command::Received(received)),
            || events.has_room() && !self.reading_paused(),
        )
    }

    fn write_held(&self) {
        self.written(self.outbox.write_held());
    }

    fn stop_writing(&self) {
        self.outbox.unwatch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MASK_AT_WRITE_FROM;

    #[test]
    fn sending_before_open_is_refused() {
        let (connection, _rx) = Connection::new(Role::Client);
        assert_eq!(
            connection.send(true, Bytes::from_static(b"x")),
            Err(Error::NotOpen)
        );
        connection.set_open(true);
        assert_eq!(connection.send(true, Bytes::from_static(b"x")), Ok(1));
    }

    #[test]
    fn the_outgoing_queue_is_bounded() {
        let (connection, _rx) = Connection::new(Role::Client);
        connection.set_open(true);
        assert!(connection
            .send(false, Bytes::from(vec![0; config::MAX_OUTGOING_BUFFER]))
            .is_ok());
        assert!(matches!(
            connection.send(false, Bytes::from_static(b"x")),
            Err(Error::BufferFull { .. })
        ));
    }

    #[test]
    fn a_handler_writes_its_first_few_messages_to_a_socket_in_a_burst_of_many_sockets() {
        use crate::bridge::queue::{set_burst, Burst};
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        ours.set_nonblocking(true).unwrap();
        let _theirs = listener.accept().unwrap();
        let (connection, _commands) = Connection::new(Role::Server);
        connection.outbox.attach(Some(ours.as_raw_fd()));
        connection.set_open(true);
        let queued_after = |count: usize| {
            (0..count).for_each(|_| {
                connection.send(false, Bytes::from_static(b"x")).unwrap();
            });
            // Messages queued, counted by payload: small frames share
            // one entry of the queue.
            let queued = connection.outbox.take_queued();
            connection.outbox.written(queued.len());
            queued.iter().map(|o| o.payload).sum::<usize>()
        };
        let many = |number| Burst {
            number,
            one_socket: false,
        };
        set_burst(Some(many(7)));
        let written = BURST_WRITES as usize;
        assert_eq!(queued_after(written), 0, "written at once");
        assert_eq!(queued_after(2), 2, "the rest go to the I/O thread");
        // The next burst starts the count again.
        set_burst(Some(many(8)));
        assert_eq!(queued_after(written + 1), 1);
        // One socket's burst is a pipeline: all of it goes to the I/O thread.
        set_burst(Some(Burst {
            number: 9,
            one_socket: true,
        }));
        assert_eq!(queued_after(3), 3);
        set_burst(None);
        assert_eq!(
            queued_after(3),
            0,
            "out of a burst, every message is written at once"
        );
    }

    #[test]
    fn a_client_masks_smaller_messages_it_queues_and_leaves_larger_ones_to_the_writer() {
        let (connection, _commands) = Connection::new(Role::Client);
        connection.set_open(true);
        for (size, masked_later) in [(64 << 10, false), (MASK_AT_WRITE_FROM, true)] {
            connection.send(false, Bytes::from(vec![1; size])).unwrap();
            let chunks = connection.outbox.take_queued();
            assert_eq!(chunks.last().map(|o| o.payload), Some(size));
            assert_eq!(
                chunks.iter().any(|o| o.chunk.mask.is_some()),
                masked_later,
                "{size}"
            );
        }
        connection.outbox.detach();
        assert!(matches!(
            connection.send(false, Bytes::from_static(b"x")),
            Err(Error::NotOpen)
        ));
    }

    /// What the writer's queue holds, as the bytes that go out.
    fn drained(connection: &Connection) -> Vec<u8> {
        connection
            .outbox
            .take_queued()
            .into_iter()
            .flat_map(|o| o.chunk.into_plain())
            .collect()
    }

    fn parsed(parser: &mut crate::protocol::Parser, wire: &[u8]) -> Vec<Incoming> {
        parser.buffer().extend_from_slice(wire);
        std::iter::from_fn(|| parser.next_event().unwrap()).collect()
    }

    const LIMITS: crate::protocol::Limits = crate::protocol::Limits {
        max_frame_size: 1 << 20,
        max_message_size: 1 << 20,
    };

    #[test]
    fn messages_sent_during_a_fragmented_one_wait_for_its_end_but_control_frames_do_not() {
        use crate::protocol::deflate::Negotiated;
        for compressed in [false, true] {
            let (connection, _commands) = Connection::new(Role::Server);
            let negotiated = Negotiated {
                local_no_context_takeover: false,
                remote_no_context_takeover: false,
                local_window_bits: 12,
                remote_window_bits: 15,
            };
            if compressed {
                connection.set_compression(negotiated, 6);
            }
            let mut parser = crate::protocol::Parser::new(Role::Client, LIMITS);
            parser.set_decompressor(negotiated.mirrored().decompressor());
            connection.set_open(true);
            let first = Bytes::from_static(b"first, ");
            assert_eq!(connection.send_fragment(true, first, false), Ok(7));
            let cost = message_cost(7, config::OUTGOING_FRAME_SIZE);
            let waiting = Bytes::from(vec![b'w'; config::COMPRESS_FROM + 10]);
            assert_eq!(connection.send(true, waiting.clone()), Ok(waiting.len()));
            assert_eq!(
                connection.send_framed(&Bytes::from_static(b"\x82\x01b"), 1),
                Ok(1)
            );
            let waited = message_cost(waiting.len(), config::OUTGOING_FRAME_SIZE)
                + 3
                + config::QUEUED_MESSAGE_COST;
            assert_eq!(connection.bytes_to_write(), cost + waited, "counted");
            // A frame of the session's goes between the fragments.
            connection.queue_control(Bytes::from_static(b"\x8a\x00"), true, false);
            let wrong = connection.send_fragment(false, Bytes::new(), false);
            assert_eq!(wrong, Err(Error::FragmentKind { text: true }));
            let so_far = parsed(&mut parser, &drained(&connection));
            assert_eq!(so_far, [Incoming::Pong(Bytes::new())], "{compressed}");
            connection
                .send_fragment(true, Bytes::from_static(b"last"), true)
                .unwrap();
            let text = String::from_utf8(waiting.to_vec()).unwrap();
            let expected = [
                Incoming::Text("first, last".into()),
                Incoming::Text(text.as_str().into()),
                Incoming::Binary(Bytes::from_static(b"b").into()),
            ];
            assert_eq!(parsed(&mut parser, &drained(&connection)), expected);
            // The next messages go straight out again, a broadcast's too.
            connection
                .send(false, Bytes::from_static(b"after"))
                .unwrap();
            connection
                .send_framed(&Bytes::from_static(b"\x82\x01c"), 1)
                .unwrap();
            let after = parsed(&mut parser, &drained(&connection));
            assert_eq!(
                after,
                [
                    Incoming::Binary(Bytes::from_static(b"after").into()),
                    Incoming::Binary(Bytes::from_static(b"c").into())
                ]
            );
        }
    }

    #[test]
    fn closing_cuts_a_fragmented_message_short_and_gives_back_what_waited() {
        let (connection, _commands) = Connection::new(Role::Server);
        connection.set_open(true);
        connection
            .send_fragment(false, Bytes::from_static(b"a"), false)
            .unwrap();
        connection.send(false, Bytes::from(vec![0; 1000])).unwrap();
        let fragment = message_cost(1, config::OUTGOING_FRAME_SIZE);
        assert!(connection.bytes_to_write() > fragment);
        connection.close(1011, String::new());
        assert_eq!(connection.bytes_to_write(), fragment);
        assert_eq!(
            connection.send_fragment(false, Bytes::from_static(b"b"), true),
            Err(Error::NotOpen)
        );
    }
}
