"""RFC 6455 conformance, with wsbind in both roles against raw-socket peers.

As a client, our WebSocket talks to a TCP server that does the opening
handshake by hand; as a server, our WebSocketServer (echoing every message)
talks to a TCP client that does the same. The raw peer then sends exactly the
frames a test needs, well-formed or not, and reads exactly what we send back.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.sync.client import connect

from conftest import TIMEOUT, Recorder, wait_until
from rawpeer import accept_key
from wsbind import Status, WebSocket, WebSocketServer

# Opcodes, RFC 6455 §5.2.
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# Reserved bits, as the `rsv` argument of `frame`.
RSV1, RSV2, RSV3 = 0b100, 0b010, 0b001

# "κόσμε" followed by a UTF-16 surrogate (ED A0 80), then "edited": Autobahn's case 6.4.1.
INVALID_UTF8 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"


# -- frames


def xor_mask(data: bytes, key: bytes) -> bytes:
    """Masks or unmasks `data` with a 4-byte key (§5.3)."""
    if not data:
        return b""
    stream = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def frame(
    opcode: int,
    payload: bytes = b"",
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length_override: int | None = None,
) -> bytes:
    """Encodes one frame (§5.2) with the minimal length encoding.

    `rsv` holds the three reserved bits (RSV1 = 0b100); `mask` is a 4-byte key,
    or None for an unmasked frame; `length_override` is the payload length the
    header announces instead of the real one.
    """
    length = len(payload) if length_override is None else length_override
    mask_bit = 0x80 if mask is not None else 0
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    if length <= 125:
        head += bytes([mask_bit | length])
    elif length <= 0xFFFF:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if mask is not None:
        head += mask
        payload = xor_mask(payload, mask)
    return head + payload


def close_payload(code: int, reason: bytes | str = b"") -> bytes:
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    """One frame as it was read off the wire."""

    fin: bool
    rsv: int
    opcode: int
    masked: bool
    key: bytes | None
    # The 7-bit length field of the second header byte: the length itself, 126 or 127.
    length_code: int
    # Unmasked.
    payload: bytes

    @property
    def minimal_length(self) -> bool:
        """Whether the header uses the shortest length encoding for the payload (§5.2)."""
        n = len(self.payload)
        return self.length_code == (n if n <= 125 else 126 if n <= 0xFFFF else 127)

    @property
    def close_code(self) -> int | None:
        assert self.opcode == CLOSE, self
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        assert self.opcode == CLOSE, self
        return self.payload[2:].decode()


@dataclass
class Message:
    """A data message as read off the wire, with the control frames read along the way."""

    opcode: int
    payload: bytes
    frames: list[Frame]
    controls: list[Frame] = field(default_factory=list)


class Peer:
    """The raw end of a connection, after the opening handshake: sends and reads frames.

    A client peer masks what it sends, with a fresh key per frame; a server peer does not.
    """

    def __init__(self, sock: socket.socket, buffered: bytes = b"", *, masks: bool) -> None:
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.buffer = bytearray(buffered)
        self.masks = masks

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        length_override: int | None = None,
    ) -> None:
        """Sends one frame, masked as this peer's role requires."""
        mask = os.urandom(4) if self.masks else None
        self.send(frame(opcode, payload, fin=fin, rsv=rsv, mask=mask, length_override=length_override))

    def send_close(self, payload: bytes) -> None:
        """Sends a close frame; our side may already have dropped the connection."""
        with contextlib.suppress(OSError):
            self.send_frame(CLOSE, payload)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(1 << 16)
        except TimeoutError:
            pytest.fail(f"the peer read nothing more within {TIMEOUT} s")
        if not chunk:
            raise ConnectionError("the connection was closed")
        self.buffer += chunk

    def recv_exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read_until(self, marker: bytes) -> bytes:
        """Reads up to and including `marker`; what follows stays buffered."""
        while marker not in self.buffer:
            self._fill()
        end = self.buffer.index(marker) + len(marker)
        return self.recv_exactly(end)

    def read_frame(self) -> Frame:
        first, second = self.recv_exactly(2)
        length_code = second & 0x7F
        length = length_code
        if length_code == 126:
            (length,) = struct.unpack("!H", self.recv_exactly(2))
        elif length_code == 127:
            (length,) = struct.unpack("!Q", self.recv_exactly(8))
        masked = bool(second & 0x80)
        key = self.recv_exactly(4) if masked else None
        payload = self.recv_exactly(length)
        if key is not None:
            payload = xor_mask(payload, key)
        return Frame(
            fin=bool(first & 0x80),
            rsv=(first >> 4) & 0b111,
            opcode=first & 0x0F,
            masked=masked,
            key=key,
            length_code=length_code,
            payload=payload,
        )

    def read_message(self) -> Message:
        """Reads the frames of one data message; control frames in between are kept aside."""
        frames: list[Frame] = []
        controls: list[Frame] = []
        while True:
            f = self.read_frame()
            if f.opcode >= 0x8:
                assert f.opcode != CLOSE, f"a close frame instead of a message: {f}"
                controls.append(f)
                continue
            frames.append(f)
            if f.fin:
                break
        assert frames[0].opcode in (TEXT, BINARY), frames[0]
        assert all(f.opcode == CONTINUATION for f in frames[1:]), frames
        return Message(frames[0].opcode, b"".join(f.payload for f in frames), frames, controls)

    def read_close(self) -> Frame:
        """Reads frames until a close frame, and returns it."""
        while True:
            f = self.read_frame()
            if f.opcode == CLOSE:
                return f

    def read_eof(self) -> None:
        """Fails unless the other side closes the TCP connection with nothing more to read."""
        assert not self.buffer, bytes(self.buffer)
        try:
            data = self.sock.recv(1)
        except TimeoutError:
            pytest.fail(f"the TCP connection was not closed within {TIMEOUT} s")
        assert data == b""

    def drop(self) -> None:
        """Drops the TCP connection without a close frame."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def parse_head(head: bytes) -> tuple[bytes, dict[str, str]]:
    """The first line of an HTTP head, and its headers with lowercased names."""
    first, *lines = head.rstrip(b"\r\n").split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    return first, headers


def accept_for(key: str | bytes) -> str:
    if isinstance(key, str):
        key = key.encode()
    return accept_key(key).decode()


# -- the two roles


@dataclass
class Link:
    """Our WebSocket, the raw peer at the other end, and what our socket received.

    Our socket sends every message it receives back, in both roles.
    """

    role: str
    ws: WebSocket
    peer: Peer
    texts: Recorder
    binaries: Recorder


def echoing(ws: WebSocket, texts: Recorder, binaries: Recorder) -> None:
    ws.text_message_received.connect(texts)
    ws.binary_message_received.connect(binaries)
    ws.text_message_received.connect(ws.send_text_message)
    ws.binary_message_received.connect(ws.send_binary_message)


def client_link(sockets: Callable[..., WebSocket], **kwargs: Any) -> Link:
    """Our WebSocket as a client, connected to a raw server peer."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        port = listener.getsockname()[1]
        ws = sockets(url=f"ws://127.0.0.1:{port}/", active=True, **kwargs)
        texts, binaries = Recorder(), Recorder()
        echoing(ws, texts, binaries)
        conn, _ = listener.accept()
    peer = Peer(conn, masks=False)
    _, headers = parse_head(peer.read_until(b"\r\n\r\n"))
    peer.send(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_for(headers["sec-websocket-key"]).encode() + b"\r\n\r\n"
    )
    wait_until(lambda: ws.status in (Status.OPEN, Status.ERROR), what="the client to open")
    assert ws.status is Status.OPEN, ws.error_string
    return Link("client", ws, peer, texts, binaries)


