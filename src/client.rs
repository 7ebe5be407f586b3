//! The client side: opening a connection to a ws:// URL.

use std::sync::Arc;

use bytes::BytesMut;
use pyo3::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use url::Url;

use crate::config::MAX_HANDSHAKE_SIZE;
use crate::connection::{
    self, read_head, seconds, Command, Connection, Endpoints, Options, Shared,
};
use crate::errors::ABNORMAL_CLOSURE;
use crate::events::{Event, EventQueue, EventSink};
use crate::handshake::{self, Headers};
use crate::protocol::Role;
use crate::{runtime, ws_url};

/// Opens a connection to `url` in the background; its events go to `queue`.
///
/// Returns at once: `Event::Connected` follows when the handshake succeeds,
/// `Event::Closed` with an error when it fails.
#[pyfunction]
#[pyo3(signature = (queue, url, subprotocols, headers, origin, options))]
pub fn connect(
    queue: &EventQueue,
    url: &str,
    subprotocols: Vec<String>,
    headers: Headers,
    origin: String,
    options: Options,
) -> PyResult<Connection> {
    let url = ws_url::parse(url)?;
    let mut settings = options.settings()?;
    let handshake_timeout = seconds("handshake_timeout", options.handshake_timeout)?;
    let (shared, mut commands) = Shared::new();
    let events = queue.sink(shared.id);
    let on_panic = crash_report(events.clone());
    let task_shared = Arc::clone(&shared);
    runtime::spawn(
        async move {
            let opening = timeout(
                handshake_timeout,
                open(&url, &subprotocols, &origin, &headers),
            );
            tokio::pin!(opening);
            let opened = loop {
                tokio::select! {
                    biased;
                    command = commands.recv() => match command {
                        Some(Command::Frames(on)) => settings.report_frames = on,
                        Some(Command::Writes(on)) => settings.report_writes = on,
                        // Closing while connecting gives up on the connection.
                        _ => break None,
                    },
                    opened = &mut opening => break Some(opened),
                }
            };
            let error = match opened {
                Some(Ok(Ok((tcp, received, subprotocol)))) => {
                    task_shared.set_open(true);
                    let endpoints = Endpoints::of(&tcp);
                    events.send(Event::Connected {
                        subprotocol,
                        endpoints,
                    });
                    connection::run(
                        tcp,
                        Role::Client,
                        settings,
                        received,
                        task_shared,
                        commands,
                        events,
                    )
                    .await;
                    return;
                }
                Some(Ok(Err(message))) => Some(message),
                Some(Err(_)) => Some(format!(
                    "handshake timeout: no connection to {url} within {} s",
                    handshake_timeout.as_secs_f64()
                )),
                None => None,
            };
            events.send(Event::Closed {
                code: ABNORMAL_CLOSURE,
                reason: String::new(),
                error,
            });
        },
        on_panic,
    )?;
    Ok(Connection::from(shared))
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

/// TCP connection and opening handshake; returns the stream, the bytes that
/// came after the server's response, and the negotiated subprotocol.
async fn open(
    url: &Url,
    subprotocols: &[String],
    origin: &str,
    headers: &Headers,
) -> Result<(TcpStream, BytesMut, String), String> {
    if url.scheme() == "wss" {
        // The connection is generic over its stream: TLS slots in here.
        return Err(format!(
            "cannot open {url}: this build of wsbind has no TLS, so only ws:// URLs work"
        ));
    }
    let (host, port) = ws_url::endpoint(url);
    let mut tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    // Small messages are the common case; do not let Nagle hold them back.
    let _ = tcp.set_nodelay(true);
    let request = handshake::client_request(url, subprotocols, origin, headers);
    let lost = |e: std::io::Error| format!("handshake failed: connection lost: {e}");
    tcp.write_all(&request.bytes).await.map_err(lost)?;
    let (head, received) = read_head(&mut tcp, MAX_HANDSHAKE_SIZE)
        .await
        .map_err(lost)?
        .ok_or_else(|| {
            format!("handshake failed: response head over {MAX_HANDSHAKE_SIZE} bytes")
        })?;
    let response = handshake::check_response(&head, &request.key, subprotocols)?;
    Ok((tcp, received, response.subprotocol))
}
