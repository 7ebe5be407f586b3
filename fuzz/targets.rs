//! The bodies of the fuzz targets, shared by the fuzzer (fuzz/fuzz_targets/,
//! `make fuzz`) and by the replay of their corpora and crashes on stable
//! Rust (fuzz/replay.rs, `cargo test`).
//!
//! Each takes arbitrary bytes and asserts what must hold for every input,
//! not only that nothing panics: a parse fed in pieces, cut anywhere, equals
//! the parse of the whole; what comes out stays within the configured
//! limits; what one side writes, the other reads back.

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use _wsbind::net::head::{find_head, read_head, Head};
use _wsbind::net::proxy::{
    bypasses, connect_reply, socks5_auth, socks5_method, socks5_reply, Kind, Proxy, Socks5Reply,
    SOCKS5_MAX_REPLY,
};
use _wsbind::protocol::close::MAX_CLOSE_REASON;
use _wsbind::protocol::deflate::{self, DeflateConfig, Negotiated};
use _wsbind::protocol::handshake::{
    accept_response, check_response, client_request, parse_request,
};
use _wsbind::protocol::{opcode, MAX_CONTROL_PAYLOAD};
use _wsbind::protocol::{url, Failure, Framer, Incoming, Limits, Parser, Role};
use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

/// A target's body: it panics when an input breaks what it checks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus folder.
pub const TARGETS: &[(&str, Target)] = &[
    ("frames", frames),
    ("messages", messages),
    ("inflate", inflate),
    ("negotiation", negotiation),
    ("request", request),
    ("response", response),
    ("proxy_replies", proxy_replies),
    ("urls", urls),
    ("head", head),
];

/// Reads the fuzzer's bytes as the settings of a run, then its data.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.data.split_first() else {
            return 0;
        };
        self.data = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn take(&mut self, count: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(count.min(self.data.len()));
        self.data = rest;
        taken
    }

    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }

    /// Up to 8 piece sizes of 1 to 256 bytes, used in turn to cut the data.
    fn cuts(&mut self) -> Vec<usize> {
        let count = usize::from(self.byte() % 9);
        (0..count).map(|_| usize::from(self.byte()) + 1).collect()
    }
}

/// `data` cut into pieces of the sizes in `cuts`, in turn (one piece
/// without, or when it is empty).
fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    if cuts.is_empty() || data.is_empty() {
        return vec![data];
    }
    let mut pieces = Vec::new();
    let mut rest = data;
    for size in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, after) = rest.split_at((*size).min(rest.len()));
        pieces.push(piece);
        rest = after;
    }
    pieces
}

// -- frames

/// A parser's settings, from the fuzzer's first bytes.
#[derive(Clone, Copy)]
struct ParserSettings {
    role: Role,
    limits: Limits,
    frames: bool,
    compression: Option<Negotiated>,
}

impl ParserSettings {
    fn read(input: &mut Input) -> Self {
        let flags = input.byte();
        let limits = Limits {
            max_frame_size: usize::from(input.u16()) + 1,
            max_message_size: usize::from(input.u16()) * 4 + 1,
        };
        ParserSettings {
            role: if flags & 1 == 0 {
                Role::Server
            } else {
                Role::Client
            },
            limits,
            frames: flags & 2 != 0,
            compression: (flags & 4 != 0).then_some(Negotiated {
                local_no_context_takeover: false,
                remote_no_context_takeover: flags & 8 != 0,
                local_window_bits: 15,
                remote_window_bits: 9 + (flags >> 4) % 7,
            }),
        }
    }

    fn parser(&self) -> Parser {
        let mut parser = Parser::new(self.role, self.limits);
        parser.frames = self.frames;
        if let Some(negotiated) = self.compression {
            parser.set_decompressor(negotiated.decompressor());
        }
        parser
    }
}