def raw_handshake(port: int, path: str = "/") -> Peer:
    """A raw client that does the opening handshake by hand (§4.1) and checks the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    peer = Peer(sock, masks=True)
    key = base64.b64encode(os.urandom(16)).decode()
    peer.send(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    status, headers = parse_head(peer.read_until(b"\r\n\r\n"))
    assert status.split()[1] == b"101", status
    assert headers["sec-websocket-accept"] == accept_for(key)
    return peer


def server_link(servers: Callable[..., WebSocketServer]) -> Link:
    """Our WebSocketServer's socket, connected to a raw client peer."""
    accepted: list[WebSocket] = []
    texts, binaries = Recorder(), Recorder()

    def on_client(ws: WebSocket) -> None:
        echoing(ws, texts, binaries)
        accepted.append(ws)

    server = servers(on_client_connected=on_client)
    peer = raw_handshake(server.port)
    wait_until(lambda: accepted, what="the server to accept the client")
    return Link("server", accepted[0], peer, texts, binaries)


@pytest.fixture(params=["client", "server"])
def link(request: pytest.FixtureRequest, sockets: Any, servers: Any) -> Iterator[Link]:
    """Our side in each role in turn, with a raw peer."""
    made = client_link(sockets) if request.param == "client" else server_link(servers)
    yield made
    made.peer.close()


