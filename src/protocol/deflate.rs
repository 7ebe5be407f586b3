//! permessage-deflate (RFC 7692): its negotiation in the opening handshake,
//! and the compression of messages with the parameters agreed.
//!
//! A compressed message has RSV1 set on its first frame; its payload is raw
//! DEFLATE data, each message ending with an empty stored block whose tail
//! `00 00 ff ff` is left off on the wire (§7.2.1). Unless "no context
//! takeover" was agreed for a direction, that direction's sliding window
//! carries over from one message to the next, so each side keeps one
//! compressor or decompressor for the life of the connection.
//!
//! zlib (here zlib-rs) cannot compress with a window of 2^8 bytes. A
//! client that asks the server for 8 window bits gets 9, and is told so in
//! the response, where RFC 7692 §7.1.2.1 asks for 8 or less: zlib-based
//! peers (Autobahn|Testsuite's own) answer so too, and such a client is
//! better served compressed than declined. A client that offers to
//! compress with 8 bits is asked for 8 (§7.1.2.2 forbids more): any
//! decompressor window of 9 bits or more reads its messages. wsbind never
//! offers 8.

use crate::config::DEFLATE_MEM_LEVEL;
use bytes::BytesMut;
use zlib_rs::{Deflate, DeflateFlush, Inflate, InflateFlush, Status};

use super::close::{CloseCode, Failure};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const NAME: &str = "permessage-deflate";

/// The tail of every compressed message, left off on the wire (§7.2.1).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The most a payload of `len` bytes takes once compressed, whatever the
/// peer's compressor settings: zlib's `deflateBound` for a compressor not
/// at its default memory level (len + 1/8 + 1/64 of it, and a few bytes).
/// Incompressible data grows; websockets' compressor grew 16 MiB of random
/// bytes by 0.24%.
pub fn max_compressed_len(len: usize) -> usize {
    len.saturating_add(len >> 3)
        .saturating_add(len >> 6)
        .saturating_add(64)
}

/// The window sizes zlib can compress with.
const MIN_WINDOW_BITS: u8 = 9;
const MAX_WINDOW_BITS: u8 = 15;

/// What one side of a connection wants of compression before the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// The window we compress with, at most (fewer bits, less memory).
    pub window_bits: u8,
    /// The window we ask the peer to compress with, at most, when it lets
    /// us choose (a client that offers `client_max_window_bits`).
    pub peer_window_bits: u8,
    /// Compression level, 0-9.
    pub level: u32,
}

/// What the handshake agreed, from our side of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Our compressor starts each message afresh.
    pub local_no_context_takeover: bool,
    /// The peer's compressor starts each message afresh: so does our decompressor.
    pub remote_no_context_takeover: bool,
    /// The window we compress with.
    pub local_window_bits: u8,
    /// The window the peer compresses with, at most.
    pub remote_window_bits: u8,
}

/// The parameters of one permessage-deflate offer or response, as written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// None: absent; Some(None): present without a value (client only).
    server_max_window_bits: Option<Option<u8>>,
    client_max_window_bits: Option<Option<u8>>,
}

/// An extension's parameters as written: (name, value) pairs.
type Pairs = Vec<(String, Option<String>)>;

/// The extensions of a `Sec-WebSocket-Extensions` value, each with its
/// parameters.
fn extensions(value: &str) -> Vec<(String, Pairs)> {
    value
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|extension| {
            let mut parts = extension.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default().to_ascii_lowercase();
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (
                        k.trim().to_ascii_lowercase(),
                        Some(v.trim().trim_matches('"').to_string()),
                    ),
                    None => (p.to_ascii_lowercase(), None),
                })
                .collect();
            (name, params)
        })
        .collect()
}

