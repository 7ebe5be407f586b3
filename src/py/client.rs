//! Opening a client connection from Python.

use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use super::connection::PyConnection;
use super::events::PyEventQueue;
use super::options::{self, check_header_values, Options, PyTlsOptions};
use crate::conn::client::{self, Target};
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
#[pyo3(signature = (queue, url, subprotocols, headers, origin, options, tls = None, proxy = None, ask_proxy_auth = false, *, compression = None, register))]
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
        compression: options::compression(compression)?,
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
