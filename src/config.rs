//! Every limit and wait that wsbind applies, with its default and the reason for it.
//!
//! A peer, however broken or hostile, can only make wsbind use as much memory
//! or time as these bounds allow.

use std::time::Duration;

/// Largest incoming message: 64 MiB.
///
/// Big enough for any message a bot or a notebook exchanges in one piece (the
/// 16 MiB interop tests pass with room to spare), small enough that a peer
/// cannot make us buffer an unbounded message. Over the limit the connection
/// is closed with 1009.
pub const MAX_INCOMING_MESSAGE_SIZE: usize = 64 << 20;

/// Largest incoming frame payload: 16 MiB, for the same reason; a longer
/// message arrives as several frames.
pub const MAX_INCOMING_FRAME_SIZE: usize = 16 << 20;

/// Bytes that `send_*` may queue on one socket before it refuses with
/// `BufferFullError`: 64 MiB.
///
/// Sending never blocks on the network, so without a bound a peer that stops
/// reading would let the queue grow until the process runs out of memory.
pub const MAX_OUTGOING_BUFFER: usize = 64 << 20;

/// Pongs that may wait to be written: 16. Past them, pings are answered
/// only with the latest (RFC 6455 §5.5.3 allows answering only the most
/// recent ping), so a peer that pings and never reads makes us hold 16
/// small frames, not one per ping; a burst of pings from a peer that reads
/// (the Autobahn|Testsuite sends ten at once) is still answered ping for ping.
pub const MAX_UNSENT_PONGS: usize = 16;

/// What each queued message or frame counts against
/// [`MAX_OUTGOING_BUFFER`] besides its bytes: 128. The queue's entry, the
/// frame's buffer and its header cost 75 to 140 bytes of memory however
/// small the message (measured with `send_text_message("")` to a peer that
/// does not read), so counting payload bytes alone let 5,000,000 empty
/// messages take 350 MB while the limit saw nothing. With this cost, a
/// queue at the limit holds at most 64 MiB of memory, however its messages
/// are sized.
pub const QUEUED_MESSAGE_COST: usize = 128;

/// Bytes of received messages that may wait for Python on one event queue
/// before the sockets that feed it stop reading: 16 MiB.
///
/// Slow handlers then push back on the peers through TCP instead of letting
/// the queue grow. A single larger message still passes: the check is made
/// before each read, not against the message.
pub const MAX_PENDING_EVENT_BYTES: usize = 16 << 20;

/// Binary messages from 1 MiB, in one frame, are read straight into the
/// `bytes` object Python receives (see `landing`), rather than into a buffer
/// that Python then copies: one pass over the message instead of two, and
/// half the memory. Smaller messages are not worth the extra wake-up of the
/// Python thread that asks for the object.
pub const LAND_FROM: usize = 1 << 20;

/// Binary messages from 8 KiB (up to `LAND_FROM`) are copied by the I/O
/// thread, right after it read them, into a blank `bytes` made ahead of time
/// (see `landing::Spares`). Below it the copy is too short for the other
/// core's cache to matter.
pub const SPARE_FROM: usize = 8 << 10;

/// Most bytes of blank `bytes` objects one event queue keeps ready for
/// messages to be copied into: 2 MiB, enough for a window of messages just
/// under `LAND_FROM` or thirty-two of 64 KiB. They are made only for sizes
/// that recur, and the oldest go first when blanks of a new size need room.
pub const MAX_SPARE_BYTES: usize = 2 << 20;

/// Smallest read: 1 KiB, so that ten thousand quiet connections cost
/// little; small messages fit whole. A connection that never received
/// anything holds no read buffer at all: it is made when the socket is
/// first readable.
pub const MIN_READ_SIZE: usize = 1 << 10;

/// Largest read: 256 KiB. A read that fills the buffer doubles the next one
/// up to this, so a busy connection takes what the kernel has in a few
/// system calls (a frame larger than this is still read whole into one
/// buffer sized to it).
pub const MAX_READ_SIZE: usize = 256 << 10;

/// Largest piece of a client's outgoing payload masked at a time: 256 KiB.
/// A client masks what it sends as it writes it, through a buffer of this
/// size that stays in the CPU's cache, rather than into a copy of the whole
/// message; a connection holds it only while it writes.
pub const MASK_BUFFER: usize = 256 << 10;

