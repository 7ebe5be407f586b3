//! Messages in, frames out: the sending half of RFC 6455, and masking.

use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{opcode, Role, MAX_CONTROL_PAYLOAD};

/// Messages smaller than this are framed by copying them, which costs less
/// than handing the writer several pieces.
const COPY_BELOW: usize = 8 << 10;

/// XORs `data` with the masking key (§5.3), in place.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let out = data.as_mut_ptr();
    // SAFETY: reads and writes stay within `data`, each word read before it
    // is written, through the one pointer.
    unsafe { mask_words(out, out, data.len(), mask) };
}

/// Copies `src` to `out` masked with `mask` (§5.3), from its first byte:
/// masking and copying in one pass, into memory that need not be
/// initialized.
///
/// # Safety
///
/// `out` must be valid for `src.len()` bytes of writes, apart from `src`.
pub(super) unsafe fn copy_masked(src: &[u8], out: *mut u8, mask: [u8; 4]) {
    // SAFETY: src is valid for its length; the caller vouches for out.
    unsafe { mask_words(src.as_ptr(), out, src.len(), mask) };
}

/// The masking loop of [`apply_mask`] and [`copy_masked`], eight bytes at a
/// time; `src` and `out` are either the same or apart.
///
/// # Safety
///
/// `src` valid for `len` bytes of reads, `out` for `len` bytes of writes.
unsafe fn mask_words(src: *const u8, out: *mut u8, len: usize, mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let words = len / 8 * 8;
    let mut at = 0;
    while at < words {
        // SAFETY: at + 8 <= len, within both.
        unsafe {
            let word = src.add(at).cast::<u64>().read_unaligned();
            out.add(at).cast::<u64>().write_unaligned(word ^ wide);
        }
        at += 8;
    }
    for (i, key) in mask.iter().cycle().take(len - words).enumerate() {
        // SAFETY: words + i < len, within both.
        unsafe { out.add(words + i).write(*src.add(words + i) ^ key) };
    }
}

/// A piece of a message's frames on its way to the socket: bytes to write
/// as they are, or a slice of a client's payload with the key it is still to
/// be masked with.
///
/// A client masks a payload as it writes it, into a small buffer that stays
/// in cache (the writer's, a piece at a time, or the sending thread's),
/// instead of into a masked copy of the whole message: for a 16 MiB message
/// the copy cost 16 MiB more memory, a pass through it, and the sending
/// thread's time. Only a message under [`MASK_AT_WRITE_FROM`](super::MASK_AT_WRITE_FROM) that is handed
/// to the I/O thread is masked into a copy first. The caller's object is
/// never written into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub bytes: Bytes,
    /// The key for the first of `bytes`; None when they go out as they are.
    pub mask: Option<[u8; 4]>,
}

impl Chunk {
    pub fn plain(bytes: Bytes) -> Self {
        Chunk { bytes, mask: None }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Drops the first `count` bytes, written; the key turns with them, so
    /// that it stays in phase with what is left.
    pub fn advance(&mut self, count: usize) {
        self.bytes.advance(count);
        if let Some(mask) = &mut self.mask {
            mask.rotate_left(count % 4);
        }
    }

    /// Appends `count` bytes from `from` on to `out`, masked if they are to be.
    pub fn mask_into(&self, from: usize, count: usize, out: &mut Vec<u8>) {
        let src = &self.bytes[from..from + count];
        let Some(mut mask) = self.mask else {
            return out.extend_from_slice(src);
        };
        mask.rotate_left(from % 4);
        out.reserve(count);
        let len = out.len();
        // SAFETY: `reserve` made room for `count` bytes past `len`, apart
        // from `src`; all of them are written before the length covers them.
        unsafe {
            copy_masked(src, out.as_mut_ptr().add(len), mask);
            out.set_len(len + count);
        }
    }

    /// The bytes as they go out: a masked copy if they are to be masked.
    pub fn into_plain(self) -> Bytes {
        if self.mask.is_none() {
            return self.bytes;
        }
        let mut out = Vec::new();
        self.mask_into(0, self.len(), &mut out);
        Bytes::from(out)
    }
}

/// Appends to `masked` the masked bytes of the chunks that are to be masked,
/// from the start of each, in order, until it holds `limit` bytes: what one
/// write of `chunks` takes through a buffer that stays in cache.
pub fn mask_ahead<'a>(
    chunks: impl IntoIterator<Item = &'a Chunk>,
    masked: &mut Vec<u8>,
    limit: usize,
) {
    for chunk in chunks {
        let room = limit.saturating_sub(masked.len());
        if room == 0 {
            break;
        }
        if chunk.mask.is_some() {
            chunk.mask_into(0, chunk.len().min(room), masked);
        }
    }
}

