//! ws-peer: the fixed native end of every wsbind benchmark.
//!
//! Every library is measured against this same program, so that differences
//! come from the library, not from its peer. It runs on one tokio thread:
//! the machine has few cores, and a peer that used them all would steal them
//! from the library under test. Each measuring command prints one JSON line.
//!
//!     ws-peer echo-server --port P
//!     ws-peer broadcast-server --port P --clients N --messages M [--size B]
//!     ws-peer client --url U --mode rtt|pipeline|mbps|latency|idle
//!             [--size B] [--window W] [--connections C] [--warmup S] [--duration S]
//!     ws-peer client --url U --mode busy --connections C --interval-ms T [--size B]
//!             [--warmup S] [--duration S]
//!     ws-peer connect-many --url U --count N        (holds them until stdin closes)
//!     ws-peer broadcast-sink --url U --count N --expect M [--deflate 1]
//!
//! Over TLS (wss://, `stream.rs`): `echo-server --tls-cert C --tls-key K`
//! (PEM files), and `client --url wss://... --ca CA` with the modes rtt,
//! pipeline, mbps and `handshakes [--concurrency N]` (connections opened,
//! handshaken and closed as fast as N tasks can).
//! The stock peers (`stream.rs`): `stock-server --port P` and `stock-client
//! --url U --mode rtt|pipeline|mbps`, tokio-tungstenite's defaults on its
//! multi-threaded runtime.
//!
//! Messages are binary: every library can send and receive bytes without
//! decoding, so the figures compare the libraries' framing and dispatch.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::process::exit;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, poll_fn};
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{spawn_local, LocalSet};
use tokio::time::sleep;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

mod direct;
mod reader;
mod stream;
use direct::{Frames, Socket, DIRECT_FROM};
use reader::{Event, Reader};
use stream::{close, next_data};

type Client = WebSocketStream<Socket>;

/// glibc hands a freed 16 MiB message back to the kernel and faults the next
/// one in page by page: with a library that sends a message in several
/// frames, which tungstenite joins into a new buffer, those faults were 40%
/// of the echo server's time. mimalloc keeps the memory for the next message.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The rows send 16 MiB messages in one frame, as most libraries do: no
/// limit on our side, so a failure is always the library's own limit.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
}

/// `--name value` pairs; every option has a default or is required.
struct Args(HashMap<String, String>);

impl Args {
    fn parse(args: &[String]) -> Args {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let Some(name) = key.strip_prefix("--") else {
                fail(&format!("unexpected argument {key}"))
            };
            let Some(value) = it.next() else {
                fail(&format!("{key} needs a value"))
            };
            map.insert(name.to_string(), value.clone());
        }
        Args(map)
    }

    fn str(&self, name: &str) -> String {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| fail(&format!("--{name} is required")))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.0.get(name) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| fail(&format!("--{name}: bad number {v}"))),
        }
    }

    fn secs(&self, name: &str, default: f64) -> Duration {
        Duration::from_secs_f64(self.num(name, default))
    }
}

fn fail(message: &str) -> ! {
    eprintln!("ws-peer: {message}");
    exit(2)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = argv.first() else {
        fail("no command; see the top of src/main.rs")
    };
    let args = Args::parse(&argv[1..]);
    raise_file_limit();
    if let Some(command) = command.strip_prefix("stock-") {
        // As a user's program: tokio's multi-threaded runtime, every default.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            match command {
                "server" => stream::echo_server(&args, None, None).await,
                "client" => stream::client(&args, None, None).await,
                other => fail(&format!("unknown command stock-{other}")),
            }
        });
        exit(0)
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Rc and Cell instead of atomics: everything runs on this one thread.
    LocalSet::new().block_on(&runtime, async move {
        match command.as_str() {
            "echo-server" => match stream::acceptor(&args) {
                Some(tls) => stream::echo_server(&args, Some(tls), Some(config())).await,
                None => echo_server(&args).await,
            },
            "broadcast-server" => broadcast_server(&args).await,
            "client" if args.0.contains_key("ca") => {
                stream::client(&args, stream::connector(&args), Some(config())).await
            }
            "client" => match args.str("mode").as_str() {
                "rtt" => rtt(&args).await,
                "pipeline" => pipeline(&args).await,
                "mbps" => mbps(&args).await,
                "latency" => latency(&args).await,
                "idle" => idle(&args).await,
                "busy" => busy(&args).await,
                other => fail(&format!("unknown mode {other}")),
            },
            "connect-many" => connect_many(&args).await,
            "broadcast-sink" => broadcast_sink(&args).await,
            other => fail(&format!("unknown command {other}")),
        }
    });
    // Open connections are dropped with the process: the measurement is over.
    exit(0)
}

