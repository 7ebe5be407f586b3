//! The order of everything written to one connection, and the shortcut that
//! lets a sending thread write a message itself.
//!
//! A message normally reaches the socket through the connection's task: one
//! thread hop and one wake-up of the I/O thread. When nothing is queued ahead
//! of it, a message on a plain TCP socket is written at once by the thread
//! that sends it, with a non-blocking write: the round trip loses a hop, and
//! the I/O thread is left to read. A client masks such a message on the
//! way, into a buffer its thread keeps for the purpose, not into a new copy.
//! What the socket does not take joins the queue, counted under the same
//! lock, so that nothing overtakes it and no frame is ever cut by another.
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

use crate::protocol::Chunk;
use crate::writer::MAX_SLICES;

/// Largest message a client's sending thread writes itself, masking it on
/// the way: 64 KiB; larger ones are masked by the I/O thread as it writes
/// them, through a buffer that stays in cache. A server's thread writes
/// messages of any size (they are not masked), without the GIL above this
/// size: the non-blocking write copies as much as the socket takes.
pub const DIRECT_WRITE_MAX: usize = 64 << 10;

/// Smallest message a handler writes itself in a burst of events: 8 KiB.
pub const BURST_WRITE_FROM: usize = 8 << 10;

#[derive(Default)]
struct State {
    /// Chunks handed to the connection's task and not written yet.
    queued: usize,
    /// The plain TCP socket while the connection runs; None over TLS, whose
    /// state only the task may touch.
    socket: Option<RawFd>,
    /// Our close frame is queued: no message may follow it.
    closed: bool,
}

#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets sending threads write to `socket` until [`detach`](Self::detach).
    pub fn attach(&self, socket: Option<RawFd>) {
        self.lock().socket = socket;
    }

    /// Called before the socket is closed: no thread writes to it any more.
    pub fn detach(&self) {
        let mut state = self.lock();
        state.socket = None;
        state.closed = true;
    }

    /// Counts chunks the connection's task writes: our close frame when
    /// `close`, which ends direct writes.
    pub fn queue(&self, chunks: usize, close: bool) {
        let mut state = self.lock();
        state.queued += chunks;
        state.closed |= close;
    }

    /// The task wrote (or dropped) `chunks` of what was counted.
    pub fn written(&self, chunks: usize) {
        let mut state = self.lock();
        state.queued = state.queued.saturating_sub(chunks);
    }

    /// Writes `chunks` at once if `may_write`, nothing is queued and the
    /// socket takes them; returns None then, or what is left, already
    /// counted as queued, for the caller to hand to the task. What is left
    /// keeps its key: it is masked by whoever writes it.
    pub fn write_or_queue(&self, mut chunks: Vec<Chunk>, may_write: bool) -> Option<Vec<Chunk>> {
        let mut state = self.lock();
        if let (true, 0, false, Some(socket)) =
            (may_write, state.queued, state.closed, state.socket)
        {
            let mut left = write_now(socket, &chunks);
            chunks.retain_mut(|chunk| {
                let step = left.min(chunk.len());
                chunk.advance(step);
                left -= step;
                !chunk.is_empty()
            });
            if chunks.is_empty() {
                return None;
            }
        }
        state.queued += chunks.len();
        Some(chunks)
    }
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

    #[test]
    fn writes_at_once_only_with_nothing_queued_ahead() {
        let (ours, mut theirs) = pair();
        let outbox = Outbox::default();
        outbox.attach(Some(ours.as_raw_fd()));
        assert!(outbox
            .write_or_queue(chunks(&[b"ab", b"cd"]), true)
            .is_none());
        assert_eq!(received(&mut theirs, 4), b"abcd");
        // A pong queued by the task: the next message must wait behind it.
        outbox.queue(1, false);
        let left = outbox.write_or_queue(chunks(&[b"ef"]), true).unwrap();
        assert_eq!(left.len(), 1);
        outbox.written(2);
        assert!(outbox.write_or_queue(chunks(&[b"gh"]), true).is_none());
        assert_eq!(received(&mut theirs, 2), b"gh");
        // Not allowed (a burst, or writes reported): queued, counted.
        assert!(outbox.write_or_queue(chunks(&[b"ij"]), false).is_some());
        assert_eq!(outbox.lock().queued, 1);
    }

    #[test]
    fn nothing_is_written_after_our_close_frame_or_without_a_socket() {
        let (ours, _theirs) = pair();
        let outbox = Outbox::default();
        assert!(outbox.write_or_queue(chunks(&[b"x"]), true).is_some());
        outbox.written(1);
        outbox.attach(Some(ours.as_raw_fd()));
        outbox.queue(1, true);
        outbox.written(1);
        assert!(outbox.write_or_queue(chunks(&[b"y"]), true).is_some());
        outbox.detach();
        assert!(outbox.lock().socket.is_none());
    }

    #[test]
    fn what_a_full_socket_does_not_take_is_queued_from_where_it_stopped() {
        let (ours, mut theirs) = pair();
        let outbox = Outbox::default();
        outbox.attach(Some(ours.as_raw_fd()));
        let big = Bytes::from(vec![7u8; 64 << 20]);
        let left = outbox
            .write_or_queue(
                vec![
                    Chunk::plain(Bytes::from_static(b"head")),
                    Chunk::plain(big.clone()),
                ],
                true,
            )
            .expect("a 64 MiB write does not fit in a socket buffer");
        let left_len: usize = left.iter().map(Chunk::len).sum();
        assert!(left_len > 0 && left_len < big.len());
        assert_eq!(outbox.lock().queued, left.len());
        let sent = 4 + big.len() - left_len;
        let head = received(&mut theirs, sent);
        assert_eq!(&head[..4], b"head");
        assert!(head[4..].iter().all(|&b| b == 7));
    }

    #[test]
    fn a_sending_thread_masks_what_it_writes_and_leaves_the_rest_to_be_masked() {
        let (ours, mut theirs) = pair();
        let outbox = Outbox::default();
        outbox.attach(Some(ours.as_raw_fd()));
        let masked = |len: usize| Chunk {
            bytes: Bytes::from((0..len).map(|i| (i * 7) as u8).collect::<Vec<u8>>()),
            mask: Some([1, 2, 3, 4]),
        };
        let small = masked(1_000);
        assert!(outbox
            .write_or_queue(
                vec![Chunk::plain(Bytes::from_static(b"head")), small.clone()],
                true
            )
            .is_none());
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
        let left = outbox
            .write_or_queue(vec![big.clone()], true)
            .expect("a 64 MiB write does not fit in a socket buffer");
        assert_eq!(left.len(), 1);
        assert!(left[0].mask.is_some());
        let sent = big.len() - left[0].len();
        let mut wire = received(&mut theirs, sent);
        wire.extend_from_slice(&left[0].clone().into_plain());
        assert_eq!(wire, big.into_plain());
        assert!(MASKED.with_borrow(|m| m.capacity()) <= DIRECT_WRITE_MAX);
    }
}