@pytest.fixture
def client_links(sockets: Any) -> Iterator[Callable[..., Link]]:
    """Makes client links with extra WebSocket keywords; their peers are closed when the test ends."""
    made: list[Link] = []

    def make(**kwargs: Any) -> Link:
        made.append(client_link(sockets, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.peer.close()


@pytest.fixture
def server_only(servers: Any) -> Iterator[Link]:
    made = server_link(servers)
    yield made
    made.peer.close()


@pytest.fixture
def client_only(client_links: Callable[..., Link]) -> Link:
    return client_links()


def assert_fails(link: Link, code: int) -> Frame:
    """The peer receives a close frame with `code`, and our socket ends in ERROR with that close_code.

    The peer answers the close frame, as a polite peer would, and hangs up.
    """
    close = link.peer.read_close()
    assert close.close_code == code, close
    link.peer.send_close(close.payload)
    link.peer.drop()
    wait_until(lambda: link.ws.status is Status.ERROR, what="status ERROR")
    assert link.ws.close_code == code
    assert link.ws.error_string
    return close


def assert_closes_cleanly(link: Link) -> Frame:
    """The peer receives our answer to its close frame, hangs up, and our socket ends CLOSED."""
    reply = link.peer.read_close()
    link.peer.drop()
    wait_until(lambda: link.ws.status in (Status.CLOSED, Status.ERROR), what="the socket to close")
    assert link.ws.status is Status.CLOSED, link.ws.error_string
    return reply


def assert_echoes(link: Link, text: str = "still here") -> None:
    """The connection is still OPEN and a message still comes back."""
    link.peer.send_frame(TEXT, text.encode())
    assert link.peer.read_message().payload == text.encode()
    assert link.ws.status is Status.OPEN


def send_fragments(peer: Peer, opcode: int, parts: list[bytes]) -> None:
    """Sends one message as a frame of `opcode` and continuation frames, one per part (§5.4)."""
    for i, data in enumerate(parts):
        peer.send_frame(CONTINUATION if i else opcode, data, fin=i == len(parts) - 1)


def sample(opcode: int, size: int) -> bytes:
    if opcode == TEXT:
        return (b"The quick brown fox jumps over the lazy dog. " * (size // 45 + 1))[:size]
    return (bytes(range(256)) * (size // 256 + 1))[:size]


# -- §5.2 payload lengths


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["text", "binary"])
@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 1 << 20])
def test_payload_lengths_round_trip(link: Link, size: int, opcode: int) -> None:
    """§5.2: 7-bit, 16-bit and 64-bit payload lengths are read right; the message comes back equal."""
    payload = sample(opcode, size)
    link.peer.send_frame(opcode, payload)
    echo = link.peer.read_message()
    assert (echo.opcode, len(echo.payload)) == (opcode, size)
    assert echo.payload == payload
    received = link.texts.wait() if opcode == TEXT else link.binaries.wait()
    assert received == [payload.decode() if opcode == TEXT else payload]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 1 << 20])
def test_our_frames_use_the_minimal_length_encoding(link: Link, size: int) -> None:
    """§5.2: the frames we send announce their length in the shortest encoding."""
    link.peer.send_frame(BINARY, sample(BINARY, size))
    echo = link.peer.read_message()
    assert [(f.length_code, len(f.payload)) for f in echo.frames if not f.minimal_length] == []


def trickle(peer: Peer, data: bytes, piece: int = 65_537) -> None:
    """Sends `data` in pieces of odd size with a pause after each, as a slow network would."""
    for start in range(0, len(data), piece):
        peer.send(data[start : start + piece])
        time.sleep(0.002)


def test_a_large_binary_message_arriving_slowly_arrives_exact_and_in_order(link: Link) -> None:
    """A binary message of a few MiB still arriving when its header is read (wsbind then reads
    the rest straight into the bytes object handlers get) arrives byte for byte, unmasked, and
    the frames that follow it in the same write arrive after it."""
    big = os.urandom((3 << 20) + 5)
    masks = link.peer.masks
    order: list[str] = []
    link.ws.binary_message_received.connect(lambda m: order.append(f"binary {len(m)}"))
    link.ws.text_message_received.connect(lambda m: order.append(f"text {m}"))
    key = (lambda: os.urandom(4)) if masks else (lambda: None)
    wire = frame(TEXT, b"before", mask=key()) + frame(BINARY, big, mask=key())
    wire += frame(TEXT, b"after", mask=key()) + frame(BINARY, big[::-1], mask=key())
    trickle(link.peer, wire)
    wait_until(lambda: len(order) == 4, what="four messages")
    assert link.binaries.values == [big, big[::-1]]
    assert all(type(m) is bytes for m in link.binaries.values)
    assert order == ["text before", f"binary {len(big)}", "text after", f"binary {len(big)}"]


def test_a_large_binary_message_cut_off_by_a_dropped_connection_is_not_delivered(link: Link) -> None:
    """A peer that vanishes halfway through a large message: the socket ends in ERROR, no
    partial message reaches the handlers."""
    big = os.urandom(3 << 20)
    wire = frame(BINARY, big, mask=os.urandom(4) if link.peer.masks else None)
    trickle(link.peer, wire[: len(wire) // 2])
    link.peer.drop()
    wait_until(lambda: link.ws.status is Status.ERROR, what="status ERROR")
    assert link.binaries.values == []


# -- §5.3 masking


def test_our_client_masks_every_frame(client_only: Link) -> None:
    """§5.3: a client masks every frame it sends: data, pong and close."""
    link = client_only
    link.peer.send_frame(TEXT, b"text")
    link.peer.send_frame(BINARY, b"\x00\x01binary")
    link.peer.send_frame(PING, b"ping")
    received = [link.peer.read_frame() for _ in range(3)]
    link.ws.close(1000, "masked")
    received.append(link.peer.read_close())
    assert [f.masked for f in received] == [True] * 4
    assert sorted((f.opcode, f.payload) for f in received) == [
        (TEXT, b"text"),
        (BINARY, b"\x00\x01binary"),
        (CLOSE, close_payload(1000, "masked")),
        (PONG, b"ping"),
    ]


def test_our_client_picks_a_fresh_mask_for_each_frame(client_only: Link) -> None:
    """§5.3: the masking key is new for each frame, not one key reused."""
    link = client_only
    for i in range(8):
        link.peer.send_frame(TEXT, f"message {i}".encode())
    keys = {link.peer.read_frame().key for _ in range(8)}
    assert len(keys) > 1


def test_our_server_never_masks(server_only: Link) -> None:
    """§5.1: a server does not mask the frames it sends: data, pong and close."""
    link = server_only
    link.peer.send_frame(TEXT, b"text")
    link.peer.send_frame(BINARY, b"\x00\x01binary")
    link.peer.send_frame(PING, b"ping")
    received = [link.peer.read_frame() for _ in range(3)]
    link.peer.send_frame(CLOSE, close_payload(1000))
    received.append(link.peer.read_close())
    assert [f.masked for f in received] == [False] * 4
    assert sorted((f.opcode, f.payload) for f in received) == [
        (TEXT, b"text"),
        (BINARY, b"\x00\x01binary"),
        (CLOSE, close_payload(1000)),
        (PONG, b"ping"),
    ]


def test_server_rejects_an_unmasked_client_frame(server_only: Link) -> None:
    """§5.1: a server closes the connection with 1002 on an unmasked frame from a client."""
    server_only.peer.send(frame(TEXT, b"unmasked", mask=None))
    assert_fails(server_only, 1002)


def test_client_rejects_a_masked_server_frame(client_only: Link) -> None:
    """§5.1: a client closes the connection with 1002 on a masked frame from a server."""
    client_only.peer.send(frame(TEXT, b"masked", mask=b"\x37\xfa\x21\x3d"))
    assert_fails(client_only, 1002)


# -- §5.4 fragmentation


def test_a_fragmented_text_message_arrives_whole(link: Link) -> None:
    """§5.4: a text frame and two continuation frames make one message."""
    link.peer.send_frame(TEXT, b"Hello, ", fin=False)
    link.peer.send_frame(CONTINUATION, b"fragmented ", fin=False)
    link.peer.send_frame(CONTINUATION, b"world")
    assert link.texts.wait() == ["Hello, fragmented world"]
    assert link.peer.read_message().payload == b"Hello, fragmented world"
    assert link.texts.values == ["Hello, fragmented world"]


def test_a_fragmented_binary_message_arrives_whole(link: Link) -> None:
    """§5.4: a binary frame and two continuation frames make one message."""
    link.peer.send_frame(BINARY, b"\x00\x01", fin=False)
    link.peer.send_frame(CONTINUATION, b"\x02", fin=False)
    link.peer.send_frame(CONTINUATION, b"\x03\xff")
    assert link.binaries.wait() == [b"\x00\x01\x02\x03\xff"]


def frames_of(peer: Peer, *frames: tuple[int, bytes, bool]) -> bytes:
    """(opcode, payload, fin) frames as `peer` sends them, in one piece."""
    return b"".join(
        frame(opcode, payload, fin=fin, mask=os.urandom(4) if peer.masks else None)
        for opcode, payload, fin in frames
    )


@pytest.mark.parametrize("writes", ["one write", "a write a frame"])
def test_a_ping_between_fragments_is_answered_before_the_echo(link: Link, writes: str) -> None:
    """§5.4, §5.5.2: control frames may come between fragments; the ping's pong
    leaves before the echo that a handler sends for the message the ping came
    inside (Autobahn 5.6, 5.8, 5.20)."""
    # The order was lost only when threads raced: a few rounds catch it.
    for turn in range(10):
        ping = f"between {turn}".encode()
        frames = [(TEXT, b"one ", False), (PING, ping, True), (CONTINUATION, b"two", True)]
        if writes == "one write":
            link.peer.send(frames_of(link.peer, *frames))
        else:
            for each in frames:
                link.peer.send(frames_of(link.peer, each))
        first = link.peer.read_frame()
        assert (first.opcode, first.payload) == (PONG, ping), f"round {turn}"
        echo = link.peer.read_message()
        assert echo.payload == b"one two"
        assert echo.controls == []
    assert link.texts.wait(count=10) == ["one two"] * 10


def test_a_continuation_without_a_message_is_a_protocol_error(link: Link) -> None:
    """§5.4: a continuation frame with no fragmented message started fails the connection with 1002."""
    link.peer.send_frame(CONTINUATION, b"orphan")
    assert_fails(link, 1002)


@pytest.mark.parametrize("opcode", [TEXT, BINARY], ids=["text", "binary"])
def test_a_new_message_inside_a_fragmented_one_is_a_protocol_error(link: Link, opcode: int) -> None:
    """§5.4: a data frame other than a continuation while a message is open fails with 1002."""
    link.peer.send_frame(TEXT, b"first half", fin=False)
    link.peer.send_frame(opcode, b"interloper")
    assert_fails(link, 1002)


def test_a_character_split_across_fragments_arrives_right(link: Link) -> None:
    """§5.6, §8.1: UTF-8 is checked over the whole message, so a character may span fragments."""
    euro = "€".encode()
    assert euro == b"\xe2\x82\xac"
    link.peer.send_frame(TEXT, b"price: " + euro[:1], fin=False)
    link.peer.send_frame(CONTINUATION, euro[1:] + b"5")
    assert link.texts.wait() == ["price: €5"]


# -- §5.2 reserved bits and opcodes


@pytest.mark.parametrize(("size", "form"), [(5, 126), (5, 127), (200, 127)])
def test_a_length_in_a_longer_form_than_needed_is_a_protocol_error(link: Link, size: int, form: int) -> None:
    """§5.2: the minimal number of bytes must encode the payload length; a longer form fails with 1002."""
    mask = os.urandom(4) if link.peer.masks else None
    length = struct.pack("!H", size) if form == 126 else struct.pack("!Q", size)
    head = bytes([0x80 | BINARY, (0x80 if mask else 0) | form]) + length + (mask or b"")
    payload = bytes(size)
    link.peer.send(head + (xor_mask(payload, mask) if mask else payload))
    assert_fails(link, 1002)


@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3], ids=["RSV1", "RSV2", "RSV3"])
def test_reserved_bits_are_a_protocol_error(link: Link, rsv: int) -> None:
    """§5.2: with no extension negotiated, a set RSV bit fails the connection with 1002."""
    link.peer.send_frame(TEXT, b"reserved", rsv=rsv)
    assert_fails(link, 1002)


@pytest.mark.parametrize(
    "broken",
    [(TEXT, RSV2, True), (5, 0, True), (CONTINUATION, 0, False)],
    ids=["reserved-bit", "reserved-opcode", "continuation-of-nothing"],
)
def test_a_message_before_a_broken_frame_is_answered_before_the_failure(
    link: Link, broken: tuple[int, int, bool]
) -> None:
    """§7.1.7 fails the connection on a broken frame; the message whole before it, arriving in
    the same read, is still the peer's, and the handler's echo goes out before our close frame
    (Autobahn|Testsuite 3.2-3.4, 4.x, 5.15)."""
    opcode, rsv, fin = broken
    mask = os.urandom(4) if link.peer.masks else None
    link.peer.send(frame(TEXT, b"before", mask=mask) + frame(opcode, b"broken", fin=fin, rsv=rsv, mask=mask))
    assert link.peer.read_message().payload == b"before"
    assert_fails(link, 1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_a_protocol_error(link: Link, opcode: int) -> None:
    """§5.2: a reserved opcode fails the connection with 1002."""
    link.peer.send_frame(opcode, b"reserved")
    assert_fails(link, 1002)


# -- §5.5 control frames


@pytest.mark.parametrize("size", [0, 125])
def test_a_ping_is_answered_with_a_pong_of_the_same_payload(link: Link, size: int) -> None:
    """§5.5.2, §5.5.3: a ping of up to 125 bytes gets a pong with its payload."""
    payload = sample(BINARY, size)
    link.peer.send_frame(PING, payload)
    pong = link.peer.read_frame()
    assert (pong.opcode, pong.fin, pong.payload) == (PONG, True, payload)
    assert_echoes(link)


def test_a_ping_over_125_bytes_is_a_protocol_error(link: Link) -> None:
    """§5.5: a control frame with a payload over 125 bytes fails the connection with 1002."""
    link.peer.send_frame(PING, b"x" * 126)
    assert_fails(link, 1002)


def test_a_fragmented_ping_is_a_protocol_error(link: Link) -> None:
    """§5.5: a control frame without FIN fails the connection with 1002."""
    link.peer.send_frame(PING, b"half", fin=False)
    assert_fails(link, 1002)


def test_an_unsolicited_pong_is_ignored(link: Link) -> None:
    """§5.5.3: a pong nobody asked for is ignored."""
    link.peer.send_frame(PONG, b"unasked")
    assert_echoes(link)


# -- §8.1 UTF-8


def test_invalid_utf8_in_a_text_frame_closes_with_1007(link: Link) -> None:
    """§8.1: invalid UTF-8 in a text message fails the connection with 1007."""
    link.peer.send_frame(TEXT, INVALID_UTF8)
    assert_fails(link, 1007)
    assert "utf-8" in link.ws.error_string.lower()
    assert link.texts.values == []


def test_invalid_utf8_fails_before_the_message_ends(link: Link) -> None:
    """§8.1, §5.6: invalid UTF-8 in the first fragment fails at once, before the final fragment."""
    link.peer.send_frame(TEXT, INVALID_UTF8[:14], fin=False)
    # The peer sends nothing more: the close frame must come without the rest.
    assert_fails(link, 1007)


def test_invalid_utf8_in_a_close_reason_closes_with_1007(link: Link) -> None:
    """§5.5.1, §8.1: a close reason that is not UTF-8 fails the connection with 1007."""
    link.peer.send_frame(CLOSE, close_payload(1000, b"bad \xff\xfe reason"))
    assert_fails(link, 1007)


@pytest.mark.parametrize(
    "fragments",
    [[b"ends in \xe2\x82"], [b"ends in \xe2", b"\x82"]],
    ids=["one-frame", "fragmented"],
)
def test_a_text_message_ending_inside_a_character_closes_with_1007(
    link: Link, fragments: list[bytes]
) -> None:
    """§8.1: a text message whose last character is cut short fails the connection with 1007."""
    send_fragments(link.peer, TEXT, fragments)
    assert_fails(link, 1007)


@pytest.mark.parametrize("split", [None, 10], ids=["one-frame", "split-character"])
def test_four_byte_utf8_passes(link: Link, split: int | None) -> None:
    """§8.1: 4-byte UTF-8 sequences (outside the BMP) are valid text, also split across fragments."""
    data = "4 bytes: 😀".encode()
    assert data[9:] == b"\xf0\x9f\x98\x80"
    send_fragments(link.peer, TEXT, [data] if split is None else [data[:split], data[split:]])
    assert link.texts.wait() == ["4 bytes: 😀"]
    assert link.peer.read_message().payload == "4 bytes: 😀".encode()


# -- §7.4 close codes


def test_a_one_byte_close_payload_is_a_protocol_error(link: Link) -> None:
    """§5.5.1: a close payload is empty or starts with a 2-byte code; 1 byte fails with 1002."""
    link.peer.send_frame(CLOSE, b"\x03")
    assert_fails(link, 1002)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000])