/// The many-connection commands hold 10,000 sockets: the soft limit on open
/// files (often 1,024) is lifted to the hard one, as the harness does for
/// itself and the servers it starts.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The `p` quantile (0 to 1) of `sorted` latency samples, by the nearest
/// rank; 0 without samples.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

// -- echo server

async fn echo_server(args: &Args) {
    let host = args
        .0
        .get("host")
        .cloned()
        .unwrap_or_else(|| "127.0.0.1".into());
    let listener = stream::listen(&host, args.num("port", 0u16)).await;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        spawn_local(echo(tcp));
    }
}

async fn echo(tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    let accepted = tokio_tungstenite::accept_async_with_config(Socket::new(tcp), Some(config()));
    let Ok(ws) = accepted.await else {
        return;
    };
    // tungstenite's part ends with the handshake: a client sends nothing
    // before the response, so it has read nothing past the request.
    let (mut tcp, outgoing) = ws.into_inner().into_parts();
    let mut frames = outgoing.take();
    let mut reader = Reader::keeping();
    let mut closing = false;
    // One task polls both directions by hand: reading goes on while a write
    // waits for the socket, so a blocking client that sends its whole window
    // before it reads cannot deadlock with us, and everything that has
    // arrived is read first, so that its echoes leave in one write.
    let _ = poll_fn(|cx| -> Poll<std::io::Result<()>> {
        loop {
            let mut progress = false;
            while !closing {
                let Poll::Ready(event) = reader.poll_next(&mut tcp, cx)? else {
                    break;
                };
                progress = true;
                match event {
                    Event::Message(kind, parts) => frames.push_parts(kind, parts),
                    Event::Ping(payload) => {
                        frames.push_frame(OpCode::Control(Control::Pong), payload, false)
                    }
                    Event::Close(payload) => {
                        frames.push_frame(OpCode::Control(Control::Close), payload, false);
                        closing = true;
                    }
                }
            }
            let written = frames.drain(&mut tcp, cx)?.is_ready();
            if written && closing {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    })
    .await;
}

// -- broadcast server

/// Once `clients` clients are connected, sends each `messages` messages of
/// `size` bytes, written as few times as tungstenite's buffers allow: the
/// ceiling of the broadcast row, which says whether `broadcast-sink` (this
/// program on the other side) can count as fast as a library could send.
async fn broadcast_server(args: &Args) {
    let clients = args.num("clients", 1000usize);
    let messages = args.num("messages", 1000usize);
    let payload = payload(args);
    let listener = TcpListener::bind(("127.0.0.1", args.num("port", 0u16)))
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen: {e}")));
    println!(
        r#"{{"event":"listening","port":{}}}"#,
        listener.local_addr().unwrap().port()
    );
    let sinks = Rc::new(RefCell::new(Vec::new()));
    let everyone = Rc::new(tokio::sync::Notify::new());
    let (accepted_sinks, accepted_everyone) = (sinks.clone(), everyone.clone());
    spawn_local(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (sinks, everyone) = (accepted_sinks.clone(), accepted_everyone.clone());
            spawn_local(async move {
                let _ = tcp.set_nodelay(true);
                let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config())).await
                else {
                    return;
                };
                let (sink, mut stream) = ws.split();
                sinks.borrow_mut().push(sink);
                if sinks.borrow().len() == clients {
                    everyone.notify_one();
                }
                while let Some(Ok(_)) = stream.next().await {}
            });
        }
    });
    everyone.notified().await;
    let mut sinks = sinks.take();
    for _ in 0..messages {
        for sink in sinks.iter_mut() {
            let _ = sink.feed(Message::Binary(payload.clone())).await;
        }
    }
    for sink in sinks.iter_mut() {
        let _ = sink.flush().await;
    }
    // Held until the harness closes our stdin, as the libraries' servers are.
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
}