/// Everything a parser makes of `wire` read in `pieces`, as a connection
/// reads it: every event after each read, until the failure if any.
fn parse(settings: ParserSettings, pieces: &[&[u8]]) -> (Vec<Incoming>, Option<Failure>) {
    let mut parser = settings.parser();
    let mut events = Vec::new();
    for piece in pieces {
        parser.buffer().extend_from_slice(piece);
        loop {
            match parser.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(failure) => {
                    // Nothing after the failure.
                    assert_eq!(parser.next_event(), Ok(None));
                    return (events, Some(failure));
                }
            }
        }
    }
    (events, None)
}

/// The frame parser fed arbitrary bytes, in either role, with compression
/// on or off: cut anywhere it says the same; messages and frames stay
/// within the limits; nothing comes after the close frame.
pub fn frames(data: &[u8]) {
    let mut input = Input::new(data);
    let settings = ParserSettings::read(&mut input);
    let cuts = input.cuts();
    let wire = input.rest();
    let whole = parse(settings, &[wire]);
    let (events, failure) = &whole;
    assert_eq!(
        parse(settings, &pieces(wire, &cuts)),
        whole,
        "cut into {cuts:?}"
    );
    let bytewise: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(parse(settings, &bytewise), whole, "a byte at a time");
    let Limits {
        max_frame_size,
        max_message_size,
    } = settings.limits;
    for (i, event) in events.iter().enumerate() {
        match event {
            Incoming::Text(text) => assert!(text.len() <= max_message_size),
            Incoming::Binary(binary) => assert!(binary.len() <= max_message_size),
            // A character cut by the frame before comes with this one.
            Incoming::TextFrame { text, .. } => assert!(text.len() <= max_frame_size + 3),
            Incoming::BinaryFrame { data, .. } => assert!(data.len() <= max_frame_size),
            Incoming::Ping(payload) | Incoming::Pong(payload) => {
                assert!(payload.len() <= MAX_CONTROL_PAYLOAD)
            }
            Incoming::Close(close) => {
                if let Some((_, reason)) = close {
                    assert!(reason.len() <= MAX_CLOSE_REASON);
                }
                assert!(i + 1 == events.len() && failure.is_none(), "after close");
            }
        }
    }
    if let Some(failure) = failure {
        assert!(matches!(failure.code.0, 1002 | 1007 | 1009), "{failure:?}");
    }
}

// -- messages

