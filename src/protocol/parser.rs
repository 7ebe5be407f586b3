//! Bytes in, events out: the receiving half of RFC 6455, every rule a
//! receiver must enforce.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::close::{CloseCode, Failure};
use super::deflate::{self, Decompressor};
use super::framer::apply_mask;
use super::message::{Binary, Text};
use super::{opcode, Limits, Role, MAX_CONTROL_PAYLOAD};

/// What the peer sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The characters of one text frame that are complete so far; a character
    /// split across frames comes with the frame that completes it.
    TextFrame {
        text: String,
        last: bool,
    },
    BinaryFrame {
        data: Bytes,
        last: bool,
    },
    Text(Text),
    Binary(Binary),
    Ping(Bytes),
    Pong(Bytes),
    /// The peer's close frame: its code and reason, or None when it had no code.
    Close(Option<(u16, String)>),
}

/// A message being put together from fragments.
struct Partial {
    text: bool,
    /// Its frames are compressed (permessage-deflate): `pieces` hold what
    /// they inflated to.
    compressed: bool,
    /// Its bytes so far, in the frames they came in (small ones gathered
    /// into pieces of [`PIECE`]): joined once, when the message is whole,
    /// so that a message never grows by copying into ever larger buffers,
    /// and one that passes its limit is refused holding no second copy.
    pieces: Vec<Bytes>,
    tail: BytesMut,
    len: usize,
    /// The start of a character that the next frame completes (text only).
    carry: Vec<u8>,
}

/// Frames under 64 KiB are gathered into pieces of this size, so that a
/// message of tiny fragments costs no bookkeeping per fragment.
const PIECE: usize = 64 << 10;

impl Partial {
    fn push(&mut self, frame: Bytes) {
        self.len += frame.len();
        if frame.len() >= PIECE {
            if !self.tail.is_empty() {
                self.pieces.push(std::mem::take(&mut self.tail).freeze());
            }
            self.pieces.push(frame);
            return;
        }
        if self.tail.is_empty() {
            self.tail.reserve(PIECE);
        }
        self.tail.extend_from_slice(&frame);
        if self.tail.len() >= PIECE {
            self.pieces.push(std::mem::take(&mut self.tail).freeze());
        }
    }

    /// The whole message, in one buffer.
    fn join(mut self) -> Bytes {
        if !self.tail.is_empty() {
            self.pieces.push(self.tail.freeze());
        }
        if self.pieces.len() == 1 {
            return self.pieces.pop().unwrap_or_default();
        }
        let mut whole = BytesMut::with_capacity(self.len);
        for piece in self.pieces.drain(..) {
            whole.extend_from_slice(&piece);
        }
        whole.freeze()
    }
}

/// Turns received bytes into [`Incoming`] events, checking every rule of
/// RFC 6455 that a receiver must enforce.
pub struct Parser {
    role: Role,
    limits: Limits,
    /// Whether data frames are reported one by one as well as whole messages.
    pub frames: bool,
    /// Received bytes that are not parsed yet.
    buffer: BytesMut,
    message: Option<Partial>,
    events: VecDeque<Incoming>,
    /// Set once the peer's close frame arrived or the peer broke the protocol:
    /// nothing after it is parsed.
    done: bool,
    /// permessage-deflate, when the handshake agreed to it: messages with
    /// RSV1 set on their first frame are inflated.
    decompressor: Option<Decompressor>,
    /// Why the connection fails, once the events before it are taken.
    failure: Option<Failure>,
    /// How much of a text frame still arriving was checked as UTF-8.
    prechecked: Option<Prechecked>,
}

/// The UTF-8 check of a text frame's payload as it arrives, so that bad
/// text fails the connection at once rather than when the frame is whole
/// (Autobahn 6.4.3, 6.4.4).
struct Prechecked {
    /// Payload bytes checked so far.
    offset: usize,
    /// The start of a character cut off by what has arrived, unmasked.
    carry: Vec<u8>,
}

/// A frame header as written, before any check.
struct RawHeader {
    fin: bool,
    reserved: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    length: u64,
    size: usize,
}

struct Header {
    fin: bool,
    /// RSV1 on a message's first frame: its payload is compressed.
    compressed: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    length: usize,
    size: usize,
}

impl Parser {
    pub fn new(role: Role, limits: Limits) -> Self {
        Parser {
            role,
            limits,
            frames: false,
            buffer: BytesMut::new(),
            message: None,
            events: VecDeque::new(),
            done: false,
            decompressor: None,
            failure: None,
            prechecked: None,
        }
    }

    /// Inflates compressed messages from now on (the handshake agreed to
    /// permessage-deflate); without it RSV1 is a protocol error.
    pub fn set_decompressor(&mut self, decompressor: Decompressor) {
        self.decompressor = Some(decompressor);
    }