def test_an_invalid_close_code_is_a_protocol_error(link: Link, code: int) -> None:
    """§7.4.1, §7.4.2: a close code that may not be sent fails the connection with 1002."""
    link.peer.send_frame(CLOSE, close_payload(code, "invalid"))
    assert_fails(link, 1002)


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
)
def test_a_valid_close_code_is_echoed(link: Link, code: int) -> None:
    """§5.5.1, §7.4: we answer a close with the same code, and end CLOSED with its code and reason."""
    link.peer.send_frame(CLOSE, close_payload(code, "reason ✓"))
    reply = assert_closes_cleanly(link)
    assert reply.close_code == code
    assert (link.ws.close_code, link.ws.close_reason) == (code, "reason ✓")


def test_an_empty_close_is_answered_and_reported_as_1005(link: Link) -> None:
    """§5.5.1, §7.1.5: a close frame without a code is answered; the close code is then 1005."""
    link.peer.send_frame(CLOSE)
    reply = assert_closes_cleanly(link)
    assert reply.close_code in (None, 1000)
    assert link.ws.close_code == 1005


# -- §7.1 closing handshake


@pytest.mark.parametrize("code", [4000, 1012])
def test_our_close_sends_code_and_reason(link: Link, code: int) -> None:
    """§7.1.2: close(4000, "bye") sends a close frame with them; the echo ends the connection
    CLOSED. IANA's later codes may be sent too: 1012, a server's "service restart"."""
    link.ws.close(code, "bye")
    close = link.peer.read_close()
    assert (close.close_code, close.close_reason) == (code, "bye")
    link.peer.send_close(close.payload)
    link.peer.drop()
    wait_until(lambda: link.ws.status in (Status.CLOSED, Status.ERROR), what="the socket to close")
    assert link.ws.status is Status.CLOSED, link.ws.error_string
    assert link.ws.close_code == code


