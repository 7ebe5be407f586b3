//! wsbind's native core: sockets, TLS and the WebSocket protocol on tokio.
//! The Python package `wsbind` builds its objects on this private module.

pub mod client;
pub mod config;
pub mod connection;
pub mod errors;
pub mod events;
pub mod handshake;
pub mod landing;
pub mod outbox;
pub mod poller;
pub mod protocol;
pub mod proxy;
pub mod receiver;
pub mod runtime;
pub mod server;
pub mod stream;
pub mod subprotocol;
pub mod tls;
pub mod writer;
pub mod ws_url;

use pyo3::prelude::*;

/// Raises `InvalidURL` unless `url` is a ws:// or wss:// URL with a host.
#[pyfunction]
fn check_url(url: &str) -> PyResult<()> {
    ws_url::parse(url)?;
    Ok(())
}

/// The proxy the environment gives for `url`, as curl picks it, or None.
#[pyfunction]
fn environment_proxy(url: &str) -> PyResult<Option<String>> {
    Ok(proxy::from_environment(&ws_url::parse(url)?))
}

/// Raises ValueError unless `proxy` is an http://, socks5:// or socks5h:// proxy URL.
#[pyfunction]
fn check_proxy(proxy: &str) -> PyResult<()> {
    proxy::Proxy::parse(proxy).map_err(pyo3::exceptions::PyValueError::new_err)?;
    Ok(())
}

#[pymodule]
mod _wsbind {
    #[pymodule_export]
    use super::{check_proxy, check_url, environment_proxy};
    #[pymodule_export]
    use crate::client::connect;
    #[pymodule_export]
    use crate::connection::{broadcast, Connection};
    #[pymodule_export]
    use crate::events::EventQueue;
    #[pymodule_export]
    use crate::proxy::ProxyAuthenticator;
    #[pymodule_export]
    use crate::server::{OriginAuthenticator, Server};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        use crate::{config, events::kind};
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        for (name, value) in [
            ("EVENT_CONNECTED", kind::CONNECTED),
            ("EVENT_TEXT", kind::TEXT),
            ("EVENT_BINARY", kind::BINARY),
            ("EVENT_CLOSING", kind::CLOSING),
            ("EVENT_CLOSED", kind::CLOSED),
            ("EVENT_TEXT_FRAME", kind::TEXT_FRAME),
            ("EVENT_BINARY_FRAME", kind::BINARY_FRAME),
            ("EVENT_PONG", kind::PONG),
            ("EVENT_WRITTEN", kind::WRITTEN),
            ("EVENT_LISTENING", kind::LISTENING),
            ("EVENT_LISTEN_FAILED", kind::LISTEN_FAILED),
            ("EVENT_CLIENT_CONNECTED", kind::CLIENT_CONNECTED),
            ("EVENT_ACCEPT_FAILED", kind::ACCEPT_FAILED),
            ("EVENT_STOPPED", kind::STOPPED),
            ("EVENT_SERVER_ERROR", kind::SERVER_ERROR),
            ("EVENT_ORIGIN_CHECK", kind::ORIGIN_CHECK),
            ("EVENT_SSL_ERRORS", kind::SSL_ERRORS),
            ("EVENT_PROXY_AUTH", kind::PROXY_AUTH),
        ] {
            m.add(name, value)?;
        }
        m.add(
            "MAX_INCOMING_MESSAGE_SIZE",
            config::MAX_INCOMING_MESSAGE_SIZE,
        )?;
        m.add("MAX_INCOMING_FRAME_SIZE", config::MAX_INCOMING_FRAME_SIZE)?;
        m.add("MAX_OUTGOING_BUFFER", config::MAX_OUTGOING_BUFFER)?;
        m.add("MAX_PENDING_EVENT_BYTES", config::MAX_PENDING_EVENT_BYTES)?;
        m.add("OUTGOING_FRAME_SIZE", config::OUTGOING_FRAME_SIZE)?;
        m.add("PING_INTERVAL", config::PING_INTERVAL.as_secs_f64())?;
        m.add("PING_TIMEOUT", config::PING_TIMEOUT.as_secs_f64())?;
        m.add("CLOSE_TIMEOUT", config::CLOSE_TIMEOUT.as_secs_f64())?;
        m.add("HANDSHAKE_TIMEOUT", config::HANDSHAKE_TIMEOUT.as_secs_f64())?;
        m.add("MAX_PENDING_CONNECTIONS", config::MAX_PENDING_CONNECTIONS)?;
        Ok(())
    }
}

/// Rust's allocations only (message buffers, frames); Python's objects keep
/// Python's allocator. See Cargo.toml for why.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
