//! The peer written with tokio-tungstenite's public stream API only, over
//! any stream: no frame is read or written by hand here.
//!
//! Two uses. The wss:// rows: TLS 1.3 by tokio-rustls (ring, as wsbind's
//! own rustls), on the peer's one thread like every other command
//! (`echo-server --tls-cert C --tls-key K`, `client --ca CA`). And the
//! stock peers (`stock-server`, `stock-client`): tokio-tungstenite as a
//! user writes it, default configuration, on tokio's multi-threaded
//! runtime, the peers the issue asks the libraries to be measured against.
//!
//! The echo server is tokio-tungstenite's own example (`read.forward(write)`),
//! the clients send with `feed` and `flush` and read with `next`. The one
//! thing not left at its default is Nagle's algorithm, off on both sides,
//! as every library under test has it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{future, SinkExt, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::sleep;
use tokio_rustls::rustls::client::ClientSessionMemoryCache;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::{self, ClientConfig, HandshakeKind, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::WebSocketStream;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::{fail, Args};

/// A TCP stream, or TLS over one: boxed, so that every command is written once.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Stream = WebSocketStream<Box<dyn Io>>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The server's side of TLS, from `--tls-cert` and `--tls-key` (PEM files);
/// None without them. TLS 1.3 only, as the rows are about TLS 1.3.
pub fn acceptor(args: &Args) -> Option<TlsAcceptor> {
    let cert = args.0.get("tls-cert")?;
    let key = args.str("tls-key");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .unwrap_or_else(|e| fail(&format!("--tls-cert {cert}: {e}")));
    let key = PrivateKeyDer::from_pem_file(&key)
        .unwrap_or_else(|e| fail(&format!("--tls-key {key}: {e}")));
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap_or_else(|e| fail(&format!("the certificate and key: {e}")));
    Some(TlsAcceptor::from(Arc::new(config)))
}

/// The client's side of TLS, trusting the CA of `--ca` (a PEM file); None
/// without it. One config for every connection of a command, so that
/// rustls resumes sessions, as it does by default.
pub fn connector(args: &Args) -> Option<Arc<ClientConfig>> {
    let ca = args.0.get("ca")?;
    let mut roots = RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).unwrap_or_else(|e| fail(&format!("--ca {ca}: {e}")))
    {
        let cert = cert.unwrap_or_else(|e| fail(&format!("--ca {ca}: {e}")));
        roots
            .add(cert)
            .unwrap_or_else(|e| fail(&format!("--ca {ca}: {e}")));
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // rustls's default, said aloud: the handshakes row counts on it.
    config.resumption =
        rustls::client::Resumption::store(Arc::new(ClientSessionMemoryCache::new(256)));
    Some(Arc::new(config))
}

/// Listens on `host`:`port` and tells the harness which port it got.
pub async fn listen(host: &str, port: u16) -> TcpListener {
    let listener = TcpListener::bind((host, port))
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen: {e}")));
    println!(
        r#"{{"event":"listening","port":{}}}"#,
        listener.local_addr().unwrap().port()
    );
    listener
}

/// Echoes every data message on every connection, with `config` (None:
/// tokio-tungstenite's defaults), over TLS when `tls` is given.
pub async fn echo_server(args: &Args, tls: Option<TlsAcceptor>, config: Option<WebSocketConfig>) {
    let listener = listen("127.0.0.1", args.num("port", 0u16)).await;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = match tls {
                Some(tls) => match tls.accept(tcp).await {
                    Ok(stream) => Box::new(stream),
                    Err(_) => return,
                },
                None => Box::new(tcp),
            };
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(io, config).await else {
                return;
            };
            let (write, read) = ws.split();
            let _ = read
                .try_filter(|m| future::ready(m.is_binary() || m.is_text()))
                .forward(write)
                .await;
        });
    }
}

/// A connection to `url`, ws:// or wss:// (then with `tls`); with the TLS
/// session resumed or not.
pub async fn connect(
    url: &str,
    tls: Option<&Arc<ClientConfig>>,
    config: Option<WebSocketConfig>,
) -> Result<(Stream, bool), String> {
    let request = url.into_client_request().map_err(|e| e.to_string())?;
    let uri = request.uri();
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(format!("not a ws:// or wss:// URL: {url}")),
    };
    let host = uri.host().ok_or("no host")?.to_string();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let mut resumed = false;
    let io: Box<dyn Io> = if secure {
        let tls = tls.ok_or("wss:// needs --ca")?;
        let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
        let stream = TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        resumed = stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, io, config)
        .await
        .map_err(|e| e.to_string())?;
    Ok((ws, resumed))
}

/// The client commands: `--mode rtt|pipeline|mbps|handshakes`, each printing one JSON line.
pub async fn client(args: &Args, tls: Option<Arc<ClientConfig>>, config: Option<WebSocketConfig>) {
    let url = args.str("url");
    let mode = args.str("mode");
    if mode == "handshakes" {
        return handshakes(args, &url, tls, config).await;
    }
    let (ws, _) = connect(&url, tls.as_ref(), config)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot connect to {url}: {e}")));
    let size = args.num("size", 32usize);
    let payload = Bytes::from(vec![b'x'; size]);
    let (warmup, duration) = (args.secs("warmup", 0.5), args.secs("duration", 3.0));
    let (msgs, secs) = match mode.as_str() {
        "rtt" => rtt(ws, payload, warmup, duration).await,
        "pipeline" | "mbps" => {
            pipeline(ws, payload, args.num("window", 64usize), warmup, duration).await
        }
        other => fail(&format!("unknown mode {other}")),
    };
    let bytes = msgs * size as u64;
    println!(
        r#"{{"mode":"{mode}","msgs":{msgs},"bytes":{bytes},"secs":{secs:.6},"rate":{:.1},"mbps":{:.2}}}"#,
        msgs as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

/// Waits for the next data message (tungstenite answers pings by itself);
/// false once the connection is over.
pub async fn next_data(
    stream: &mut (impl StreamExt<Item = Result<Message, impl Sized>> + Unpin),
) -> bool {
    loop {
        match stream.next().await {
            Some(Ok(Message::Binary(_) | Message::Text(_))) => return true,
            Some(Ok(Message::Close(_)) | Err(_)) | None => return false,
            Some(Ok(_)) => {}
        }
    }
}

/// Ends with a closing handshake rather than a dropped socket, so that the
/// library's server is not still busy with a broken connection (and logging
/// about it) while the next measurement runs.
pub async fn close<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// One message at a time; (echoes counted, seconds measured).
pub async fn rtt<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    payload: Bytes,
    warmup: Duration,
    duration: Duration,
) -> (u64, f64) {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let (mut counted, mut began) = (0u64, None);
    loop {
        let now = Instant::now();
        if began.is_none() && now >= start {
            began = Some(now);
        }
        if now >= end {
            break;
        }
        if let Err(e) = ws.send(Message::Binary(payload.clone())).await {
            fail(&format!("send failed: {e}"));
        }
        if !next_data(&mut ws).await {
            fail("the library closed the connection");
        }
        if began.is_some() {
            counted += 1;
        }
    }
    let secs = began.map_or(0.0, |t| t.elapsed().as_secs_f64());
    close(ws).await;
    (counted, secs)
}

/// `window` messages in flight: a task sends while it has credits, another
/// reads and gives one back per echo. (echoes counted, seconds measured).
async fn pipeline(
    ws: Stream,
    payload: Bytes,
    window: usize,
    warmup: Duration,
    duration: Duration,
) -> (u64, f64) {
    let (mut sink, mut stream) = ws.split();
    let credits = Arc::new(Semaphore::new(window));
    let (sent, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stopping = Arc::new(AtomicBool::new(false));
    let (writer_credits, writer_sent) = (credits.clone(), sent.clone());
    let writer = tokio::spawn(async move {
        while let Ok(permit) = writer_credits.acquire().await {
            permit.forget();
            let mut batch = 1;
            while let Ok(permit) = writer_credits.try_acquire() {
                permit.forget();
                batch += 1;
            }
            for _ in 0..batch {
                if let Err(e) = sink.feed(Message::Binary(payload.clone())).await {
                    fail(&format!("send failed: {e}"));
                }
            }
            writer_sent.fetch_add(batch, Ordering::Relaxed);
            if let Err(e) = sink.flush().await {
                fail(&format!("send failed: {e}"));
            }
        }
        sink
    });
    let (reader_received, reader_stopping) = (received.clone(), stopping.clone());
    let reader_credits = credits.clone();
    let reader = tokio::spawn(async move {
        while next_data(&mut stream).await {
            reader_received.fetch_add(1, Ordering::Relaxed);
            reader_credits.add_permits(1);
        }
        if !reader_stopping.load(Ordering::Relaxed) {
            fail("the library closed the connection");
        }
    });
    sleep(warmup).await;
    let (before, began) = (received.load(Ordering::Relaxed), Instant::now());
    sleep(duration).await;
    let msgs = received.load(Ordering::Relaxed) - before;
    let secs = began.elapsed().as_secs_f64();

    // Stop sending, let the echoes in flight come back, then close.
    stopping.store(true, Ordering::Relaxed);
    credits.close();
    let mut sink = writer.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while received.load(Ordering::Relaxed) < sent.load(Ordering::Relaxed)
        && Instant::now() < deadline
    {
        sleep(Duration::from_millis(1)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = sink.close().await;
        let _ = reader.await;
    })
    .await;
    (msgs, secs)
}

/// Connections opened as fast as `--concurrency` tasks can: TCP, TLS (one
/// ClientConfig, so sessions resume where the server allows), the WebSocket
/// handshake, then the closing handshake. Prints the rate of whole
/// handshakes and how many resumed a TLS session.
async fn handshakes(
    args: &Args,
    url: &str,
    tls: Option<Arc<ClientConfig>>,
    config: Option<WebSocketConfig>,
) {
    let (done, resumed, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let stopping = Arc::new(AtomicBool::new(false));
    let last_error = Arc::new(std::sync::Mutex::new(String::new()));
    let tasks: Vec<_> = (0..args.num("concurrency", 4usize))
        .map(|_| {
            let (url, tls) = (url.to_string(), tls.clone());
            let (done, resumed, failed) = (done.clone(), resumed.clone(), failed.clone());
            let (stopping, last_error) = (stopping.clone(), last_error.clone());
            tokio::spawn(async move {
                while !stopping.load(Ordering::Relaxed) {
                    match connect(&url, tls.as_ref(), config).await {
                        Ok((ws, was_resumed)) => {
                            close(ws).await;
                            done.fetch_add(1, Ordering::Relaxed);
                            resumed.fetch_add(u64::from(was_resumed), Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            *last_error.lock().unwrap() = e;
                            sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        })
        .collect();
    sleep(args.secs("warmup", 0.5)).await;
    let (before, resumed_before) = (
        done.load(Ordering::Relaxed),
        resumed.load(Ordering::Relaxed),
    );
    let began = Instant::now();
    sleep(args.secs("duration", 3.0)).await;
    let msgs = done.load(Ordering::Relaxed) - before;
    let resumed = resumed.load(Ordering::Relaxed) - resumed_before;
    let secs = began.elapsed().as_secs_f64();
    stopping.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(3), future::join_all(tasks)).await;
    let failed = failed.load(Ordering::Relaxed);
    if msgs == 0 {
        fail(&format!(
            "no handshake completed: {}",
            last_error.lock().unwrap()
        ));
    }
    println!(
        r#"{{"mode":"handshakes","msgs":{msgs},"resumed":{resumed},"failed":{failed},"secs":{secs:.6},"rate":{:.1}}}"#,
        msgs as f64 / secs
    );
}