/// The parameters of one permessage-deflate element, checked: no unknown
/// or repeated parameter, flags without a value, window bits 8-15.
fn params(pairs: &Pairs) -> Result<Params, String> {
    let mut params = Params::default();
    let bits = |value: &Option<String>| -> Result<Option<u8>, String> {
        match value {
            None => Ok(None),
            Some(v) => match v.parse::<u8>() {
                Ok(n) if (8..=15).contains(&n) && !v.starts_with('0') => Ok(Some(n)),
                _ => Err(format!("invalid window bits {v:?}")),
            },
        }
    };
    for (name, value) in pairs {
        let repeated = || format!("{NAME} parameter {name} given twice");
        match name.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => {
                if value.is_some() {
                    return Err(format!("{NAME} parameter {name} takes no value"));
                }
                let flag = if name.starts_with("server") {
                    &mut params.server_no_context_takeover
                } else {
                    &mut params.client_no_context_takeover
                };
                if *flag {
                    return Err(repeated());
                }
                *flag = true;
            }
            "server_max_window_bits" => {
                if params.server_max_window_bits.is_some() {
                    return Err(repeated());
                }
                match bits(value)? {
                    Some(n) => params.server_max_window_bits = Some(Some(n)),
                    None => return Err(format!("{NAME} parameter {name} needs a value")),
                }
            }
            "client_max_window_bits" => {
                if params.client_max_window_bits.is_some() {
                    return Err(repeated());
                }
                params.client_max_window_bits = Some(bits(value)?);
            }
            _ => return Err(format!("unknown {NAME} parameter {name}")),
        }
    }
    Ok(params)
}

/// What a client offers in its request, as browsers and websockets do.
pub fn client_offer() -> String {
    // No server_max_window_bits: the server compresses as it likes, and
    // our decompressor takes any window. client_max_window_bits without a
    // value lets a server that spares its memory ask us for a smaller
    // window; we compress with ours (12 bits) or that, whichever is less.
    format!("{NAME}; client_max_window_bits")
}

/// A server's answer to the client's `Sec-WebSocket-Extensions` values:
/// the first permessage-deflate offer it can honour, as the response's
/// header value and what it agrees to; None to decline them all.
pub fn accept(offers: &[&str], config: &DeflateConfig) -> Option<(String, Negotiated)> {
    for value in offers {
        for (name, pairs) in extensions(value) {
            if name != NAME {
                continue;
            }
            // An offer we cannot read is declined; a later one may do.
            let Ok(offer) = params(&pairs) else { continue };
            // Our window: at most what the client allows and what we want.
            let mut local = config.window_bits;
            if let Some(Some(allowed)) = offer.server_max_window_bits {
                local = local.min(allowed);
            }
            let local = local.max(MIN_WINDOW_BITS);
            // The client's window: ours to choose only if it said so, and
            // never above what it offered (8 included).
            let remote = match offer.client_max_window_bits {
                Some(allowed) => config
                    .peer_window_bits
                    .max(MIN_WINDOW_BITS)
                    .min(allowed.unwrap_or(MAX_WINDOW_BITS)),
                None => MAX_WINDOW_BITS,
            };
            let mut response = NAME.to_string();
            if offer.server_no_context_takeover {
                response += "; server_no_context_takeover";
            }
            if offer.client_no_context_takeover {
                response += "; client_no_context_takeover";
            }
            if local < MAX_WINDOW_BITS || offer.server_max_window_bits.is_some() {
                response += &format!("; server_max_window_bits={local}");
            }
            if offer.client_max_window_bits.is_some() && remote < MAX_WINDOW_BITS {
                response += &format!("; client_max_window_bits={remote}");
            }
            let negotiated = Negotiated {
                local_no_context_takeover: offer.server_no_context_takeover,
                remote_no_context_takeover: offer.client_no_context_takeover,
                local_window_bits: local,
                remote_window_bits: remote,
            };
            return Some((response, negotiated));
        }
    }
    None
}