    /// Applies new limits from the next frame on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Where received bytes go (read straight into it).
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// The next event, None when more bytes are needed, or the reason to
    /// fail the connection (once; nothing is parsed after it).
    ///
    /// What arrived before a broken rule still comes first: a message the
    /// peer sent whole is delivered even if the frame after it fails the
    /// connection (Autobahn 3.2).
    pub fn next_event(&mut self) -> Result<Option<Incoming>, Failure> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(Some(event));
            }
            if let Some(failure) = self.failure.take() {
                return Err(failure);
            }
            if self.done {
                return Ok(None);
            }
            match self.parse_frame() {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(failure) => self.failure = Some(failure),
            }
        }
    }

    fn fail(&mut self, code: CloseCode, message: impl Into<String>) -> Result<bool, Failure> {
        Err(self.stop(Failure::new(code, message)))
    }

    /// Stops parsing for good, for `failure`.
    fn stop(&mut self, failure: Failure) -> Failure {
        self.done = true;
        failure
    }

    /// The next frame's header as it is written, once all of it arrived.
    fn peek(&self) -> Option<RawHeader> {
        let b = &self.buffer[..];
        if b.len() < 2 {
            return None;
        }
        let (fin, reserved, opcode) = (b[0] & 0x80 != 0, b[0] & 0x70, b[0] & 0x0F);
        let (masked, short) = (b[1] & 0x80 != 0, b[1] & 0x7F);
        let (length, mut size) = match short {
            126 if b.len() < 4 => return None,
            126 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() < 10 => return None,
            127 => {
                let mut eight = [0u8; 8];
                eight.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(eight), 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            if b.len() < size + 4 {
                return None;
            }
            let mask = [b[size], b[size + 1], b[size + 2], b[size + 3]];
            size += 4;
            Some(mask)
        } else {
            None
        };
        Some(RawHeader {
            fin,
            reserved,
            opcode,
            mask,
            length,
            size,
        })
    }

    /// The next frame's header once all of it arrived, checked.
    fn header(&mut self) -> Result<Option<Header>, Failure> {
        let Some(RawHeader {
            fin,
            reserved,
            opcode,
            mask,
            length,
            size,
        }) = self.peek()
        else {
            return Ok(None);
        };
        let masked = mask.is_some();
        // RSV1 marks the first frame of a compressed message (RFC 7692 §6).
        let compressed = reserved == 0x40;
        let first_data = matches!(opcode, opcode::TEXT | opcode::BINARY);
        if compressed && self.decompressor.is_some() && !first_data {
            self.fail(
                CloseCode::PROTOCOL_ERROR,
                "protocol error: RSV1 set on a continuation or control frame",
            )?;
        }
        if reserved != 0 && !(compressed && self.decompressor.is_some()) {
            self.fail(
                CloseCode::PROTOCOL_ERROR,
                "protocol error: reserved bits set without an extension that defines them",
            )?;
        }
        if !matches!(opcode, 0x0..=0x2 | 0x8..=0xA) {
            self.fail(
                CloseCode::PROTOCOL_ERROR,
                format!("protocol error: unknown opcode {opcode:#x}"),
            )?;
        }
        if opcode >= opcode::CLOSE && !fin {
            self.fail(
                CloseCode::PROTOCOL_ERROR,
                "protocol error: fragmented control frame",
            )?;
        }
        if opcode >= opcode::CLOSE && length > MAX_CONTROL_PAYLOAD as u64 {
            self.fail(
                CloseCode::PROTOCOL_ERROR,
                "protocol error: control frame payload over 125 bytes",
            )?;
        }
        if length >> 63 != 0 {
            self.fail(
                CloseCode::PROTOCOL_ERROR,
                "protocol error: payload length with its most significant bit set",
            )?;
        }
        // §5.2: "the minimal number of bytes MUST be used to encode the length".
        let length_bytes = size - if masked { 4 } else { 0 } - 2;
        let needed = match length {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        if length_bytes != needed {
            self.fail(
                CloseCode::PROTOCOL_ERROR,
                format!("protocol error: a payload length of {length} in {length_bytes} bytes, not the minimal {needed}"),
            )?;
        }
        match (self.role, masked) {
            (Role::Server, false) => self.fail(
                CloseCode::PROTOCOL_ERROR,
                "protocol error: unmasked frame from a client",
            )?,
            (Role::Client, true) => self.fail(
                CloseCode::PROTOCOL_ERROR,
                "protocol error: masked frame from a server",
            )?,
            _ => true,
        };
        // Fail as soon as the header says so, before the payload arrives. A
        // compressed frame is held to its inflated size as it inflates; on
        // the wire it may be a little larger than that (incompressible data).
        let max_frame = self.limits.max_frame_size;
        let inflating = compressed
            || (opcode == opcode::CONTINUATION
                && self.message.as_ref().is_some_and(|m| m.compressed));
        let max_wire = if inflating {
            deflate::max_compressed_len(max_frame)
        } else {
            max_frame
        };
        if length > max_wire as u64 {
            self.fail(
                CloseCode::TOO_BIG,
                format!(
                    "frame too big: {length} bytes, over max_allowed_incoming_frame_size of {max_frame} bytes"
                ),
            )?;
        }
        let length = length as usize;
        if opcode < opcode::CLOSE {
            match (opcode, &self.message) {
                (opcode::CONTINUATION, None) => {
                    self.fail(
                        CloseCode::PROTOCOL_ERROR,
                        "protocol error: continuation frame with no message to continue",
                    )?;
                }
                (opcode::TEXT | opcode::BINARY, Some(_)) => {
                    self.fail(
                        CloseCode::PROTOCOL_ERROR,
                        "protocol error: new message before the previous one ended",
                    )?;
                }
                _ => {}
            }
            // A compressed message is held to its limit as it inflates.
            let so_far = self.message.as_ref().map_or(0, |m| m.len);
            let max_message = self.limits.max_message_size;
            if !inflating && so_far + length > max_message {
                self.fail(
                    CloseCode::TOO_BIG,
                    format!(
                        "message too big: over max_allowed_incoming_message_size of {max_message} bytes"
                    ),
                )?;
            }
        }
        Ok(Some(Header {
            fin,
            compressed,
            opcode,
            mask,
            length,
            size,
        }))
    }

    /// The length of a binary message in one frame of at least `min` bytes
    /// whose payload is still arriving, one that [`divert`](Self::divert)
    /// can hand to the caller; None otherwise.
    pub fn arriving_binary(&mut self, min: usize) -> Option<usize> {
        if self.done || self.frames || self.message.is_some() || !self.events.is_empty() {
            return None;
        }
        // The header passed its checks: next_event() returned None for
        // want of the payload (it checks each header before that).
        let header = self.peek()?;
        let length = usize::try_from(header.length).ok()?;
        let whole = header.opcode == opcode::BINARY && header.fin && header.reserved == 0;
        (whole && length >= min && self.buffer.len() < header.size + length).then_some(length)
    }

    /// Hands the payload of the [`arriving_binary`](Self::arriving_binary)
    /// message to the caller, who reads the rest of it into `dest` (exactly
    /// its length) through the returned [`Diverted`]: what arrived so far is
    /// copied there now, and the parser goes on at the next frame.
    pub fn divert(&mut self, dest: &mut [u8]) -> Option<Diverted> {
        let length = self.arriving_binary(0)?;
        let header = self.peek()?;
        if dest.len() != length {
            return None;
        }
        let arrived = &self.buffer[header.size..];
        dest[..arrived.len()].copy_from_slice(arrived);
        let mut diverted = Diverted {
            filled: 0,
            length,
            mask: header.mask,
        };
        diverted.received(dest, arrived.len());
        // The buffer was sized for the whole frame: let it go.
        self.buffer = BytesMut::new();
        Some(diverted)
    }

    /// Parses one frame if it is all there; returns whether it did.
    fn parse_frame(&mut self) -> Result<bool, Failure> {
        let Some(header) = self.header()? else {
            return Ok(false);
        };
        let total = header.size + header.length;
        let compressed = header.compressed
            || (header.opcode == opcode::CONTINUATION
                && self.message.as_ref().is_some_and(|m| m.compressed));
        if self.buffer.len() < total {
            let text = header.opcode == opcode::TEXT
                || (header.opcode == opcode::CONTINUATION
                    && self.message.as_ref().is_some_and(|m| m.text));
            if text && !compressed {
                self.precheck(&header)?;
            }
            self.buffer.reserve(total - self.buffer.len());
            return Ok(false);
        }
        self.prechecked = None;
        let mut payload = self.buffer.split_to(total);
        payload.advance(header.size);
        if let Some(mask) = header.mask {
            if header.opcode == opcode::BINARY && header.fin && !self.frames && !compressed {
                let data = payload.freeze();
                let mask = Some(mask);
                self.events
                    .push_back(Incoming::Binary(Binary { data, mask }));
                return Ok(true);
            }
            apply_mask(&mut payload, mask);
        }
        match header.opcode {
            opcode::PING => self.events.push_back(Incoming::Ping(payload.freeze())),
            opcode::PONG => self.events.push_back(Incoming::Pong(payload.freeze())),
            opcode::CLOSE => self.close(payload.freeze())?,
            opcode if compressed => {
                let inflated = self.inflate(&payload, header.fin)?;
                self.data(opcode, inflated, header.fin, true)?
            }
            opcode => self.data(opcode, payload, header.fin, false)?,
        }
        Ok(true)
    }

    /// What one frame of a compressed message inflates to, held to the
    /// frame and message limits as it inflates (a small frame may inflate
    /// to gigabytes: it is stopped at the limit, with 1009).
    fn inflate(&mut self, payload: &[u8], last: bool) -> Result<BytesMut, Failure> {
        let so_far = self.message.as_ref().map_or(0, |m| m.len);
        let limit = self
            .limits
            .max_frame_size
            .min(self.limits.max_message_size.saturating_sub(so_far));
        let Some(decompressor) = self.decompressor.as_mut() else {
            // header() lets RSV1 through only with a decompressor.
            return Err(self.stop(Failure::new(
                CloseCode::PROTOCOL_ERROR,
                "protocol error: reserved bits set without an extension that defines them",
            )));
        };
        let mut out = BytesMut::new();
        match decompressor.inflate(payload, last, &mut out, limit) {
            Ok(()) => Ok(out),
            Err(failure) if failure.code == CloseCode::TOO_BIG => {
                // Say which limit, as for a message that came uncompressed.
                let (max_frame, max_message) =
                    (self.limits.max_frame_size, self.limits.max_message_size);
                let message = if limit == max_frame
                    && max_frame < max_message.saturating_sub(so_far)
                {
                    format!("frame too big: it inflates past max_allowed_incoming_frame_size of {max_frame} bytes")
                } else {
                    format!(
                        "message too big: it inflates past max_allowed_incoming_message_size of {max_message} bytes"
                    )
                };
                Err(self.stop(Failure::new(CloseCode::TOO_BIG, message)))
            }
            Err(failure) => Err(self.stop(failure)),
        }
    }

    /// Checks as UTF-8 what arrived of a text frame's payload since the
    /// last look; fails with 1007 at the first byte that cannot be text.
    fn precheck(&mut self, header: &Header) -> Result<(), Failure> {
        let arrived = &self.buffer[header.size..];
        let state = self.prechecked.get_or_insert_with(|| Prechecked {
            offset: 0,
            // The end of the previous frame may hold the start of a character.
            carry: self
                .message
                .as_ref()
                .map(|m| m.carry.clone())
                .unwrap_or_default(),
        });
        if arrived.len() <= state.offset {
            return Ok(());
        }
        let mut bytes = std::mem::take(&mut state.carry);
        let start = bytes.len();
        bytes.extend_from_slice(&arrived[state.offset..]);
        if let Some(mask) = header.mask {
            // The key continues where the checked bytes stopped.
            let phase = state.offset % 4;
            let mask = std::array::from_fn(|i| mask[(phase + i) % 4]);
            apply_mask(&mut bytes[start..], mask);
        }
        state.offset = arrived.len();
        match std::str::from_utf8(&bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => self
                .fail(
                    CloseCode::INVALID_PAYLOAD,
                    "invalid UTF-8 in a text message",
                )
                .map(drop),
            Err(e) => {
                state.carry = bytes[e.valid_up_to()..].to_vec();
                Ok(())
            }
        }
    }

    fn close(&mut self, payload: Bytes) -> Result<(), Failure> {
        let frame = match payload.len() {
            0 => None,
            1 => {
                return self
                    .fail(
                        CloseCode::PROTOCOL_ERROR,
                        "protocol error: close frame with a one-byte payload",
                    )
                    .map(drop)
            }
            _ => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                if !CloseCode(code).is_receivable() {
                    return self
                        .fail(
                            CloseCode::PROTOCOL_ERROR,
                            format!("protocol error: invalid close code {code}"),
                        )
                        .map(drop);
                }
                match std::str::from_utf8(&payload[2..]) {
                    Ok(reason) => Some((code, reason.to_string())),
                    Err(_) => {
                        return self
                            .fail(
                                CloseCode::INVALID_PAYLOAD,
                                "invalid UTF-8 in the close reason",
                            )
                            .map(drop)
                    }
                }
            }
        };
        self.done = true;
        self.events.push_back(Incoming::Close(frame));
        Ok(())
    }

    fn data(
        &mut self,
        opcode: u8,
        payload: BytesMut,
        fin: bool,
        compressed: bool,
    ) -> Result<(), Failure> {
        let text = match opcode {
            opcode::TEXT => true,
            opcode::BINARY => false,
            _ => self.message.as_ref().is_some_and(|m| m.text),
        };
        if opcode != opcode::CONTINUATION && fin && !self.frames {
            // A whole message in one frame: no copy.
            let payload = payload.freeze();
            let event = if text {
                match Text::checked(payload) {
                    Ok(text) => Incoming::Text(text),
                    Err(_) => {
                        return self
                            .fail(
                                CloseCode::INVALID_PAYLOAD,
                                "invalid UTF-8 in a text message",
                            )
                            .map(drop)
                    }
                }
            } else {
                Incoming::Binary(payload.into())
            };
            self.events.push_back(event);
            return Ok(());
        }
        let frame = payload.freeze();
        let partial = self.message.get_or_insert_with(|| Partial {
            text,
            compressed,
            pieces: Vec::new(),
            tail: BytesMut::new(),
            len: 0,
            carry: Vec::new(),
        });
        // Checked frame by frame, so that bad UTF-8 fails the connection
        // before the rest of the message arrives; `checked` is the text this
        // frame completes.
        let mut checked = String::new();
        if text {
            let joined;
            let bytes: &[u8] = if partial.carry.is_empty() {
                &frame
            } else {
                joined = [&partial.carry[..], &frame[..]].concat();
                &joined
            };
            let valid = match std::str::from_utf8(bytes) {
                Ok(_) => bytes.len(),
                Err(e) if e.error_len().is_some() => {
                    return self
                        .fail(
                            CloseCode::INVALID_PAYLOAD,
                            "invalid UTF-8 in a text message",
                        )
                        .map(drop)
                }
                Err(e) => e.valid_up_to(),
            };
            if self.frames {
                // SAFETY: from_utf8 passed the bytes up to `valid`.
                checked = unsafe { std::str::from_utf8_unchecked(&bytes[..valid]) }.to_string();
            }
            partial.carry = bytes[valid..].to_vec();
            if fin && !partial.carry.is_empty() {
                return self
                    .fail(
                        CloseCode::INVALID_PAYLOAD,
                        "invalid UTF-8: a text message ends inside a character",
                    )
                    .map(drop);
            }
        }
        partial.push(frame.clone());
        if self.frames {
            let event = if text {
                Incoming::TextFrame {
                    text: checked,
                    last: fin,
                }
            } else {
                Incoming::BinaryFrame {
                    data: frame,
                    last: fin,
                }
            };
            self.events.push_back(event);
        }
        if fin {
            if let Some(partial) = self.message.take() {
                let text = partial.text;
                let data = partial.join();
                let event = if text {
                    // SAFETY: every frame of it passed from_utf8 above, and
                    // it does not end inside a character.
                    Incoming::Text(Text(data))
                } else {
                    Incoming::Binary(data.into())
                };
                self.events.push_back(event);
            }
        }
        Ok(())
    }
}

