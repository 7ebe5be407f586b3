//! The byte stream under a WebSocket: plain (ws://) or TLS (wss://), over
//! TCP or over a Unix domain socket (a server behind a proxy on the same
//! machine, as websockets' `unix_serve`).
//!
//! Enums rather than generic parameters, so that the connection code is
//! compiled once and a TLS socket costs a match, not a virtual call.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsStream;

use std::net::SocketAddr;

/// Where a connection runs between: its peer and our end.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub peer: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
}

impl Endpoints {
    pub fn of(stream: &TcpStream) -> Self {
        // An IPv4 client of a server on "::" (host "") shows as 127.0.0.1,
        // as with an IPv4 listener, not as ::ffff:127.0.0.1.
        let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        Endpoints {
            peer: stream.peer_addr().ok().map(canonical),
            local: stream.local_addr().ok().map(canonical),
        }
    }
}

/// The socket a connection runs over.
pub enum Transport {
    Tcp(TcpStream),
    /// A Unix domain socket: no addresses, and Nagle does not apply.
    Unix(UnixStream),
}

impl Transport {
    pub fn endpoints(&self) -> Endpoints {
        match self {
            Transport::Tcp(tcp) => Endpoints::of(tcp),
            Transport::Unix(_) => Endpoints::default(),
        }
    }

    /// Small messages are the common case: Nagle must not hold them back.
    pub fn set_nodelay(&self) {
        if let Transport::Tcp(tcp) = self {
            let _ = tcp.set_nodelay(true);
        }
    }

    fn into_socket(self) -> io::Result<Socket> {
        match self {
            Transport::Tcp(tcp) => Ok(tcp.into_std()?.into()),
            Transport::Unix(unix) => Ok(unix.into_std()?.into()),
        }
    }
}

/// `$call` on the socket under a `Transport`, pinned as `$s`: one
/// expression for both kinds, whose poll methods have the same names.
macro_rules! on_socket {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Transport::Tcp($s) => {
                let $s = Pin::new($s);
                $call
            }
            Transport::Unix($s) => {
                let $s = Pin::new($s);
                $call
            }
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_socket!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_socket!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_socket!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_socket!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_socket!(self, s => s.poll_shutdown(cx))
    }
}

pub enum Stream {
    Plain(Transport),
    Tls(Box<TlsStream<Transport>>),
    /// A plain socket once the connection runs: the Python thread reads it
    /// (see `conn/receiver.rs`), so tokio watches it for room to write
    /// only, and the I/O thread is not woken by every message that arrives.
    ReadByReceiver(AsyncFd<Socket>),
}

impl Stream {
    pub fn endpoints(&self) -> Endpoints {
        match self {
            Stream::Plain(transport) => transport.endpoints(),
            Stream::Tls(tls) => tls.get_ref().0.endpoints(),
            Stream::ReadByReceiver(io) => {
                let address = |a: io::Result<socket2::SockAddr>| a.ok().and_then(|a| a.as_socket());
                Endpoints {
                    peer: address(io.get_ref().peer_addr()),
                    local: address(io.get_ref().local_addr()),
                }
            }
        }
    }

    /// The stream to run a connection on, and its plain socket, which the
    /// Python thread reads and sending threads may write frames to
    /// themselves (TLS records need the session's state: None).
    pub fn into_running(self) -> io::Result<(Stream, Option<RawFd>)> {
        match self {
            Stream::Plain(transport) => {
                let socket = transport.into_socket()?;
                let fd = socket.as_raw_fd();
                // SAFETY: `socket` owns its descriptor, open until the AsyncFd drops it.
                let io = unsafe { AsyncFd::register_with_interest(socket, Interest::WRITABLE)? };
                Ok((Stream::ReadByReceiver(io), Some(fd)))
            }
            other => Ok((other, None)),
        }
    }
}

/// One non-blocking vectored write to `socket`. MSG_NOSIGNAL: a peer that
/// went away must not kill a process that did not ignore SIGPIPE.
pub fn send(socket: RawFd, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: IoSlice has the layout of iovec, and the slices outlive the
    // call; a closed `socket` is an error, not UB.
    let written = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = slices.as_ptr() as *mut libc::iovec;
        message.msg_iovlen = slices.len() as _;
        libc::sendmsg(socket, &message, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
    };
    usize::try_from(written).map_err(|_| io::Error::last_os_error())
}

fn poll_send(
    io: &AsyncFd<Socket>,
    cx: &mut Context<'_>,
    slices: &[IoSlice<'_>],
) -> Poll<io::Result<usize>> {
    loop {
        let mut guard = ready!(io.poll_write_ready(cx))?;
        if let Ok(result) = guard.try_io(|io| send(io.as_raw_fd(), slices)) {
            return Poll::Ready(result);
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr, $io:ident => $written:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $call
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
            Stream::ReadByReceiver($io) => $written,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf), _io => {
            // The connection reads it through the receiver, never through here.
            let _ = buf;
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a running plain TCP stream is read through its receiver",
            )))
        })
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf), io => poll_send(io, cx, &[IoSlice::new(buf)]))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs), io => poll_send(io, cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::ReadByReceiver(_) => true,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx), _io => Poll::Ready(Ok(())))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx), io => Poll::Ready(io.get_ref().shutdown(Shutdown::Write)))
    }
}
