//! Everything Python sees of the native core: the private module
//! `wsbind._wsbind`, its classes and functions, and the conversions of
//! values and errors at the boundary. The only folder with `#[pyclass]`.

pub mod awaitable;
pub mod client;
pub mod connection;
pub mod errors;
pub mod events;
pub mod http;
pub mod malloc;
pub mod options;
pub mod proxy;
pub mod server;

use pyo3::prelude::*;

use crate::protocol::url as ws_url;

/// Raises `InvalidURL` unless `url` is a ws:// or wss:// URL with a host.
#[pyfunction]
fn check_url(url: &str) -> PyResult<()> {
    ws_url::parse(url)?;
    Ok(())
}

/// Raises ValueError unless `value` can be an HTTP header value: tab,
/// space and visible ASCII. The one rule for every header wsbind sends.
#[pyfunction]
fn check_header_value(value: &str) -> PyResult<()> {
    options::check_header_values([value])
}

/// Raises ValueError unless `code` and `reason` may be sent in a close
/// frame: `close()` checks them whatever the socket's status.
#[pyfunction]
fn check_close(code: i64, reason: &str) -> PyResult<()> {
    let checked = match u16::try_from(code) {
        Ok(code) => crate::protocol::close::check_sendable(code, reason),
        Err(_) => Err(format!(
            "close code {code} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999"
        )),
    };
    checked.map_err(pyo3::exceptions::PyValueError::new_err)
}

#[pymodule]
mod _wsbind {
    #[pymodule_export]
    use super::client::{connect, Authenticator};
    #[pymodule_export]
    use super::connection::{broadcast, PyConnection};
    #[pymodule_export]
    use super::events::{
        Addresses, ClientConnected, Closed, Connected, Frame, Pong, PyEventQueue, Written,
    };
    #[pymodule_export]
    use super::http::PyHttpRequest;
    #[pymodule_export]
    use super::proxy::{check_proxy, environment_proxy, ProxyAuthenticator};
    #[pymodule_export]
    use super::server::{accept_headers, bind, OriginAuthenticator, PyListener, PyServer};
    #[pymodule_export]
    use super::{check_close, check_header_value, check_url};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        use crate::config;
        super::malloc::raise_thresholds();
        let exits = wrap_pyfunction!(super::awaitable::python_exits, m)?;
        m.py()
            .import("atexit")?
            .call_method1("register", (exits,))?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        for (name, value) in super::events::kind::ALL {
            m.add(name, value)?;
        }
        m.add(
            "MAX_INCOMING_MESSAGE_SIZE",
            config::MAX_INCOMING_MESSAGE_SIZE,
        )?;
        m.add("MAX_CONTROL_PAYLOAD", crate::protocol::MAX_CONTROL_PAYLOAD)?;
        m.add("MAX_INCOMING_FRAME_SIZE", config::MAX_INCOMING_FRAME_SIZE)?;
        m.add("MAX_OUTGOING_BUFFER", config::MAX_OUTGOING_BUFFER)?;
        m.add("MAX_PENDING_EVENT_BYTES", config::MAX_PENDING_EVENT_BYTES)?;
        m.add("OUTGOING_FRAME_SIZE", config::OUTGOING_FRAME_SIZE)?;
        m.add("PING_INTERVAL", config::PING_INTERVAL.as_secs_f64())?;
        m.add("PING_TIMEOUT", config::PING_TIMEOUT.as_secs_f64())?;
        m.add("CLOSE_TIMEOUT", config::CLOSE_TIMEOUT.as_secs_f64())?;
        m.add("HANDSHAKE_TIMEOUT", config::HANDSHAKE_TIMEOUT.as_secs_f64())?;
        m.add("MAX_PENDING_CONNECTIONS", config::MAX_PENDING_CONNECTIONS)?;
        m.add("LISTEN_BACKLOG", config::LISTEN_BACKLOG)?;
        m.add("MAX_QUEUE", config::MAX_QUEUE)?;
        m.add("WRITE_LIMIT", config::WRITE_LIMIT)?;
        m.add("MAX_FILE_SIZE", config::MAX_FILE_SIZE)?;
        m.add("MAX_REQUEST_BODY", config::MAX_REQUEST_BODY)?;
        Ok(())
    }
}
