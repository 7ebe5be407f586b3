//! Proxies as Python sees them: the checks of a proxy URL, the proxy the
//! environment picks, and the question a proxy's 407 raises.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::bridge::Question;
use crate::net::proxy::{self, Credentials, Proxy};
use crate::protocol::url as ws_url;

/// The proxy the environment gives for `url`, as curl picks it, or None.
#[pyfunction]
pub fn environment_proxy(url: &str) -> PyResult<Option<String>> {
    Ok(proxy::from_environment(&ws_url::parse(url)?))
}

/// Raises ValueError unless `proxy` is an http://, socks5:// or socks5h:// proxy URL.
#[pyfunction]
pub fn check_proxy(proxy: &str) -> PyResult<()> {
    Proxy::parse(proxy).map_err(PyValueError::new_err)?;
    Ok(())
}

/// Handed to `proxy_authentication_required` handlers (Qt's `QAuthenticator`):
/// `set_credentials(user, password)` answers the proxy's 407.
#[pyclass(frozen, module = "wsbind._wsbind")]
pub struct ProxyAuthenticator {
    question: Arc<Question<Option<Credentials>>>,
}

impl From<Arc<Question<Option<Credentials>>>> for ProxyAuthenticator {
    fn from(question: Arc<Question<Option<Credentials>>>) -> Self {
        ProxyAuthenticator { question }
    }
}

#[pymethods]
impl ProxyAuthenticator {
    /// The proxy that asks, as host:port.
    #[getter]
    fn proxy(&self) -> String {
        self.question.subject.clone()
    }

    /// Answers with these credentials (Qt: ``setUser``, ``setPassword``).
    fn set_credentials(&self, user: String, password: String) {
        self.question.set(Some((user, password)));
    }

    /// Gives the answer to the waiting connection; later calls change nothing.
    fn finish(&self) {
        self.question.reply();
    }
}

impl Drop for ProxyAuthenticator {
    fn drop(&mut self) {
        self.question.reply();
    }
}