/// What the fuzzer sends: messages and pings, framed by one role and
/// compressed or not, come out of the other role's parser as they went in,
/// however the bytes are cut.
pub fn messages(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let sender = if flags & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let receiver = match sender {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    let compression = (flags & 2 != 0).then(|| {
        let config = DeflateConfig {
            window_bits: 9 + (flags >> 2) % 7,
            peer_window_bits: 15,
            level: u32::from(flags >> 5),
        };
        let offer = if flags & 0x80 != 0 {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        } else {
            "permessage-deflate; client_max_window_bits"
        };
        deflate::accept(&[offer], &config)
            .expect("our own offer is accepted")
            .1
    });
    let cuts = input.cuts();
    let frame_size = usize::from(input.byte()) * 16 + 1;
    let mut compressor = compression.map(|negotiated| negotiated.compressor(6));
    let (plain, compressed) = (Framer::new(sender), Framer::compressed(sender));
    let mut wire = BytesMut::new();
    let mut sent = Vec::new();
    while !input.data.is_empty() {
        let kind = input.byte();
        let length = usize::from(input.u16()) % 4096;
        let payload = input.take(length);
        match kind % 4 {
            0 => {
                let ping = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
                plain.frame(&mut wire, opcode::PING, true, ping);
                sent.push(Incoming::Ping(bytes::Bytes::copy_from_slice(ping)));
            }
            kind => {
                let text = kind == 1;
                let payload = if text {
                    String::from_utf8_lossy(payload).into_owned().into_bytes()
                } else {
                    payload.to_vec()
                };
                // Small messages go uncompressed, as Connection::send does.
                let compress = kind == 3 || payload.len() >= 128;
                match compressor.as_mut() {
                    Some(c) if compress => {
                        compressed.message(&mut wire, text, &c.compress(&payload), frame_size)
                    }
                    _ => plain.message(&mut wire, text, &payload, frame_size),
                }
                sent.push(if text {
                    Incoming::Text(String::from_utf8(payload).unwrap().as_str().into())
                } else {
                    Incoming::Binary(bytes::Bytes::from(payload).into())
                });
            }
        }
    }
    let settings = ParserSettings {
        role: receiver,
        limits: Limits {
            max_frame_size: 1 << 20,
            max_message_size: 1 << 24,
        },
        frames: false,
        compression: compression.map(Negotiated::mirrored),
    };
    let (got, failure) = parse(settings, &pieces(&wire, &cuts));
    assert_eq!(failure, None);
    assert_eq!(got, sent);
}

// -- inflate

/// permessage-deflate's inflater on arbitrary data, cut into frames
/// anywhere: the same bytes or the same failure, never past the limit.
pub fn inflate(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let limit = usize::from(input.u16()) * 8;
    let negotiated = Negotiated {
        local_no_context_takeover: false,
        remote_no_context_takeover: flags & 1 != 0,
        local_window_bits: 15,
        remote_window_bits: 9 + (flags >> 1) % 7,
    };
    let cuts = input.cuts();
    let compressed = input.rest();
    let run = |frames: &[&[u8]]| {
        let mut decompressor = negotiated.decompressor();
        let mut out = BytesMut::new();
        // Twice: the second message starts from the first one's window,
        // or afresh with no context takeover.
        let mut results = Vec::new();
        for _ in 0..2 {
            out.clear();
            let mut result = Ok(());
            for (i, frame) in frames.iter().enumerate() {
                let last = i + 1 == frames.len();
                result = decompressor.inflate(frame, last, &mut out, limit);
                // It stops at the first byte past the limit.
                let most = if result.is_ok() { limit } else { limit + 1 };
                assert!(out.len() <= most, "{} over {limit}", out.len());
                if result.is_err() {
                    break;
                }
            }
            results.push(result.map(|()| out.to_vec()));
            if results[0].is_err() {
                break;
            }
        }
        results
    };
    let whole = run(&[compressed]);
    // Data both too big and invalid may fail either way, by where it is
    // cut: inflating stops at the limit before it reads the bad part.
    let outcome = |results: &[Result<Vec<u8>, Failure>]| -> Vec<Option<Vec<u8>>> {
        results.iter().map(|r| r.as_ref().ok().cloned()).collect()
    };
    let cut = run(&pieces(compressed, &cuts));
    assert_eq!(outcome(&cut), outcome(&whole), "cut into {cuts:?}");
    for result in whole.iter().chain(&cut) {
        if let Err(failure) = result {
            assert!(matches!(failure.code.0, 1007 | 1009), "{failure:?}");
        }
    }
    // What inflated comes back the same through our compressor.
    if let Some(Ok(message)) = whole.first() {
        let mut compressor = negotiated.mirrored().compressor(6);
        let mut decompressor = negotiated.decompressor();
        let mut out = BytesMut::new();
        decompressor
            .inflate(&compressor.compress(message), true, &mut out, limit)
            .expect("our own compression inflates");
        assert_eq!(&out[..], &message[..]);
    }
}

// -- negotiation

fn deflate_config(byte: u8) -> DeflateConfig {
    DeflateConfig {
        window_bits: 9 + byte % 7,
        peer_window_bits: 9 + (byte >> 3) % 7,
        level: 6,
    }
}

/// permessage-deflate's negotiation on arbitrary offers: what a server
/// accepts, a client accepts back, agreeing on each side's window and
/// context; what a server answers arbitrarily, a client accepts only
/// within what it offered.
pub fn negotiation(data: &[u8]) {
    let mut input = Input::new(data);
    let server = deflate_config(input.byte());
    let client = deflate_config(input.byte());
    let text = String::from_utf8_lossy(input.rest());
    let values: Vec<&str> = text.split('\n').collect();
    if let Some((answer, agreed)) = deflate::accept(&values, &server) {
        assert!(answer.starts_with(deflate::NAME), "{answer}");
        for bits in [agreed.local_window_bits, agreed.remote_window_bits] {
            assert!((9..=15).contains(&bits), "{agreed:?}");
        }
        assert!(agreed.local_window_bits <= server.window_bits.max(9));
        // A client checks the answer against what it offered, whichever
        // offer the server took.
        if let Ok(Some(theirs)) = deflate::check_response(&[&answer], Some(&client)) {
            assert_eq!(
                theirs.local_no_context_takeover,
                agreed.remote_no_context_takeover
            );
            assert_eq!(
                theirs.remote_no_context_takeover,
                agreed.local_no_context_takeover
            );
            assert_eq!(theirs.remote_window_bits, agreed.local_window_bits);
            // The client compresses within the window the server inflates with.
            assert!(theirs.local_window_bits <= agreed.remote_window_bits);
        }
    }
    // Our own offer is always accepted, and so is the answer to it.
    let (answer, agreed) =
        deflate::accept(&[&deflate::client_offer()], &server).expect("our offer");
    let theirs = deflate::check_response(&[&answer], Some(&client))
        .expect("the answer to our offer")
        .expect("compression");
    assert!(theirs.local_window_bits <= agreed.remote_window_bits);
    assert_eq!(theirs.remote_window_bits, agreed.local_window_bits);
    match deflate::check_response(&values, Some(&client)) {
        Ok(Some(agreed)) => {
            assert!(agreed.local_window_bits <= client.window_bits);
            assert!((9..=15).contains(&agreed.remote_window_bits));
        }
        Ok(None) => assert!(values
            .iter()
            .all(|v| v.split(',').all(|e| e.trim().is_empty()))),
        Err(why) => assert!(why.starts_with("handshake failed: "), "{why}"),
    }
}

// -- the handshake

/// The server's parser of opening requests on arbitrary bytes: a request it
/// accepts gets a response that a client accepts back, with the same
/// subprotocol and compression; one it refuses gets a valid HTTP response.
pub fn request(data: &[u8]) {
    let limit = _wsbind::config::MAX_HANDSHAKE_SIZE;
    let Head::Whole(end) = find_head(data, 0, limit) else {
        return;
    };
    match parse_request(&data[..end]) {
        Ok(request) => {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let parsed = httparse::Request::new(&mut slots).parse(&data[..end]);
            assert_eq!(
                parsed,
                Ok(httparse::Status::Complete(end)),
                "read to its end"
            );
            let key = request.header("Sec-WebSocket-Key").unwrap().trim();
            let offered = request.subprotocols();
            let chosen = offered.last().cloned();
            let config = DeflateConfig::default();
            let offers = request.extension_offers();
            let compression = deflate::accept(&offers, &config);
            let response = accept_response(
                &request,
                chosen.as_deref(),
                compression.as_ref().map(|(answer, _)| answer.as_str()),
                "fuzz",
            );
            let checked = check_response(&response, key, &offered, Some(&config))
                .expect("a client accepts what our server answers");
            assert_eq!(checked.subprotocol, chosen.unwrap_or_default());
            match (compression, checked.compression) {
                (None, None) => {}
                (Some((_, ours)), Some(theirs)) => {
                    assert_eq!(theirs.remote_window_bits, ours.local_window_bits);
                    assert!(theirs.local_window_bits <= ours.remote_window_bits);
                    let flags =
                        |n: Negotiated| (n.local_no_context_takeover, n.remote_no_context_takeover);
                    assert_eq!(flags(theirs), flags(ours.mirrored()));
                }
                (ours, theirs) => panic!("server agreed {ours:?}, client {theirs:?}"),
            }
        }
        Err(rejection) => {
            assert!(matches!(rejection.status, 400 | 405 | 426), "{rejection:?}");
            let response = rejection.response("fuzz");
            let mut slots = [httparse::EMPTY_HEADER; 16];
            let mut parsed = httparse::Response::new(&mut slots);
            let Ok(httparse::Status::Complete(length)) = parsed.parse(&response) else {
                panic!("our rejection is HTTP: {response:?}");
            };
            assert_eq!(parsed.code, Some(rejection.status));
            let body = format!("{}\n", rejection.message);
            assert_eq!(&response[length..], body.as_bytes());
        }
    }
}

/// The client's check of a server's answer on arbitrary bytes, for a
/// request with or without subprotocols and compression: what it accepts
/// was offered.
pub fn response(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let config = deflate_config(input.byte());
    // As read_head cuts it.
    let bytes = input.rest();
    let Head::Whole(end) = find_head(bytes, 0, _wsbind::config::MAX_HANDSHAKE_SIZE) else {
        return;
    };
    let head = &bytes[..end];
    // The RFC's example key, so that the fuzzer can find the accept key.
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let offered: Vec<String> = match flags % 3 {
        0 => vec![],
        1 => vec!["chat".into()],
        _ => vec!["chat".into(), "superchat".into()],
    };
    let compression = (flags & 4 != 0).then_some(&config);
    match check_response(head, key, &offered, compression) {
        Ok(response) => {
            assert!(response.subprotocol.is_empty() || offered.contains(&response.subprotocol));
            if let Some(agreed) = response.compression {
                assert!(compression.is_some());
                assert!(agreed.local_window_bits <= config.window_bits);
                assert!((9..=15).contains(&agreed.remote_window_bits));
            }
            assert!(consumed_whole(head), "{:?}", String::from_utf8_lossy(head));
        }
        Err(why) => assert!(
            why.starts_with("handshake failed: ") || why.starts_with("handshake rejected: HTTP "),
            "{why}"
        ),
    }
}

/// Whether httparse reads `head` as a response to its very end: nothing in
/// it is left unread.
fn consumed_whole(head: &[u8]) -> bool {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let parsed = httparse::Response::new(&mut slots).parse(head);
    matches!(parsed, Ok(httparse::Status::Complete(end)) if end == head.len())
}

/// The status code httparse reads in a response head.
fn response_code(head: &[u8]) -> Option<u16> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut slots);
    response.parse(head).ok()?;
    response.code
}

