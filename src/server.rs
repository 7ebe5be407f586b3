//! The server side: listening, accepting, the server's opening handshake
//! (origin checks, subprotocol choice) and closing every client on stop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{watch, Semaphore};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::client::crash_report;
use crate::config::{MAX_CONCURRENT_HANDSHAKES, MAX_HANDSHAKE_SIZE};
use crate::connection::{
    self, next_id, read_head, seconds, Command, Endpoints, Options, Settings, Shared,
};
use crate::events::{Accepted, Event, EventQueue, EventSink, Question};
use crate::handshake::{self, Rejection, Request};
use crate::protocol::Role;
use crate::stream::Stream;
use crate::tls::{self, TlsOptions};
use crate::{runtime, subprotocol};

/// Pause after a failed accept() (out of file descriptors, say), so that the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// 1001: what clients hear when their server stops.
const GOING_AWAY: u16 = 1001;

/// What Python may change while the server listens.
struct Config {
    /// Sent as the `Server` header; "" sends none.
    name: String,
    subprotocols: Vec<String>,
    /// Origins allowed to connect; None allows any.
    allowed_origins: Option<Vec<String>>,
    /// Whether Python handles `origin_authentication_required`.
    ask_origin: bool,
    handshake_timeout: Duration,
    max_pending: usize,
    /// Settings of the server's sockets.
    settings: Settings,
}

#[derive(Clone, Copy)]
struct Control {
    accepting: bool,
    stopped: bool,
}

struct ServerShared {
    config: Mutex<Config>,
    control: watch::Sender<Control>,
    /// The open server-side connections, closed with 1001 on stop.
    clients: Mutex<HashMap<u64, Arc<Shared>>>,
    /// Connections handed to Python and not yet taken by its handlers.
    pending: Arc<AtomicUsize>,
    handshakes: Arc<Semaphore>,
    /// TLS for wss://, and the certificate it serves.
    tls: Option<(TlsAcceptor, Arc<tls::Certificate>)>,
}

impl ServerShared {
    fn config(&self) -> MutexGuard<'_, Config> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<u64, Arc<Shared>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.control.borrow().stopped
    }
}

/// Handed to `origin_authentication_required` handlers (Qt's
/// `QWebSocketCorsAuthenticator`): `set_allowed(False)` refuses the client.
#[pyclass(frozen, module = "wsbind._wsbind")]
pub struct OriginAuthenticator {
    question: Arc<Question<bool>>,
}

impl From<Arc<Question<bool>>> for OriginAuthenticator {
    fn from(question: Arc<Question<bool>>) -> Self {
        OriginAuthenticator { question }
    }
}

#[pymethods]
impl OriginAuthenticator {
    /// The Origin header the client sent ("" when it sent none).
    #[getter]
    fn origin(&self) -> String {
        self.question.subject.clone()
    }

    /// Whether the client may connect; True unless set otherwise.
    #[getter]
    fn allowed(&self) -> bool {
        self.question.get()
    }

    /// Allows (True) or refuses (False, HTTP 403) the client.
    fn set_allowed(&self, allowed: bool) {
        self.question.set(allowed);
    }

    /// Gives the answer to the waiting handshake; later calls change nothing.
    fn finish(&self) {
        self.question.reply();
    }
}

