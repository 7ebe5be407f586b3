//! One open WebSocket connection, client or server side: reading, writing and
//! the closing handshake, and the `Connection` handle Python sends through.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::config::{CLOSE_TIMEOUT, MAX_OUTGOING_BUFFER};
use crate::errors::{describe, Error, Failure, ABNORMAL_CLOSURE};
use crate::events::{Event, EventSink};

/// How long we try to tell a peer that broke the protocol why we drop it.
const FAILURE_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// 1005: the peer's close frame carried no code. Reported, never sent.
const NO_STATUS_RECEIVED: u16 = 1005;

/// Longest close reason: a control frame holds 125 bytes, two are the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// What Python asks a connection's task to do.
pub enum Command {
    Send { message: Message, size: usize },
    Close(CloseFrame),
    Abort,
}

/// Ids are unique across all objects, so that one queue can serve a server
/// and its connections.
pub fn next_id() -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The state a connection's task shares with the Python handle.
pub struct Shared {
    pub id: u64,
    commands: UnboundedSender<Command>,
    /// True from the end of the opening handshake until either side starts closing.
    open: AtomicBool,
    /// Bytes handed to `send_*` and not yet written.
    queued: AtomicUsize,
}

impl Shared {
    pub fn new() -> (Arc<Shared>, UnboundedReceiver<Command>) {
        let (commands, receiver) = unbounded_channel();
        let shared = Shared {
            id: next_id(),
            commands,
            open: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
        };
        (Arc::new(shared), receiver)
    }

    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Release);
    }

    fn send(&self, message: Message, size: usize) -> Result<usize, Error> {
        if !self.open.load(Ordering::Acquire) {
            return Err(Error::NotOpen);
        }
        let queued = self.queued.fetch_add(size, Ordering::AcqRel);
        if queued > 0 && queued + size > MAX_OUTGOING_BUFFER {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            return Err(Error::BufferFull {
                queued,
                limit: MAX_OUTGOING_BUFFER,
            });
        }
        self.commands
            .send(Command::Send { message, size })
            .map_err(|_| Error::NotOpen)?;
        Ok(size)
    }

    /// Starts the closing handshake; a connection that is already over ignores it.
    pub fn close(&self, frame: CloseFrame) {
        self.set_open(false);
        let _ = self.commands.send(Command::Close(frame));
    }

    fn abort(&self) {
        self.set_open(false);
        let _ = self.commands.send(Command::Abort);
    }
}

/// Checks a close code and reason as RFC 6455 §7.4 allows them to be sent.
pub fn close_frame(code: u16, reason: &str) -> Result<CloseFrame, String> {
    let sendable = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
    if !sendable {
        return Err(format!(
            "close code {code} cannot be sent: use 1000-1003, 1007-1011 or 3000-4999"
        ));
    }
    if reason.len() > MAX_CLOSE_REASON {
        return Err(format!(
            "close reason is {} bytes of UTF-8, over the limit of {MAX_CLOSE_REASON}",
            reason.len()
        ));
    }
    Ok(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    })
}

/// The handle Python holds to send on a connection and to close it.
#[pyclass(frozen, module = "wsbind._wsbind")]
pub struct Connection {
    shared: Arc<Shared>,
}

impl From<Arc<Shared>> for Connection {
    fn from(shared: Arc<Shared>) -> Self {
        Connection { shared }
    }
}

#[pymethods]
impl Connection {
    /// The id under which this connection's events arrive.
    #[getter]
    fn id(&self) -> u64 {
        self.shared.id
    }

    /// Queues a text message; returns its size in bytes of UTF-8.
    fn send_text(&self, message: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text: &str = message.extract().map_err(|_| {
            PyTypeError::new_err(format!(
                "send_text_message() takes a str, not {}",
                type_name(message)
            ))
        })?;
        let size = text.len();
        Ok(self.shared.send(Message::Text(text.into()), size)?)
    }

    /// Queues a binary message from any bytes-like object; returns its size.
    fn send_binary(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let payload = if let Ok(bytes) = data.cast::<PyBytes>() {
            Bytes::copy_from_slice(bytes.as_bytes())
        } else if data.is_instance_of::<pyo3::types::PyString>() {
            return Err(PyTypeError::new_err(
                "send_binary_message() takes a bytes-like object, not str: use send_text_message()",
            ));
        } else {
            let buffer = PyBuffer::<u8>::get(data).map_err(|_| {
                PyTypeError::new_err(format!(
                    "send_binary_message() takes a bytes-like object, not {}",
                    type_name(data)
                ))
            })?;
            Bytes::from(buffer.to_vec(py)?)
        };
        let size = payload.len();
        Ok(self.shared.send(Message::Binary(payload), size)?)
    }

    /// Starts the closing handshake with `code` and `reason`.
    #[pyo3(signature = (code = 1000, reason = ""))]
    fn close(&self, code: u16, reason: &str) -> PyResult<()> {
        let frame = close_frame(code, reason).map_err(PyValueError::new_err)?;
        self.shared.close(frame);
        Ok(())
    }