/// The slices of one vectored write of `chunks`: those that go as they are,
/// whole; those to be masked, from `masked` (as [`mask_ahead`] filled it),
/// up to the first whose masked bytes are not all there.
pub fn write_slices<'a>(
    chunks: impl IntoIterator<Item = &'a Chunk>,
    masked: &'a [u8],
) -> Vec<IoSlice<'a>> {
    let mut slices = Vec::new();
    let mut rest = masked;
    for chunk in chunks {
        if chunk.mask.is_none() {
            slices.push(IoSlice::new(&chunk.bytes));
            continue;
        }
        let ready = chunk.len().min(rest.len());
        if ready == 0 && !chunk.is_empty() {
            break;
        }
        let (this, after) = rest.split_at(ready);
        rest = after;
        slices.push(IoSlice::new(this));
        if ready < chunk.len() {
            break;
        }
    }
    slices
}

/// Turns messages into frames for one role.
#[derive(Debug)]
pub struct Framer {
    role: Role,
    /// The messages it frames are compressed (permessage-deflate): RSV1 on
    /// each one's first frame.
    compressed: bool,
}

impl Framer {
    pub fn new(role: Role) -> Self {
        Framer {
            role,
            compressed: false,
        }
    }

    /// A framer for messages already compressed (see
    /// [`Compressor`](super::deflate::Compressor)).
    pub fn compressed(role: Role) -> Self {
        Framer {
            role,
            compressed: true,
        }
    }

    /// Appends a frame header for `length` payload bytes; returns the masking
    /// key the payload must be masked with, if we are a client.
    fn header(&self, out: &mut BytesMut, opcode: u8, fin: bool, length: usize) -> Option<[u8; 4]> {
        let masked = self.role == Role::Client;
        // RFC 7692 §6: RSV1 on a compressed message's first frame only.
        let rsv1 = self.compressed && matches!(opcode, opcode::TEXT | opcode::BINARY);
        out.put_u8(if fin { 0x80 } else { 0 } | if rsv1 { 0x40 } else { 0 } | opcode);
        let mask_bit = if masked { 0x80 } else { 0 };
        if length < 126 {
            out.put_u8(mask_bit | length as u8);
        } else if length <= usize::from(u16::MAX) {
            out.put_u8(mask_bit | 126);
            out.put_u16(length as u16);
        } else {
            out.put_u8(mask_bit | 127);
            out.put_u64(length as u64);
        }
        masked.then(|| {
            // A fresh key for every frame, as §5.3 asks.
            let mask: [u8; 4] = rand::random();
            out.put_slice(&mask);
            mask
        })
    }

    /// Appends one frame to `out`, masked if we are a client.
    pub fn frame(&self, out: &mut BytesMut, opcode: u8, fin: bool, payload: &[u8]) {
        out.reserve(14 + payload.len());
        let mask = self.header(out, opcode, fin, payload.len());
        let start = out.len();
        out.put_slice(payload);
        if let Some(mask) = mask {
            apply_mask(&mut out[start..], mask);
        }
    }

    /// A message as chunks for a vectored write. A small one is one frame in
    /// one piece; a large one is frame headers and slices of `payload`,
    /// which is not copied: a client's slices carry the key they are to be
    /// masked with by whoever writes them.
    pub fn message_chunks(&self, text: bool, payload: Bytes, frame_size: usize) -> Vec<Chunk> {
        self.fragment_chunks(text, true, true, payload, frame_size)
    }

