//! The order of everything written to one connection, and the shortcut that
//! lets a sending thread write a message itself.
//!
//! A message normally reaches the socket through the writer's queue: one
//! thread hop and one wake-up of the I/O thread. When nothing is queued ahead
//! of it, a message on a plain TCP socket is written at once by the thread
//! that sends it, with a non-blocking write: the round trip loses a hop, and
//! the I/O thread is left to read. A client masks such a message on the
//! way, into a buffer its thread keeps for the purpose, not into a new copy.
//! What the socket does not take joins the queue under the same lock, and
//! every other thread's message and every frame the task makes (a pong,
//! our close) enters the queue under it too, so that nothing overtakes it
//! and no frame is ever cut by another, whichever threads send.
//!
//! Small messages that handlers send to one socket in a burst of events
//! are the exception, after the first: the I/O thread writes them, many to
//! a system call, while the Python thread goes on with the burst (see
//! [`events::burst`](crate::events::burst)). From [`BURST_WRITE_FROM`] bytes
//! the copy into the socket outweighs the system call, and handing the
//! message over would only wake the I/O thread.

use std::cell::RefCell;
use std::io::IoSlice;
use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::protocol::{Chunk, MASK_AT_WRITE_FROM};
use crate::writer::{Outgoing, MAX_SLICES};

/// Largest message a client's sending thread writes itself, masking it on
/// the way: 64 KiB; larger ones are masked by the I/O thread as it writes
/// them, through a buffer that stays in cache. A server's thread writes
/// messages of any size (they are not masked), without the GIL above this
/// size: the non-blocking write copies as much as the socket takes.
pub const DIRECT_WRITE_MAX: usize = 64 << 10;

/// Smallest message a handler writes itself in a burst of events: 8 KiB.
pub const BURST_WRITE_FROM: usize = 8 << 10;

struct State {
    /// Chunks in the writer's queue, not written yet.
    queued: usize,
    /// The plain TCP socket while the connection runs; None over TLS, whose
    /// state only the task may touch.
    socket: Option<RawFd>,
    /// The writer's queue, until the connection is over: entered only
    /// under the lock, so that its order is the order on the wire.
    out: Option<UnboundedSender<Outgoing>>,
    /// Our close frame is queued: no message may follow it.
    closed: bool,
}

/// Why a message was not sent: the connection is closing or over.
#[derive(Debug)]
pub struct Closed;

/// How a sent message left.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The calling thread wrote all of it.
    Written,
    /// The writer has it (or what the socket did not take of it).
    Queued,
}

pub struct Outbox {
    state: Mutex<State>,
    /// The other end of the writer's queue, for the connection's writer.
    queue: Mutex<Option<UnboundedReceiver<Outgoing>>>,
}

impl Default for Outbox {
    fn default() -> Self {
        // Made with the connection, so that what is sent before its task
        // runs waits in the queue.
        let (out, queue) = unbounded_channel();
        let state = State {
            queued: 0,
            socket: None,
            out: Some(out),
            closed: false,
        };
        Outbox {
            state: Mutex::new(state),
            queue: Mutex::new(Some(queue)),
        }
    }
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer's queue, for the connection's task (once).
    pub fn take_queue(&self) -> Option<UnboundedReceiver<Outgoing>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Lets sending threads write to `socket` until [`detach`](Self::detach).
    pub fn attach(&self, socket: Option<RawFd>) {
        self.lock().socket = socket;
    }

    /// Called before the socket is closed: no thread writes to it any more,
    /// and the writer, once it sent what is queued, sees its queue end.
    pub fn detach(&self) {
        let mut state = self.lock();
        state.socket = None;
        state.out = None;
        state.closed = true;
    }

    /// Queues a frame the connection's task makes (a pong, our close frame
    /// when `close`, which ends sending); false once sending has ended.
    pub fn queue(&self, outgoing: Outgoing, close: bool) -> bool {
        let mut state = self.lock();
        let queued = push(&mut state, [outgoing]);
        state.closed |= close;
        queued
    }

    /// The writer wrote (or dropped) `chunks` of what was queued.
    pub fn written(&self, chunks: usize) {
        let mut state = self.lock();
        state.queued = state.queued.saturating_sub(chunks);
    }