// -- proxies

/// The answers of HTTP and SOCKS5 proxies on arbitrary bytes: a tunnel only
/// for a 2xx; a SOCKS5 reply read exactly, never past its end, and the
/// same however it arrived.
pub fn proxy_replies(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let cuts = input.cuts();
    let bytes = input.rest();
    if let Head::Whole(end) = find_head(bytes, 0, _wsbind::config::MAX_HANDSHAKE_SIZE) {
        match connect_reply(&bytes[..end]) {
            Ok(Ok(())) => assert!(
                consumed_whole(&bytes[..end])
                    && matches!(response_code(&bytes[..end]), Some(200..=299)),
                "a tunnel for {:?}",
                String::from_utf8_lossy(&bytes[..end])
            ),
            Ok(Err(status)) => assert!(!status.contains(['\r', '\n'])),
            Err(why) => assert!(why.starts_with("proxy answered with invalid HTTP")),
        }
    }
    // The SOCKS5 exchange, as socks5() in src/net/proxy.rs reads it.
    let credentials = flags & 1 != 0;
    let mut at = 0;
    let mut next = |count: usize| -> Option<&[u8]> {
        let piece = bytes.get(at..at + count)?;
        at += count;
        Some(piece)
    };
    let Some(choice) = next(2) else { return };
    let Ok(asked) = socks5_method([choice[0], choice[1]], credentials) else {
        return;
    };
    assert!(
        !asked || credentials,
        "asked for credentials we do not have"
    );
    if asked {
        let Some(status) = next(2) else { return };
        if socks5_auth([status[0], status[1]]).is_err() {
            return;
        }
    }
    let start = at;
    let rest = &bytes[start..];
    // Read as the I/O does: exactly what it asks for.
    let mut reply = Vec::new();
    let exact = loop {
        match socks5_reply(&reply, "h:1") {
            Ok(Socks5Reply::More(count)) => {
                assert!(count > 0 && reply.len() + count <= SOCKS5_MAX_REPLY);
                let Some(piece) = rest.get(reply.len()..reply.len() + count) else {
                    break None;
                };
                reply.extend_from_slice(piece);
            }
            done => break Some(done),
        }
    };
    // Read as it arrives, in pieces: once whole it says the same.
    let mut arrived = Vec::new();
    for piece in pieces(rest, &cuts) {
        arrived.extend_from_slice(piece);
        match socks5_reply(&arrived, "h:1") {
            Ok(Socks5Reply::More(_)) => continue,
            done => {
                assert_eq!(Some(done.clone()), exact);
                if let Ok(Socks5Reply::Whole(length)) = done {
                    assert_eq!(length, reply.len());
                    assert_eq!(&arrived[..length], &reply[..]);
                }
                return;
            }
        }
    }
    assert_eq!(exact, None, "the reply was whole in one piece only");
}