/// A client's check of the server's `Sec-WebSocket-Extensions` answer to
/// [`client_offer`]: what was agreed, or why the connection must fail.
pub fn check_response(
    values: &[&str],
    config: Option<&DeflateConfig>,
) -> Result<Option<Negotiated>, String> {
    let answered: Vec<_> = values.iter().flat_map(|v| extensions(v)).collect();
    let [(name, pairs)] = &answered[..] else {
        return match answered.len() {
            0 => Ok(None),
            _ => Err("handshake failed: the server chose more than one extension".into()),
        };
    };
    let Some(config) = config.filter(|_| name == NAME) else {
        return Err(format!(
            "handshake failed: the server chose the extension {name}, which was not offered"
        ));
    };
    let answer = params(pairs).map_err(|e| format!("handshake failed: {e}"))?;
    let local = match answer.client_max_window_bits {
        // A smaller window than allowed is always ours to use.
        Some(Some(bits)) => bits.max(MIN_WINDOW_BITS).min(config.window_bits),
        // In a response the parameter must have a value (§7.1.2.2).
        Some(None) => {
            return Err(
                "handshake failed: the server answered client_max_window_bits without a value"
                    .into(),
            )
        }
        None => config.window_bits,
    };
    Ok(Some(Negotiated {
        local_no_context_takeover: answer.client_no_context_takeover,
        remote_no_context_takeover: answer.server_no_context_takeover,
        local_window_bits: local,
        remote_window_bits: answer
            .server_max_window_bits
            .flatten()
            .unwrap_or(MAX_WINDOW_BITS)
            .max(MIN_WINDOW_BITS),
    }))
}

impl Negotiated {
    /// What the handshake agreed, as the other side sees it: what a server
    /// agreed for itself is what its client agreed for the server.
    pub fn mirrored(self) -> Negotiated {
        Negotiated {
            local_no_context_takeover: self.remote_no_context_takeover,
            remote_no_context_takeover: self.local_no_context_takeover,
            local_window_bits: self.remote_window_bits,
            remote_window_bits: self.local_window_bits,
        }
    }

    /// Our compressor for these parameters.
    pub fn compressor(&self, level: u32) -> Compressor {
        Compressor {
            deflate: None,
            window_bits: self.local_window_bits,
            no_context_takeover: self.local_no_context_takeover,
            level,
        }
    }

    /// Our decompressor for these parameters.
    pub fn decompressor(&self) -> Decompressor {
        Decompressor {
            message_input: 0,
            inflate: None,
            // A larger window than the peer uses is always safe.
            window_bits: self.remote_window_bits.max(MIN_WINDOW_BITS),
            no_context_takeover: self.remote_no_context_takeover,
        }
    }
}

/// Compresses the messages one side sends, in order.
pub struct Compressor {
    /// Made on the first message: a connection that never sends costs nothing
    /// (boxed, so that it costs a pointer until then, not zlib's stream).
    deflate: Option<Box<Deflate>>,
    window_bits: u8,
    no_context_takeover: bool,
    level: u32,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

impl Compressor {
    /// Whether each message is compressed on its own: then the same
    /// compressed bytes suit every peer with these parameters.
    pub fn is_stateless(&self) -> bool {
        self.no_context_takeover
    }

    /// The window this compressor uses.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// `payload` compressed as one message, without the tail (§7.2.1).
    pub fn compress(&mut self, payload: &[u8]) -> Vec<u8> {
        self.compress_fragment(payload, true)
    }