    /// Sends a message of `size` payload bytes in `chunks`: written at once
    /// if `may_write`, nothing is queued and the socket takes it all, else
    /// queued for the writer, after what is queued and after the part the
    /// socket took. What is queued keeps its masking key, and is masked by
    /// the writer, unless it is small.
    pub fn send(
        &self,
        mut chunks: Vec<Chunk>,
        size: usize,
        may_write: bool,
    ) -> Result<Sent, Closed> {
        let mut state = self.lock();
        if state.closed {
            return Err(Closed);
        }
        if let (true, 0, Some(socket)) = (may_write, state.queued, state.socket) {
            let mut left = write_now(socket, &chunks);
            chunks.retain_mut(|chunk| {
                let step = left.min(chunk.len());
                chunk.advance(step);
                left -= step;
                !chunk.is_empty()
            });
            if chunks.is_empty() {
                return Ok(Sent::Written);
            }
        }
        if size < MASK_AT_WRITE_FROM {
            // Masked here, in one pass, rather than in pieces by the writer.
            chunks = chunks
                .into_iter()
                .map(|c| Chunk::plain(c.into_plain()))
                .collect();
        }
        let count = chunks.len();
        let outgoing = chunks.into_iter().enumerate().map(|(i, chunk)| Outgoing {
            chunk,
            // The message counts as written with its last chunk.
            payload: if i + 1 == count { size } else { 0 },
        });
        if push(&mut state, outgoing) {
            Ok(Sent::Queued)
        } else {
            Err(Closed)
        }
    }
}

/// Puts `outgoing` in the writer's queue, counted; false if it has ended.
fn push(state: &mut State, outgoing: impl IntoIterator<Item = Outgoing>) -> bool {
    let Some(out) = &state.out else {
        return false;
    };
    for outgoing in outgoing {
        if out.send(outgoing).is_err() {
            // The writer failed: the connection is ending.
            return false;
        }
        state.queued += 1;
    }
    true
}