def test_the_peers_close_is_echoed(link: Link) -> None:
    """§7.1.3: a close from the peer is answered, and the connection ends CLOSED."""
    statuses = Recorder()
    link.ws.status_changed.connect(statuses)
    link.peer.send_frame(CLOSE, close_payload(1000, "done"))
    reply = assert_closes_cleanly(link)
    assert reply.close_code == 1000
    assert (link.ws.close_code, link.ws.close_reason) == (1000, "done")
    assert statuses.values[-1] is Status.CLOSED


@pytest.mark.parametrize("closer", ["server", "client"])
def test_the_server_closes_the_tcp_connection_first(server_only: Link, closer: str) -> None:
    """§7.1.1: after the closing handshake the server closes TCP; the client sees EOF."""
    link = server_only
    if closer == "server":
        link.ws.close(4000, "bye")
        close = link.peer.read_close()
        link.peer.send_frame(CLOSE, close.payload)
    else:
        link.peer.send_frame(CLOSE, close_payload(1000))
        link.peer.read_close()
    link.peer.read_eof()
    wait_until(lambda: link.ws.status is Status.CLOSED, what="status CLOSED")


def test_a_peer_that_never_answers_our_close_is_dropped(link: Link) -> None:
    """§7.1.1: a peer that does not answer our close frame is dropped after close_timeout."""
    link.ws.close_timeout = 0.5  # applies to the open connection
    link.ws.close(1000, "")
    link.peer.read_close()
    # The peer stays silent and keeps the connection open.
    wait_until(lambda: link.ws.status in (Status.CLOSED, Status.ERROR), timeout=20, what="the close timeout")
    assert link.ws.close_code == 1006
    message = link.ws.error_string.lower()
    assert "close" in message
    assert "timeout" in message or "timed out" in message