    /// One fragment of a message sent in several (§5.4): the fragments of a
    /// compressed message are one DEFLATE stream, so each is compressed
    /// with a sync flush in the same context, and only the `last` loses the
    /// tail (§7.2.1). The caller compresses nothing else until the last
    /// fragment, which ends the context where no context takeover was agreed.
    pub fn compress_fragment(&mut self, payload: &[u8], last: bool) -> Vec<u8> {
        let (window_bits, level) = (self.window_bits, self.level);
        let deflate = self.deflate.get_or_insert_with(|| {
            Box::new(Deflate::new_with_config(zlib_rs::DeflateConfig {
                level: level as i32,
                // Negative: a raw deflate stream, with no zlib header.
                window_bits: -i32::from(window_bits),
                mem_level: DEFLATE_MEM_LEVEL,
                ..zlib_rs::DeflateConfig::default()
            }))
        });
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let start = deflate.total_in();
        loop {
            let done = (deflate.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let out_before = deflate.total_out();
            let _ = deflate.compress_uninit(
                &payload[done..],
                out.spare_capacity_mut(),
                DeflateFlush::SyncFlush,
            );
            let written = (deflate.total_out() - out_before) as usize;
            // SAFETY: the compressor initialised the `written` bytes after the length.
            unsafe { out.set_len(out.len() + written) };
            let all_in = (deflate.total_in() - start) as usize == payload.len();
            // A sync flush is complete once it left room to spare.
            if all_in && out.len() < out.capacity() {
                break;
            }
        }
        if !last {
            // The tail stays: the next fragment's bytes follow it in the stream.
            return out;
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.is_empty() {
            // An empty last fragment after a flush: zlib writes nothing, and
            // the tail the receiver adds needs an empty stored block's header
            // before it, or it would read the previous flush's tail as a block.
            out.push(0x00);
        }
        if self.no_context_takeover {
            self.deflate = None;
        }
        out
    }
}

/// Decompresses the messages the peer sends, in order, within limits.
pub struct Decompressor {
    /// Made on the first compressed message (boxed: a pointer until then).
    inflate: Option<Box<Inflate>>,
    window_bits: u8,
    no_context_takeover: bool,
    /// Compressed bytes of the current message so far.
    message_input: usize,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish()
    }
}

/// Output grows by at most this much at a time, so that a bomb is stopped
/// at its limit without the whole of it allocated.
const INFLATE_STEP: usize = 64 << 10;

impl Decompressor {
    /// Appends to `out` what `input` (one frame's payload of a compressed
    /// message) inflates to, adding the tail once `last`; fails with 1009
    /// once `out` would pass `limit` bytes, and with 1007 for bad data.
    pub fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut BytesMut,
        limit: usize,
    ) -> Result<(), Failure> {
        self.message_input += input.len();
        if last {
            let empty = self.message_input == 0;
            self.message_input = 0;
            if empty {
                // Inflated with its tail, nothing would leave the inflater in
                // the middle of a stored block's header, and the next message
                // would be read as the rest of it: junk rather than an error.
                return Err(Failure::new(
                    CloseCode::INVALID_PAYLOAD,
                    "invalid compressed data: a compressed message with no data \
                     (RFC 7692 §7.2.3.6 sends an empty one as 0x00)",
                ));
            }
        }
        let window_bits = self.window_bits;
        let inflate = self
            .inflate
            .get_or_insert_with(|| Box::new(Inflate::new(false, window_bits)));
        for (piece, flush) in [
            (input, InflateFlush::NoFlush),
            (&TAIL[..], InflateFlush::SyncFlush),
        ] {
            if flush == InflateFlush::SyncFlush && !last {
                break;
            }
            let start = inflate.total_in();
            loop {
                let done = (inflate.total_in() - start) as usize;
                if out.len() >= limit.saturating_add(1) {
                    return Err(too_big(limit));
                }
                let room = (limit + 1 - out.len()).min(INFLATE_STEP);
                out.reserve(room);
                let before = out.len();
                // SAFETY: `reserve` made `room` bytes of spare capacity; the
                // length covers only what the decompressor wrote.
                let status = unsafe {
                    let spare = std::slice::from_raw_parts_mut(out.as_mut_ptr().add(before), room);
                    let out_before = inflate.total_out();
                    let status = inflate.decompress(&piece[done..], spare, flush);
                    out.set_len(before + (inflate.total_out() - out_before) as usize);
                    status
                };
                let status = status.map_err(|e| {
                    Failure::new(
                        CloseCode::INVALID_PAYLOAD,
                        format!("invalid compressed data: {}", e.as_str()),
                    )
                })?;
                if out.len() > limit {
                    return Err(too_big(limit));
                }
                let all_in = (inflate.total_in() - start) as usize == piece.len();
                let filled = out.len() - before == room;
                if status == Status::StreamEnd || (all_in && !filled) {
                    break;
                }
                if status == Status::BufError && !filled {
                    break;
                }
            }
        }
        if last && self.no_context_takeover {
            self.inflate = None;
        }
        Ok(())
    }
}

fn too_big(limit: usize) -> Failure {
    Failure::new(
        CloseCode::TOO_BIG,
        format!("message too big: it inflates past the limit of {limit} bytes"),
    )
}

/// The defaults of src/config.rs, with their reasons there.
impl Default for DeflateConfig {
    fn default() -> Self {
        use crate::config;
        DeflateConfig {
            window_bits: config::DEFLATE_WINDOW_BITS,
            peer_window_bits: config::DEFLATE_WINDOW_BITS,
            level: config::DEFLATE_LEVEL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DeflateConfig {
        DeflateConfig {
            window_bits: 12,
            peer_window_bits: 12,
            level: 6,
        }
    }

    #[test]
    fn a_plain_offer_gets_our_windows() {
        let (response, server) =
            accept(&["permessage-deflate; client_max_window_bits"], &config()).unwrap();
        assert_eq!(
            response,
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        );
        assert_eq!(server.local_window_bits, 12);
        assert_eq!(server.remote_window_bits, 12);
        let client = check_response(
            &[&response],
            Some(&DeflateConfig {
                window_bits: 15,
                ..config()
            }),
        )
        .unwrap()
        .unwrap();
        assert_eq!(client, server.mirrored());
    }

    #[test]
    fn every_parameter_is_honoured() {
        let offer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                     server_max_window_bits=10; client_max_window_bits=9";
        let (response, server) = accept(&[offer], &config()).unwrap();
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
        assert!(server.local_no_context_takeover && server.remote_no_context_takeover);
        assert_eq!(
            (server.local_window_bits, server.remote_window_bits),
            (10, 9)
        );
    }

    #[test]
    fn eight_window_bits_become_nine_for_us_only() {
        let offer = "permessage-deflate; server_max_window_bits=8";
        let (response, server) = accept(&[offer], &config()).unwrap();
        assert_eq!(response, "permessage-deflate; server_max_window_bits=9");
        assert_eq!(server.local_window_bits, 9);
        // The client's window: never more than it offered (§7.1.2.2).
        let offer = "permessage-deflate; client_max_window_bits=8";
        let (response, server) = accept(&[offer], &config()).unwrap();
        assert!(
            response.ends_with("; client_max_window_bits=8"),
            "{response}"
        );
        assert_eq!(server.remote_window_bits, 8);
    }

    #[test]
    fn offers_we_cannot_read_are_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; x_unknown",
            "permessage-deflate; server_max_window_bits=010",
        ] {
            assert_eq!(accept(&[bad], &config()), None, "{bad}");
            let (response, _) =
                accept(&[&format!("{bad}, permessage-deflate")], &config()).unwrap();
            assert_eq!(
                response, "permessage-deflate; server_max_window_bits=12",
                "{bad}"
            );
        }
        assert_eq!(accept(&["x-webkit-deflate-frame"], &config()), None);
    }

    #[test]
    fn a_client_refuses_what_it_did_not_offer() {
        assert_eq!(check_response(&[], Some(&config())), Ok(None));
        assert!(check_response(&["permessage-deflate"], None).is_err());
        assert!(check_response(&["x-other"], Some(&config())).is_err());
        assert!(
            check_response(&["permessage-deflate, permessage-deflate"], Some(&config())).is_err()
        );
        assert!(check_response(
            &["permessage-deflate; client_max_window_bits"],
            Some(&config())
        )
        .is_err());
        // A server that allows a larger window than ours gets ours; a smaller one, its own.
        let window = |answer: &str| {
            check_response(&[answer], Some(&config()))
                .unwrap()
                .unwrap()
                .local_window_bits
        };
        assert_eq!(window("permessage-deflate; client_max_window_bits=15"), 12);
        assert_eq!(window("permessage-deflate; client_max_window_bits=10"), 10);
        assert!(check_response(
            &["permessage-deflate; server_max_window_bits=99"],
            Some(&config())
        )
        .is_err());
        let agreed = check_response(
            &["permessage-deflate; server_no_context_takeover"],
            Some(&config()),
        )
        .unwrap()
        .unwrap();
        assert!(agreed.remote_no_context_takeover && !agreed.local_no_context_takeover);
    }

    fn round_trip(negotiated: Negotiated, messages: &[&[u8]]) {
        let mut compressor = negotiated.compressor(6);
        let mut decompressor = negotiated.mirrored().decompressor();
        for message in messages {
            let wire = compressor.compress(message);
            assert!(!wire.ends_with(&TAIL));
            let mut out = BytesMut::new();
            // Cut into frames anywhere: the result is the same.
            let cut = wire.len() / 3;
            decompressor
                .inflate(&wire[..cut], false, &mut out, 1 << 20)
                .unwrap();
            decompressor
                .inflate(&wire[cut..], true, &mut out, 1 << 20)
                .unwrap();
            assert_eq!(&out[..], *message);
        }
    }

