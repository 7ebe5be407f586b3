//! Messages read from their frames, past tungstenite's reading.
//!
//! tungstenite reads each message into memory and joins one sent in several
//! frames by growing a vector. wsbind follows Qt in sending 512 KiB frames,
//! and the reallocations and copies of that join were a sixth of the native
//! peer's time on a 16 MiB message, with the peer the bottleneck; against a
//! library that sends one frame they cost nothing, so the rows measured the
//! peer's handling of framing. Here frames pass through a buffer small
//! enough to stay in the CPU's cache: the MB/s client only counts messages
//! and drops the payloads, and the echo server keeps each frame's payload as
//! one part of its message and echoes the parts without joining them
//! (`direct.rs`), so a message costs the peer the same however it is framed.

use std::io::{self, Cursor};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::Bytes;

use crate::direct::extend_masked;

/// What one read asks the socket for.
const BUFFER_SIZE: usize = 256 << 10;

/// The most a frame's header makes the reader set aside for its payload.
const MAX_RESERVE: u64 = 64 << 20;

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The last frame of a data message has been read: the message's kind
    /// and, if the reader keeps them, its frames' payloads, unmasked.
    Message(Data, Vec<Bytes>),
    /// A ping, with its payload for the pong.
    Ping(Bytes),
    /// A close frame, with its payload for the answer.
    Close(Bytes),
}

pub struct Reader {
    /// Whether payloads are kept, or only messages counted.
    keep: bool,
    buffer: Box<[u8]>,
    /// The bytes read and not parsed yet: `buffer[start..end]`.
    start: usize,
    end: usize,
    /// Payload bytes of the current data frame still to come.
    remaining: u64,
    /// That frame's mask, and whether it ends its message.
    mask: Option<[u8; 4]>,
    last: bool,
    /// The payload read so far of that frame, and of the message's earlier ones.
    payload: Vec<u8>,
    parts: Vec<Bytes>,
    /// The message's kind, from its first frame.
    kind: Data,
    /// Messages whose first frame had RSV1 set: compressed with
    /// permessage-deflate, which the broadcast sink counts without inflating.
    pub compressed: u64,
}

impl Reader {
    /// A reader that counts messages and drops their payloads.
    pub fn counting() -> Self {
        Self::new(false)
    }

    /// A reader that hands each message's payloads over.
    pub fn keeping() -> Self {
        Self::new(true)
    }

