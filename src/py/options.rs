//! The properties Python passes to the native side, checked and turned into
//! the connection's settings.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::conn::Settings;
use crate::net::tls::TlsOptions;
use crate::protocol::deflate::DeflateConfig;
use crate::protocol::session::Timers;
use crate::protocol::{handshake, Limits};

/// A socket's properties as Python passes them, by their Python names.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct Options {
    pub max_allowed_incoming_frame_size: usize,
    pub max_allowed_incoming_message_size: usize,
    pub outgoing_frame_size: usize,
    pub ping_interval: Option<f64>,
    pub ping_timeout: Option<f64>,
    pub close_timeout: f64,
    /// None: no limit.
    pub handshake_timeout: Option<f64>,
}

/// Seconds from Python as a Duration; ValueError for negative or absurd values.
pub fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a number of seconds >= 0, not {value}"
        ))
    })
}

impl Options {
    pub fn settings(&self) -> PyResult<Settings> {
        let optional = |name, value: Option<f64>| value.map(|v| seconds(name, v)).transpose();
        if self.outgoing_frame_size == 0 {
            return Err(PyValueError::new_err(
                "outgoing_frame_size must be at least 1",
            ));
        }
        Ok(Settings {
            limits: Limits {
                max_frame_size: self.max_allowed_incoming_frame_size,
                max_message_size: self.max_allowed_incoming_message_size,
            },
            outgoing_frame_size: self.outgoing_frame_size,
            timers: Timers {
                ping_interval: optional("ping_interval", self.ping_interval)?,
                ping_timeout: optional("ping_timeout", self.ping_timeout)?,
                close_timeout: seconds("close_timeout", self.close_timeout)?,
            },
        })
    }

    pub fn handshake_timeout(&self) -> PyResult<Option<Duration>> {
        self.handshake_timeout
            .map(|t| seconds("handshake_timeout", t))
            .transpose()
    }
}

/// The TLS settings of a socket or server, as Python's `SslConfiguration`
/// gives them (its `_native()` dict).
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub struct PyTlsOptions {
    pub ca_certificates: Vec<String>,
    pub local_certificate: Option<String>,
    pub private_key: Option<String>,
    pub peer_verify: bool,
}

impl From<PyTlsOptions> for TlsOptions {
    fn from(tls: PyTlsOptions) -> Self {
        TlsOptions {
            ca_certificates: tls.ca_certificates,
            local_certificate: tls.local_certificate,
            private_key: tls.private_key,
            peer_verify: tls.peer_verify,
        }
    }
}

/// Raises ValueError for the first value that cannot be an HTTP header
/// value (see [`handshake::check_header_value`]).
pub fn check_header_values<'a>(values: impl IntoIterator<Item = &'a str>) -> PyResult<()> {
    for value in values {
        handshake::check_header_value(value).map_err(PyValueError::new_err)?;
    }
    Ok(())
}

/// The `compression` property: "deflate" (permessage-deflate with wsbind's
/// defaults) or None.
pub fn compression(value: Option<&str>) -> PyResult<Option<DeflateConfig>> {
    match value {
        None => Ok(None),
        Some("deflate") => Ok(Some(DeflateConfig::default())),
        Some(other) => Err(PyValueError::new_err(format!(
            "compression must be \"deflate\" or None, not {other:?}"
        ))),
    }
}
