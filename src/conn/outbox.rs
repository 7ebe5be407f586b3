//! The order of everything written to one connection, and the shortcut that
//! lets a sending thread write a message itself.
//!
//! A message normally reaches the socket through the writer's queue: one
//! thread hop and one wake-up of the I/O thread. When nothing is queued ahead
//! of it, a message on a plain TCP socket is written at once by the thread
//! that sends it, with a non-blocking write: the round trip loses a hop, and
//! the I/O thread is left to read. A client masks such a message on the
//! way, into a buffer its thread keeps for the purpose, not into a new copy.
//!
//! What the socket does not take is held, and written by the Python thread
//! that reads the socket (see [`receiver`](super::receiver)) when its
//! poller reports room, so that a large message keeps one thread busy, not
//! two. The writer takes what is held when that thread is away, or when
//! anything must follow it in the queue. All of this happens under one
//! lock, as does every other thread's message and every frame the task
//! makes (a pong, our close): nothing overtakes what was sent before it,
//! and no frame is ever cut by another, whichever threads send.
//!
//! Small messages that handlers send to one socket in a burst of events
//! are the exception (all of them in one socket's burst, those after the
//! first [`BURST_WRITES`] in a burst of many sockets'): the I/O thread
//! writes them, many to a system call, while the Python thread goes on
//! with the burst (see [`bridge::burst`](crate::bridge::burst)). From
//! [`BURST_WRITE_FROM`] bytes the copy into the socket outweighs the
//! system call, and handing the message over would only wake the I/O
//! thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::writer::{Outgoing, MAX_SLICES};
use crate::bridge::Poller;
use crate::config::MASK_BUFFER;
use crate::protocol::framer::{mask_ahead, write_slices};
use crate::protocol::{Chunk, MASK_AT_WRITE_FROM};

/// Smallest message a handler writes itself in a burst of events: 8 KiB.
pub const BURST_WRITE_FROM: usize = 8 << 10;

/// Small messages a handler writes itself to one socket in a burst of many
/// sockets' events: 4. A server behind on many connections finds a few
/// messages of each in a batch; handing the second reply on to the I/O
/// thread cost a wake-up for a write of two or three small frames, more
/// than writing them. A socket with more in the batch is pipelining, and
/// the rest of its replies go out together from the I/O thread.
pub const BURST_WRITES: u64 = 4;

/// Largest frame bytes copied into the queue's last buffer rather than
/// queued as their own entry: 1 KiB. A broadcast queues the same small
/// frame for a thousand sockets; shared, its one reference count moved
/// between the broadcasting thread and the I/O thread, which drops each
/// copy once written, and each entry was an allocation made on one
/// thread and freed on the other. Copying a small frame costs less than
/// either, and the writer then finds many frames in one slice.
pub const COPY_INTO_QUEUE_UP_TO: usize = 1 << 10;

/// Most bytes of small frames copied into one buffer of the queue: 16 KiB,
/// so that a long queue of small frames is many buffers the writer can
/// drop as it goes, not one that only grows.
const COPIED_MOST: usize = 16 << 10;

struct State {
    /// Chunks in the writer's queue, not written yet.
    queued: usize,
    /// The plain TCP socket while the connection runs; None over TLS, whose
    /// state only the task may touch.
    socket: Option<RawFd>,
    /// The writer's queue: entered only under the lock, so that its order
    /// is the order on the wire. A plain deque, not a channel: a sender
    /// already holds this lock, so a message costs one push; and an idle
    /// connection's empty deque allocates nothing (a tokio channel
    /// allocates a block of 32 slots up front, 2 KiB a connection).
    queue: VecDeque<Outgoing>,
    /// Small frames copied one after another (see
    /// [`COPY_INTO_QUEUE_UP_TO`]): the queue's last entry, not in `queue`
    /// yet so that the next small frame can still join it.
    copied: Option<Copied>,
    /// The writer takes from the queue, until the connection is over or
    /// the writer stopped.
    queue_open: bool,
    /// The writer waits for the queue: the next push wakes it.
    writer_waiting: bool,
    /// The connection's task took the queue (a connection runs once).
    queue_taken: bool,
    /// Our close frame is queued: no message may follow it.
    closed: bool,
    /// A fragmented message is open (see [`Outbox::set_fragmenting`]).
    fragmenting: bool,
    /// What the socket did not take of messages written at once, while the
    /// writer's queue is empty and a Python thread reads the socket: that
    /// thread writes it when the socket takes more (see `Watch`).
    held: VecDeque<Outgoing>,
    watch: Option<Watch>,
}

