//! Large outgoing messages written straight from their payload, past
//! tungstenite's write buffer.
//!
//! tungstenite copies every frame it sends into its write buffer (a client
//! masks it on the way) and writes from there. For 16 MiB messages that copy,
//! and the buffer's growth to hold it, were a fifth of the echo server's time,
//! and the peer was the bottleneck of the 16 MiB rows: the figures said more
//! about the peer than about the library. Frames queued here leave from
//! their payload with one `writev` for several of them; a client's are
//! masked through a buffer small enough to stay in the CPU's cache.
//!
//! [`Socket`] sits under tungstenite and writes the queued frames before
//! anything tungstenite writes (a pong, a close frame), so frames never
//! interleave; the caller queues a frame only once tungstenite has flushed
//! what it buffered before.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::Bytes;

/// Messages from this size go out directly; smaller ones cost less to copy
/// into tungstenite's buffer, which then leaves in one write with others.
pub const DIRECT_FROM: usize = 16 << 10;

/// A client's frames are masked into a buffer of this size, then written.
const STAGE_SIZE: usize = 256 << 10;

/// Most frames one `writev` carries (two slices each).
const MAX_FRAMES_PER_WRITE: usize = 32;

struct Frame {
    head: [u8; 14],
    head_len: usize,
    payload: Bytes,
    mask: Option<[u8; 4]>,
    /// Bytes of head and payload written (a server) or staged (a client).
    done: usize,
}

impl Frame {
    fn len(&self) -> usize {
        self.head_len + self.payload.len()
    }
}

/// The frames queued on one connection, shared between its [`Socket`] and
/// whoever sends (with the stream split, the sender cannot reach the socket).
#[derive(Default)]
pub struct Frames {
    queue: VecDeque<Frame>,
    /// A client's next bytes to write, heads and masked payloads, from `staged_at`.
    staged: Vec<u8>,
    staged_at: usize,
}

pub type Outgoing = Rc<RefCell<Frames>>;

impl Frames {
    /// Queues one binary message as one frame, masked when `client` (with a
    /// key from the same source as tungstenite's own).
    pub fn push(&mut self, payload: Bytes, client: bool) {
        self.push_frame(OpCode::Data(Data::Binary), payload, client);
    }

    /// Queues one final frame of any kind: a pong or a close frame from a
    /// client that reads without tungstenite.
    pub fn push_frame(&mut self, opcode: OpCode, payload: Bytes, client: bool) {
        let length = payload.len();
        self.push_head(opcode, length, payload, client.then(rand::random));
    }

    /// Queues a server's message from the payloads of the frames it came in
    /// (`reader.rs`), as one frame, without joining them: its header leaves
    /// with the first part, the other parts follow bare.
    pub fn push_parts(&mut self, kind: Data, parts: Vec<Bytes>) {
        let length = parts.iter().map(Bytes::len).sum();
        let mut parts = parts.into_iter();
        let first = parts.next().unwrap_or_default();
        self.push_head(OpCode::Data(kind), length, first, None);
        self.queue.extend(parts.map(|payload| Frame {
            head: [0; 14],
            head_len: 0,
            payload,
            mask: None,
            done: 0,
        }));
    }

    /// Queues the header of a frame of `length` bytes, with `first` of them.
    fn push_head(&mut self, opcode: OpCode, length: usize, first: Bytes, mask: Option<[u8; 4]>) {
        let header = FrameHeader {
            opcode,
            mask,
            ..FrameHeader::default()
        };
        let mut head = [0u8; 14];
        header
            .format(length as u64, &mut &mut head[..])
            .expect("a frame header fits in 14 bytes");
        self.queue.push_back(Frame {
            head,
            head_len: header.len(length as u64),
            payload: first,
            mask,
            done: 0,
        });
    }

