//! Misuse by the caller: what wsbind refuses at once. Each variant becomes
//! the Python exception of the same name at the boundary (`py/errors.rs`).
//! How a network failure is put into words is [`Failure`](crate::protocol::Failure).

/// Misuse by the caller.
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
    /// A fragment of the other kind (text, binary) than the fragmented
    /// message it continues.
    #[error(
        "cannot send: this fragment continues a {} message; the fragments of one message \
         must be all str or all bytes-like",
        if *text { "text" } else { "binary" }
    )]
    FragmentKind { text: bool },
    /// The tokio runtime could not be started.
    #[error("cannot start wsbind's I/O threads: {0}")]
    Runtime(String),
}
