//! A listening server as Python holds it, and the question an origin check
//! asks its handlers.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use super::awaitable::awaitable;
use super::connection::{message_of, PyConnection};
use super::events::PyEventQueue;
use super::options::{self, check_header_values, Options, PyTlsOptions};
use crate::bridge::Question;
use crate::conn::takeover;
use crate::conn::{HttpConfig, Server, ServerConfig};
use crate::net::tls;

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
#[pyclass(name = "Server", frozen, module = "wsbind._wsbind")]
pub struct PyServer {
    server: Arc<Server>,
    took_over: Option<String>,
}

/// Where a server is asked to listen, for binding it and for the words of
/// its errors.
enum Address {
    Tcp(String, u16),
    Unix(PathBuf),
}

impl Address {
    fn of(host: String, port: u16, unix_path: Option<PathBuf>) -> Address {
        match unix_path {
            Some(path) => Address::Unix(path),
            None => Address::Tcp(host, port),
        }
    }

    fn bind(&self, backlog: u32, reuse_port: bool) -> std::io::Result<takeover::Bound> {
        match self {
            Address::Tcp(host, port) => Server::bind(host, *port, backlog, reuse_port),
            Address::Unix(path) => Server::bind_unix(path, backlog),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(host, port) => write!(f, "{host}:{port}"),
            Address::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// OSError with the errno of `error`, e.g. EADDRINUSE, and a message that
/// names the address.
fn listen_error(address: &Address, error: &std::io::Error) -> PyErr {
    let message = format!("cannot listen on {address}: {error}");
    match error.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, message)),
        None => PyOSError::new_err(message),
    }
}

/// A listening socket bound by [`bind`], for a `Server` to serve on.
#[pyclass(name = "Listener", frozen, module = "wsbind._wsbind")]
pub struct PyListener {
    address: Address,
    /// Taken by the server made with it.
    bound: Mutex<Option<takeover::Bound>>,
}

/// Binds `host`:`port` (or the Unix domain socket at `unix_path`) without
/// blocking the running asyncio loop: awaiting it gives a `Listener` for
/// `Server(listener=...)`, or raises OSError as `Server` does. Binding may
/// wait for another server of this process to let the address go (a
/// notebook cell run again), up to RELEASE_TIMEOUT.
#[pyfunction]
#[pyo3(signature = (host, port, backlog, reuse_port, unix_path = None))]
pub fn bind(
    py: Python<'_>,
    host: String,
    port: u16,
    backlog: u32,
    reuse_port: bool,
    unix_path: Option<PathBuf>,
) -> PyResult<Bound<'_, PyAny>> {
    awaitable(py, async move {
        let address = Address::of(host, port, unix_path);
        let binding = tokio::task::spawn_blocking(move || {
            let bound = address.bind(backlog.max(1), reuse_port);
            (address, bound)
        });
        match binding.await {
            Ok((address, Ok(bound))) => Ok(PyListener {
                address,
                bound: Mutex::new(Some(bound)),
            }),
            Ok((address, Err(e))) => Err(listen_error(&address, &e)),
            Err(e) => Err(PyRuntimeError::new_err(format!(
                "internal error in wsbind while binding (please report it): {e}"
            ))),
        }
    })
}

