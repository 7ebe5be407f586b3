//! Opening a client connection from Python.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use super::connection::PyConnection;
use super::events::PyEventQueue;
use super::options::{self, check_header_values, Options, PyTlsOptions};
use crate::bridge::Question;
use crate::conn::client::{self, Target};
use crate::net::proxy::Credentials;
use crate::net::proxy::Proxy;
use crate::net::tls::{self, TlsOptions};
use crate::protocol::handshake::Headers;
use crate::protocol::url as ws_url;

/// Opens a connection to `url` in the background; its events go to `queue`.
///
/// Returns at once: EVENT_CONNECTED follows when the handshake succeeds,
/// EVENT_CLOSED with an error when it fails. `register` is called with the
/// connection before any of its events can arrive.
#[pyfunction]
#[pyo3(signature = (queue, url, subprotocols, headers, origin, options, tls = None, proxy = None, ask_proxy_auth = false, *, compression = None, ask_auth = false, unix_path = None, register))]
#[allow(clippy::too_many_arguments, reason = "one per socket property")]
pub fn connect(
    queue: &PyEventQueue,
    url: &str,
    subprotocols: Vec<String>,
    headers: Headers,
    origin: String,
    options: Options,
    tls: Option<PyTlsOptions>,
    proxy: Option<String>,
    ask_proxy_auth: bool,
    compression: Option<&str>,
    ask_auth: bool,
    unix_path: Option<PathBuf>,
    register: &Bound<'_, PyAny>,
) -> PyResult<Py<PyConnection>> {
    let url = ws_url::parse(url)?;
    check_header_values(headers.iter().map(|(_, value)| value.as_str()))?;
    check_header_values([origin.as_str()])?;
    let proxy = proxy
        .map(|p| Proxy::parse(&p))
        .transpose()
        .map_err(PyValueError::new_err)?;
    // Checked now, so that a bad certificate path raises in the caller.
    let tls = match url.scheme() {
        "wss" => {
            let options = tls.map(TlsOptions::from).unwrap_or(TlsOptions {
                peer_verify: true,
                ..TlsOptions::default()
            });
            Some(tls::client_config(&options).map_err(PyValueError::new_err)?)
        }
        _ => None,
    };
    let settings = options.settings()?;
    let target = Target {
        url,
        tls,
        subprotocols,
        origin,
        headers,
        proxy,
        ask_proxy_auth,
        ask_auth,
        compression: options::compression(compression)?,
        unix_path,
    };
    let handshake_timeout = options.handshake_timeout()?;
    let py = register.py();
    let mut handle = None;
    client::connect(
        &queue.queue,
        target,
        handshake_timeout,
        settings,
        |connection| {
            let made = Py::new(py, PyConnection::from(Arc::clone(connection)))?;
            register.call1((made.clone_ref(py),))?;
            handle = Some(made);
            Ok::<(), PyErr>(())
        },
    )?;
    handle.ok_or_else(|| PyRuntimeError::new_err("the connection was not made"))
}

/// Handed to `authentication_required` handlers (Qt's `QAuthenticator`):
/// setting `user` and `password` answers the server's 401, and the
/// handshake is tried once more with them (Basic, or Digest where the
/// server asks for it).
#[pyclass(frozen, module = "wsbind._wsbind")]
pub struct Authenticator {
    question: Arc<Question<Option<Credentials>>>,
}

impl From<Arc<Question<Option<Credentials>>>> for Authenticator {
    fn from(question: Arc<Question<Option<Credentials>>>) -> Self {
        Authenticator { question }
    }
}

#[pymethods]
impl Authenticator {
    /// The realm the server names ("" when it names none).
    #[getter]
    fn realm(&self) -> String {
        self.question.subject.clone()
    }

    /// The user name to answer with; "" until a handler sets it.
    #[getter]
    fn user(&self) -> String {
        self.question
            .get()
            .map(|(user, _)| user)
            .unwrap_or_default()
    }

    #[setter]
    fn set_user(&self, user: String) {
        let password = self.password();
        self.question.set(Some((user, password)));
    }

    /// The password to answer with; "" until a handler sets it.
    #[getter]
    fn password(&self) -> String {
        self.question
            .get()
            .map(|(_, password)| password)
            .unwrap_or_default()
    }

    #[setter]
    fn set_password(&self, password: String) {
        let user = self.user();
        self.question.set(Some((user, password)));
    }

    /// Gives the answer to the waiting handshake; later calls change nothing.
    fn finish(&self) {
        self.question.reply();
    }
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        self.question.reply();
    }
}