def test_a_dropped_tcp_connection_is_an_error_with_1006(link: Link) -> None:
    """§7.1.5, §7.4.1: a connection that ends without a close frame is an error, code 1006."""
    link.peer.drop()
    wait_until(lambda: link.ws.status is Status.ERROR, what="status ERROR")
    assert link.ws.close_code == 1006
    assert link.ws.error_string


# -- §10.4 limits


@pytest.mark.parametrize(
    ("name", "default"),
    [("max_allowed_incoming_message_size", 64 << 20), ("max_allowed_incoming_frame_size", 16 << 20)],
)
def test_limit_defaults(name: str, default: int) -> None:
    """§10.4: the size limits have their defaults."""
    assert getattr(WebSocket(), name) == default


def test_a_message_at_the_limit_passes(client_links: Callable[..., Link]) -> None:
    """§10.4: a message exactly max_allowed_incoming_message_size long arrives."""
    link = client_links(max_allowed_incoming_message_size=1000)
    link.peer.send_frame(BINARY, b"x" * 600, fin=False)
    link.peer.send_frame(CONTINUATION, b"y" * 400)
    assert link.binaries.wait() == [b"x" * 600 + b"y" * 400]


@pytest.mark.parametrize("sizes", [[1001], [600, 600]], ids=["one-frame", "fragmented"])
def test_a_message_over_the_limit_closes_with_1009(
    client_links: Callable[..., Link], sizes: list[int]
) -> None:
    """§10.4, §7.4.1: a message over max_allowed_incoming_message_size fails the connection with 1009."""
    link = client_links(max_allowed_incoming_message_size=1000)
    send_fragments(link.peer, BINARY, [b"x" * size for size in sizes])
    assert_fails(link, 1009)
    assert "max_allowed_incoming_message_size" in link.ws.error_string
    assert link.binaries.values == []


