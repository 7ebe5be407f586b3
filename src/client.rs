//! The client side: opening a connection to a ws:// URL.

use std::sync::Arc;

use pyo3::prelude::*;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{client_async_with_config, WebSocketStream};
use url::Url;

use crate::config::{websocket_config, CONNECT_TIMEOUT};
use crate::connection::{self, Connection, Shared};
use crate::errors::{describe, ABNORMAL_CLOSURE};
use crate::events::{Event, EventQueue};
use crate::{runtime, ws_url};

/// Opens a connection to `url` in the background; its events go to `queue`.
///
/// Returns at once: `Event::Connected` follows when the handshake succeeds,
/// `Event::Closed` with an error when it fails.
#[pyfunction]
pub fn connect(queue: &EventQueue, url: &str, subprotocols: Vec<String>) -> PyResult<Connection> {
    let url = ws_url::parse(url)?;
    let (shared, mut commands) = Shared::new();
    let events = queue.sink(shared.id);
    let task_shared = Arc::clone(&shared);
    runtime::spawn(async move {
        let opening = timeout(CONNECT_TIMEOUT, open(&url, &subprotocols));
        // Closing while connecting gives up on the connection.
        let outcome = tokio::select! {
            biased;
            command = commands.recv() => Err(command),
            opened = opening => Ok(opened),
        };
        let error = match outcome {
            Ok(Ok(Ok((ws, subprotocol)))) => {
                task_shared.set_open(true);
                events.send(Event::Connected { subprotocol });
                connection::run(ws, task_shared, commands, events).await;
                return;
            }
            Ok(Ok(Err(message))) => Some(message),
            Ok(Err(_)) => Some(format!(
                "connect timeout: no connection to {url} within {} s",
                CONNECT_TIMEOUT.as_secs()
            )),
            Err(_) => None,
        };
        events.send(Event::Closed {
            code: ABNORMAL_CLOSURE,
            reason: String::new(),
            error,
        });
    })?;
    Ok(Connection::from(shared))
}

/// TCP connection and opening handshake; returns the negotiated subprotocol.
async fn open(
    url: &Url,
    subprotocols: &[String],
) -> Result<(WebSocketStream<TcpStream>, String), String> {
    if url.scheme() == "wss" {
        // The stream is generic, so TLS slots in here as another stream type.
        return Err(format!(
            "cannot open {url}: this build of wsbind has no TLS, so only ws:// URLs work"
        ));
    }
    let (host, port) = ws_url::endpoint(url);
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    // Small messages are the common case; do not let Nagle hold them back.
    let _ = tcp.set_nodelay(true);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| describe(&e).message)?;
    if !subprotocols.is_empty() {
        let value = HeaderValue::from_str(&subprotocols.join(", "))
            .map_err(|e| format!("invalid subprotocol list {subprotocols:?}: {e}"))?;
        request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    let (ws, response) = client_async_with_config(request, tcp, Some(websocket_config()))
        .await
        .map_err(|e| describe(&e).message)?;
    let subprotocol = response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((ws, subprotocol))
}