    #[test]
    fn messages_round_trip_with_and_without_context_takeover() {
        let json = br#"{"symbol": "ACME", "price": 101.25, "volume": 12000}"#;
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for no_takeover in [false, true] {
            for bits in [9, 12, 15] {
                let negotiated = Negotiated {
                    local_no_context_takeover: no_takeover,
                    remote_no_context_takeover: no_takeover,
                    local_window_bits: bits,
                    remote_window_bits: bits,
                };
                round_trip(negotiated, &[json, json, b"", &big, json]);
            }
        }
    }

    #[test]
    fn context_takeover_makes_a_repeated_message_smaller() {
        let json = br#"{"symbol": "ACME", "price": 101.25, "volume": 12000, "exchange": "XNYS"}"#;
        let negotiated = |no_takeover| Negotiated {
            local_no_context_takeover: no_takeover,
            remote_no_context_takeover: no_takeover,
            local_window_bits: 12,
            remote_window_bits: 12,
        };
        let mut with = negotiated(false).compressor(6);
        let mut without = negotiated(true).compressor(6);
        with.compress(json);
        without.compress(json);
        assert!(with.compress(json).len() < without.compress(json).len() / 2);
    }

    #[test]
    fn a_bomb_stops_at_the_limit_without_inflating_all_of_it() {
        let negotiated = Negotiated {
            local_no_context_takeover: false,
            remote_no_context_takeover: false,
            local_window_bits: 15,
            remote_window_bits: 15,
        };
        let bomb = negotiated.compressor(9).compress(&vec![0u8; 16 << 20]);
        assert!(bomb.len() < 32 << 10, "{}", bomb.len());
        let mut out = BytesMut::new();
        let failure = negotiated
            .mirrored()
            .decompressor()
            .inflate(&bomb, true, &mut out, 1 << 20)
            .unwrap_err();
        assert_eq!(failure.code, CloseCode::TOO_BIG);
        // The buffer grows as buffers do, by doubling: twice the limit at most.
        assert!(out.capacity() <= 2 << 20, "{}", out.capacity());
    }

    #[test]
    fn garbage_fails_with_1007() {
        let negotiated = Negotiated {
            local_no_context_takeover: false,
            remote_no_context_takeover: false,
            local_window_bits: 15,
            remote_window_bits: 15,
        };
        let mut out = BytesMut::new();
        let failure = negotiated
            .decompressor()
            .inflate(&[0xff, 0xff, 0xff, 0xff, 0x00], true, &mut out, 1 << 20)
            .unwrap_err();
        assert_eq!(failure.code, CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn a_compressed_message_with_no_data_fails_with_1007_and_the_next_is_not_misread() {
        // Found by fuzzing: inflated with its tail, nothing left the inflater
        // inside a stored block's header, and the next message came out as junk.
        let negotiated = Negotiated {
            local_no_context_takeover: false,
            remote_no_context_takeover: false,
            local_window_bits: 15,
            remote_window_bits: 15,
        };
        let mut decompressor = negotiated.decompressor();
        let mut out = BytesMut::new();
        decompressor.inflate(&[], false, &mut out, 1 << 20).unwrap();
        let failure = decompressor
            .inflate(&[], true, &mut out, 1 << 20)
            .unwrap_err();
        assert_eq!(failure.code, CloseCode::INVALID_PAYLOAD);
        // An empty message as RFC 7692 §7.2.3.6 sends it: one 0x00 byte.
        let mut decompressor = negotiated.decompressor();
        decompressor
            .inflate(&[0x00], true, &mut out, 1 << 20)
            .unwrap();
        assert!(out.is_empty());
        let wire = negotiated.mirrored().compressor(6).compress(b"next");
        decompressor
            .inflate(&wire, true, &mut out, 1 << 20)
            .unwrap();
        assert_eq!(&out[..], b"next");
    }
}
