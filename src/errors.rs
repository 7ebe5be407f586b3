//! wsbind's errors: what the caller did wrong (raised at once, at the boundary
//! with Python) and how a network failure is put into words for `error_string`.

use pyo3::exceptions::PyRuntimeError;
use pyo3::PyErr;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};

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

/// Puts a tungstenite error that ended a connection into words.
pub fn describe(err: &WsError) -> Failure {
    match err {
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => Failure::new(
            1009,
            format!("message too big: {size} bytes, over the limit of {max_size} bytes"),
        ),
        WsError::Capacity(e) => Failure::new(1009, format!("too much data: {e}")),
        WsError::Utf8(e) => Failure::new(1007, format!("invalid UTF-8 in a text message: {e}")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Failure::new(
            ABNORMAL_CLOSURE,
            "connection lost: the peer closed the connection without a close frame",
        ),
        WsError::Protocol(e) => Failure::new(1002, format!("protocol error: {e}")),
        WsError::Http(response) => {
            let status = response.status();
            Failure::new(
                ABNORMAL_CLOSURE,
                format!(
                    "handshake rejected: HTTP {} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                )
                .trim_end()
                .to_string(),
            )
        }
        WsError::HttpFormat(e) => Failure::new(ABNORMAL_CLOSURE, format!("handshake failed: {e}")),
        WsError::Io(e) => Failure::new(ABNORMAL_CLOSURE, format!("connection lost: {e}")),
        WsError::Url(e) => Failure::new(ABNORMAL_CLOSURE, format!("invalid URL: {e}")),
        other => Failure::new(ABNORMAL_CLOSURE, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_long_names_the_limit() {
        let f = describe(&WsError::Capacity(CapacityError::MessageTooLong {
            size: 10,
            max_size: 5,
        }));
        assert_eq!(f.code, 1009);
        assert!(f.message.contains("limit of 5 bytes"), "{}", f.message);
    }

    #[test]
    fn protocol_errors_close_with_1002_and_utf8_with_1007() {
        assert_eq!(
            describe(&WsError::Protocol(ProtocolError::NonZeroReservedBits)).code,
            1002
        );
        assert_eq!(describe(&WsError::Utf8("bad".into())).code, 1007);
        assert!(!describe(&WsError::ConnectionClosed).is_sent());
    }

    #[test]
    fn rejected_handshake_gives_the_status_line() {
        let response = tokio_tungstenite::tungstenite::http::Response::builder()
            .status(404)
            .body(None)
            .unwrap();
        let f = describe(&WsError::Http(Box::new(response)));
        assert_eq!(f.message, "handshake rejected: HTTP 404 Not Found");
    }
}