    /// Drops the TCP connection without a closing handshake.
    fn abort(&self) {
        self.shared.abort();
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// How the two halves of a connection ended.
enum End {
    /// The reader saw the end of the stream, or failed.
    Read(Result<(), WsError>),
    /// We sent a close frame and the peer did not finish the handshake in time.
    CloseTimeout,
    /// Python asked to drop the connection.
    Aborted,
    Write(WsError),
}

enum Written {
    /// Our close frame is out.
    Closed,
    Aborted,
}

/// Runs an open connection until it is over, then sends `Event::Closed`.
pub async fn run<S>(
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    mut commands: UnboundedReceiver<Command>,
    events: EventSink,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    // Some(frame) once the peer sent its close frame.
    let mut peer_close: Option<Option<CloseFrame>> = None;
    let mut sent_close = false;
    let end = {
        let reader = read(&mut stream, &events, &shared, &mut peer_close);
        let writer = write(&mut sink, &mut commands, &shared);
        tokio::pin!(reader);
        tokio::select! {
            result = &mut reader => End::Read(result),
            written = writer => match written {
                Ok(Written::Closed) => {
                    sent_close = true;
                    match timeout(CLOSE_TIMEOUT, &mut reader).await {
                        Ok(result) => End::Read(result),
                        Err(_) => End::CloseTimeout,
                    }
                }
                Ok(Written::Aborted) => End::Aborted,
                Err(e) => End::Write(e),
            }
        }
    };
    shared.set_open(false);
    let (code, reason, error) = match (end, peer_close) {
        (End::Read(Ok(())), Some(frame)) => match frame {
            Some(frame) => (u16::from(frame.code), frame.reason.to_string(), None),
            None => (NO_STATUS_RECEIVED, String::new(), None),
        },
        (End::Read(Ok(())), None) => (
            ABNORMAL_CLOSURE,
            String::new(),
            Some("connection lost: the stream ended without a close frame".to_string()),
        ),
        (End::Read(Err(e)) | End::Write(e), _) => {
            let Failure { code, message } = describe(&e);
            if !sent_close && code != ABNORMAL_CLOSURE {
                // Tell the peer why, but do not wait long for a broken peer.
                if let Ok(frame) = close_frame(code, "") {
                    let _ = timeout(
                        FAILURE_CLOSE_TIMEOUT,
                        sink.send(Message::Close(Some(frame))),
                    )
                    .await;
                }
            }
            (code, String::new(), Some(message))
        }
        (End::CloseTimeout, _) => (
            ABNORMAL_CLOSURE,
            String::new(),
            Some(format!(
                "close timeout: the peer did not answer the close frame within {} s",
                CLOSE_TIMEOUT.as_secs()
            )),
        ),
        (End::Aborted, _) => (ABNORMAL_CLOSURE, String::new(), None),
    };
    events.send(Event::Closed {
        code,
        reason,
        error,
    });
}

async fn read<S>(
    stream: &mut SplitStream<WebSocketStream<S>>,
    events: &EventSink,
    shared: &Shared,
    peer_close: &mut Option<Option<CloseFrame>>,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        events.wait_for_room().await;
        match stream.next().await {
            None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(()),
            Some(Ok(Message::Text(text))) => events.send(Event::Text(text)),
            Some(Ok(Message::Binary(data))) => events.send(Event::Binary(data)),
            Some(Ok(Message::Close(frame))) => {
                if peer_close.is_none() {
                    shared.set_open(false);
                    events.send(Event::Closing);
                }
                *peer_close = Some(frame);
            }
            // tungstenite answers pings itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Err(e)) => return Err(e),
        }
    }
}

async fn write<S>(
    sink: &mut SplitSink<WebSocketStream<S>, Message>,
    commands: &mut UnboundedReceiver<Command>,
    shared: &Shared,
) -> Result<Written, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut next = commands.recv().await;
    loop {
        match next {
            None | Some(Command::Abort) => return Ok(Written::Aborted),
            Some(Command::Close(frame)) => {
                sink.send(Message::Close(Some(frame))).await?;
                return Ok(Written::Closed);
            }
            Some(Command::Send { message, size }) => {
                sink.feed(message).await?;
                let mut written = size;
                // Whatever else is queued leaves in the same write.
                next = None;
                while let Ok(command) = commands.try_recv() {
                    match command {
                        Command::Send { message, size } => {
                            sink.feed(message).await?;
                            written += size;
                        }
                        other => {
                            next = Some(other);
                            break;
                        }
                    }
                }
                sink.flush().await?;
                shared.queued.fetch_sub(written, Ordering::AcqRel);
                if next.is_none() {
                    next = commands.recv().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frame_checks_code_and_reason() {
        assert!(close_frame(1000, "bye").is_ok());
        assert!(close_frame(4999, "").is_ok());
        for code in [999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert!(close_frame(code, "").is_err(), "{code}");
        }
        assert!(close_frame(1000, &"x".repeat(MAX_CLOSE_REASON)).is_ok());
        assert!(close_frame(1000, &"x".repeat(MAX_CLOSE_REASON + 1)).is_err());
    }

    #[test]
    fn sending_before_open_is_refused() {
        let (shared, _rx) = Shared::new();
        assert_eq!(
            shared.send(Message::Text("x".into()), 1),
            Err(Error::NotOpen)
        );
        shared.set_open(true);
        assert_eq!(shared.send(Message::Text("x".into()), 1), Ok(1));
    }

    #[test]
    fn the_outgoing_queue_is_bounded() {
        let (shared, _rx) = Shared::new();
        shared.set_open(true);
        let big = MAX_OUTGOING_BUFFER;
        assert!(shared.send(Message::Binary(Bytes::new()), big).is_ok());
        assert!(matches!(
            shared.send(Message::Binary(Bytes::new()), 1),
            Err(Error::BufferFull { .. })
        ));
    }
}
