//! The server side: listening, accepting, the server's opening handshake and
//! subprotocol choice, and closing every client when the server stops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::accept_hdr_async_with_config;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::header::{HOST, SEC_WEBSOCKET_PROTOCOL, SERVER};
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::config::{websocket_config, HANDSHAKE_TIMEOUT};
use crate::connection::{self, close_frame, next_id, Shared};
use crate::events::{Accepted, Event, EventQueue, EventSink};
use crate::{runtime, subprotocol};

/// Pause after a failed accept() (out of file descriptors, say), so that the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// 1001: what clients hear when their server stops.
const GOING_AWAY: u16 = 1001;

/// What Python may change while the server listens.
#[derive(Default)]
struct Settings {
    /// Sent as the `Server` header; "" sends none.
    name: String,
    subprotocols: Vec<String>,
}

#[derive(Clone, Copy)]
struct Control {
    accepting: bool,
    stopped: bool,
}

struct ServerShared {
    settings: Mutex<Settings>,
    control: watch::Sender<Control>,
    /// The open server-side connections, closed with 1001 on stop.
    clients: Mutex<HashMap<u64, Arc<Shared>>>,
}

impl ServerShared {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<u64, Arc<Shared>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.control.borrow().stopped
    }
}

/// A listening server. Dropping the handle stops it.
#[pyclass(frozen, module = "wsbind._wsbind")]
pub struct Server {
    id: u64,
    shared: Arc<ServerShared>,
}

#[pymethods]
impl Server {
    /// Starts listening on `host`:`port` in the background; events go to `queue`.
    #[new]
    #[pyo3(signature = (queue, host, port, *, name = String::new(), subprotocols = Vec::new(), accepting = true))]
    fn new(
        queue: &EventQueue,
        host: String,
        port: u16,
        name: String,
        subprotocols: Vec<String>,
        accepting: bool,
    ) -> PyResult<Self> {
        check_header("name", &name)?;
        let id = next_id();
        let (control, control_rx) = watch::channel(Control {
            accepting,
            stopped: false,
        });
        let shared = Arc::new(ServerShared {
            settings: Mutex::new(Settings { name, subprotocols }),
            control,
            clients: Mutex::new(HashMap::new()),
        });
        runtime::spawn(listen(
            host,
            port,
            Arc::clone(&shared),
            control_rx,
            queue.sink(id),
        ))?;
        Ok(Server { id, shared })
    }

    /// The id under which this server's events arrive.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// Sets the `Server` header of later handshakes.
    fn set_name(&self, name: String) -> PyResult<()> {
        check_header("name", &name)?;
        self.shared.settings().name = name;
        Ok(())
    }

    /// Sets the subprotocols that later handshakes may pick from.
    fn set_subprotocols(&self, subprotocols: Vec<String>) {
        self.shared.settings().subprotocols = subprotocols;
    }

    /// Pauses (False) or resumes (True) accepting connections.
    fn set_accepting(&self, accepting: bool) {
        self.shared.control.send_modify(|c| c.accepting = accepting);
    }

    /// Stops listening and closes every client with 1001.
    fn stop(&self) {
        self.shared.control.send_modify(|c| c.stopped = true);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.control.send_modify(|c| c.stopped = true);
    }
}

fn check_header(what: &str, value: &str) -> PyResult<()> {
    HeaderValue::from_str(value).map(drop).map_err(|_| {
        PyValueError::new_err(format!("{what} {value:?} cannot be sent in an HTTP header"))
    })
}

async fn listen(
    host: String,
    port: u16,
    shared: Arc<ServerShared>,
    mut control: watch::Receiver<Control>,
    events: EventSink,
) {
    let listener = match TcpListener::bind((host.as_str(), port)).await {
        Ok(listener) => listener,
        Err(e) => {
            events.send(Event::ListenFailed(format!(
                "cannot listen on {host}:{port}: {e}"
            )));
            return;
        }
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(e) => {
            events.send(Event::ListenFailed(format!(
                "cannot listen on {host}:{port}: {e}"
            )));
            return;
        }
    };
    events.send(Event::Listening { port: local.port() });
    loop {
        let Control { accepting, stopped } = *control.borrow_and_update();
        if stopped {
            break;
        }
        if !accepting {
            // Connections wait in the kernel's backlog meanwhile, as in Qt.
            if control.changed().await.is_err() {
                break;
            }
            continue;
        }
        tokio::select! {
            biased;
            changed = control.changed() => if changed.is_err() { break },
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    tokio::spawn(serve(tcp, peer, local, Arc::clone(&shared), events.clone()));
                }
                Err(e) => {
                    events.send(Event::AcceptFailed(format!("accept failed: {e}")));
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    let clients: Vec<Arc<Shared>> = shared.clients().values().cloned().collect();
    for client in clients {
        if let Ok(frame) = close_frame(GOING_AWAY, "") {
            client.close(frame);
        }
    }
    events.send(Event::Stopped);
}

/// The request as the handshake callback saw it.
struct RequestInfo {
    url: String,
    requested: Vec<String>,
    negotiated: Option<String>,
}

fn answer(
    shared: &ServerShared,
    local: SocketAddr,
    request: &Request,
    mut response: Response,
) -> (Response, RequestInfo) {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(String::from)
        .unwrap_or_else(|| local.to_string());
    let target = request.uri().to_string();
    let url = if target.starts_with('/') {
        format!("ws://{host}{target}")
    } else {
        target
    };
    let requested = subprotocol::parse(
        request
            .headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let settings = shared.settings();
    let negotiated = subprotocol::choose(&requested, &settings.subprotocols);
    let headers = response.headers_mut();
    if let Some(chosen) = negotiated
        .as_deref()
        .and_then(|p| HeaderValue::from_str(p).ok())
    {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, chosen);
    }
    if let Ok(name) = HeaderValue::from_str(&settings.name) {
        if !settings.name.is_empty() {
            headers.insert(SERVER, name);
        }
    }
    let info = RequestInfo {
        url,
        requested,
        negotiated,
    };
    (response, info)
}

/// One accepted TCP connection: handshake, then the WebSocket until it closes.
/// Whatever this client does, it harms only itself.
async fn serve(
    tcp: TcpStream,
    _peer: SocketAddr,
    local: SocketAddr,
    shared: Arc<ServerShared>,
    events: EventSink,
) {
    let _ = tcp.set_nodelay(true);
    let mut info = None;
    #[allow(
        clippy::result_large_err,
        reason = "the signature is tungstenite's Callback trait"
    )]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let (response, request_info) = answer(&shared, local, request, response);
        info = Some(request_info);
        Ok(response)
    };
    let handshake = accept_hdr_async_with_config(tcp, callback, Some(websocket_config()));
    let ws = match timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => ws,
        // A client that fails or stalls its handshake was never connected.
        _ => return,
    };
    let Some(info) = info else { return };
    let (conn, commands) = Shared::new();
    conn.set_open(true);
    shared.clients().insert(conn.id, Arc::clone(&conn));
    events.send(Event::ClientConnected(Box::new(Accepted {
        shared: Arc::clone(&conn),
        url: info.url,
        requested_subprotocols: info.requested,
        negotiated_subprotocol: info.negotiated.unwrap_or_default(),
    })));
    // A stop that raced with this handshake did not see this client.
    if shared.stopped() {
        if let Ok(frame) = close_frame(GOING_AWAY, "") {
            conn.close(frame);
        }
    }
    let id = conn.id;
    connection::run(ws, conn, commands, events.for_id(id)).await;
    shared.clients().remove(&id);
}
