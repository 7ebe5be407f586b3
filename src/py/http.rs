//! An HTTP request as a server's Python handlers see it, and the way their
//! answer goes back to the waiting task.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::events::Addresses;
use crate::bridge::Question;
use crate::conn::HttpAsk;
use crate::protocol::handshake::Headers;
use crate::protocol::http::{check_header, Answer, Body};

/// EVENT_HTTP_REQUEST: a request that came to a server's port, waiting for
/// its answer (``wsbind.Request`` wraps it). Unanswered when its handlers
/// are done (or when it is collected), it goes on: an upgrade to the
/// opening handshake, any other request to the static folder or 404.
#[pyclass(name = "HttpRequest", frozen, module = "wsbind._wsbind")]
pub struct PyHttpRequest {
    method: String,
    target: String,
    headers: Headers,
    body: Vec<u8>,
    upgrade: bool,
    addresses: Py<Addresses>,
    connection: u64,
    question: Arc<Question<Option<Answer>>>,
}

impl PyHttpRequest {
    pub fn new(py: Python<'_>, ask: HttpAsk) -> PyResult<Self> {
        let HttpAsk {
            request,
            upgrade,
            endpoints,
            connection,
            question,
        } = ask;
        Ok(PyHttpRequest {
            method: request.method,
            target: request.target,
            headers: request.headers,
            body: request.body,
            upgrade,
            addresses: Py::new(py, Addresses::from(&endpoints))?,
            connection,
            question,
        })
    }
}

#[pymethods]
impl PyHttpRequest {
    /// "GET", "POST", ... as sent.
    #[getter]
    fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent: path and query, percent-encoded.
    #[getter]
    fn target(&self) -> &str {
        &self.target
    }

    /// The headers, in order, as (name, value).
    #[getter]
    fn headers(&self) -> Headers {
        self.headers.clone()
    }

    /// The body (at most 64 KiB; b"" for none).
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.body)
    }

    /// Whether the client asks for a WebSocket (an `Upgrade: websocket` request).
    #[getter]
    fn upgrade(&self) -> bool {
        self.upgrade
    }

    /// The id the connection's events arrive under, should an upgrade open
    /// it (a server socket's `Connection.id`).
    #[getter]
    fn connection_id(&self) -> u64 {
        self.connection
    }

    /// The client's address and ours.
    #[getter]
    fn addresses(&self, py: Python<'_>) -> Py<Addresses> {
        self.addresses.clone_ref(py)
    }

    /// Whether a response was given.
    #[getter]
    fn answered(&self) -> bool {
        self.question.get().is_some()
    }

    /// Answers with `status`, `headers` and either `body` or the file at
    /// `file` (read off the Python thread, bounded by the server's
    /// `max_file_size`). A Content-Type is added when `headers` has none:
    /// the file's by its extension, else application/octet-stream.
    #[pyo3(signature = (status, headers, body = None, file = None))]
    fn respond(
        &self,
        status: u16,
        headers: Headers,
        body: Option<&Bound<'_, PyBytes>>,
        file: Option<PathBuf>,
    ) -> PyResult<()> {
        if !(200..=599).contains(&status) {
            return Err(PyValueError::new_err(format!(
                "an HTTP response's status is 200 to 599, not {status}"
            )));
        }
        for (name, value) in &headers {
            check_header(name, value).map_err(PyValueError::new_err)?;
        }
        let body = match (body, file) {
            (Some(_), Some(_)) => {
                return Err(PyValueError::new_err(
                    "a response has a body or a file, not both",
                ))
            }
            (_, Some(file)) => Body::File(file),
            (body, None) => Body::Bytes(body.map(|b| b.as_bytes().to_vec()).unwrap_or_default()),
        };
        self.question.set(Some(Answer {
            status,
            headers,
            body,
        }));
        Ok(())
    }

    /// Gives the answer (or none) to the waiting task; later calls change nothing.
    fn finish(&self) {
        self.question.reply();
    }
}

impl Drop for PyHttpRequest {
    fn drop(&mut self) {
        self.question.reply();
    }
}
