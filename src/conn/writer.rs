//! The writing half of a connection: what the session queues goes out many
//! frames to a system call, and a client's payload is masked on the way.

use std::collections::VecDeque;
use std::io::IoSlice;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::connection::Connection;
use super::event::EventSink;
use crate::config;
use crate::protocol::framer::{mask_ahead, write_slices};
use crate::protocol::Chunk;

/// Most chunks in one vectored write (Linux takes up to 1024).
pub const MAX_SLICES: usize = 64;

/// Most queued chunks taken for one batch, whose writes are reported together.
const MAX_BATCH: usize = 256;

/// A chunk of frame bytes for the writer, with what its writing completes.
pub struct Outgoing {
    pub chunk: Chunk,
    /// The message payload bytes it completes, reported as `bytes_written`
    /// (0 for all but a message's last chunk).
    pub payload: usize,
    /// What its message counts against the send limit, released once it is
    /// written (with a message's last chunk; see [`Connection::send`]).
    pub cost: usize,
    /// A pong: the session hears when it is out.
    pub pong: bool,
}

/// Chunks taken from the queue and not written yet, and the buffer their
/// masked bytes go through.
///
/// `masked[done..]` holds, in order, the masked form of the first bytes of
/// the chunks to be masked: all of some, then part of one. It is filled
/// again only once written out, up to [`config::MASK_BUFFER`], so that each
/// byte is masked once however the socket cuts the writes.
#[derive(Default)]
struct Unwritten {
    chunks: VecDeque<Chunk>,
    masked: Vec<u8>,
    done: usize,
}

impl Unwritten {
    fn push(&mut self, chunk: Chunk) {
        if !chunk.is_empty() {
            self.chunks.push_back(chunk);
        }
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Masks the next bytes to be masked, once the last were written.
    fn prepare(&mut self) {
        if self.done < self.masked.len() {
            return;
        }
        self.masked.clear();
        self.done = 0;
        let batch = self.chunks.iter().take(MAX_SLICES);
        mask_ahead(batch, &mut self.masked, config::MASK_BUFFER);
    }

    /// What the next write takes: chunks up to the first whose masked bytes
    /// are not ready.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        write_slices(
            self.chunks.iter().take(MAX_SLICES),
            &self.masked[self.done..],
        )
    }

    /// Drops `written` bytes from the front.
    fn advance(&mut self, mut written: usize) {
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let step = written.min(front.len());
            if front.mask.is_some() {
                self.done += step;
            }
            front.advance(step);
            written -= step;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
    }
}

/// What a batch of the writer's queue completed once written.
#[derive(Default)]
pub struct Written {
    pub chunks: usize,
    pub payload: usize,
    pub cost: usize,
    pub pongs: usize,
}

impl Written {
    fn add(&mut self, outgoing: &Outgoing) {
        self.chunks += 1;
        self.payload += outgoing.payload;
        self.cost += outgoing.cost;
        self.pongs += usize::from(outgoing.pong);
    }
}

/// Writes what the session queues in the connection's outbox, many frames
/// per system call, until the session ends the queue; then closes our side
/// of the connection.
pub async fn write<W>(
    mut writer: W,
    connection: &Connection,
    events: &EventSink,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    // However the writer ends (a failed write, or the task let go of it),
    // nothing more is queued for it.
    struct Stopped<'a>(&'a Connection);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            self.0.outbox.writer_stopped();
        }
    }
    let _stopped = Stopped(connection);
    let mut unwritten = Unwritten::default();
    let mut batch = VecDeque::new();
    while connection.outbox.next_batch(&mut batch, MAX_BATCH).await {
        let mut done = Written::default();
        for next in batch.drain(..) {
            done.add(&next);
            unwritten.push(next.chunk);
        }
        if batch.capacity() > MAX_BATCH {
            // Taken from a queue that grew long: not kept for a quiet one.
            batch = VecDeque::new();
        }
        while !unwritten.is_empty() {
            unwritten.prepare();
            let written = match unwritten.slices().as_slice() {
                // One piece (a small message, framed by copying): a plain
                // send, which costs the kernel less than a vectored write.
                [one] => writer.write(one).await?,
                many => writer.write_vectored(many).await?,
            };
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            unwritten.advance(written);
        }
        // A quiet connection keeps no masking buffer.
        unwritten.masked = Vec::new();
        writer.flush().await?;
        connection.batch_written(done, events);
    }
    writer.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    use crate::protocol::{Framer, Role};

    /// Drains `unwritten` as a socket that takes `takes` bytes a write, in turn.
    fn drain(unwritten: &mut Unwritten, takes: &[usize]) -> Vec<u8> {
        let mut wire = Vec::new();
        for take in takes.iter().cycle() {
            if unwritten.is_empty() {
                break;
            }
            unwritten.prepare();
            let mut left = *take;
            for slice in unwritten.slices() {
                let step = left.min(slice.len());
                wire.extend_from_slice(&slice[..step]);
                left -= step;
            }
            let written = take - left;
            assert!(written > 0, "every write takes something");
            unwritten.advance(written);
        }
        wire
    }

    #[test]
    fn masked_chunks_go_out_as_if_masked_whole_however_writes_cut_them() {
        let payload = Bytes::from((0..700_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        for takes in [&[usize::MAX][..], &[1, 7, 65_537, 300_001], &[4_096]] {
            let mut expected = Vec::new();
            let mut unwritten = Unwritten::default();
            // A small framed message between two large masked ones, and a
            // frame cut into pieces larger and smaller than the buffer.
            let messages = [
                Framer::new(Role::Client).message_chunks(false, payload.clone(), 300_000),
                Framer::new(Role::Client).message_chunks(true, Bytes::from_static(b"hi"), 300_000),
                Framer::new(Role::Client).message_chunks(false, payload.slice(..20_001), 8_000),
            ];
            for chunk in messages.into_iter().flatten() {
                expected.extend_from_slice(&chunk.clone().into_plain());
                unwritten.push(chunk);
            }
            assert_eq!(drain(&mut unwritten, takes), expected);
            assert_eq!(unwritten.done, unwritten.masked.len());
        }
        assert_eq!(payload[3], 3, "the payload is never written into");
    }

    #[test]
    fn each_write_takes_many_frames_and_masks_at_most_one_buffer() {
        let payload = Bytes::from(vec![1u8; 20_000]);
        let mut unwritten = Unwritten::default();
        for _ in 0..10 {
            for chunk in Framer::new(Role::Client).message_chunks(false, payload.clone(), 1 << 20) {
                unwritten.push(chunk);
            }
        }
        unwritten.prepare();
        let slices = unwritten.slices();
        assert_eq!(slices.len(), 20, "ten headers and ten masked payloads");
        let big = Framer::new(Role::Client).message_chunks(
            false,
            Bytes::from(vec![0u8; 4 << 20]),
            8 << 20,
        );
        let mut unwritten = Unwritten::default();
        big.into_iter().for_each(|c| unwritten.push(c));
        unwritten.prepare();
        assert_eq!(unwritten.masked.len(), config::MASK_BUFFER);
        let total: usize = unwritten.slices().iter().map(|s| s.len()).sum();
        assert_eq!(total, 14 + config::MASK_BUFFER);
    }
}
