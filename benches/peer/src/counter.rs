//! A server's messages counted from their frame headers, for the MB/s rows.
//!
//! Those rows only count the echoes, yet tungstenite reads each one into
//! memory and joins a message sent in several frames by growing a vector.
//! Against wsbind's server, which follows Qt in sending 512 KiB frames, the
//! reallocations and copies of that join were a sixth of the client's time,
//! with the client the bottleneck; against a library that sends a 16 MiB
//! message as one frame they cost nothing. Here payloads pass through a
//! buffer small enough to stay in the CPU's cache and are dropped, so a
//! message costs the client the same however the server frames it.

use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::Bytes;

/// What one read asks the socket for.
const BUFFER_SIZE: usize = 256 << 10;

#[derive(Debug, PartialEq)]
pub enum Event {
    /// The last frame of a data message has been read.
    Message,
    /// A ping, with its payload for the pong.
    Ping(Bytes),
    /// The server's close frame.
    Close,
}

pub struct Counter {
    buffer: Box<[u8]>,
    /// The bytes read and not parsed yet: `buffer[start..end]`.
    start: usize,
    end: usize,
    /// Payload bytes of the current data frame still to come.
    skipping: u64,
    /// Whether that frame ends its message.
    last: bool,
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            buffer: vec![0; BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            skipping: 0,
            last: false,
        }
    }
}

impl Counter {
    /// The next event, reading the socket until there is one.
    pub fn poll_next(
        &mut self,
        tcp: &mut TcpStream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Event>> {
        loop {
            if let Some(event) = self.parse()? {
                return Poll::Ready(Ok(event));
            }
            let mut free = ReadBuf::new(self.free());
            ready!(Pin::new(&mut *tcp).poll_read(cx, &mut free))?;
            let read = free.filled().len();
            if read == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            self.end += read;
        }
    }

    /// Where the next read goes: after what is buffered, which moves to the
    /// front once nothing fits after it.
    fn free(&mut self) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buffer.len() {
            self.buffer.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        &mut self.buffer[self.end..]
    }

    /// The next event in what has been read, if it holds one.
    fn parse(&mut self) -> io::Result<Option<Event>> {
        loop {
            let buffered = (self.end - self.start) as u64;
            if self.skipping > 0 {
                let step = self.skipping.min(buffered);
                self.start += step as usize;
                self.skipping -= step;
                if self.skipping > 0 {
                    return Ok(None);
                }
            }
            if std::mem::take(&mut self.last) {
                return Ok(Some(Event::Message));
            }
            let mut cursor = Cursor::new(&self.buffer[self.start..self.end]);
            let parsed = FrameHeader::parse(&mut cursor).map_err(io::Error::other)?;
            let Some((header, length)) = parsed else {
                return Ok(None);
            };
            let head = cursor.position() as usize;
            match header.opcode {
                OpCode::Data(_) => {
                    self.start += head;
                    self.skipping = length;
                    self.last = header.is_final;
                }
                OpCode::Control(control) => {
                    if length > 125 {
                        return Err(io::Error::other("a control frame over 125 bytes"));
                    }
                    let end = self.start + head + length as usize;
                    if end > self.end {
                        return Ok(None);
                    }
                    let mut payload = self.buffer[self.start + head..end].to_vec();
                    for (i, byte) in payload.iter_mut().enumerate() {
                        *byte ^= header.mask.map_or(0, |key| key[i % 4]);
                    }
                    self.start = end;
                    match control {
                        Control::Ping => return Ok(Some(Event::Ping(payload.into()))),
                        Control::Close => return Ok(Some(Event::Close)),
                        Control::Pong => {}
                        Control::Reserved(code) => {
                            return Err(io::Error::other(format!("reserved opcode {code}")))
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;

    fn frame(opcode: OpCode, last: bool, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader {
            is_final: last,
            opcode,
            ..FrameHeader::default()
        };
        let mut bytes = Vec::new();
        header.format(payload.len() as u64, &mut bytes).unwrap();
        bytes.extend_from_slice(payload);
        bytes
    }

    /// Feeds `wire` in pieces of `piece` bytes, collecting the events.
    fn events(wire: &[u8], piece: usize) -> Vec<Event> {
        let mut counter = Counter::default();
        let mut events = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            let free = counter.free();
            let read = piece.min(free.len()).min(rest.len());
            free[..read].copy_from_slice(&rest[..read]);
            counter.end += read;
            rest = &rest[read..];
            while let Some(event) = counter.parse().unwrap() {
                events.push(event);
            }
        }
        events
    }

    #[test]
    fn messages_are_counted_however_they_are_framed_and_read() {
        let big = vec![7u8; BUFFER_SIZE * 2 + 5];
        let mut wire = frame(OpCode::Data(Data::Binary), true, &big);
        wire.extend(frame(OpCode::Data(Data::Binary), false, &big[..70_000]));
        wire.extend(frame(OpCode::Control(Control::Ping), true, b"hi"));
        wire.extend(frame(OpCode::Data(Data::Continue), false, &[]));
        wire.extend(frame(OpCode::Data(Data::Continue), true, &big[..3]));
        wire.extend(frame(OpCode::Data(Data::Text), true, b""));
        wire.extend(frame(OpCode::Control(Control::Pong), true, b""));
        wire.extend(frame(OpCode::Control(Control::Close), true, &[3, 232]));
        let expected = vec![
            Event::Message,
            Event::Ping(Bytes::from_static(b"hi")),
            Event::Message,
            Event::Message,
            Event::Close,
        ];
        for piece in [1, 2, 13, 1000, BUFFER_SIZE] {
            assert_eq!(
                events(&wire, piece),
                expected,
                "read {piece} bytes at a time"
            );
        }
    }
}