thread_local! {
    /// What a sending thread masks for its write: one buffer a thread, used
    /// again for every message, so that masking costs no allocation and the
    /// kernel copies from memory still in cache.
    static MASKED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One non-blocking vectored write of `chunks`, masked on the way where
/// they are to be; 0 when the socket takes nothing now (full, or failed:
/// the task's own read or write then reports why).
fn write_now(socket: RawFd, chunks: &[Chunk]) -> usize {
    let chunks = &chunks[..chunks.len().min(MAX_SLICES)];
    MASKED.with_borrow_mut(|masked| {
        masked.clear();
        let to_mask = chunks.iter().filter(|c| c.mask.is_some());
        masked.reserve_exact(to_mask.clone().map(Chunk::len).sum());
        for chunk in to_mask {
            chunk.mask_into(0, chunk.len(), masked);
        }
        let mut rest = &masked[..];
        let slices: Vec<IoSlice<'_>> = chunks
            .iter()
            .map(|chunk| match chunk.mask {
                None => IoSlice::new(&chunk.bytes),
                Some(_) => {
                    let (this, after) = rest.split_at(chunk.len());
                    rest = after;
                    IoSlice::new(this)
                }
            })
            .collect();
        // The socket is open: it is used under the outbox lock, and `detach`
        // takes it out under that lock before the stream is dropped.
        let written = crate::stream::send(socket, &slices).unwrap_or(0);
        // Only a client's messages up to DIRECT_WRITE_MAX are masked here;
        // anything more (a small outgoing_frame_size) is not kept.
        if masked.capacity() > DIRECT_WRITE_MAX {
            *masked = Vec::new();
        }
        written
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        ours.set_nonblocking(true).unwrap();
        let (theirs, _) = listener.accept().unwrap();
        (ours, theirs)
    }

    /// An outbox attached to `socket`, and its writer's queue.
    fn attached(socket: Option<RawFd>) -> (Outbox, UnboundedReceiver<Outgoing>) {
        let outbox = Outbox::default();
        let queue = outbox.take_queue().unwrap();
        outbox.attach(socket);
        (outbox, queue)
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

    /// What the writer's queue holds, as (bytes as they go out, payload).
    fn drained(queue: &mut UnboundedReceiver<Outgoing>) -> Vec<(Bytes, usize)> {
        std::iter::from_fn(|| queue.try_recv().ok())
            .map(|o| (o.chunk.into_plain(), o.payload))
            .collect()
    }

    #[test]
    fn writes_at_once_only_with_nothing_queued_ahead() {
        let (ours, mut theirs) = pair();
        let (outbox, mut queue) = attached(Some(ours.as_raw_fd()));
        assert_eq!(
            outbox.send(chunks(&[b"ab", b"cd"]), 4, true).unwrap(),
            Sent::Written
        );
        assert_eq!(received(&mut theirs, 4), b"abcd");
        // A pong queued by the task: the next message waits behind it.
        assert!(outbox.queue(
            Outgoing {
                chunk: Chunk::plain(Bytes::from_static(b"P")),
                payload: 0
            },
            false
        ));
        assert_eq!(
            outbox.send(chunks(&[b"e", b"f"]), 2, true).unwrap(),
            Sent::Queued
        );
        let expected = [(&b"P"[..], 0), (b"e", 0), (b"f", 2)];
        let queued = drained(&mut queue);
        assert!(queued.iter().map(|(b, p)| (&b[..], *p)).eq(expected));
        outbox.written(3);
        assert_eq!(
            outbox.send(chunks(&[b"gh"]), 2, true).unwrap(),
            Sent::Written
        );
        assert_eq!(received(&mut theirs, 2), b"gh");
        // Not allowed (a burst, or writes reported): queued, counted.
        assert_eq!(
            outbox.send(chunks(&[b"ij"]), 2, false).unwrap(),
            Sent::Queued
        );
        assert_eq!(outbox.lock().queued, 1);
    }

    #[test]
    fn nothing_is_sent_after_our_close_frame() {
        let (ours, _theirs) = pair();
        let (outbox, mut queue) = attached(Some(ours.as_raw_fd()));
        assert!(outbox.queue(
            Outgoing {
                chunk: Chunk::plain(Bytes::from_static(b"C")),
                payload: 0
            },
            true
        ));
        outbox.written(1);
        assert!(outbox.send(chunks(&[b"y"]), 1, true).is_err());
        assert_eq!(drained(&mut queue).len(), 1, "only the close frame");
        outbox.detach();
        assert!(outbox.lock().socket.is_none());
        assert!(!outbox.queue(
            Outgoing {
                chunk: Chunk::plain(Bytes::from_static(b"P")),
                payload: 0
            },
            false
        ));
    }

    #[test]
    fn what_a_full_socket_does_not_take_is_queued_from_where_it_stopped_ahead_of_the_next() {
        let (ours, mut theirs) = pair();
        let (outbox, mut queue) = attached(Some(ours.as_raw_fd()));
        let big = Bytes::from(vec![7u8; 64 << 20]);
        let head = Chunk::plain(Bytes::from_static(b"head"));
        let sent = outbox.send(vec![head, Chunk::plain(big.clone())], 4 + big.len(), true);
        assert_eq!(
            sent.unwrap(),
            Sent::Queued,
            "64 MiB do not fit in a socket buffer"
        );
        // Another thread's message, and the task's pong, go behind it.
        assert_eq!(
            outbox.send(chunks(&[b"next"]), 4, true).unwrap(),
            Sent::Queued
        );
        assert!(outbox.queue(
            Outgoing {
                chunk: Chunk::plain(Bytes::from_static(b"P")),
                payload: 0
            },
            false
        ));
        let queued = drained(&mut queue);
        assert_eq!(queued.len(), 3);
        assert_eq!(outbox.lock().queued, 3);
        let (left, payload) = &queued[0];
        assert_eq!(*payload, 4 + big.len());
        assert!(left.len() < big.len());
        assert_eq!(
            (&queued[1].0[..], queued[2].0.as_ref()),
            (&b"next"[..], &b"P"[..])
        );
        let taken = received(&mut theirs, 4 + big.len() - left.len());
        assert_eq!(&taken[..4], b"head");
        assert!(taken[4..].iter().all(|&b| b == 7));
    }

    #[test]
    fn a_sending_thread_masks_what_it_writes_and_leaves_the_rest_to_be_masked() {
        let (ours, mut theirs) = pair();
        let (outbox, mut queue) = attached(Some(ours.as_raw_fd()));
        let masked = |len: usize| Chunk {
            bytes: Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<u8>>()),
            mask: Some([1, 2, 3, 4]),
        };
        let small = masked(1_000);
        let head = Chunk::plain(Bytes::from_static(b"head"));
        let sent = outbox.send(vec![head, small.clone()], 1_000, true);
        assert_eq!(sent.unwrap(), Sent::Written);
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
        let sent = outbox.send(vec![big.clone()], big.len(), true);
        assert_eq!(
            sent.unwrap(),
            Sent::Queued,
            "64 MiB do not fit in a socket buffer"
        );
        let left = queue.try_recv().unwrap().chunk;
        assert!(left.mask.is_some());
        let mut wire = received(&mut theirs, big.len() - left.len());
        wire.extend_from_slice(&left.into_plain());
        assert_eq!(wire, big.into_plain());
        assert!(MASKED.with_borrow(|m| m.capacity()) <= DIRECT_WRITE_MAX);
    }
}