/// The poller of the Python thread that reads the socket, which also writes
/// what is held: while it does, the I/O thread stays out of a large
/// message's way (on a small machine, a third busy thread slows the peer).
struct Watch {
    poller: Arc<Poller>,
    key: u64,
    /// The poller reports the socket when it is writable.
    writable: bool,
}

/// Small frames in one buffer, with what their writing completes.
struct Copied {
    bytes: BytesMut,
    payload: usize,
    cost: usize,
}

/// Why a message was not sent: the connection is closing or over.
#[derive(Debug)]
pub struct Closed;

pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the writer when its queue has something, after the lock is
    /// let go: a thread woken while the sender still holds the lock would
    /// only wait for it.
    ready: Notify,
}

impl Default for Outbox {
    fn default() -> Self {
        // Open from the start, so that what is sent before the connection's
        // task runs waits in the queue.
        let state = State {
            queued: 0,
            socket: None,
            queue: VecDeque::new(),
            copied: None,
            queue_open: true,
            writer_waiting: false,
            queue_taken: false,
            fragmenting: false,
            closed: false,
            held: VecDeque::new(),
            watch: None,
        };
        Outbox {
            state: Mutex::new(state),
            ready: Notify::new(),
        }
    }
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets go of the lock, then wakes the writer if a push asked for it.
    fn unlock(&self, mut state: MutexGuard<'_, State>) {
        // Something to take, or the news that nothing more will come.
        let wake = state.writer_waiting
            && (!state.queue.is_empty() || state.copied.is_some() || !state.queue_open);
        if wake {
            state.writer_waiting = false;
        }
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Whether the calling task is the first to claim the writer's queue:
    /// a connection runs once.
    pub fn claim_writer(&self) -> bool {
        !std::mem::replace(&mut self.lock().queue_taken, true)
    }

    /// Waits until the writer's queue has something and moves up to `most`
    /// of it into `batch` (empty); false once the queue is over and empty.
    pub async fn next_batch(&self, batch: &mut VecDeque<Outgoing>, most: usize) -> bool {
        loop {
            // Made before the look, so that a push in between is not missed.
            let ready = self.ready.notified();
            {
                let mut state = self.lock();
                state.writer_waiting = false;
                end_copied(&mut state);
                if state.queue.len() <= most {
                    std::mem::swap(batch, &mut state.queue);
                } else {
                    batch.extend(state.queue.drain(..most));
                }
                if !batch.is_empty() {
                    return true;
                }
                if !state.queue_open {
                    return false;
                }
                state.writer_waiting = true;
            }
            ready.await;
        }
    }

    /// The writer stopped (its socket failed, or the task ended): nothing
    /// more is queued, and what is queued is dropped.
    pub fn writer_stopped(&self) {
        let mut state = self.lock();
        state.queue_open = false;
        state.queue = VecDeque::new();
        state.copied = None;
    }

    /// What the writer's queue holds, taken as the writer would.
    #[cfg(test)]
    pub fn take_queued(&self) -> Vec<Outgoing> {
        let mut state = self.lock();
        end_copied(&mut state);
        std::mem::take(&mut state.queue).into()
    }

    /// Lets sending threads write to `socket` until [`detach`](Self::detach).
    pub fn attach(&self, socket: Option<RawFd>) {
        self.lock().socket = socket;
    }

    /// Called before the socket is closed: no thread writes to it any more,
    /// and the writer, once it sent what is queued, sees its queue end.
    pub fn detach(&self) {
        let mut state = self.lock();
        hand_held(&mut state);
        state.socket = None;
        state.queue_open = false;
        state.closed = true;
        state.watch = None;
        self.unlock(state);
    }

    /// The Python thread with `poller` reads the socket (as `key`): what the
    /// socket does not take of a message written at once waits for it.
    pub fn watch(&self, poller: Arc<Poller>, key: u64) {
        let mut state = self.lock();
        if state.socket.is_some() {
            state.watch = Some(Watch {
                poller,
                key,
                writable: false,
            });
        }
    }

    /// That thread stops reading the socket: what it held goes to the writer.
    pub fn unwatch(&self) {
        let mut state = self.lock();
        hand_held(&mut state);
        if let (Some(watch), Some(socket)) = (state.watch.take(), state.socket) {
            if watch.writable {
                // Gone from the poller already if it read the end.
                let _ = watch.poller.set_writable(socket, watch.key, false);
            }
        }
        self.unlock(state);
    }

    /// Writes what is held, on the watching thread, once the socket is
    /// writable; returns the cost of the messages it completed.
    pub fn write_held(&self) -> usize {
        let mut state = self.lock();
        let done = flush_held(&mut state);
        want_writable(&mut state);
        self.unlock(state);
        done
    }

    /// Gives what is held to the writer, which reports what it writes
    /// (the watching thread's writes of held bytes are not reported).
    pub fn hand_over(&self) {
        let mut state = self.lock();
        hand_held(&mut state);
        want_writable(&mut state);
        self.unlock(state);
    }

    /// Queues a frame the connection's task makes (a pong, our close frame
    /// when `close`, which ends sending); false once sending has ended.
    pub fn queue(&self, outgoing: Outgoing, close: bool) -> bool {
        let mut state = self.lock();
        let queued = push(&mut state, [outgoing]);
        state.closed |= close;
        self.unlock(state);
        queued
    }

    /// The writer wrote (or dropped) `chunks` of what was queued.
    pub fn written(&self, chunks: usize) {
        let mut state = self.lock();
        state.queued = state.queued.saturating_sub(chunks);
    }

    /// Sends a message of `size` payload bytes in `chunks`, which counts
    /// `cost` against the send limit: written at once if `may_write`, the
    /// writer's queue is empty and the socket takes it, else queued, after
    /// everything sent before; returns the cost of the messages it
    /// completed (this one, and others held before it).
    ///
    /// What the socket does not take is held for the thread that reads the
    /// socket, if one does, else queued for the writer. What is queued keeps
    /// its masking key, and is masked by the writer, unless it is small.
    pub fn send(
        &self,
        chunks: Vec<Chunk>,
        size: usize,
        cost: usize,
        may_write: bool,
    ) -> Result<usize, Closed> {
        let mut state = self.lock();
        if state.closed {
            return Err(Closed);
        }
        if !may_write || state.queued > 0 || state.socket.is_none() {
            let chunks = if size < MASK_AT_WRITE_FROM {
                // Masked here, in one pass, rather than in pieces by the writer.
                chunks
                    .into_iter()
                    .map(|c| Chunk::plain(c.into_plain()))
                    .collect()
            } else {
                chunks
            };
            let queued = push(&mut state, outgoing(chunks, size, cost));
            self.unlock(state);
            return if queued { Ok(0) } else { Err(Closed) };
        }
        state.held.extend(outgoing(chunks, size, cost));
        let done = flush_held(&mut state);
        if state.watch.is_none() && !hand_held(&mut state) {
            return Err(Closed);
        }
        want_writable(&mut state);
        self.unlock(state);
        Ok(done)
    }

    /// Queues a frame that other connections share (a broadcast's), as
    /// [`send`](Self::send) does with `may_write` false, but copies a small
    /// one straight into the queue: no reference to the shared frame is
    /// taken, so its count is not touched for each connection. None while
    /// a fragmented message is open (see
    /// [`set_fragmenting`](Self::set_fragmenting)): the frame must wait for
    /// its end, and is not queued.
    pub fn queue_shared(
        &self,
        frame: &Bytes,
        size: usize,
        cost: usize,
    ) -> Option<Result<usize, Closed>> {
        let mut state = self.lock();
        if state.closed {
            return Some(Err(Closed));
        }
        if state.fragmenting {
            return None;
        }
        // Behind what is held, as every push; false once the queue ended.
        let queued = hand_held(&mut state)
            && if frame.len() <= COPY_INTO_QUEUE_UP_TO {
                copy_into_queue(&mut state, frame, size, cost);
                true
            } else {
                push_only(
                    &mut state,
                    outgoing(vec![Chunk::plain(frame.clone())], size, cost),
                )
            };
        self.unlock(state);
        Some(if queued { Ok(0) } else { Err(Closed) })
    }

    /// Says whether a fragmented message is open, from before its first
    /// fragment is sent until what waited for its end has been sent. It
    /// lets [`queue_shared`](Self::queue_shared) keep a broadcast out of
    /// the message under the outbox's own lock, so a broadcast takes one
    /// lock per connection, not two.
    pub fn set_fragmenting(&self, open: bool) {
        self.lock().fragmenting = open;
    }
}

/// `chunks` of a message of `size` payload bytes and of `cost`, which
/// counts as written with its last chunk.
fn outgoing(chunks: Vec<Chunk>, size: usize, cost: usize) -> impl Iterator<Item = Outgoing> {
    let count = chunks.len();
    chunks.into_iter().enumerate().map(move |(i, chunk)| {
        let last = i + 1 == count;
        Outgoing {
            chunk,
            payload: if last { size } else { 0 },
            cost: if last { cost } else { 0 },
            pong: false,
        }
    })
}

/// Writes what is held, as much as the socket takes; returns the cost of
/// the messages it completed.
fn flush_held(state: &mut State) -> usize {
    let Some(socket) = state.socket else {
        return 0;
    };
    let mut done = 0;
    while !state.held.is_empty() {
        let batch: Vec<&Chunk> = state
            .held
            .iter()
            .map(|o| &o.chunk)
            .take(MAX_SLICES)
            .collect();
        let (mut written, offered) = write_now(socket, &batch);
        let full = written < offered;
        // Empty chunks (an empty message's payload) go as written.
        while let Some(front) = state.held.front_mut() {
            let step = written.min(front.chunk.len());
            front.chunk.advance(step);
            written -= step;
            if !front.chunk.is_empty() {
                break;
            }
            done += front.cost;
            state.held.pop_front();
        }
        if full {
            // Full (or failed: the task's own read or write reports why).
            break;
        }
    }
    done
}

/// Asks the watching thread's poller to report the socket while writable
/// exactly while something is held.
fn want_writable(state: &mut State) {
    let wanted = !state.held.is_empty();
    if let (Some(watch), Some(socket)) = (state.watch.as_mut(), state.socket) {
        if watch.writable != wanted {
            watch.writable = wanted;
            if watch
                .poller
                .set_writable(socket, watch.key, wanted)
                .is_err()
                && wanted
            {
                // Not in the poller any more: the writer takes it.
                state.watch = None;
                hand_held(state);
            }
        }
    }
}

/// Gives what is held to the writer, ahead of anything queued after it;
/// false if the writer's queue has ended.
fn hand_held(state: &mut State) -> bool {
    let held = std::mem::take(&mut state.held);
    push_only(state, held)
}

/// Puts `outgoing` in the writer's queue, counted, behind what is held;
/// false if the queue has ended.
fn push(state: &mut State, outgoing: impl IntoIterator<Item = Outgoing>) -> bool {
    hand_held(state) && push_only(state, outgoing)
}

fn push_only(state: &mut State, outgoing: impl IntoIterator<Item = Outgoing>) -> bool {
    if !state.queue_open {
        // The connection is ending.
        return false;
    }
    for outgoing in outgoing {
        if outgoing.chunk.mask.is_none()
            && !outgoing.pong
            && outgoing.chunk.len() <= COPY_INTO_QUEUE_UP_TO
        {
            copy_into_queue(
                state,
                &outgoing.chunk.bytes,
                outgoing.payload,
                outgoing.cost,
            );
        } else {
            end_copied(state);
            state.queue.push_back(outgoing);
            state.queued += 1;
        }
    }
    true
}

/// Copies a small frame on to the queue's last buffer, or starts one.
fn copy_into_queue(state: &mut State, bytes: &[u8], payload: usize, cost: usize) {
    if state
        .copied
        .as_ref()
        .is_some_and(|c| c.bytes.len() + bytes.len() > COPIED_MOST)
    {
        end_copied(state);
    }
    if state.copied.is_none() {
        // Counted as one chunk of the queue, as it is written.
        state.queued += 1;
    }
    // Room for a few more frames like this one: most queues of small
    // frames are taken by the writer after a few dozen.
    let copied = state.copied.get_or_insert_with(|| Copied {
        bytes: BytesMut::with_capacity(bytes.len().max(64) * 4),
        payload: 0,
        cost: 0,
    });
    copied.bytes.extend_from_slice(bytes);
    copied.payload += payload;
    copied.cost += cost;
}

/// Puts the buffer of copied frames in the queue: nothing more joins it.
fn end_copied(state: &mut State) {
    if let Some(copied) = state.copied.take() {
        state.queue.push_back(Outgoing {
            chunk: Chunk::plain(copied.bytes.freeze()),
            payload: copied.payload,
            cost: copied.cost,
            pong: false,
        });
    }
}

thread_local! {
    /// What a thread masks for its write: one buffer a thread, of at most
    /// [`MASK_BUFFER`] bytes, used again for every write, so that masking
    /// costs no allocation and the kernel copies from memory still in cache.
    static MASKED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One non-blocking vectored write of the first of `chunks`, masked on
/// the way where they are to be, up to [`MASK_BUFFER`] bytes of them;
/// returns the bytes written and the bytes offered. Writes nothing when the
/// socket takes nothing now (full, or failed: the task's own read or write
/// then reports why).
fn write_now(socket: RawFd, chunks: &[&Chunk]) -> (usize, usize) {
    MASKED.with_borrow_mut(|masked| {
        masked.clear();
        mask_ahead(chunks.iter().copied(), masked, MASK_BUFFER);
        let slices = write_slices(chunks.iter().copied(), masked);
        let offered = slices.iter().map(|s| s.len()).sum();
        // The socket is open: it is used under the outbox lock, and `detach`
        // takes it out under that lock before the stream is dropped.
        let written = crate::net::stream::send(socket, &slices).unwrap_or(0);
        (written, offered)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use crate::bridge::poller::Ready;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        ours.set_nonblocking(true).unwrap();
        let (theirs, _) = listener.accept().unwrap();
        (ours, theirs)
    }

    /// An outbox attached to `socket`.
    fn attached(socket: Option<RawFd>) -> Outbox {
        let outbox = Outbox::default();
        outbox.attach(socket);
        outbox
    }

    fn chunks(parts: &[&'static [u8]]) -> Vec<Chunk> {
        parts
            .iter()
            .map(|p| Chunk::plain(Bytes::from_static(p)))
            .collect()
    }

    fn received(peer: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        peer.read_exact(&mut buf).unwrap();
        buf
    }

    /// A frame the task makes (a ping, a pong, our close): no message bytes.
    fn control(bytes: &'static [u8]) -> Outgoing {
        Outgoing {
            chunk: Chunk::plain(Bytes::from_static(bytes)),
            payload: 0,
            cost: 0,
            pong: false,
        }
    }

    /// What the writer's queue holds, as (bytes as they go out, payload).
    fn drained(outbox: &Outbox) -> Vec<(Bytes, usize)> {
        outbox
            .take_queued()
            .into_iter()
            .map(|o| (o.chunk.into_plain(), o.payload))
            .collect()
    }

    #[test]
    fn writes_at_once_only_with_nothing_queued_ahead() {
        let (ours, mut theirs) = pair();
        let outbox = attached(Some(ours.as_raw_fd()));
        assert_eq!(outbox.send(chunks(&[b"ab", b"cd"]), 4, 4, true).unwrap(), 4);
        assert_eq!(received(&mut theirs, 4), b"abcd");
        // A pong queued by the task: the next message waits behind it.
        assert!(outbox.queue(control(b"P"), false));
        assert_eq!(outbox.send(chunks(&[b"e", b"f"]), 2, 2, true).unwrap(), 0);
        // Small frames, copied one after another into one buffer.
        let queued = drained(&outbox);
        assert_eq!(queued, [(Bytes::from_static(b"Pef"), 2)]);
        outbox.written(1);
        assert_eq!(outbox.send(chunks(&[b"gh"]), 2, 2, true).unwrap(), 2);
        assert_eq!(received(&mut theirs, 2), b"gh");
        // Not allowed (a burst, or writes reported): queued, counted.
        assert_eq!(outbox.send(chunks(&[b"ij"]), 2, 2, false).unwrap(), 0);
        assert_eq!(outbox.lock().queued, 1);
    }

    #[test]
    fn small_frames_share_a_buffer_in_order_until_a_large_one_or_a_pong() {
        // No socket: everything is queued.
        let outbox = attached(None);
        let frame = |bytes: Bytes, pong: bool| Outgoing {
            payload: bytes.len(),
            cost: bytes.len() + 1,
            chunk: Chunk::plain(bytes),
            pong,
        };
        let large = Bytes::from(vec![9u8; COPY_INTO_QUEUE_UP_TO + 1]);
        for (bytes, pong) in [
            (Bytes::from_static(b"ab"), false),
            (Bytes::from_static(b"c"), false),
            (large.clone(), false),
            (Bytes::from_static(b"d"), false),
            (Bytes::from_static(b"P"), true),
            (Bytes::from_static(b"e"), false),
        ] {
            assert!(outbox.queue(frame(bytes, pong), false));
        }
        let queued = outbox.take_queued();
        let seen: Vec<_> = queued
            .iter()
            .map(|o| (o.chunk.bytes.clone(), o.payload, o.cost, o.pong))
            .collect();
        // Payloads and costs add up: a frame's cost here is its length + 1.
        let small = |b: &'static [u8], n, cost| (Bytes::from_static(b), n, cost, false);
        assert_eq!(
            seen,
            [
                small(b"abc", 3, 5),
                (large.clone(), large.len(), large.len() + 1, false),
                small(b"d", 1, 2),
                (Bytes::from_static(b"P"), 1, 2, true),
                small(b"e", 1, 2),
            ]
        );
        assert_eq!(outbox.lock().queued, 5, "one chunk for each entry");
        // A long run of small frames is cut into buffers of at most COPIED_MOST.
        let kib = Bytes::from(vec![1u8; COPY_INTO_QUEUE_UP_TO]);
        for _ in 0..(COPIED_MOST / kib.len()) * 2 + 1 {
            assert!(outbox.queue(frame(kib.clone(), false), false));
        }
        let sizes: Vec<_> = outbox.take_queued().iter().map(|o| o.chunk.len()).collect();
        assert_eq!(sizes, [COPIED_MOST, COPIED_MOST, kib.len()]);
    }

    #[test]
    fn a_shared_frame_is_queued_in_order_copied_if_small_never_in_a_fragmented_message_nor_after_close(
    ) {
        let outbox = attached(None);
        let large = Bytes::from(vec![3u8; COPY_INTO_QUEUE_UP_TO + 1]);
        for frame in [&Bytes::from_static(b"a"), &large, &Bytes::from_static(b"b")] {
            assert_eq!(
                outbox.queue_shared(frame, frame.len(), 0).unwrap().unwrap(),
                0
            );
        }
        outbox.set_fragmenting(true);
        assert!(
            outbox.queue_shared(&large, 1, 0).is_none(),
            "waits for the end"
        );
        outbox.set_fragmenting(false);
        let queued = outbox.take_queued();
        let ptrs: Vec<_> = queued.iter().map(|o| o.chunk.bytes.as_ptr()).collect();
        assert_eq!(ptrs.len(), 3);
        assert_eq!(
            ptrs[1],
            large.as_ptr(),
            "a large frame is shared, not copied"
        );
        assert_eq!(&queued[2].chunk.bytes[..], b"b");
        assert!(outbox.queue(control(b"C"), true));
        let closed = outbox.queue_shared(&Bytes::from_static(b"c"), 1, 0);
        assert!(matches!(closed, Some(Err(Closed))));
    }

    #[test]
    fn nothing_is_sent_after_our_close_frame() {
        let (ours, _theirs) = pair();
        let outbox = attached(Some(ours.as_raw_fd()));
        assert!(outbox.queue(control(b"C"), true));
        outbox.written(1);
        assert!(outbox.send(chunks(&[b"y"]), 1, 1, true).is_err());
        assert_eq!(drained(&outbox).len(), 1, "only the close frame");
        outbox.detach();
        assert!(outbox.lock().socket.is_none());
        assert!(!outbox.queue(control(b"P"), false));
    }

    #[test]
    fn what_a_full_socket_does_not_take_is_queued_from_where_it_stopped_ahead_of_the_next() {
        let (ours, mut theirs) = pair();
        let outbox = attached(Some(ours.as_raw_fd()));
        let big = Bytes::from(vec![7u8; 64 << 20]);
        let head = Chunk::plain(Bytes::from_static(b"head"));
        let sent = outbox.send(
            vec![head, Chunk::plain(big.clone())],
            4 + big.len(),
            4 + big.len(),
            true,
        );
        assert_eq!(sent.unwrap(), 0, "64 MiB do not fit in a socket buffer");
        // Another thread's message, and the task's pong, go behind it.
        assert_eq!(outbox.send(chunks(&[b"next"]), 4, 4, true).unwrap(), 0);
        assert!(outbox.queue(control(b"P"), false));
        let queued = drained(&outbox);
        assert_eq!(queued.len(), 2);
        assert_eq!(outbox.lock().queued, 2);
        let (left, payload) = &queued[0];
        assert_eq!(*payload, 4 + big.len());
        assert!(left.len() < big.len());
        assert_eq!(queued[1], (Bytes::from_static(b"nextP"), 4));
        let taken = received(&mut theirs, 4 + big.len() - left.len());
        assert_eq!(&taken[..4], b"head");
        assert!(taken[4..].iter().all(|&b| b == 7));
    }

    #[test]
    fn a_sending_thread_masks_what_it_writes_and_leaves_the_rest_to_be_masked() {
        let (ours, mut theirs) = pair();
        let outbox = attached(Some(ours.as_raw_fd()));
        let masked = |len: usize| Chunk {
            bytes: Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<u8>>()),
            mask: Some([1, 2, 3, 4]),
        };
        let small = masked(1_000);
        let head = Chunk::plain(Bytes::from_static(b"head"));
        let sent = outbox.send(vec![head, small.clone()], 1_000, 1_000, true);
        assert_eq!(sent.unwrap(), 1_000);
        let mut expected = b"head".to_vec();
        expected.extend_from_slice(&small.clone().into_plain());
        assert_eq!(received(&mut theirs, expected.len()), expected);
        assert_eq!(
            small.bytes[1], 7,
            "the caller's payload is never written into"
        );
        // More than the socket takes: what is left is queued unmasked, with
        // its key turned to where the write stopped.
        let big = masked(64 << 20);
        let sent = outbox.send(vec![big.clone()], big.len(), big.len(), true);
        assert_eq!(sent.unwrap(), 0, "64 MiB do not fit in a socket buffer");
        let left = outbox.take_queued().remove(0).chunk;
        assert!(left.mask.is_some());
        let mut wire = received(&mut theirs, big.len() - left.len());
        wire.extend_from_slice(&left.into_plain());
        assert_eq!(wire, big.into_plain());
        assert!(MASKED.with_borrow(|m| m.capacity()) <= MASK_BUFFER);
    }

    #[test]
    fn the_reading_thread_writes_what_the_socket_did_not_take_unless_the_writer_must() {
        let (ours, mut theirs) = pair();
        let outbox = attached(Some(ours.as_raw_fd()));
        let poller = Arc::new(Poller::new().unwrap());
        poller.add(ours.as_raw_fd(), 9).unwrap();
        outbox.watch(poller.clone(), 9);
        let big = Bytes::from(vec![7u8; 16 << 20]);
        let sent = outbox.send(vec![Chunk::plain(big.clone())], big.len(), big.len(), true);
        assert_eq!(sent.unwrap(), 0, "16 MiB do not fit in a socket buffer");
        assert!(drained(&outbox).is_empty(), "held, not queued");
        // The next message waits behind it, held too.
        assert_eq!(outbox.send(chunks(&[b"next"]), 4, 4, true).unwrap(), 0);
        let reader = std::thread::spawn(move || {
            let wire = received(&mut theirs, big.len() + 4);
            // Kept open: its end would make ours readable.
            (wire, theirs)
        });
        let mut done = 0;
        let mut ready = Vec::new();
        while done < 16 << 20 {
            poller.wait(&mut ready, 5_000);
            let writable = Ready {
                key: 9,
                read: false,
                write: true,
            };
            assert_eq!(ready, [writable]);
            done += outbox.write_held();
        }
        assert_eq!(done, (16 << 20) + 4);
        let (wire, _theirs) = reader.join().unwrap();
        assert!(wire[..16 << 20].iter().all(|&b| b == 7));
        assert_eq!(&wire[16 << 20..], b"next");
        poller.wait(&mut ready, 0);
        assert!(ready.is_empty(), "not reported once nothing is held");
        // Held again, then a frame of the task's: the writer takes both, in order.
        let (ours, _theirs) = pair();
        let outbox = attached(Some(ours.as_raw_fd()));
        poller.add(ours.as_raw_fd(), 10).unwrap();
        outbox.watch(poller.clone(), 10);
        let big = Bytes::from(vec![1u8; 16 << 20]);
        assert_eq!(
            outbox
                .send(vec![Chunk::plain(big.clone())], big.len(), big.len(), true)
                .unwrap(),
            0
        );
        assert!(outbox.queue(control(b"P"), false));
        let queued = drained(&outbox);
        assert_eq!(queued.len(), 2);
        assert_eq!((queued[0].1, &queued[1].0[..]), (big.len(), &b"P"[..]));
        assert_eq!(outbox.write_held(), 0, "nothing held any more");
    }

    #[test]
    fn what_is_held_can_be_handed_to_the_writer() {
        let (ours, _theirs) = pair();
        let outbox = attached(Some(ours.as_raw_fd()));
        let poller = Arc::new(Poller::new().unwrap());
        poller.add(ours.as_raw_fd(), 11).unwrap();
        outbox.watch(poller.clone(), 11);
        let big = Bytes::from(vec![3u8; 16 << 20]);
        let sent = outbox.send(vec![Chunk::plain(big.clone())], big.len(), big.len(), true);
        assert_eq!(sent.unwrap(), 0, "16 MiB do not fit in a socket buffer");
        assert!(drained(&outbox).is_empty(), "held, not queued");
        outbox.hand_over();
        let queued = drained(&outbox);
        assert_eq!(queued.len(), 1);
        assert_eq!(
            queued[0].1,
            big.len(),
            "the message is the writer's to count"
        );
        assert_eq!(outbox.write_held(), 0, "nothing held any more");
        // The next message goes behind it, to the writer too.
        assert_eq!(outbox.send(chunks(&[b"next"]), 4, 4, true).unwrap(), 0);
        assert_eq!(drained(&outbox).len(), 1);
    }
}