/// Most bytes a Python thread reads from one socket at a time, in reads of
/// up to `MAX_READ_SIZE` each parsed before the next: 4 MiB.
///
/// A peer that sends fast fills the socket faster than one read takes it;
/// reading on while reads come back full makes one batch of many messages
/// (fewer wake-ups, and the answers sent together), while each read stays
/// small enough to be copied into its messages from the cache. It also
/// bounds how much one busy socket is read before the thread's other
/// sockets and its handlers get their turn. Reads into a large message's
/// `bytes` (see `LAND_FROM`) are not followed: that message goes to its
/// handler at once.
pub const READ_BURST: usize = 4 << 20;

/// The smallest allocation glibc's malloc maps on its own, as wsbind sets
/// it at import: 4 MiB, so that up to 8 MiB freed at the top of a thread's
/// heap stay there for the next allocations (glibc on Linux only).
///
/// Python allocates the `bytes` of every message received with glibc's
/// malloc. From 128 KiB glibc maps each block on its own, and gives back to
/// the kernel whatever more than 128 KiB is free at the top of a heap: a
/// batch of 64 KiB messages (up to `READ_BURST` of them) freed together was
/// given back, and the next batch's `bytes` faulted their pages in again,
/// 50,000 page faults a second and an eighth of the thread's time with 64
/// messages of 64 KiB in flight. glibc moves both thresholds itself the
/// first time a program frees a mapped block larger than them (to its size,
/// and twice that); wsbind frees one of this size at import, so that they
/// move before its first batch. A program that set them (`mallopt`,
/// `GLIBC_TUNABLES`) keeps its own.
pub const MALLOC_MAP_FROM: usize = 4 << 20;

/// How long wsbind's event thread keeps looking for the next event before it
/// sleeps: 50 µs (`WSBIND_SPIN_US` changes it; 0 turns it off).
///
/// Waking a sleeping thread costs tens of microseconds on a virtual machine,
/// as much as a whole round trip on loopback; a reply that comes within the
/// spin is handled at once. The thread yields the CPU between looks, so that
/// the threads doing the work keep it; the spin costs at most this much after
/// each batch of events (or the last bytes of a large message), and nothing
/// while no events come or while they come too far apart for it to find them
/// (see [`SPIN_GIVE_UP`]).
pub const EVENT_SPIN: Duration = Duration::from_micros(50);

/// After how many waits in a row whose events came later than the spin
/// would have lasted the event thread stops spinning: 4.
///
/// A thread whose messages come 10 ms apart would spin 50 µs for nothing
/// after each, half again the CPU of handling it; a few waits tell that
/// apart from round trips, whose replies come within the spin every time.
/// A wait that sleeps and still has its events within the spin's length
/// turns the spin back on.
pub const SPIN_GIVE_UP: u32 = 4;

/// While the spin is off, every 32nd wait spins anyway: a sleeping thread's
/// wake-up can push a reply that came quickly past the spin's length, and
/// the probe sees it come in time. It costs one spin in 32 waits.
pub const SPIN_PROBE: u32 = 32;

/// How long a Python thread that reads its sockets itself (see
/// [`receiver`](crate::receiver)) may leave one ready and unread before the
/// I/O thread reads it instead: 50 to 100 ms (checked every 50 ms).
///
/// A handler may run for seconds, a notebook cell may block its loop; pings
/// must still be answered and close frames echoed. Short next to any
/// keepalive timeout, long next to a batch of handlers, so that reading goes
/// back and forth only when a thread is really busy.
pub const LEND_AFTER: Duration = Duration::from_millis(50);

/// How long the opening handshake may take, TCP connection included for a
/// client: 10 s, as Qt's server. A client that opens TCP and never finishes
/// its handshake costs a server nothing after that.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long we wait for the peer to answer our close frame before dropping
/// the connection: 10 s, as websockets' `close_timeout`.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection whose peer broke the protocol waits for the
/// handlers of the messages that came before the broken frame: 1 s.
///
/// A message that arrived whole before the broken frame is the peer's, and
/// the answers the handlers give it go out before our close frame (the
/// Autobahn|Testsuite's cases 3.2–5.15 check this). Nothing more is read
/// meanwhile, so the peer gets no more work done; a thread busy for longer
/// than this is not waited for.
pub const FAILURE_ANSWER_WAIT: Duration = Duration::from_secs(1);

/// How long we try to tell a peer that broke the protocol why we drop it
/// (the close frame with 1002, 1007 or 1009): 1 s. Such a peer is not owed
/// the full `close_timeout`.
pub const FAILURE_LINGER: Duration = Duration::from_secs(1);

/// Size of the frames a long outgoing message is cut into: 512 KiB, Qt's
/// `outgoingFrameSize`, so that peers with a frame limit still take it.
pub const OUTGOING_FRAME_SIZE: usize = 512 << 10;