    /// Writes queued frames until none is left or the socket is full.
    pub fn drain(&mut self, tcp: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.staged_at < self.staged.len() {
                let n = ready!(Pin::new(&mut *tcp).poll_write(cx, &self.staged[self.staged_at..]))?;
                self.staged_at += n;
                continue;
            }
            let Some(front) = self.queue.front() else {
                return Poll::Ready(Ok(()));
            };
            if front.mask.is_some() {
                self.stage();
                continue;
            }
            let mut slices = [IoSlice::new(&[]); 2 * MAX_FRAMES_PER_WRITE];
            let mut count = 0;
            for frame in self.queue.iter().take(MAX_FRAMES_PER_WRITE) {
                let (head, payload) = (&frame.head[..frame.head_len], &frame.payload[..]);
                if frame.done < head.len() {
                    slices[count] = IoSlice::new(&head[frame.done..]);
                    count += 1;
                }
                slices[count] = IoSlice::new(&payload[frame.done.max(head.len()) - head.len()..]);
                count += 1;
            }
            let written = Pin::new(&mut *tcp).poll_write_vectored(cx, &slices[..count]);
            let mut n = ready!(written)?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while n > 0 {
                let frame = self.queue.front_mut().expect("written past the queue");
                let step = n.min(frame.len() - frame.done);
                frame.done += step;
                n -= step;
                if frame.done == frame.len() {
                    self.queue.pop_front();
                }
            }
        }
    }

    /// Fills `staged` with the next masked frames, up to `STAGE_SIZE`.
    fn stage(&mut self) {
        self.staged.clear();
        self.staged_at = 0;
        while let Some(frame) = self.queue.front_mut() {
            let room = STAGE_SIZE.saturating_sub(self.staged.len());
            if room == 0 {
                break;
            }
            if frame.done < frame.head_len {
                self.staged.extend_from_slice(&frame.head[..frame.head_len]);
                frame.done = frame.head_len;
            }
            let from = frame.done - frame.head_len;
            let to = frame.payload.len().min(from + room);
            extend_masked(&mut self.staged, &frame.payload[from..to], frame.mask, from);
            frame.done = frame.head_len + to;
            if frame.done == frame.len() {
                self.queue.pop_front();
            }
        }
    }
}

/// Appends `src`, the payload from byte `offset` on, masked with `key` if
/// there is one (masking and unmasking are the same).
pub fn extend_masked(out: &mut Vec<u8>, src: &[u8], key: Option<[u8; 4]>, offset: usize) {
    let start = out.len();
    out.extend_from_slice(src);
    let Some(key) = key else {
        return;
    };
    let key: [u8; 4] = std::array::from_fn(|i| key[(offset + i) % 4]);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = out[start..].chunks_exact_mut(8);
    for w in &mut words {
        let masked = u64::from_ne_bytes((&*w).try_into().unwrap()) ^ word;
        w.copy_from_slice(&masked.to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// The TCP stream under tungstenite: what tungstenite writes waits until the
/// queued frames are out.
pub struct Socket {
    tcp: TcpStream,
    pub outgoing: Outgoing,
}

impl Socket {
    pub fn new(tcp: TcpStream) -> Self {
        Socket {
            tcp,
            outgoing: Outgoing::default(),
        }
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outgoing.borrow_mut().drain(&mut self.tcp, cx)
    }

    /// The stream and the frames queued on it, once tungstenite is done.
    pub fn into_parts(self) -> (TcpStream, Outgoing) {
        (self.tcp, self.outgoing)
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(bytes: &[u8]) -> (usize, Vec<u8>) {
        let (mut len, mut at) = ((bytes[1] & 0x7F) as usize, 2);
        if len == 126 {
            len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
            at = 4;
        } else if len == 127 {
            len = u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize;
            at = 10;
        }
        let key: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        let payload = &bytes[at + 4..at + 4 + len];
        let plain = payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        (at + 4 + len, plain)
    }

    #[test]
    fn staged_frames_unmask_to_their_payloads() {
        let mut frames = Frames::default();
        let payloads: Vec<Vec<u8>> = [100, 300, 70_000, STAGE_SIZE + 3, 5]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 7) as u8).collect())
            .collect();
        for p in &payloads {
            frames.push(Bytes::from(p.clone()), true);
        }
        let mut wire = Vec::new();
        while !frames.queue.is_empty() {
            frames.stage();
            wire.extend_from_slice(&frames.staged);
        }
        let mut at = 0;
        for p in &payloads {
            let (used, plain) = unmask(&wire[at..]);
            assert_eq!(&plain, p);
            at += used;
        }
        assert_eq!(at, wire.len());
    }
}