/// The payload of a binary message the caller reads itself, straight into
/// its own buffer (see [`Parser::divert`]); unmasked as it arrives.
#[derive(Debug)]
pub struct Diverted {
    filled: usize,
    length: usize,
    mask: Option<[u8; 4]>,
}

impl Diverted {
    /// Where the next bytes of the payload go.
    pub fn rest<'a>(&self, dest: &'a mut [u8]) -> &'a mut [u8] {
        &mut dest[self.filled..self.length]
    }

    /// Takes `count` bytes just written at the start of [`rest`](Self::rest);
    /// returns whether the payload is complete.
    pub fn received(&mut self, dest: &mut [u8], count: usize) -> bool {
        let start = self.filled;
        self.filled += count;
        if let Some(mask) = self.mask {
            // The key continues where the last chunk stopped.
            let mask = std::array::from_fn(|i| mask[(start + i) % 4]);
            apply_mask(&mut dest[start..self.filled], mask);
        }
        self.filled == self.length
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Chunk, Framer};

    const LIMITS: Limits = Limits {
        max_frame_size: 1 << 20,
        max_message_size: 2 << 20,
    };

    /// Frames `payload` as a client would (masked), for a server-side parser.
    fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        Framer::new(Role::Client).frame(&mut out, opcode, fin, payload);
        out
    }

    fn server(bytes: &[u8]) -> Parser {
        let mut parser = Parser::new(Role::Server, LIMITS);
        parser.buffer().extend_from_slice(bytes);
        parser
    }

    fn events(parser: &mut Parser) -> Result<Vec<Incoming>, Failure> {
        let mut all = Vec::new();
        while let Some(event) = parser.next_event()? {
            all.push(event);
        }
        Ok(all)
    }

    fn failure_code(bytes: &[u8]) -> u16 {
        events(&mut server(bytes)).unwrap_err().code.0
    }

    #[test]
    fn lengths_round_trip_in_every_encoding() {
        for size in [0, 125, 126, 65535, 65536, 100_000] {
            let payload = vec![7u8; size];
            let frame = client_frame(opcode::BINARY, true, &payload);
            let header = frame.len() - size - 4;
            assert_eq!(
                header,
                if size < 126 {
                    2
                } else if size < 65536 {
                    4
                } else {
                    10
                }
            );
            let got = events(&mut server(&frame)).unwrap();
            assert_eq!(got, vec![Incoming::Binary(Bytes::from(payload).into())]);
        }
    }

    #[test]
    fn a_frame_split_anywhere_parses_the_same() {
        let frame = client_frame(opcode::TEXT, true, "héllo".as_bytes());
        for cut in 0..frame.len() {
            let mut parser = server(&frame[..cut]);
            assert_eq!(events(&mut parser).unwrap(), vec![]);
            parser.buffer().extend_from_slice(&frame[cut..]);
            assert_eq!(
                events(&mut parser).unwrap(),
                vec![Incoming::Text("héllo".into())]
            );
        }
    }

    #[test]
    fn masking_is_enforced_both_ways() {
        let mut unmasked = BytesMut::new();
        Framer::new(Role::Server).frame(&mut unmasked, opcode::TEXT, true, b"hi");
        assert_eq!(failure_code(&unmasked), 1002);
        let mut client = Parser::new(Role::Client, LIMITS);
        client
            .buffer()
            .extend_from_slice(&client_frame(opcode::TEXT, true, b"hi"));
        assert_eq!(events(&mut client).unwrap_err().code.0, 1002);
    }

    #[test]
    fn fragments_make_one_message_with_control_frames_between() {
        let mut bytes = client_frame(opcode::TEXT, false, b"he");
        bytes.extend(client_frame(opcode::PING, true, b"p"));
        bytes.extend(client_frame(opcode::CONTINUATION, false, b"ll"));
        bytes.extend(client_frame(opcode::CONTINUATION, true, b"o"));
        let got = events(&mut server(&bytes)).unwrap();
        assert_eq!(
            got,
            vec![
                Incoming::Ping(Bytes::from_static(b"p")),
                Incoming::Text("hello".into())
            ]
        );
    }

    #[test]
    fn a_character_split_across_fragments_is_whole() {
        let euro = "€".as_bytes();
        let mut bytes = client_frame(opcode::TEXT, false, &euro[..1]);
        bytes.extend(client_frame(opcode::CONTINUATION, true, &euro[1..]));
        let mut parser = server(&bytes);
        parser.frames = true;
        let got = events(&mut parser).unwrap();
        assert_eq!(
            got,
            vec![
                Incoming::TextFrame {
                    text: String::new(),
                    last: false
                },
                Incoming::TextFrame {
                    text: "€".into(),
                    last: true
                },
                Incoming::Text("€".into()),
            ]
        );
    }

    #[test]
    fn fragmentation_rules() {
        assert_eq!(
            failure_code(&client_frame(opcode::CONTINUATION, true, b"x")),
            1002
        );
        let mut bytes = client_frame(opcode::TEXT, false, b"a");
        bytes.extend(client_frame(opcode::TEXT, true, b"b"));
        assert_eq!(failure_code(&bytes), 1002);
        assert_eq!(failure_code(&client_frame(opcode::PING, false, b"")), 1002);
    }

    #[test]
    fn reserved_bits_and_opcodes_fail_with_1002() {
        for rsv in [0x40, 0x20, 0x10] {
            let mut frame = client_frame(opcode::TEXT, true, b"x");
            frame[0] |= rsv;
            assert_eq!(failure_code(&frame), 1002);
        }
        for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(failure_code(&client_frame(op, true, b"")), 1002);
        }
    }

    #[test]
    fn a_length_in_a_longer_form_than_needed_fails_with_1002() {
        // An unmasked server frame of 5 bytes, its length in the 2- and
        // 8-byte forms, then 200 bytes in the 8-byte form.
        let mut two = vec![0x82, 126, 0, 5];
        two.extend_from_slice(b"hello");
        let mut eight = vec![0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5];
        eight.extend_from_slice(b"hello");
        let mut long = vec![0x82, 127, 0, 0, 0, 0, 0, 0, 0, 200];
        long.extend_from_slice(&[0; 200]);
        for bytes in [two, eight, long] {
            let mut parser = Parser::new(Role::Client, LIMITS);
            parser.buffer().extend_from_slice(&bytes);
            assert_eq!(events(&mut parser).unwrap_err().code.0, 1002);
        }
        // The boundaries in their minimal forms still pass, masked too.
        for size in [125, 126, 65535, 65536] {
            assert!(events(&mut server(&client_frame(
                opcode::BINARY,
                true,
                &vec![1; size]
            )))
            .is_ok());
        }
    }

    #[test]
    fn control_frames_over_125_bytes_fail() {
        assert!(events(&mut server(&client_frame(opcode::PING, true, &[0; 125]))).is_ok());
        assert_eq!(
            failure_code(&client_frame(opcode::PING, true, &[0; 126])),
            1002
        );
    }

    #[test]
    fn invalid_utf8_fails_fast_with_1007() {
        assert_eq!(
            failure_code(&client_frame(opcode::TEXT, true, b"\xff")),
            1007
        );
        // The first fragment is enough to know.
        assert_eq!(
            failure_code(&client_frame(opcode::TEXT, false, b"\xce\xba\xed\xa0\x80")),
            1007
        );
        assert_eq!(
            failure_code(&client_frame(opcode::TEXT, true, b"\xe2\x82")),
            1007
        );
    }

    #[test]
    fn invalid_utf8_fails_before_the_frame_is_whole() {
        let payload = [b"hello".as_slice(), b"\xff", b"world"].concat();
        let frame = client_frame(opcode::TEXT, true, &payload);
        let header = frame.len() - payload.len();
        // Cut anywhere before the bad byte, then the bad byte: the failure
        // comes at once, not when "world" arrives.
        for cut in header..header + 5 {
            let mut parser = server(&frame[..cut]);
            assert_eq!(parser.next_event(), Ok(None));
            parser.buffer().extend_from_slice(&frame[cut..header + 6]);
            let failure = parser.next_event().unwrap_err();
            assert_eq!(failure.code, CloseCode::INVALID_PAYLOAD);
        }
    }

    #[test]
    fn a_character_cut_by_a_frame_still_arriving_is_not_a_failure() {
        let first = client_frame(opcode::TEXT, false, "aé".as_bytes()[..2].as_ref());
        let second = client_frame(opcode::CONTINUATION, true, &"aé€".as_bytes()[2..]);
        let mut wire = first.to_vec();
        wire.extend_from_slice(&second);
        for cut in 0..wire.len() {
            let mut parser = server(&wire[..cut]);
            assert_eq!(events(&mut parser).unwrap(), vec![], "cut at {cut}");
            parser.buffer().extend_from_slice(&wire[cut..]);
            assert_eq!(
                events(&mut parser).unwrap(),
                vec![Incoming::Text("aé€".into())]
            );
        }
    }

    #[test]
    fn a_message_before_a_broken_rule_is_still_delivered() {
        let mut wire = client_frame(opcode::TEXT, true, b"first").to_vec();
        let mut bad = client_frame(opcode::TEXT, true, b"x");
        bad[0] |= 0x20; // RSV2
        wire.extend_from_slice(&bad);
        let mut parser = server(&wire);
        assert_eq!(
            parser.next_event(),
            Ok(Some(Incoming::Text("first".into())))
        );
        assert_eq!(
            parser.next_event().unwrap_err().code,
            CloseCode::PROTOCOL_ERROR
        );
        assert_eq!(parser.next_event(), Ok(None), "nothing after the failure");
    }

    #[test]
    fn limits_fail_from_the_header_with_1009() {
        let mut parser = Parser::new(
            Role::Server,
            Limits {
                max_frame_size: 10,
                max_message_size: 15,
            },
        );
        let frame = client_frame(opcode::BINARY, true, &[0; 11]);
        parser.buffer().extend_from_slice(&frame[..6]);
        let failure = events(&mut parser).unwrap_err();
        assert_eq!(failure.code, CloseCode::TOO_BIG);
        assert!(failure.message.contains("max_allowed_incoming_frame_size"));
        let mut parser = Parser::new(
            Role::Server,
            Limits {
                max_frame_size: 10,
                max_message_size: 15,
            },
        );
        parser
            .buffer()
            .extend(client_frame(opcode::BINARY, false, &[0; 10]));
        parser
            .buffer()
            .extend(client_frame(opcode::CONTINUATION, true, &[0; 10]));
        let failure = events(&mut parser).unwrap_err();
        assert!(failure
            .message
            .contains("max_allowed_incoming_message_size"));
    }

    #[test]
    fn close_frames() {
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice("bye".as_bytes());
        let got = events(&mut server(&client_frame(opcode::CLOSE, true, &payload))).unwrap();
        assert_eq!(got, vec![Incoming::Close(Some((4000, "bye".into())))]);
        let got = events(&mut server(&client_frame(opcode::CLOSE, true, b""))).unwrap();
        assert_eq!(got, vec![Incoming::Close(None)]);
        assert_eq!(
            failure_code(&client_frame(opcode::CLOSE, true, b"\x03")),
            1002
        );
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert_eq!(
                failure_code(&client_frame(opcode::CLOSE, true, &code.to_be_bytes())),
                1002
            );
        }
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.push(0xff);
        assert_eq!(
            failure_code(&client_frame(opcode::CLOSE, true, &bad_reason)),
            1007
        );
    }

    #[test]
    fn nothing_after_the_close_frame_is_parsed() {
        let mut bytes = client_frame(opcode::CLOSE, true, b"");
        bytes.extend(client_frame(opcode::TEXT, true, b"late"));
        assert_eq!(
            events(&mut server(&bytes)).unwrap(),
            vec![Incoming::Close(None)]
        );
    }

    #[test]
    fn messages_are_split_into_frames_of_the_given_size() {
        let mut out = BytesMut::new();
        Framer::new(Role::Client).message(&mut out, true, b"abcdefg", 3);
        let mut parser = server(&out);
        parser.frames = true;
        let got = events(&mut parser).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], Incoming::Text("abcdefg".into()));
    }

    #[test]
    fn large_messages_as_chunks_parse_like_the_copied_frames() {
        let payload: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        for role in [Role::Client, Role::Server] {
            let chunks =
                Framer::new(role).message_chunks(false, Bytes::from(payload.clone()), 30_000);
            assert_eq!(
                chunks.len(),
                8,
                "four frames, each a header and a payload slice"
            );
            let wire: Vec<u8> = chunks.into_iter().flat_map(Chunk::into_plain).collect();
            let peer = if role == Role::Client {
                Role::Server
            } else {
                Role::Client
            };
            let mut parser = Parser::new(peer, LIMITS);
            parser.buffer().extend_from_slice(&wire);
            assert_eq!(
                events(&mut parser).unwrap(),
                vec![Incoming::Binary(Bytes::from(payload.clone()).into())]
            );
        }
    }

    #[test]
    fn a_large_payload_masked_piece_by_piece_as_written_parses_whole() {
        let payload = Bytes::from((0..600_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
        let chunks = Framer::new(Role::Client).message_chunks(false, payload.clone(), 200_000);
        assert!(chunks[1].mask.is_some(), "masked as it is written");
        // As a writer goes: pieces of odd sizes, each masked from a key that
        // turned with what was written before it.
        let mut wire = Vec::new();
        for mut chunk in chunks.clone() {
            for step in [1, 3, 5, 4093, 8191].into_iter().cycle() {
                if chunk.is_empty() {
                    break;
                }
                let step = step.min(chunk.len());
                chunk.mask_into(0, step, &mut wire);
                chunk.advance(step);
            }
        }
        let mut parser = Parser::new(Role::Server, LIMITS);
        parser.buffer().extend_from_slice(&wire);
        assert_eq!(
            events(&mut parser).unwrap(),
            vec![Incoming::Binary(payload.clone().into())]
        );
        // From an offset, as a writer whose buffer took part of a chunk.
        let mask = chunks[1].mask.unwrap();
        let mut tail = Vec::new();
        chunks[1].mask_into(4_099, 10_000, &mut tail);
        let expected: Vec<u8> = (4_099..14_099).map(|i| payload[i] ^ mask[i % 4]).collect();
        assert_eq!(tail, expected);
        assert_eq!(payload[1], 7, "the caller's payload is never written into");
    }

    #[test]
    fn mask_matches_the_bytewise_definition() {
        let mask = [1, 2, 3, 4];
        let mut data: Vec<u8> = (0..37).collect();
        apply_mask(&mut data, mask);
        let expected: Vec<u8> = (0..37u8).map(|i| i ^ mask[usize::from(i) % 4]).collect();
        assert_eq!(data, expected);
        let data: Bytes = (0..37).collect();
        let masked = Binary {
            data,
            mask: Some(mask),
        };
        assert_eq!(masked.to_vec(), expected);
    }

    #[test]
    fn a_clients_binary_message_in_one_frame_is_unmasked_by_its_copy() {
        let payload: Vec<u8> = (0..=255).cycle().take(70_000).collect();
        let mut parser = server(&client_frame(opcode::BINARY, true, &payload));
        let Ok(Some(Incoming::Binary(message))) = parser.next_event() else {
            panic!("a binary message");
        };
        assert!(message.mask.is_some(), "left masked for the copy");
        assert_eq!(message.to_vec(), payload);
    }

    /// Feeds `wire` to a parser of `role` in reads of `step` bytes, diverting
    /// binary messages of at least `min` bytes into their own buffers once
    /// `after` bytes of them arrived; returns every message, diverted or not.
    fn receive_diverting(
        role: Role,
        wire: &[u8],
        step: usize,
        min: usize,
        after: usize,
    ) -> Vec<Vec<u8>> {
        let mut parser = Parser::new(role, LIMITS);
        let mut messages = Vec::new();
        let mut diverted: Option<(Vec<u8>, Diverted)> = None;
        let mut at = 0;
        while at < wire.len() {
            let end = (at + step).min(wire.len());
            if let Some((dest, d)) = &mut diverted {
                let rest = d.rest(dest);
                let count = rest.len().min(end - at);
                rest[..count].copy_from_slice(&wire[at..at + count]);
                at += count;
                if d.received(dest, count) {
                    messages.push(diverted.take().unwrap().0);
                }
                continue;
            }
            parser.buffer().extend_from_slice(&wire[at..end]);
            at = end;
            while let Some(event) = parser.next_event().unwrap() {
                if let Incoming::Binary(b) = event {
                    messages.push(b.to_vec());
                }
            }
            if let Some(length) = parser.arriving_binary(min) {
                if parser.buffer().len() >= after {
                    let mut dest = vec![0; length];
                    let d = parser.divert(&mut dest).expect("a message to divert");
                    diverted = Some((dest, d));
                }
            }
        }
        assert!(diverted.is_none(), "every diverted message completed");
        messages
    }

    #[test]
    fn a_large_binary_message_can_be_read_into_its_own_buffer() {
        let big: Vec<u8> = (0..=255).cycle().take(100_003).collect();
        let small = b"after".to_vec();
        for (role, frame) in [
            (
                Role::Server,
                client_frame as fn(u8, bool, &[u8]) -> BytesMut,
            ),
            (Role::Client, |op, fin, p: &[u8]| {
                let mut out = BytesMut::new();
                Framer::new(Role::Server).frame(&mut out, op, fin, p);
                out
            }),
        ] {
            let mut wire = frame(opcode::BINARY, true, &big).to_vec();
            wire.extend_from_slice(&frame(opcode::BINARY, true, &small));
            wire.extend_from_slice(&frame(opcode::BINARY, true, &big));
            // Odd read sizes cut the payload anywhere, the mask key mid-word.
            for step in [1_000, 4_097, 65_536, 300_000] {
                for after in [0, 5_000] {
                    let got = receive_diverting(role, &wire, step, 50_000, after);
                    assert_eq!(got.len(), 3, "{role:?} step {step}");
                    assert!(
                        got[0] == big && got[1] == small && got[2] == big,
                        "{role:?} step {step}"
                    );
                }
            }
        }
    }

    #[test]
    fn only_whole_binary_messages_large_enough_are_diverted() {
        let big: Vec<u8> = vec![7; 60_000];
        let partial = |wire: BytesMut| {
            let mut parser = server(&wire[..wire.len() - 1]);
            assert!(parser.next_event().unwrap().is_none());
            parser
        };
        assert_eq!(
            partial(client_frame(opcode::BINARY, true, &big)).arriving_binary(50_000),
            Some(60_000)
        );
        assert_eq!(
            partial(client_frame(opcode::BINARY, true, &big)).arriving_binary(60_001),
            None
        );
        assert_eq!(
            partial(client_frame(opcode::TEXT, true, &big)).arriving_binary(0),
            None
        );
        assert_eq!(
            partial(client_frame(opcode::BINARY, false, &big)).arriving_binary(0),
            None
        );
        let mut frames = partial(client_frame(opcode::BINARY, true, &big));
        frames.frames = true;
        assert_eq!(
            frames.arriving_binary(0),
            None,
            "frames are reported one by one"
        );
        let whole = client_frame(opcode::BINARY, true, &big);
        assert_eq!(
            server(&whole).arriving_binary(0),
            None,
            "all of it is there"
        );
    }
}