// -- URLs

/// The URL and proxy-URL parsers on arbitrary text: what they accept is
/// what they say, and a URL accepted makes a request our server accepts.
pub fn urls(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, second) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(parsed) = url::parse(first) {
        assert!(matches!(parsed.scheme(), "ws" | "wss"));
        let (host, port) = url::endpoint(&parsed);
        assert!(!host.is_empty() && !host.starts_with('['));
        assert!(port != 0 || parsed.port() == Some(0));
        // Parsed again as written, it is the same URL.
        assert_eq!(url::parse(parsed.as_str()).as_ref(), Ok(&parsed));
        let sent = client_request(
            &parsed,
            &["chat".into()],
            "",
            &vec![],
            Some(&DeflateConfig::default()),
        );
        let received = parse_request(&sent.bytes).expect("our server takes our request");
        assert_eq!(received.target, sent.target);
        assert_eq!(received.subprotocols(), vec!["chat".to_string()]);
    }
    if let Ok(proxy) = Proxy::parse(first) {
        assert!(!proxy.host.is_empty() && !proxy.host.starts_with('['));
        if let Kind::Socks5 { .. } = proxy.kind {
            // The URL parser drops leading spaces and control characters.
            let start = first.trim_start_matches(|c: char| c <= ' ');
            assert!(
                start.to_ascii_lowercase().starts_with("socks5"),
                "{first:?}"
            );
        }
    }
    assert!(bypasses("*", first));
    let _ = bypasses(second, first);
}