def test_a_frame_at_the_limit_passes(client_links: Callable[..., Link]) -> None:
    """§10.4: frames of max_allowed_incoming_frame_size pass, and so does a longer message made of them."""
    link = client_links(max_allowed_incoming_frame_size=500)
    link.peer.send_frame(BINARY, b"x" * 500, fin=False)
    link.peer.send_frame(CONTINUATION, b"y" * 500)
    assert link.binaries.wait() == [b"x" * 500 + b"y" * 500]


def test_a_frame_over_the_limit_closes_with_1009(client_links: Callable[..., Link]) -> None:
    """§10.4, §7.4.1: a frame over max_allowed_incoming_frame_size fails the connection with 1009."""
    link = client_links(max_allowed_incoming_frame_size=500)
    link.peer.send_frame(BINARY, b"x" * 501)
    assert_fails(link, 1009)
    assert "max_allowed_incoming_frame_size" in link.ws.error_string


def test_a_frame_over_the_limit_fails_on_its_header(client_links: Callable[..., Link]) -> None:
    """§10.4: the frame is refused as soon as its header announces the size, before its payload."""
    link = client_links(max_allowed_incoming_frame_size=500)
    link.peer.send(frame(BINARY, length_override=501))
    # The peer sends no payload: the close frame must come without it.
    assert_fails(link, 1009)
    assert "max_allowed_incoming_frame_size" in link.ws.error_string