    fn new(keep: bool) -> Self {
        Reader {
            keep,
            buffer: vec![0; BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
            remaining: 0,
            mask: None,
            last: false,
            payload: Vec::new(),
            parts: Vec::new(),
            kind: Data::Binary,
            compressed: 0,
        }
    }

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
            if self.remaining > 0 {
                let step = self.remaining.min((self.end - self.start) as u64) as usize;
                if self.keep {
                    let offset = self.payload.len();
                    let bytes = &self.buffer[self.start..self.start + step];
                    extend_masked(&mut self.payload, bytes, self.mask, offset);
                }
                self.start += step;
                self.remaining -= step as u64;
                if self.remaining > 0 {
                    return Ok(None);
                }
            }
            if self.keep && !self.payload.is_empty() {
                self.parts.push(std::mem::take(&mut self.payload).into());
            }
            if std::mem::take(&mut self.last) {
                let parts = std::mem::take(&mut self.parts);
                return Ok(Some(Event::Message(self.kind, parts)));
            }
            let mut cursor = Cursor::new(&self.buffer[self.start..self.end]);
            let parsed = FrameHeader::parse(&mut cursor).map_err(io::Error::other)?;
            let Some((header, length)) = parsed else {
                return Ok(None);
            };
            let head = cursor.position() as usize;
            match header.opcode {
                OpCode::Data(kind) => {
                    if kind != Data::Continue {
                        self.kind = kind;
                        self.compressed += u64::from(header.rsv1);
                    }
                    self.start += head;
                    self.remaining = length;
                    self.mask = header.mask;
                    self.last = header.is_final;
                    if self.keep {
                        // Its own length, up to a bound against a broken header.
                        self.payload.reserve_exact(length.min(MAX_RESERVE) as usize);
                    }
                }
                OpCode::Control(control) => {
                    if length > 125 {
                        return Err(io::Error::other("a control frame over 125 bytes"));
                    }
                    let end = self.start + head + length as usize;
                    if end > self.end {
                        return Ok(None);
                    }
                    let mut payload = Vec::new();
                    let bytes = &self.buffer[self.start + head..end];
                    extend_masked(&mut payload, bytes, header.mask, 0);
                    self.start = end;
                    match control {
                        Control::Ping => return Ok(Some(Event::Ping(payload.into()))),
                        Control::Close => return Ok(Some(Event::Close(payload.into()))),
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

    fn frame(opcode: OpCode, last: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader {
            is_final: last,
            opcode,
            mask,
            ..FrameHeader::default()
        };
        let mut bytes = Vec::new();
        header.format(payload.len() as u64, &mut bytes).unwrap();
        extend_masked(&mut bytes, payload, mask, 0);
        bytes
    }

    /// Feeds `wire` in pieces of `piece` bytes, collecting the events.
    fn events(mut reader: Reader, wire: &[u8], piece: usize) -> Vec<Event> {
        let mut events = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            let free = reader.free();
            let read = piece.min(free.len()).min(rest.len());
            free[..read].copy_from_slice(&rest[..read]);
            reader.end += read;
            rest = &rest[read..];
            while let Some(event) = reader.parse().unwrap() {
                events.push(event);
            }
        }
        events
    }

    #[test]
    fn messages_are_read_however_they_are_framed_and_read() {
        let big: Vec<u8> = (0..BUFFER_SIZE * 2 + 5).map(|i| (i * 7) as u8).collect();
        let key = Some([1, 2, 3, 4]);
        let binary = OpCode::Data(Data::Binary);
        let more = OpCode::Data(Data::Continue);
        let mut wire = frame(binary, true, key, &big);
        wire.extend(frame(binary, false, None, &big[..70_000]));
        wire.extend(frame(OpCode::Control(Control::Ping), true, key, b"hi"));
        wire.extend(frame(more, false, key, &[]));
        wire.extend(frame(more, true, key, &big[70_000..70_003]));
        wire.extend(frame(OpCode::Data(Data::Text), true, None, b""));
        wire.extend(frame(OpCode::Control(Control::Pong), true, None, b""));
        wire.extend(frame(OpCode::Control(Control::Close), true, key, &[3, 232]));
        let kept = |parts: &[&[u8]]| parts.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        let ping = Event::Ping(Bytes::from_static(b"hi"));
        let close = Event::Close(Bytes::from_static(&[3, 232]));
        let keeping = vec![
            Event::Message(Data::Binary, kept(&[&big])),
            ping.clone(),
            Event::Message(Data::Binary, kept(&[&big[..70_000], &big[70_000..70_003]])),
            Event::Message(Data::Text, vec![]),
            close.clone(),
        ];
        let counting = vec![
            Event::Message(Data::Binary, vec![]),
            ping,
            Event::Message(Data::Binary, vec![]),
            Event::Message(Data::Text, vec![]),
            close,
        ];
        for piece in [1, 2, 13, 1000, BUFFER_SIZE] {
            let got = events(Reader::keeping(), &wire, piece);
            assert_eq!(got, keeping, "kept, read {piece} bytes at a time");
            let got = events(Reader::counting(), &wire, piece);
            assert_eq!(got, counting, "counted, read {piece} bytes at a time");
        }
    }

    /// What the echo server writes from the parts of a message reads back,
    /// over a real socket, as the message.
    #[tokio::test]
    async fn parts_echoed_from_a_fragmented_message_read_back_as_one() {
        use crate::direct::Frames;
        use futures_util::future::poll_fn;
        use tokio::net::TcpListener;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(address), listener.accept());
        let (mut client, (mut server, _)) = (client.unwrap(), server.unwrap());
        let message: Vec<u8> = (0..300_000).map(|i| (i * 13) as u8).collect();
        let parts = [
            &message[..70_000],
            &message[70_000..70_001],
            &message[70_001..],
        ];
        let mut frames = Frames::default();
        frames.push_parts(Data::Binary, parts.map(Bytes::copy_from_slice).to_vec());
        frames.push_parts(Data::Text, vec![]);
        let mut reader = Reader::keeping();
        let reading = async {
            let first = poll_fn(|cx| reader.poll_next(&mut client, cx)).await;
            (first, poll_fn(|cx| reader.poll_next(&mut client, cx)).await)
        };
        let writing = poll_fn(|cx| frames.drain(&mut server, cx));
        let (written, (first, second)) = tokio::join!(writing, reading);
        written.unwrap();
        let Event::Message(Data::Binary, parts) = first.unwrap() else {
            panic!("not a binary message");
        };
        assert_eq!(parts.concat(), message);
        assert_eq!(second.unwrap(), Event::Message(Data::Text, vec![]));
    }
}