// -- the head of an HTTP message

/// A reader that hands out the data in the given pieces, always ready.
struct Pieces<'a> {
    pieces: std::collections::VecDeque<&'a [u8]>,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(piece) = self.pieces.pop_front() {
            // A piece longer than the room is cut: the rest comes next.
            let room = buf.remaining().min(piece.len());
            buf.put_slice(&piece[..room]);
            if room < piece.len() {
                self.pieces.push_front(&piece[room..]);
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// read_head on data that arrives in arbitrary pieces: the head is the one
/// in the whole data, at most the limit, and what follows it is kept.
pub fn head(data: &[u8]) {
    let mut input = Input::new(data);
    let limit = usize::from(input.u16() % 2048);
    let cuts = input.cuts();
    let bytes = input.rest();
    let mut reader = Pieces {
        pieces: pieces(bytes, &cuts).into(),
    };
    let mut context = Context::from_waker(Waker::noop());
    let Poll::Ready(read) = pin!(read_head(&mut reader, limit)).poll(&mut context) else {
        panic!("a reader always ready never leaves read_head pending");
    };
    // Bytes that cannot start a head fail at the first read (read_head),
    // however they arrive; with a limit of 0 nothing is read at all.
    let not_http = bytes
        .first()
        .is_some_and(|&b| !(b.is_ascii_alphabetic() || b == b'\r' || b == b'\n'));
    match (find_head(bytes, 0, limit), read) {
        (_, read) if not_http && limit > 0 => {
            assert!(
                matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::InvalidData),
                "not HTTP, yet {read:?} in {cuts:?}"
            );
        }
        (Head::Whole(end), Ok(Some((head, after)))) => {
            assert!(head.len() <= limit && head.ends_with(b"\r\n\r\n"));
            assert_eq!(&head[..], &bytes[..end]);
            assert!(bytes[end..].starts_with(&after));
            assert_eq!(find_head(&head[..end - 1], 0, limit), Head::Partial);
        }
        (Head::TooLarge, Ok(None)) => {}
        (Head::Partial, Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        (expected, got) => panic!("{expected:?} in one piece, {got:?} in {cuts:?}"),
    }
}