impl Drop for OriginAuthenticator {
    fn drop(&mut self) {
        self.question.reply();
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
    #[pyo3(signature = (queue, host, port, options, *, name = String::new(), subprotocols = Vec::new(),
                        accepting = true, allowed_origins = None, ask_origin = false,
                        max_pending_connections = crate::config::MAX_PENDING_CONNECTIONS, tls = None))]
    #[allow(clippy::too_many_arguments, reason = "one Python keyword each")]
    fn new(
        queue: &EventQueue,
        host: String,
        port: u16,
        options: Options,
        name: String,
        subprotocols: Vec<String>,
        accepting: bool,
        allowed_origins: Option<Vec<String>>,
        ask_origin: bool,
        max_pending_connections: usize,
        tls: Option<(String, String, TlsOptions)>,
    ) -> PyResult<Self> {
        check_header("name", &name)?;
        let tls = match tls {
            Some((cert, key, options)) => {
                let (config, certificate) =
                    tls::server_config(&cert, &key, &options).map_err(PyValueError::new_err)?;
                Some((TlsAcceptor::from(config), certificate))
            }
            None => None,
        };
        let id = next_id();
        let (control, control_rx) = watch::channel(Control {
            accepting,
            stopped: false,
        });
        let shared = Arc::new(ServerShared {
            config: Mutex::new(Config {
                name,
                subprotocols,
                allowed_origins,
                ask_origin,
                handshake_timeout: seconds("handshake_timeout", options.handshake_timeout)?,
                max_pending: max_pending_connections,
                settings: options.settings()?,
            }),
            control,
            clients: Mutex::new(HashMap::new()),
            pending: Arc::new(AtomicUsize::new(0)),
            handshakes: Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES)),
            tls,
        });
        let events = queue.sink(id);
        let on_panic = {
            let events = events.clone();
            move |message| {
                events.send(Event::ListenFailed(format!(
                    "internal error in wsbind (please report it): {message}"
                )))
            }
        };
        runtime::spawn(
            listen(host, port, Arc::clone(&shared), control_rx, events),
            on_panic,
        )?;
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
        self.shared.config().name = name;
        Ok(())
    }

    /// Sets the subprotocols that later handshakes may pick from.
    fn set_subprotocols(&self, subprotocols: Vec<String>) {
        self.shared.config().subprotocols = subprotocols;
    }

    /// Sets the origins later handshakes accept (None: any).
    fn set_allowed_origins(&self, origins: Option<Vec<String>>) {
        self.shared.config().allowed_origins = origins;
    }

    /// Whether later handshakes ask Python about their origin.
    fn set_ask_origin(&self, ask: bool) {
        self.shared.config().ask_origin = ask;
    }

    /// Sets how long later handshakes may take, and the pending-connection bound.
    fn set_limits(&self, handshake_timeout: f64, max_pending_connections: usize) -> PyResult<()> {
        let handshake_timeout = seconds("handshake_timeout", handshake_timeout)?;
        let mut config = self.shared.config();
        config.handshake_timeout = handshake_timeout;
        config.max_pending = max_pending_connections;
        Ok(())
    }

    /// Serves a new certificate (PEM path or text) to later TLS handshakes.
    fn set_certificate(&self, certificate: &str, private_key: &str) -> PyResult<()> {
        let Some((_, current)) = &self.shared.tls else {
            return Err(PyValueError::new_err(
                "this server does not use TLS (secure_mode is False)",
            ));
        };
        current.replace(
            tls::Certificate::load(certificate, private_key).map_err(PyValueError::new_err)?,
        );
        Ok(())
    }

    /// Sends `message` (str: text, bytes-like: binary) to every open client,
    /// framed once; returns how many took it.
    fn broadcast(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<usize> {
        let (text, payload) = connection::message_of(py, message)?;
        let clients: Vec<Arc<Shared>> = self.shared.clients().values().cloned().collect();
        Ok(py.detach(|| connection::broadcast_to(&clients, text, &payload)))
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
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "{what} {value:?} cannot be sent in an HTTP header"
        )))
    }
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
    let port = match listener.local_addr() {
        Ok(local) => local.port(),
        Err(e) => {
            events.send(Event::ListenFailed(format!(
                "cannot listen on {host}:{port}: {e}"
            )));
            return;
        }
    };
    events.send(Event::Listening { port });
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
        // Too many handshakes at once: new connections wait in the backlog.
        let Ok(permit) = Arc::clone(&shared.handshakes).acquire_owned().await else {
            break;
        };
        tokio::select! {
            biased;
            changed = control.changed() => if changed.is_err() { break },
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let (conn, commands) = Shared::new(Role::Server);
                    let on_panic = crash_report(events.for_id(conn.id));
                    let serving = serve(tcp, conn, commands, Arc::clone(&shared), events.clone(), permit);
                    // Cannot fail: the runtime runs this very loop.
                    let _ = runtime::spawn(serving, on_panic);
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
        client.close(GOING_AWAY, String::new());
    }
    events.send(Event::Stopped);
}