    /// One fragment of a message given in several (§5.4), as chunks like
    /// [`message_chunks`](Self::message_chunks)'. Only the `first`
    /// fragment's first frame has the message's opcode (and RSV1 when
    /// compressed); every other frame is a CONTINUATION, and FIN is on the
    /// last frame of the `last` fragment only. A fragment longer than
    /// `frame_size` is split like a message.
    pub fn fragment_chunks(
        &self,
        text: bool,
        first: bool,
        last: bool,
        payload: Bytes,
        frame_size: usize,
    ) -> Vec<Chunk> {
        let opening = match (first, text) {
            (false, _) => opcode::CONTINUATION,
            (true, true) => opcode::TEXT,
            (true, false) => opcode::BINARY,
        };
        if payload.len() < COPY_BELOW {
            let mut out = BytesMut::new();
            self.frames(&mut out, opening, last, &payload, frame_size);
            return vec![Chunk::plain(out.freeze())];
        }
        let size = frame_size.max(1);
        let length = payload.len();
        let mut chunks = Vec::with_capacity(2 * length.div_ceil(size));
        let mut op = opening;
        for start in (0..length).step_by(size) {
            let end = (start + size).min(length);
            let mut header = BytesMut::with_capacity(14);
            let mask = self.header(&mut header, op, last && end == length, end - start);
            chunks.push(Chunk::plain(header.freeze()));
            chunks.push(Chunk {
                bytes: payload.slice(start..end),
                mask,
            });
            op = opcode::CONTINUATION;
        }
        chunks
    }

    /// Appends a message, split into frames of at most `frame_size` bytes.
    pub fn message(&self, out: &mut BytesMut, text: bool, payload: &[u8], frame_size: usize) {
        let first = if text { opcode::TEXT } else { opcode::BINARY };
        self.frames(out, first, true, payload, frame_size);
    }

    /// Appends `payload` in frames of at most `frame_size` bytes, the first
    /// with `first_opcode`, the rest CONTINUATION; FIN on the last if `fin`.
    fn frames(
        &self,
        out: &mut BytesMut,
        first_opcode: u8,
        fin: bool,
        payload: &[u8],
        frame_size: usize,
    ) {
        if payload.len() <= frame_size {
            return self.frame(out, first_opcode, fin, payload);
        }
        let mut chunks = payload.chunks(frame_size.max(1)).peekable();
        let mut op = first_opcode;
        while let Some(chunk) = chunks.next() {
            self.frame(out, op, fin && chunks.peek().is_none(), chunk);
            op = opcode::CONTINUATION;
        }
    }