/// How often a keepalive ping goes out: 20 s, as websockets. Often enough to
/// keep NAT and proxy mappings alive, rare enough to cost nothing.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// How long a keepalive ping may wait for its pong before the connection is
/// failed with 1011: 20 s, as websockets. This is what detects a peer whose
/// host vanished without closing TCP.
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest HTTP head of a handshake request or response: 16 KiB. Browsers
/// send under 2 KiB; cookies make it grow, rarely past 8 KiB.
pub const MAX_HANDSHAKE_SIZE: usize = 16 << 10;

/// Largest file a server sends in one response: 8 MiB (a property of each
/// server, `max_file_size`). A file is read whole into memory before it is
/// sent, so that the connection's task never waits on the disk while it
/// writes; 8 MiB is ample for the pages, scripts and images of a prototype
/// served from its own port, and many clients fetching at once cost a
/// bounded amount. Larger files get HTTP 500 saying so: serve them from a
/// web server made for it.
pub const MAX_FILE_SIZE: usize = 8 << 20;

/// Largest body of a plain HTTP request: 64 KiB. A handler gets the body
/// whole, and a form, a small JSON document or a webhook's payload fits; a
/// client cannot make the server hold more before a handler has seen it.
/// Longer bodies get HTTP 413, chunked ones 411.
pub const MAX_REQUEST_BODY: usize = 64 << 10;

/// Connections that finished their handshake but that the server has not
/// handed to `client_connected` yet: 30, as Qt's `maxPendingConnections`.
/// Over it a new client waits for a place (see `PENDING_WAIT`), then gets
/// HTTP 503 (try again later) and `server_error(1006)`.
pub const MAX_PENDING_CONNECTIONS: usize = 30;

/// How long a handshake waits for a pending place before its 503: 5 s, or
/// half the handshake timeout if that is shorter, so that the 503 is still
/// sent. A burst of clients (a restarted server's browser tabs all coming
/// back) finishes its handshakes faster than Python takes them, and should
/// wait milliseconds rather than be refused; a Python thread stuck for
/// seconds is worth a 503 within the handshake timeout (10 s). A server
/// that stops listening refuses its waiting clients at once.
pub const PENDING_WAIT: Duration = Duration::from_secs(5);

/// Connections the kernel queues for a listening server before it accepts
/// them: 1024 (Qt's default is 50, Python's `asyncio` 100, Linux caps it
/// at `net.core.somaxconn`, 4096 by default). Past the backlog a SYN is
/// dropped and the client's kernel retries after a second, so a burst of a
/// few hundred connects (a load test, clients reconnecting after a restart)
/// would wait that second with 128. Each queued connection costs the kernel
/// its socket buffers until accepted, about 1 KiB idle, so 1024 stay small.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Handshakes a server runs at once: 4096. Each is bounded by the handshake
/// timeout and costs a task and a small buffer (about 16 MiB for all of
/// them), so thousands of clients that stall their handshake cannot keep
/// real ones out; past the bound, new TCP connections wait in the kernel's
/// backlog until a stalled one times out.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 4096;

/// The window permessage-deflate compresses with, and asks a client to
/// compress with: 12 bits (4 KiB), as websockets' server. A compressor
/// costs about 4 times its window plus 128 KiB of hash tables while it
/// holds a context, a decompressor its window plus 7 KiB; 12 bits keep
/// most of the gain on the small JSON messages bots exchange (whose
/// repetitions are close together) for a quarter of 15 bits' window.
pub const DEFLATE_WINDOW_BITS: u8 = 12;

/// How much memory permessage-deflate's compressor gives its hash tables
/// and its buffer of pending symbols: level 5 of zlib's 1-9, as websockets
/// uses. zlib's default, 8, costs 128 KiB of them per compressing
/// connection; 5 costs 16 KiB, and on messages of a few KiB, which fit
/// the 4 KiB window anyway, compresses within a few percent as well.
pub const DEFLATE_MEM_LEVEL: i32 = 5;