/// One accepted TCP connection: handshake, then the WebSocket until it closes.
/// Whatever this client does, it harms only itself.
async fn serve(
    tcp: TcpStream,
    conn: Arc<Shared>,
    commands: UnboundedReceiver<Command>,
    shared: Arc<ServerShared>,
    events: EventSink,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    let endpoints = Endpoints::of(&tcp);
    let handshake_timeout = shared.config().handshake_timeout;
    // A client that stalls its handshake is dropped when the time is up.
    let opening = async {
        let mut stream = match &shared.tls {
            None => Stream::Plain(tcp),
            Some((acceptor, _)) => match acceptor.accept(tcp).await {
                Ok(tls) => Stream::Tls(Box::new(tls.into())),
                Err(e) => {
                    // Qt's sslErrors/peerVerifyError; only this client is affected.
                    let peer = endpoints.peer.map(|p| p.to_string()).unwrap_or_default();
                    events.send(Event::SslErrors(vec![format!(
                        "{peer}: {}",
                        tls::describe(&e, &peer)
                    )]));
                    return None;
                }
            },
        };
        let (request, received, negotiated) = handshake(&mut stream, &shared, &events).await?;
        Some((stream, request, received, negotiated))
    };
    let Ok(Some((stream, request, received, negotiated))) =
        timeout(handshake_timeout, opening).await
    else {
        return;
    };
    drop(permit);
    // Dropped like a failed handshake: Python never heard of it.
    let Ok((stream, socket)) = stream.into_running() else {
        return;
    };
    let settings = shared.config().settings.clone();
    conn.set_frame_size(settings.outgoing_frame_size);
    conn.set_open(true);
    shared.clients().insert(conn.id, Arc::clone(&conn));
    let host = request.header("Host").unwrap_or_default().to_string();
    let scheme = if shared.tls.is_some() { "wss" } else { "ws" };
    let requested = request.subprotocols();
    events.send(Event::ClientConnected(Box::new(Accepted {
        shared: Arc::clone(&conn),
        url: format!("{scheme}://{host}{}", request.target),
        requested_subprotocols: requested,
        negotiated_subprotocol: negotiated.unwrap_or_default(),
        resource_name: request.target,
        headers: request.headers,
        endpoints,
        pending: Arc::clone(&shared.pending),
    })));
    // A stop that raced with this handshake did not see this client.
    if shared.stopped() {
        conn.close(GOING_AWAY, String::new());
    }
    let id = conn.id;
    connection::run(
        stream,
        Role::Server,
        settings,
        received,
        socket,
        conn,
        commands,
        events.for_id(id),
    )
    .await;
    shared.clients().remove(&id);
}

/// The server's half of the opening handshake: the request, what came after
/// it, and the chosen subprotocol; None once a bad or refused request got
/// its HTTP error, or the client went away.
async fn handshake(
    tcp: &mut Stream,
    shared: &ServerShared,
    events: &EventSink,
) -> Option<(Request, BytesMut, Option<String>)> {
    let name = shared.config().name.clone();
    let (head, received) = match read_head(tcp, MAX_HANDSHAKE_SIZE).await {
        Ok(Some(read)) => read,
        Ok(None) => {
            let too_large =
                Rejection::new(431, format!("request head over {MAX_HANDSHAKE_SIZE} bytes"));
            return refuse(tcp, too_large, &name).await;
        }
        Err(_) => return None,
    };
    let request = match handshake::parse_request(&head) {
        Ok(request) => request,
        Err(rejection) => return refuse(tcp, rejection, &name).await,
    };
    if !origin_allowed(shared, events, request.header("Origin").unwrap_or_default()).await {
        events.send(Event::ServerError(1008));
        return refuse(tcp, Rejection::new(403, "origin not allowed"), &name).await;
    }
    let max_pending = shared.config().max_pending;
    if shared.pending.fetch_add(1, Ordering::AcqRel) >= max_pending {
        shared.pending.fetch_sub(1, Ordering::AcqRel);
        events.send(Event::ServerError(1006));
        let busy = Rejection::new(503, "too many pending connections; try again later");
        return refuse(tcp, busy, &name).await;
    }
    let negotiated = subprotocol::choose(&request.subprotocols(), &shared.config().subprotocols);
    let response = handshake::accept_response(&request, negotiated.as_deref(), &name);
    if tcp.write_all(&response).await.is_err() {
        shared.pending.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    Some((request, received, negotiated))
}

async fn refuse<T>(tcp: &mut Stream, rejection: Rejection, name: &str) -> Option<T> {
    let _ = tcp.write_all(&rejection.response(name)).await;
    let _ = tcp.shutdown().await;
    None
}

async fn origin_allowed(shared: &ServerShared, events: &EventSink, origin: &str) -> bool {
    let ask = {
        let config = shared.config();
        if let Some(allowed) = &config.allowed_origins {
            if !allowed.iter().any(|a| a == origin) {
                return false;
            }
        }
        config.ask_origin
    };
    if !ask {
        return true;
    }
    // The handshake timeout bounds the wait for Python.
    Question::ask(events, origin.to_string(), true, Event::OriginCheck)
        .await
        .unwrap_or(false)
}