#[pymethods]
impl PyServer {
    /// Listens on `host`:`port` before it returns (raising OSError if it
    /// cannot), then serves in the background; events go to `queue`.
    /// `register` is called with the server's id before any of its events
    /// can arrive.
    #[new]
    #[pyo3(signature = (queue, host, port, options, *, name = String::new(), subprotocols = Vec::new(),
                        accepting = true, allowed_origins = None, ask_origin = false,
                        max_pending_connections = crate::config::MAX_PENDING_CONNECTIONS,
                        backlog = crate::config::LISTEN_BACKLOG, reuse_port = false, tls = None,
                        compression = None, ask_plain = false, ask_upgrade = false,
                        static_dir = None, max_file_size = crate::config::MAX_FILE_SIZE,
                        broker = None, listener = None, unix_path = None, register))]
    #[allow(clippy::too_many_arguments, reason = "one Python keyword each")]
    fn new(
        queue: &PyEventQueue,
        host: String,
        port: u16,
        options: Options,
        name: String,
        subprotocols: Vec<String>,
        accepting: bool,
        allowed_origins: Option<Vec<String>>,
        ask_origin: bool,
        max_pending_connections: usize,
        backlog: u32,
        reuse_port: bool,
        tls: Option<(String, String, PyTlsOptions)>,
        compression: Option<&str>,
        ask_plain: bool,
        ask_upgrade: bool,
        static_dir: Option<PathBuf>,
        max_file_size: usize,
        broker: Option<(String, String)>,
        listener: Option<&PyListener>,
        unix_path: Option<PathBuf>,
        register: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        check_header_values([name.as_str()])?;
        let tls = match tls {
            Some((cert, key, options)) => Some(
                tls::server_config(&cert, &key, &options.into()).map_err(PyValueError::new_err)?,
            ),
            None => None,
        };
        let config = ServerConfig {
            name,
            subprotocols,
            allowed_origins,
            ask_origin,
            handshake_timeout: options.handshake_timeout()?,
            max_pending: max_pending_connections,
            backlog: backlog.max(1),
            reuse_port,
            settings: options.settings()?,
            compression: options::compression(compression)?,
            http: HttpConfig {
                ask_plain,
                ask_upgrade,
                static_dir,
                max_file_size,
            },
        };
        let py = register.py();
        let bound = match listener {
            Some(listener) => {
                let taken = listener
                    .bound
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                taken.ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "the listener on {} serves another server already",
                        listener.address
                    ))
                })?
            }
            None => {
                let address = Address::of(host, port, unix_path);
                py.detach(|| address.bind(config.backlog, config.reuse_port))
                    .map_err(|e| listen_error(&address, &e))?
            }
        };
        let took_over = bound.took_over.map(|a| a.to_string());
        let server = Server::start(&queue.queue, bound.listener, config, accepting, tls, |id| {
            register.call1((id,)).map(drop)
        })?;
        if let Some((url, namespace)) = broker {
            server.set_broker(Some((&url, namespace)));
        }
        Ok(PyServer { server, took_over })
    }

    /// The port it listens on: the one asked for, or the one the system
    /// picked for port 0 (0 on a Unix domain socket).
    #[getter]
    fn port(&self) -> u16 {
        self.server.port
    }

    /// The address that another server of this process listened on and
    /// was stopped for this one, as host:port; None when it was free.
    #[getter]
    fn took_over(&self) -> Option<String> {
        self.took_over.clone()
    }

    /// The id under which this server's events arrive.
    #[getter]
    fn id(&self) -> u64 {
        self.server.id
    }

    /// Sets the `Server` header of later handshakes.
    fn set_name(&self, name: String) -> PyResult<()> {
        check_header_values([name.as_str()])?;
        self.server.config().name = name;
        Ok(())
    }

    /// Sets the subprotocols that later handshakes may pick from.
    fn set_subprotocols(&self, subprotocols: Vec<String>) {
        self.server.config().subprotocols = subprotocols;
    }

    /// Sets whether later handshakes accept permessage-deflate ("deflate") or not (None).
    #[pyo3(signature = (compression))]
    fn set_compression(&self, compression: Option<&str>) -> PyResult<()> {
        self.server.config().compression = options::compression(compression)?;
        Ok(())
    }

    /// Sets the origins later handshakes accept (None: any).
    fn set_allowed_origins(&self, origins: Option<Vec<String>>) {
        self.server.config().allowed_origins = origins;
    }

    /// Whether later handshakes ask Python about their origin.
    fn set_ask_origin(&self, ask: bool) {
        self.server.config().ask_origin = ask;
    }

    /// Sets what later HTTP requests get: whether Python answers plain
    /// requests (`ask_plain`) and sees upgrades first (`ask_upgrade`), the
    /// static folder, and the largest file a response carries.
    #[pyo3(signature = (ask_plain, ask_upgrade, static_dir, max_file_size))]
    fn set_http(
        &self,
        ask_plain: bool,
        ask_upgrade: bool,
        static_dir: Option<PathBuf>,
        max_file_size: usize,
    ) {
        self.server.config().http = HttpConfig {
            ask_plain,
            ask_upgrade,
            static_dir,
            max_file_size,
        };
    }

    /// Sets how long later handshakes may take, the limits and timeouts their
    /// sockets start with, and the pending-connection bound.
    fn set_limits(&self, options: Options, max_pending_connections: usize) -> PyResult<()> {
        let handshake_timeout = options.handshake_timeout()?;
        let settings = options.settings()?;
        let mut config = self.server.config();
        config.handshake_timeout = handshake_timeout;
        config.settings = settings;
        config.max_pending = max_pending_connections;
        Ok(())
    }

    /// Serves a new certificate (PEM path or text) to later TLS handshakes.
    fn set_certificate(&self, certificate: &str, private_key: &str) -> PyResult<()> {
        self.server
            .set_certificate(certificate, private_key)
            .map_err(PyValueError::new_err)
    }

    /// Sends `message` (str: text, bytes-like: binary) to every open client,
    /// or to the members of `group` here and through the broker elsewhere,
    /// framed once; returns how many clients here took it.
    #[pyo3(signature = (message, group = None))]
    fn broadcast(
        &self,
        py: Python<'_>,
        message: &Bound<'_, PyAny>,
        group: Option<&str>,
    ) -> PyResult<usize> {
        let (text, payload) = message_of(py, message)?;
        Ok(py.detach(|| self.server.broadcast(group, text, &payload)))
    }

    /// Adds the client `connection` to `group`; False if it was a member
    /// already or has left the server.
    fn join(&self, connection: &PyConnection, group: &str) -> bool {
        self.server.join(&connection.connection, group)
    }

    /// Takes the client `connection` out of `group`; False if it was not in it.
    fn leave(&self, connection: &PyConnection, group: &str) -> bool {
        self.server.leave(&connection.connection, group)
    }

    /// The ids of the connections in `group`, in the order they connected.
    fn member_ids(&self, group: &str) -> Vec<u64> {
        self.server.members(group).iter().map(|c| c.id).collect()
    }

    /// Attaches the server to the Redis at `url` with channels named
    /// `<namespace>:<group>`, or detaches it (None); its state arrives as
    /// EVENT_BROKER.
    #[pyo3(signature = (broker))]
    fn set_broker(&self, broker: Option<(String, String)>) {
        self.server
            .set_broker(broker.as_ref().map(|(url, ns)| (url.as_str(), ns.clone())));
    }

    /// Group broadcasts the broker did not carry: published while Redis
    /// was unreachable or over the publishing queue's bound, or received
    /// in a form that is not wsbind's.
    #[getter]
    fn broker_dropped(&self) -> u64 {
        self.server.broker_dropped()
    }

    /// Pauses (False) or resumes (True) accepting connections.
    fn set_accepting(&self, accepting: bool) {
        self.server.set_accepting(accepting);
    }

    /// Stops listening and closes every client with 1001.
    fn stop(&self) {
        self.server.stop();
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        self.server.stop();
    }
}

/// The headers of the 101 with which a server accepts a request whose
/// Sec-WebSocket-Key is `key`, in the order written (`ws.response`).
#[pyfunction]
pub fn accept_headers(
    key: &str,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
    server_name: &str,
) -> Vec<(&'static str, String)> {
    crate::protocol::handshake::accept_headers(key, subprotocol, extensions, server_name)
}