/// The compression level: 4 of zlib's 1-9. It is the lowest level at which
/// zlib-rs's output is no larger than websockets' (C zlib at its default
/// level 6, the same window and memory level), and it takes two thirds of
/// the time of zlib-rs's own level 6. Measured on the JSON-like messages
/// of benches/compression.py (2026-12-05, the best of 15 rounds, a fresh
/// compressor each time):
///
/// | compressor, level | 1 KiB: bytes, µs | 64 KiB: bytes, µs |
/// |---|---|---|
/// | C zlib 6 (websockets) | 295, 9.1 | 11,929, 673 |
/// | zlib-rs 6 | 291, 14.9 | 11,415, 487 |
/// | zlib-rs 4 | 304, 14.1 | 11,838, 422 |
/// | zlib-rs 3 | 304, 14.3 | 12,342, 336 |
/// | zlib-rs 2 | 311, 14.0 | 12,847, 282 |
/// | zlib-rs 1 | 395, 7.3 | 19,487, 159 |
///
/// Deflate is most of the CPU a compressed message costs, so this sets the
/// rate of a compressed echo (benches/README.md). Levels 1-3 are faster
/// still, but 1 sends two thirds more bytes and 2-3 more than websockets
/// does; the 1 KiB figures are mostly making the compressor, once a
/// connection (with context takeover, later messages reuse it).
pub const DEFLATE_LEVEL: u32 = 4;

/// Messages shorter than this go out uncompressed even where compression
/// was agreed: 128 bytes. Below it the deflate block's own overhead and
/// the time to compress outweigh what is saved.
pub const COMPRESS_FROM: usize = 128;

/// Messages a socket holds for Python's `recv()` before it stops reading
/// the socket: 16, as websockets' `max_queue` (a property of each socket).
///
/// A program that stops calling `recv()` then makes the peer wait, through
/// TCP, instead of filling memory; 16 messages smooth out a program that
/// receives in bursts. Reading resumes once a quarter of them is left.
/// Handlers alone hold nothing: a socket holds messages only once `recv()`
/// is used on it.
pub const MAX_QUEUE: usize = 16;

/// Bytes waiting to be written above which Python's `await send()` waits
/// until a quarter of them is left: 32 KiB, as websockets' `write_limit`
/// (a property of each socket). Enough for many small messages to leave
/// in one write, little enough that a slow peer holds up a sender early.
pub const WRITE_LIMIT: usize = 32 << 10;

/// How long a server that takes over an address waits for the wsbind
/// server of the same process that held it to let it go: 5 s.
///
/// Re-running a notebook cell makes a new server on the port of the old
/// one; the old one's listening task drops its socket as soon as the I/O
/// thread sees the stop, in microseconds, so the bound is there only for an
/// I/O thread stuck elsewhere: the caller of `listen` is never held longer.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of group broadcasts that may wait to be published to the broker
/// (Redis): 16 MiB, each message counting [`QUEUED_MESSAGE_COST`] more.
///
/// Publishing never blocks the sender, so a Redis that is slow to answer
/// would otherwise let the queue grow without end. 16 MiB holds a second of
/// 30,000 small broadcasts with room to spare; past it a broadcast still
/// reaches this process's members, is not published, and is counted in
/// `broker_dropped`.
pub const BROKER_QUEUE_SIZE: usize = 16 << 20;

/// The first wait before connecting to the broker again after a failure:
/// 100 ms, doubled at each failure up to [`BROKER_RETRY_MAX`].
///
/// A Redis that restarts is back within a second; one that is down for
/// long is tried every few seconds, not in a loop that fills the logs.
pub const BROKER_RETRY_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between two attempts to reach the broker: 5 s, so that
/// cross-process delivery resumes at most 5 s after Redis is back.
pub const BROKER_RETRY_MAX: Duration = Duration::from_secs(5);

/// How long connecting to the broker, or one of its answers, may take:
/// 5 s. A Redis that does not answer within it counts as gone (state
/// ERROR), and the broker connects anew; what was waiting to be published
/// is dropped and counted rather than held for ever.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the broker pings Redis when nothing else happens: every 5 s.
/// A connection cut without a reset (a host that vanished) is otherwise
/// noticed only by the kernel's keepalive, after hours; with it, within
/// this and [`BROKER_TIMEOUT`].
pub const BROKER_PING_INTERVAL: Duration = Duration::from_secs(5);

/// Publications sent to Redis in one pipeline: at most 1,024. Many
/// broadcasts queued together cost one round trip; the bound keeps one
/// pipeline's buffer small and lets subscriptions and incoming messages
/// have their turn between pipelines.
pub const BROKER_PIPELINE: usize = 1024;

/// How long Python's exit waits for the result being handed to an asyncio
/// loop (`py/awaitable.rs`): 1 s. It takes microseconds; the bound is for
/// a child process forked while one was under way, whose lock the thread
/// it does not have holds.
pub const EXIT_WAIT: Duration = Duration::from_secs(1);
