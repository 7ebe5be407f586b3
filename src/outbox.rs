//! The order of everything written to one connection, and the shortcut that
//! lets a sending thread write a message itself.
//!
//! A message normally reaches the socket through the connection's task: one
//! thread hop and one wake-up of the I/O thread. When nothing is queued ahead
//! of it, a small message on a plain TCP socket is written at once by the
//! thread that sends it, with a non-blocking write: the round trip loses a
//! hop, and the I/O thread is left to read. What the socket does not take
//! joins the queue, counted under the same lock, so that nothing overtakes it
//! and no frame is ever cut by another.

use std::io::{IoSlice, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::{Mutex, MutexGuard};

use bytes::{Buf, Bytes};

/// Largest message a sending thread writes itself: 64 KiB. The write is a
/// non-blocking system call made with the GIL held, so it stays short;
/// larger messages go through the I/O thread.
pub const DIRECT_WRITE_MAX: usize = 64 << 10;

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
    /// counted as queued, for the caller to hand to the task.
    pub fn write_or_queue(&self, mut chunks: Vec<Bytes>, may_write: bool) -> Option<Vec<Bytes>> {
        let mut state = self.lock();
        if let (true, 0, false, Some(socket)) =
            (may_write, state.queued, state.closed, state.socket)
        {
            let written = write_now(socket, &chunks);
            let mut left = written;
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

/// One non-blocking vectored write; 0 when the socket takes nothing now
/// (full, or failed: the task's own read or write then reports why).
fn write_now(socket: RawFd, chunks: &[Bytes]) -> usize {
    // SAFETY: the fd is the connection's open TCP socket: it is only used
    // under the outbox lock, and `detach` takes it out under that lock
    // before the stream that owns it is dropped. ManuallyDrop keeps this
    // borrowed handle from closing it. Tokio made it non-blocking.
    let mut tcp = ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(socket) });
    let slices: Vec<IoSlice<'_>> = chunks.iter().take(64).map(|c| IoSlice::new(c)).collect();
    tcp.write_vectored(&slices).unwrap_or(0)
}