// -- clients

async fn connect(url: &str) -> Result<Client, String> {
    connect_offering(url, None).await.map(|(ws, _)| ws)
}

/// A connection that offers `extensions` in its handshake (tungstenite
/// passes the header through and does not check the answer), with the
/// server's `Sec-WebSocket-Extensions` answer.
async fn connect_offering(
    url: &str,
    extensions: Option<&'static str>,
) -> Result<(Client, String), String> {
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if let Some(offer) = extensions {
        let value = tokio_tungstenite::tungstenite::http::HeaderValue::from_static(offer);
        request
            .headers_mut()
            .insert("Sec-WebSocket-Extensions", value);
    }
    let uri = request.uri();
    let (Some("ws"), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err("the peer speaks plain ws:// only".into());
    };
    let address = (host.to_string(), uri.port_u16().unwrap_or(80));
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    // Nagle off, as every library under test does for its own sockets.
    let _ = tcp.set_nodelay(true);
    match tokio_tungstenite::client_async_with_config(request, Socket::new(tcp), Some(config()))
        .await
    {
        Ok((ws, response)) => {
            let agreed = response
                .headers()
                .get("Sec-WebSocket-Extensions")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            Ok((ws, agreed))
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn connect_or_fail(url: &str) -> Client {
    connect(url)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot connect to {url}: {e}")))
}

/// A connection for the many-client commands: a server that is still busy
/// accepting the previous ones may refuse one, so it is tried again.
async fn connect_retrying(url: &str, extensions: Option<&'static str>) -> Option<(Client, String)> {
    for attempt in 0..5 {
        if let Ok(connected) = connect_offering(url, extensions).await {
            return Some(connected);
        }
        sleep(Duration::from_millis(50 << attempt)).await;
    }
    None
}

fn payload(args: &Args) -> Bytes {
    Bytes::from(vec![b'x'; args.num("size", 32usize)])
}

/// One message at a time: send, wait for the echo, send again.
async fn rtt(args: &Args) {
    let ws = connect_or_fail(&args.str("url")).await;
    let (warmup, duration) = (args.secs("warmup", 0.5), args.secs("duration", 3.0));
    let (counted, secs) = stream::rtt(ws, payload(args), warmup, duration).await;
    println!(
        r#"{{"mode":"rtt","msgs":{counted},"secs":{secs:.6},"rate":{:.1}}}"#,
        counted as f64 / secs
    );
}

/// `window` messages in flight on one connection: each echo lets one more go.
async fn pipeline(args: &Args) {
    let size = args.num("size", 32usize);
    let ws = connect_or_fail(&args.str("url")).await;
    let outgoing = ws.get_ref().outgoing.clone();
    let (mut sink, mut stream) = ws.split();
    let credits = Rc::new(Semaphore::new(args.num("window", 64usize)));
    let (sent, received) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64)));
    let stopping = Rc::new(Cell::new(false));
    let payload = payload(args);
    let (writer_credits, writer_sent) = (credits.clone(), sent.clone());
    // Sends while it has credits; once they are closed, hands the sink back.
    let writer = spawn_local(async move {
        while let Ok(permit) = writer_credits.acquire().await {
            permit.forget();
            let mut batch = 1;
            while let Ok(permit) = writer_credits.try_acquire() {
                permit.forget();
                batch += 1;
            }
            for _ in 0..batch {
                if size >= DIRECT_FROM {
                    outgoing.borrow_mut().push(payload.clone(), true);
                } else if let Err(e) = sink.feed(Message::Binary(payload.clone())).await {
                    fail(&format!("send failed: {e}"));
                }
            }
            writer_sent.set(writer_sent.get() + batch);
            if let Err(e) = sink.flush().await {
                fail(&format!("send failed: {e}"));
            }
        }
        sink
    });
    let (reader_received, reader_stopping) = (received.clone(), stopping.clone());
    let reader_credits = credits.clone();
    let reader = spawn_local(async move {
        while next_data(&mut stream).await {
            reader_received.set(reader_received.get() + 1);
            reader_credits.add_permits(1);
        }
        if !reader_stopping.get() {
            fail("the library closed the connection");
        }
    });
    sleep(args.secs("warmup", 0.5)).await;
    let (before, began) = (received.get(), Instant::now());
    sleep(args.secs("duration", 3.0)).await;
    let msgs = received.get() - before;
    let secs = began.elapsed().as_secs_f64();
    let bytes = msgs * size as u64;

    // Stop sending, let the echoes in flight come back, then close.
    stopping.set(true);
    credits.close();
    let mut sink = writer.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while received.get() < sent.get() && Instant::now() < deadline {
        sleep(Duration::from_millis(1)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = sink.close().await;
        let _ = reader.await;
    })
    .await;
    println!(
        r#"{{"mode":"{}","msgs":{msgs},"bytes":{bytes},"secs":{secs:.6},"rate":{:.1},"mbps":{:.2}}}"#,
        args.str("mode"),
        msgs as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

/// The same as `pipeline` for large messages (MB/s), the echoes counted from
/// their frame headers (`reader.rs`).
async fn mbps(args: &Args) {
    let ws = connect_or_fail(&args.str("url")).await;
    // tungstenite's part ends with the handshake: no server sends anything
    // before the first message, so it has read nothing past the response.
    let (tcp, outgoing) = ws.into_inner().into_parts();
    let mut echo = Echo {
        tcp,
        frames: outgoing.take(),
        reader: Reader::counting(),
        payload: payload(args),
        window: args.num("window", 8usize),
        in_flight: 0,
        received: 0,
        closing: false,
    };
    if !echo.run_for(args.secs("warmup", 0.5)).await {
        fail("the library closed the connection");
    }
    let (before, began) = (echo.received, Instant::now());
    if !echo.run_for(args.secs("duration", 3.0)).await {
        fail("the library closed the connection");
    }
    let msgs = echo.received - before;
    let secs = began.elapsed().as_secs_f64();
    let bytes = msgs * echo.payload.len() as u64;

    // Stop sending, let the echoes in flight come back, then close.
    echo.window = 0;
    echo.run_for(Duration::from_secs(2)).await;
    echo.closing = true;
    echo.frames.push_frame(
        OpCode::Control(Control::Close),
        Bytes::from_static(&[3, 232]),
        true,
    );
    echo.run_for(Duration::from_secs(1)).await;
    println!(
        r#"{{"mode":"mbps","msgs":{msgs},"bytes":{bytes},"secs":{secs:.6},"rate":{:.1},"mbps":{:.2}}}"#,
        msgs as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

/// The client side of `mbps`: one task writes and reads, by hand.
struct Echo {
    tcp: TcpStream,
    frames: Frames,
    reader: Reader,
    payload: Bytes,
    /// Messages kept in flight; 0 once the run is over.
    window: usize,
    in_flight: usize,
    received: u64,
    /// Our close frame is queued: the server's ends the run.
    closing: bool,
}

impl Echo {
    /// Sends and counts for `time`, or until every echo is back once the
    /// window is 0 (the server's close frame once closing); false if the
    /// connection ended otherwise.
    async fn run_for(&mut self, time: Duration) -> bool {
        let polled = tokio::time::timeout(time, poll_fn(|cx| self.poll(cx))).await;
        !matches!(polled, Ok(Err(_)))
    }

    /// Ready with Ok once the window is 0 and nothing is in flight or left
    /// to write (once closing, at the server's close frame), with an error
    /// when the connection ends otherwise.
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            // Every echo that has arrived first, so that the messages they
            // let go leave in one write, as a sending task woken once would.
            let mut progress = false;
            while let Poll::Ready(event) = self.reader.poll_next(&mut self.tcp, cx)? {
                progress = true;
                match event {
                    Event::Message(..) => {
                        self.in_flight = self.in_flight.saturating_sub(1);
                        self.received += 1;
                    }
                    Event::Ping(payload) => {
                        self.frames
                            .push_frame(OpCode::Control(Control::Pong), payload, true)
                    }
                    Event::Close(_) if self.closing => return Poll::Ready(Ok(())),
                    Event::Close(_) => {
                        return Poll::Ready(Err(std::io::ErrorKind::ConnectionAborted.into()))
                    }
                }
            }
            while self.in_flight < self.window {
                self.frames.push(self.payload.clone(), true);
                self.in_flight += 1;
            }
            let written = self.frames.drain(&mut self.tcp, cx)?.is_ready();
            if written && self.in_flight == 0 && self.window == 0 && !self.closing {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

/// `connections` connections, each doing round trips one at a time, all at
/// once: the latency of one round trip on a busy server.
async fn latency(args: &Args) {
    let url = args.str("url");
    let count = args.num("connections", 100usize);
    let conns = join_all((0..count).map(|_| connect_or_fail(&url))).await;
    let payload = payload(args);
    let recording = Rc::new(Cell::new(false));
    let stopping = Rc::new(Cell::new(false));
    let samples = Rc::new(RefCell::new(Vec::<u32>::new()));
    let mut tasks = Vec::new();
    for mut ws in conns {
        let (payload, recording, stopping) = (payload.clone(), recording.clone(), stopping.clone());
        let samples = samples.clone();
        tasks.push(spawn_local(async move {
            while !stopping.get() {
                let sent = Instant::now();
                if let Err(e) = ws.send(Message::Binary(payload.clone())).await {
                    fail(&format!("send failed: {e}"));
                }
                if !next_data(&mut ws).await {
                    fail("the library closed the connection");
                }
                if recording.get() {
                    samples.borrow_mut().push(sent.elapsed().as_micros() as u32);
                }
            }
            close(ws).await;
        }));
    }
    sleep(args.secs("warmup", 0.5)).await;
    recording.set(true);
    let began = Instant::now();
    sleep(args.secs("duration", 3.0)).await;
    recording.set(false);
    let secs = began.elapsed().as_secs_f64();
    stopping.set(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), join_all(tasks)).await;
    let mut samples = samples.take();
    samples.sort_unstable();
    let pct = |p: f64| percentile(&samples, p);
    println!(
        r#"{{"mode":"latency","msgs":{},"secs":{secs:.6},"rate":{:.1},"p50_us":{},"p99_us":{}}}"#,
        samples.len(),
        samples.len() as f64 / secs,
        pct(0.50),
        pct(0.99)
    );
}

async fn idle(args: &Args) {
    let _ws = connect_or_fail(&args.str("url")).await;
    sleep(args.secs("duration", 3.0)).await;
    println!(r#"{{"mode":"idle","msgs":0}}"#);
}

/// What `busy` counts, shared by its connections' tasks.
#[derive(Default)]
struct Busy {
    sent: Cell<u64>,
    received: Cell<u64>,
    recording: Cell<bool>,
    /// Microseconds from a message's send to its echo, while recording.
    samples: RefCell<Vec<u32>>,
}

/// One connection of `busy`: its writing half, shared by the ticker that
/// sends and the task that reads its echoes.
struct Talker {
    tcp: OwnedWriteHalf,
    /// When each message not echoed yet was sent, oldest first.
    sent_at: RefCell<VecDeque<Instant>>,
    /// What the socket did not take yet: written before anything new.
    unsent: RefCell<Vec<u8>>,
}

impl Talker {
    /// Writes `frame` after what is waiting, without waiting: what the
    /// socket does not take waits for this connection's next turn.
    fn write(&self, frame: &[u8]) {
        let mut unsent = self.unsent.borrow_mut();
        if unsent.is_empty() {
            match self.tcp.try_write(frame) {
                Ok(n) if n == frame.len() => return,
                Ok(n) => unsent.extend_from_slice(&frame[n..]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    unsent.extend_from_slice(frame)
                }
                Err(e) => fail(&format!("send failed: {e}")),
            }
            return;
        }
        unsent.extend_from_slice(frame);
        match self.tcp.try_write(&unsent) {
            Ok(n) => {
                unsent.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => fail(&format!("send failed: {e}")),
        }
    }
}

/// A client's frame of `payload`, masked (a fixed key: no server can tell,
/// and the frame is built once for every message of the run).
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&KEY);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    frame
}

/// `connections` connections, each sending a `size`-byte message every
/// `interval-ms` whatever the echoes do: an open loop, as that many
/// independent users would, so that a server that falls behind shows a
/// backlog that grows (`in_flight` at the end) and latencies that climb,
/// not a rate that politely slows down. Prints `{"event":"measuring"}`
/// when the measured window opens, for the harness to read the server's
/// CPU time then and at the result line.
///
/// 100,000 messages a second on one thread: with tungstenite and a timer
/// per connection the peer itself fell behind at 12k a second (a timer, a
/// write and two reads per message, on a loaded 2-core machine), so here
/// one ticker writes a frame built once to each connection in its turn
/// (the connections are spread over 100 turns of the interval), with no
/// wait, and each connection's reader parses frame headers itself from a
/// small buffer.
async fn busy(args: &Args) {
    let url = args.str("url");
    let count = args.num("connections", 10_000usize);
    let interval = Duration::from_secs_f64(args.num("interval-ms", 100.0f64) / 1000.0);
    let frame = masked_frame(2, &payload(args));
    let gate = Rc::new(Semaphore::new(args.num("concurrency", 64usize)));
    let conns: Vec<Client> = join_all((0..count).map(|_| {
        let (gate, url) = (gate.clone(), url.clone());
        async move {
            let _permit = gate.acquire().await.unwrap();
            connect_retrying(&url, None).await.map(|(ws, _)| ws)
        }
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    if conns.len() < count {
        fail(&format!(
            "only {} of {count} connections opened",
            conns.len()
        ));
    }
    println!(r#"{{"event":"open","open":{count}}}"#);
    let state = Rc::new(Busy::default());
    let mut talkers = Vec::with_capacity(count);
    for ws in conns {
        // The servers send nothing before the first message: tungstenite
        // has read nothing past the handshake's response.
        let (tcp, _) = ws.into_inner().into_parts();
        let (reading, writing) = tcp.into_split();
        let talker = Rc::new(Talker {
            tcp: writing,
            sent_at: RefCell::default(),
            unsent: RefCell::default(),
        });
        spawn_local(read_echoes(reading, talker.clone(), state.clone()));
        talkers.push(talker);
    }
    let turns = count.clamp(1, 100);
    let ticker_state = state.clone();
    spawn_local(async move {
        let mut ticks = tokio::time::interval(interval / turns as u32);
        // Late turns are taken at once: the load does not drop because
        // the server (or this thread) is slow.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for turn in (0..turns).cycle() {
            ticks.tick().await;
            let now = Instant::now();
            let mut sent = 0;
            for talker in talkers.iter().skip(turn).step_by(turns) {
                talker.sent_at.borrow_mut().push_back(now);
                talker.write(&frame);
                sent += 1;
            }
            ticker_state.sent.set(ticker_state.sent.get() + sent);
        }
    });
    sleep(args.secs("warmup", 0.5)).await;
    let (sent, received) = (state.sent.get(), state.received.get());
    println!(r#"{{"event":"measuring"}}"#);
    state.recording.set(true);
    let began = Instant::now();
    sleep(args.secs("duration", 3.0)).await;
    state.recording.set(false);
    let secs = began.elapsed().as_secs_f64();
    let msgs = state.received.get() - received;
    let offered = state.sent.get() - sent;
    let in_flight = state.sent.get() - state.received.get();
    let mut samples = state.samples.take();
    samples.sort_unstable();
    let pct = |p: f64| percentile(&samples, p);
    // The connections are dropped with the process, after this line: the
    // harness stops the server first.
    println!(
        r#"{{"mode":"busy","msgs":{msgs},"sent":{offered},"secs":{secs:.6},"rate":{:.1},"offered_rate":{:.1},"in_flight":{in_flight},"p50_us":{},"p99_us":{},"max_us":{}}}"#,
        msgs as f64 / secs,
        offered as f64 / secs,
        pct(0.50),
        pct(0.99),
        samples.last().copied().unwrap_or(0)
    );
}

/// Reads one `busy` connection's echoes, each timed against its message's
/// send, and answers pings. The server's frames are parsed here from a
/// 4 KiB buffer (the Reader's 256 KiB, ten thousand times over, would be
/// 2.5 GiB): data frames are skipped through, control frames read whole.
async fn read_echoes(mut tcp: OwnedReadHalf, talker: Rc<Talker>, state: Rc<Busy>) {
    let mut buffer = vec![0u8; 4096];
    let (mut start, mut end) = (0usize, 0usize);
    // Payload bytes of the current data frame still to skip.
    let mut skipping = 0usize;
    loop {
        if start == end {
            (start, end) = (0, 0);
        } else if end == buffer.len() {
            buffer.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        match tcp.read(&mut buffer[end..]).await {
            Ok(0) | Err(_) => fail("the library closed the connection"),
            Ok(n) => end += n,
        }
        loop {
            if skipping > 0 {
                let step = skipping.min(end - start);
                (start, skipping) = (start + step, skipping - step);
                if skipping > 0 {
                    break;
                }
            }
            let Some((head, length)) = frame_header(&buffer[start..end]) else {
                break;
            };
            let (fin, opcode) = (buffer[start] & 0x80 != 0, buffer[start] & 0x0f);
            if opcode >= 8 {
                // A control frame: at most 125 bytes, read whole.
                if end - start < head + length {
                    break;
                }
                match opcode {
                    9 => talker.write(&masked_frame(
                        10,
                        &buffer[start + head..start + head + length],
                    )),
                    8 => fail("the library closed the connection"),
                    _ => {}
                }
                start += head + length;
                continue;
            }
            (start, skipping) = (start + head, length);
            if fin {
                let Some(sent) = talker.sent_at.borrow_mut().pop_front() else {
                    fail("an echo came for no message sent");
                };
                state.received.set(state.received.get() + 1);
                if state.recording.get() {
                    let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    state.samples.borrow_mut().push(us);
                }
            }
        }
    }
}

/// A server frame's header length and payload length, once the header is
/// all in `bytes`.
fn frame_header(bytes: &[u8]) -> Option<(usize, usize)> {
    let second = *bytes.get(1)?;
    let (head, length) = match second & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    // A server's frames are not masked; a mask would be a broken server.
    if second & 0x80 != 0 {
        fail("the library sent a masked frame");
    }
    Some((head, length))
}

/// What a browser offers (Chromium's header): the broadcast sink's
/// `--deflate` makes each of its clients offer it.
const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// What the many-client commands count of the messages they receive.
#[derive(Default)]
struct Tally {
    /// Data messages.
    received: Cell<u64>,
    /// Of those, messages compressed with permessage-deflate (RSV1 on their
    /// first frame), counted without inflating them.
    compressed: Cell<u64>,
    /// Connections whose server agreed to permessage-deflate.
    agreed: Cell<usize>,
    first: Cell<Option<Instant>>,
    last: Cell<Option<Instant>>,
}

impl Tally {
    fn message(&self) {
        let now = Instant::now();
        if self.first.get().is_none() {
            self.first.set(Some(now));
        }
        self.last.set(Some(now));
        self.received.set(self.received.get() + 1);
    }
}

/// Opens `count` connections, at most `concurrency` handshakes at a time
/// (a burst of thousands would only measure the kernel's accept backlog).
/// Each is then drained by a task of its own, which answers the server's
/// keepalive pings and counts data messages into `tally`. With `extensions`
/// offered, the connections are read frame by frame instead (tungstenite
/// would fail on RSV1): messages are counted by their last frame, compressed
/// ones by RSV1 on their first, and nothing is inflated, so that the sink
/// costs the same whether the server compresses or not.
async fn open_many(
    url: &str,
    count: usize,
    concurrency: usize,
    extensions: Option<&'static str>,
    tally: Rc<Tally>,
) -> (usize, usize) {
    let gate = Rc::new(Semaphore::new(concurrency));
    let results = join_all((0..count).map(|_| {
        let (gate, tally) = (gate.clone(), tally.clone());
        let url = url.to_string();
        async move {
            let permit = gate.acquire().await.unwrap();
            let (ws, agreed) = connect_retrying(&url, extensions).await?;
            drop(permit);
            if extensions.is_none() {
                spawn_local(async move {
                    let mut ws = ws;
                    while let Some(Ok(message)) = ws.next().await {
                        if let Message::Binary(_) | Message::Text(_) = message {
                            tally.message();
                        }
                    }
                });
                return Some(());
            }
            tally
                .agreed
                .set(tally.agreed.get() + usize::from(agreed.starts_with("permessage-deflate")));
            // What tungstenite read past the response stays in its buffer:
            // a message that came with the response to the last client
            // would be lost, and the row would fail with fewer messages
            // than expected, never give a wrong rate. The servers start
            // broadcasting only once their handler saw that client.
            let (mut tcp, _) = ws.into_inner().into_parts();
            spawn_local(async move {
                let mut reader = Reader::counting();
                loop {
                    match poll_fn(|cx| reader.poll_next(&mut tcp, cx)).await {
                        Ok(Event::Message(..)) => {
                            tally.message();
                            tally
                                .compressed
                                .set(tally.compressed.get() + reader.compressed);
                            reader.compressed = 0;
                        }
                        // The runs are shorter than any server's keepalive.
                        Ok(Event::Ping(_)) => {}
                        Ok(Event::Close(_)) | Err(_) => break,
                    }
                }
            });
            Some(())
        }
    }))
    .await;
    let open = results.iter().filter(|r| r.is_some()).count();
    (open, count - open)
}

async fn connect_many(args: &Args) {
    let count = args.num("count", 1000usize);
    let began = Instant::now();
    let (open, failed) = open_many(
        &args.str("url"),
        count,
        args.num("concurrency", 64usize),
        None,
        Rc::default(),
    )
    .await;
    println!(
        r#"{{"event":"open","open":{open},"failed":{failed},"secs":{:.3}}}"#,
        began.elapsed().as_secs_f64()
    );
    // Held until the harness has measured the server and closes our stdin.
    let mut rest = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut rest).await;
}

/// `count` clients that count what a broadcasting server sends them: the
/// rate is every message delivered, from the first to the last to arrive.
/// With `--deflate 1` they offer permessage-deflate as a browser does, and
/// report how many connections agreed to it and how many messages came
/// compressed.
async fn broadcast_sink(args: &Args) {
    let count = args.num("count", 1000usize);
    let expected = count as u64 * args.num("expect", 1000u64);
    let idle_limit = args.secs("idle", 3.0);
    let extensions = (args.num("deflate", 0u8) != 0).then_some(DEFLATE_OFFER);
    let tally = Rc::new(Tally::default());
    let (open, failed) = open_many(
        &args.str("url"),
        count,
        args.num("concurrency", 64usize),
        extensions,
        tally.clone(),
    )
    .await;
    let agreed = tally.agreed.get();
    println!(r#"{{"event":"ready","open":{open},"failed":{failed},"deflate":{agreed}}}"#);
    let (received, first, last) = (&tally.received, &tally.first, &tally.last);
    let waiting_since = Instant::now();
    // Done when every message came, or when they stopped coming: a library
    // that drops messages for slow clients is measured on what it delivered.
    loop {
        sleep(Duration::from_millis(5)).await;
        if received.get() >= expected {
            break;
        }
        let quiet_since = last.get().unwrap_or(waiting_since);
        let limit = if last.get().is_some() {
            idle_limit
        } else {
            idle_limit * 10
        };
        if quiet_since.elapsed() > limit {
            break;
        }
    }
    let msgs = received.get();
    let secs = match (first.get(), last.get()) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let rate = if secs > 0.0 { msgs as f64 / secs } else { 0.0 };
    let compressed = tally.compressed.get();
    println!(
        r#"{{"mode":"broadcast","msgs":{msgs},"expected":{expected},"secs":{secs:.6},"rate":{rate:.1},"open":{open},"deflate":{agreed},"compressed":{compressed}}}"#
    );
}
