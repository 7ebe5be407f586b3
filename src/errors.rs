//! wsbind's errors: what the caller did wrong (raised at once, at the boundary
//! with Python) and how a network failure is put into words for `error_string`.

use pyo3::exceptions::PyRuntimeError;
use pyo3::PyErr;

// The exception classes are Python's (python/wsbind.errors.py), so that the
// tree can mix in ValueError and be read in one place.
pyo3::import_exception!(wsbind.errors, NotOpenError);
pyo3::import_exception!(wsbind.errors, InvalidURL);
pyo3::import_exception!(wsbind.errors, BufferFullError);

/// Misuse by the caller. Each becomes the Python exception of the same name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The URL cannot be parsed, or is not a ws:// or wss:// URL with a host.
    #[error("{0}")]
    InvalidUrl(String),
    /// A message was sent on a socket that is not open.
    #[error("cannot send: the socket is not open")]
    NotOpen,
    /// The outgoing queue of the socket is over its bound.
    #[error(
        "cannot send: {queued} bytes already wait to be written, over the limit of {limit} bytes; \
         the peer is not reading fast enough"
    )]
    BufferFull { queued: usize, limit: usize },
    /// The tokio runtime could not be started.
    #[error("cannot start wsbind's I/O threads: {0}")]
    Runtime(String),
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        match err {
            Error::InvalidUrl(_) => InvalidURL::new_err(message),
            Error::NotOpen => NotOpenError::new_err(message),
            Error::BufferFull { .. } => BufferFullError::new_err(message),
            Error::Runtime(_) => PyRuntimeError::new_err(message),
        }
    }
}

/// What a failed connection tells the user: the close code we send (or
/// report) and a sentence for `error_string`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The close code for the failure: 1002, 1007 or 1009 when the peer broke
    /// the protocol and we tell it so, otherwise 1006 (no close frame).
    pub code: u16,
    /// A readable description, for `error_string`.
    pub message: String,
}

/// 1006: the connection ended without a close frame. Reported, never sent.
pub const ABNORMAL_CLOSURE: u16 = 1006;

impl Failure {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Whether the code is one we send to the peer before dropping it.
    pub fn is_sent(&self) -> bool {
        self.code != ABNORMAL_CLOSURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_codes_are_sent() {
        assert!(Failure::new(1002, "x").is_sent());
        assert!(!Failure::new(ABNORMAL_CLOSURE, "x").is_sent());
    }
}