    /// Appends a close frame; `None` sends one with no code (as an echo of such a frame).
    pub fn close(&self, out: &mut BytesMut, frame: Option<(u16, &str)>) {
        let mut payload = Vec::with_capacity(MAX_CONTROL_PAYLOAD);
        if let Some((code, reason)) = frame {
            payload.extend_from_slice(&code.to_be_bytes());
            payload.extend_from_slice(reason.as_bytes());
        }
        self.frame(out, opcode::CLOSE, true, &payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::deflate::Negotiated;
    use crate::protocol::{Incoming, Limits, Parser};

    /// (FIN, RSV1, opcode, payload length) of each unmasked frame in `wire`.
    fn headers(mut wire: &[u8]) -> Vec<(bool, bool, u8, usize)> {
        let mut frames = Vec::new();
        while !wire.is_empty() {
            let (fin, rsv1, op) = (wire[0] & 0x80 != 0, wire[0] & 0x40 != 0, wire[0] & 0x0f);
            let (len, at) = match wire[1] & 0x7f {
                126 => (usize::from(u16::from_be_bytes([wire[2], wire[3]])), 4),
                127 => (
                    u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (usize::from(n), 2),
            };
            frames.push((fin, rsv1, op, len));
            wire = &wire[at + len..];
        }
        frames
    }

    fn wire(chunks: Vec<Chunk>) -> Vec<u8> {
        chunks.into_iter().flat_map(Chunk::into_plain).collect()
    }

    fn parsed(parser: &mut Parser, wire: &[u8]) -> Vec<Incoming> {
        parser.buffer().extend_from_slice(wire);
        std::iter::from_fn(|| parser.next_event().unwrap()).collect()
    }

    const LIMITS: Limits = Limits {
        max_frame_size: 1 << 20,
        max_message_size: 4 << 20,
    };

    #[test]
    fn fragments_open_with_the_opcode_continue_and_end_with_fin() {
        let framer = Framer::new(Role::Server);
        let big = Bytes::from(vec![b'x'; 20_000]);
        let mut out = Vec::new();
        out.extend(wire(framer.fragment_chunks(
            true,
            true,
            false,
            "ab".into(),
            1000,
        )));
        // Longer than the frame size: split, neither frame with FIN.
        out.extend(wire(
            framer.fragment_chunks(true, false, false, big, 16_384),
        ));
        out.extend(wire(framer.fragment_chunks(
            true,
            false,
            true,
            Bytes::new(),
            1000,
        )));
        let expected = [
            (false, false, opcode::TEXT, 2),
            (false, false, opcode::CONTINUATION, 16_384),
            (false, false, opcode::CONTINUATION, 3_616),
            (true, false, opcode::CONTINUATION, 0),
        ];
        assert_eq!(headers(&out), expected);
        let mut parser = Parser::new(Role::Client, LIMITS);
        let text = format!("ab{}", "x".repeat(20_000));
        assert_eq!(
            parsed(&mut parser, &out),
            [Incoming::Text(text.as_str().into())]
        );
        // A client's fragments are masked, and parse the same.
        let framer = Framer::new(Role::Client);
        let mut out = wire(framer.fragment_chunks(false, true, false, "one ".into(), 1000));
        out.extend(wire(framer.fragment_chunks(
            false,
            false,
            true,
            "two".into(),
            1000,
        )));
        let mut parser = Parser::new(Role::Server, LIMITS);
        let whole = Bytes::from_static(b"one two");
        assert_eq!(parsed(&mut parser, &out), [Incoming::Binary(whole.into())]);
    }

    #[test]
    fn a_compressed_fragmented_message_is_one_stream_with_rsv1_on_its_first_frame() {
        for no_context_takeover in [false, true] {
            let negotiated = Negotiated {
                local_no_context_takeover: no_context_takeover,
                remote_no_context_takeover: false,
                local_window_bits: 12,
                remote_window_bits: 15,
            };
            let mut compressor = negotiated.compressor(6);
            let mut parser = Parser::new(Role::Client, LIMITS);
            parser.set_decompressor(negotiated.mirrored().decompressor());
            let framer = Framer::compressed(Role::Server);
            let fragments: [&[&str]; 3] = [
                &["{\"a\": 1, ", "\"b\": [1, 2, 3], ", "\"c\": \"ééé\"}"],
                // An empty last fragment, right after a flush.
                &["{\"a\": 1, ", ""],
                &["only"],
            ];
            for message in fragments {
                let mut out = Vec::new();
                for (i, fragment) in message.iter().enumerate() {
                    let last = i + 1 == message.len();
                    let compressed = compressor.compress_fragment(fragment.as_bytes(), last);
                    let chunks =
                        framer.fragment_chunks(true, i == 0, last, compressed.into(), 1 << 20);
                    out.extend(wire(chunks));
                }
                let frames = headers(&out);
                assert_eq!(frames.len(), message.len());
                for (i, &(fin, rsv1, op, _)) in frames.iter().enumerate() {
                    assert_eq!(fin, i + 1 == message.len());
                    assert_eq!(rsv1, i == 0, "RSV1 on the first frame only");
                    let expected = if i == 0 {
                        opcode::TEXT
                    } else {
                        opcode::CONTINUATION
                    };
                    assert_eq!(op, expected);
                }
                let joined = message.concat();
                assert_eq!(
                    parsed(&mut parser, &out),
                    [Incoming::Text(joined.as_str().into())],
                    "no_context_takeover: {no_context_takeover}"
                );
            }
            // A whole message after them shares the context, or not, as agreed.
            let compressed = compressor.compress(b"{\"a\": 1, ");
            let out = wire(framer.message_chunks(true, compressed.into(), 1 << 20));
            assert_eq!(
                parsed(&mut parser, &out),
                [Incoming::Text("{\"a\": 1, ".into())]
            );
        }
    }
}