# -- §4.2 the server's opening handshake


def exchange(port: int, request: bytes) -> tuple[bytes, dict[str, str]]:
    """Sends `request` on a new connection; returns the response's status line and headers.

    An empty status line means the server closed the connection without answering.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            data += chunk
    if not data:
        return b"", {}
    assert b"\r\n\r\n" in data, data
    return parse_head(data.split(b"\r\n\r\n")[0])


def request(
    port: int,
    *,
    version: str | None = "13",
    key: str | None = "dGhlIHNhbXBsZSBub25jZQ==",
    extra: tuple[str, ...] = (),
) -> bytes:
    lines = [
        "GET /chat HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


BAD_REQUESTS: dict[str, Callable[[int], bytes]] = {
    "version-8": lambda port: request(port, version="8"),
    "no-key": lambda port: request(port, key=None),
    "no-upgrade": lambda port: f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode(),
    "garbage": lambda port: b"\x00\xff\x13\x37" * 256 + b"\r\n\r\n",
    "two-keys": lambda port: request(port, extra=("Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",)),
    "content-length": lambda port: request(port, extra=("Content-Length: 5",)) + b"hello",
    "negative-length": lambda port: request(port, extra=("Content-Length: -1",)),
    "chunked": lambda port: request(port, extra=("Transfer-Encoding: chunked",)) + b"0\r\n\r\n",
}


def status_code(status_line: bytes) -> int:
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    return int(status_line.split()[1])


def test_good_handshake_has_the_right_accept(servers: Any) -> None:
    """§4.2.2: 101 with Upgrade, Connection and Sec-WebSocket-Accept from the key (§1.3's example)."""
    server = servers()
    status, headers = exchange(server.port, request(server.port))
    assert status_code(status) == 101
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_unsupported_version_gets_400_naming_version_13(servers: Any) -> None:
    """§4.2.2, §4.4: a version other than 13 gets 400 and a Sec-WebSocket-Version: 13 header."""
    server = servers()
    status, headers = exchange(server.port, BAD_REQUESTS["version-8"](server.port))
    assert status_code(status) == 400
    assert headers.get("sec-websocket-version") == "13"


def test_a_request_without_a_key_gets_400(servers: Any) -> None:
    """§4.2.1: a request without Sec-WebSocket-Key gets 400."""
    server = servers()
    status, _ = exchange(server.port, BAD_REQUESTS["no-key"](server.port))
    assert status_code(status) == 400


@pytest.mark.parametrize("case", ["two-keys", "content-length", "negative-length", "chunked"])
def test_two_keys_or_a_body_get_400(servers: Any, case: str) -> None:
    """§4.2.1: one Sec-WebSocket-Key, on a GET without a body; anything else is not upgraded."""
    server = servers()
    status, _ = exchange(server.port, BAD_REQUESTS[case](server.port))
    assert status_code(status) == 400


def test_a_request_without_upgrade_gets_426(servers: Any) -> None:
    """§4.2.1, §4.4: a plain HTTP request gets 426 Upgrade Required."""
    server = servers()
    status, _ = exchange(server.port, BAD_REQUESTS["no-upgrade"](server.port))
    assert status_code(status) == 426


def test_garbage_gets_400_or_is_dropped(servers: Any) -> None:
    """§4.2.1: bytes that are not an HTTP request get 400, or the connection is closed."""
    server = servers()
    status, _ = exchange(server.port, BAD_REQUESTS["garbage"](server.port))
    assert status == b"" or status_code(status) == 400


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_the_server_still_serves_after_a_bad_handshake(servers: Any, case: str) -> None:
    """§4.2: a refused handshake harms only its own connection; the next client is served."""
    server = servers(
        on_client_connected=lambda ws: (
            ws.text_message_received.connect(ws.send_text_message),
            ws.binary_message_received.connect(ws.send_binary_message),
        )
    )
    exchange(server.port, BAD_REQUESTS[case](server.port))
    with connect(server.url, open_timeout=TIMEOUT) as client:
        client.send("after " + case)
        assert client.recv(timeout=TIMEOUT) == "after " + case
