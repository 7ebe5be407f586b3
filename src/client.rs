//! The client side: opening a connection to a ws:// URL.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use url::Url;

use crate::config::MAX_HANDSHAKE_SIZE;
use crate::connection::{self, read_head, seconds, Command, Connection, Options, Settings, Shared};
use crate::errors::ABNORMAL_CLOSURE;
use crate::events::{Event, EventQueue, EventSink};
use crate::handshake::{self, Headers};
use crate::protocol::Role;
use crate::proxy::{self, Proxy};
use crate::stream::Stream;
use crate::tls::{self, TlsOptions};
use crate::{runtime, ws_url};

/// Opens a connection to `url` in the background; its events go to `queue`.
///
/// Returns at once: `Event::Connected` follows when the handshake succeeds,
/// `Event::Closed` with an error when it fails.
#[pyfunction]
#[pyo3(signature = (queue, url, subprotocols, headers, origin, options, tls = None, proxy = None, ask_proxy_auth = false))]
#[allow(clippy::too_many_arguments, reason = "one per socket property")]
pub fn connect(
    queue: &EventQueue,
    url: &str,
    subprotocols: Vec<String>,
    headers: Headers,
    origin: String,
    options: Options,
    tls: Option<TlsOptions>,
    proxy: Option<String>,
    ask_proxy_auth: bool,
) -> PyResult<Connection> {
    let url = ws_url::parse(url)?;
    let proxy = proxy
        .map(|p| Proxy::parse(&p))
        .transpose()
        .map_err(PyValueError::new_err)?;
    // Checked now, so that a bad certificate path raises in the caller.
    let tls = match url.scheme() {
        "wss" => {
            let options = tls.unwrap_or(TlsOptions {
                peer_verify: true,
                ..TlsOptions::default()
            });
            Some(tls::client_config(&options).map_err(PyValueError::new_err)?)
        }
        _ => None,
    };
    let settings = options.settings()?;
    let handshake_timeout = seconds("handshake_timeout", options.handshake_timeout)?;
    let (shared, commands) = Shared::new(Role::Client);
    shared.set_frame_size(settings.outgoing_frame_size);
    let events = queue.sink(shared.id);
    let on_panic = crash_report(events.clone());
    let target = Target {
        url,
        tls,
        subprotocols,
        origin,
        headers,
        proxy,
        ask_proxy_auth,
    };
    let task = run_client(
        target,
        handshake_timeout,
        settings,
        Arc::clone(&shared),
        commands,
        events,
    );
    runtime::spawn(task, on_panic)?;
    Ok(Connection::from(shared))
}

/// Where and how a client connects.
struct Target {
    url: Url,
    tls: Option<Arc<ClientConfig>>,
    subprotocols: Vec<String>,
    origin: String,
    headers: Headers,
    /// None connects directly.
    proxy: Option<Proxy>,
    ask_proxy_auth: bool,
}

/// A client connection from its first byte to its last.
async fn run_client(
    target: Target,
    handshake_timeout: Duration,
    settings: Settings,
    shared: Arc<Shared>,
    mut commands: UnboundedReceiver<Command>,
    events: EventSink,
) {
    let opening = timeout(handshake_timeout, open(&target, events.clone()));
    tokio::pin!(opening);
    let opened = tokio::select! {
        biased;
        // Closing while connecting gives up on the connection.
        _ = commands.recv() => None,
        opened = &mut opening => Some(opened),
    };
    let error = match opened {
        Some(Ok(Ok((stream, received, subprotocol, resource_name)))) => {
            let endpoints = stream.endpoints();
            match stream.into_running() {
                Ok((stream, socket)) => {
                    shared.set_open(true);
                    events.send(Event::Connected {
                        subprotocol,
                        resource_name,
                        endpoints,
                    });
                    connection::run(
                        stream,
                        Role::Client,
                        settings,
                        received,
                        socket,
                        shared,
                        commands,
                        events,
                    )
                    .await;
                    return;
                }
                Err(e) => Some(format!("connection lost: {e}")),
            }
        }
        Some(Ok(Err(message))) => Some(message),
        Some(Err(_)) => Some(format!(
            "handshake timeout: no connection to {} within {} s",
            target.url,
            handshake_timeout.as_secs_f64()
        )),
        None => None,
    };
    events.send(Event::Closed {
        code: ABNORMAL_CLOSURE,
        reason: String::new(),
        error,
    });
}

/// What a connection whose task panicked tells Python: ERROR, not silence.
pub fn crash_report(events: EventSink) -> impl FnOnce(String) + Send + 'static {
    move |message| {
        events.send(Event::Closed {
            code: ABNORMAL_CLOSURE,
            reason: String::new(),
            error: Some(format!(
                "internal error in wsbind (please report it): {message}"
            )),
        })
    }
}

/// TCP connection, TLS for wss://, and the opening handshake; returns the
/// stream, the bytes that came after the server's response, and the
/// negotiated subprotocol.
async fn open(
    target: &Target,
    events: EventSink,
) -> Result<(Stream, BytesMut, String, String), String> {
    let (host, port) = ws_url::endpoint(&target.url);
    let tcp = match &target.proxy {
        None => TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?,
        Some(proxy) => proxy::connect(proxy, &host, port, target.ask_proxy_auth, &events).await?,
    };
    // Small messages are the common case; do not let Nagle hold them back.
    let _ = tcp.set_nodelay(true);
    let mut stream = match &target.tls {
        None => Stream::Plain(tcp),
        Some(config) => {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("invalid host name {host}: {e}"))?;
            match TlsConnector::from(Arc::clone(config))
                .connect(name, tcp)
                .await
            {
                Ok(tls) => Stream::Tls(Box::new(tls.into())),
                Err(e) => {
                    let message = tls::describe(&e, &host);
                    events.send(Event::SslErrors(vec![message.clone()]));
                    return Err(message);
                }
            }
        }
    };
    let request = handshake::client_request(
        &target.url,
        &target.subprotocols,
        &target.origin,
        &target.headers,
    );
    let lost = |e: std::io::Error| format!("handshake failed: connection lost: {e}");
    stream.write_all(&request.bytes).await.map_err(lost)?;
    let (head, received) = read_head(&mut stream, MAX_HANDSHAKE_SIZE)
        .await
        .map_err(lost)?
        .ok_or_else(|| {
            format!("handshake failed: response head over {MAX_HANDSHAKE_SIZE} bytes")
        })?;
    let response = handshake::check_response(&head, &request.key, &target.subprotocols)?;
    Ok((stream, received, response.subprotocol, request.target))
}
