"""Raw-socket WebSocket peers for tests about what goes over the wire: a TCP
server that does (or skips) the opening handshake by hand, and frame I/O."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator

from conftest import TIMEOUT

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the connection was closed")
        data += chunk
    return data


def read_frame_header(conn: socket.socket) -> tuple[int, int, bytes | None]:
    """Reads one frame's header; returns its first byte (FIN, RSV1-3, opcode), the payload's
    length and its mask (None if unmasked)."""
    first, second = recv_exactly(conn, 2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", recv_exactly(conn, 2))
    elif length == 127:
        (length,) = struct.unpack("!Q", recv_exactly(conn, 8))
    mask = recv_exactly(conn, 4) if second & 0x80 else None
    return first, length, mask


def read_raw_frame(conn: socket.socket) -> tuple[int, bytes]:
    """Reads one frame (masked or not); returns its first byte and the unmasked payload."""
    first, length, mask = read_frame_header(conn)
    payload = recv_exactly(conn, length)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return first, payload


def read_frame(conn: socket.socket) -> tuple[bool, int, bytes]:
    """Reads one frame (masked or not); returns FIN, opcode and the unmasked payload."""
    first, payload = read_raw_frame(conn)
    return bool(first & 0x80), first & 0x0F, payload


def unmasked_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A frame as a server sends it (unmasked), for payloads under 126 bytes."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def drain(conn: socket.socket) -> None:
    """Reads and discards everything until the other side closes: answers nothing, not even a close."""
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass


def silent_but_closes(conn: socket.socket) -> None:
    """Answers no ping, but echoes a close frame and then hangs up, as a peer whose pongs are lost."""
    with contextlib.suppress(OSError):
        while True:
            _, opcode, payload = read_frame(conn)
            if opcode == CLOSE:
                conn.sendall(unmasked_frame(CLOSE, payload[:2]))
                return


@contextlib.contextmanager
def tcp_server(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP server for one connection, handed to `serve` as it is; yields a ws:// URL for it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    port = listener.getsockname()[1]

    def run() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(TIMEOUT)
            with contextlib.suppress(OSError, ConnectionError):
                serve(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        thread.join(TIMEOUT)
        listener.close()


def read_head(conn: socket.socket) -> bytes:
    """Reads an HTTP head up to its blank line, or what came before the peer closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    return data


def handshaking(
    behave: Callable[[socket.socket], None], extensions: bytes = b""
) -> Callable[[socket.socket], None]:
    """Wraps `behave` in the server's half of the opening handshake, done by hand, accepting
    `extensions` (e.g. b"permessage-deflate") whatever the client offered."""

    def serve(conn: socket.socket) -> None:
        request = read_head(conn)
        if not request.endswith(b"\r\n\r\n"):
            return
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accepted = b"Sec-WebSocket-Extensions: " + extensions + b"\r\n" if extensions else b""
        conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + accepted
            + b"Sec-WebSocket-Accept: "
            + accept_key(key)
            + b"\r\n\r\n"
        )
        behave(conn)

    return serve


def raw_websocket_server(behave: Callable[[socket.socket], None]) -> contextlib.AbstractContextManager[str]:
    """A server that does the opening handshake by hand, then runs `behave` on the connection."""
    return tcp_server(handshaking(behave))


def stuck_client(port: int) -> socket.socket:
    """A client that does the opening handshake by hand, with a tiny receive buffer, and then
    never reads: whatever the server sends it piles up in the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.settimeout(TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock
