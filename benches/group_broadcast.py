"""Group broadcasts across processes: messages delivered per second and cross-process latency.

Run it from the repository root on a release build (``nice make build-release``),
with redis-server installed (``make system-deps``)::

    .venv/bin/python benches/group_broadcast.py                 # 1,000 clients, 20,000 messages
    .venv/bin/python benches/group_broadcast.py --clients 200 --messages 2000   # quick

It starts a private redis-server, then for each row 1, 2 or 4 server
processes (one without a broker, for comparison) with the clients spread
evenly over them, all in one group. One process broadcasts ``--messages``
text messages of 32 bytes to the group as fast as it can; the rate is the
deliveries (messages x clients) divided by the time from the first
broadcast to the last byte received by any client. The clients are raw
sockets in one counting process per server, which read and count bytes
(34 per message) and cost next to nothing per message, so that the servers
are what is measured. The latency is from the broadcast in one process
(its monotonic clock, in the message) to the receipt by a client of
another, for 1,000 messages sent 2 ms apart.
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SIZE = 32
FRAME = 2 + SIZE  # a server's unmasked text frame of 32 bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a server process


def node(broker: str) -> None:
    import wsbind
    from wsbind import BrokerState, WebSocketServer

    server = WebSocketServer(broker=broker, compression=None, max_pending_connections=100_000)
    server.client_connected.connect(lambda ws: server.join(ws, "g"))

    def ready(*_: object) -> None:
        if server.url and (not broker or server.broker_state is BrokerState.CONNECTED):
            print(f"ready {server.port}", flush=True)

    server.url_changed.connect(ready)
    server.broker_state_changed.connect(ready)
    server.listen = True

    def commands() -> None:
        for line in sys.stdin:
            verb, *args = line.split()
            if verb == "members":
                print(f"members {len(server.members('g'))}", flush=True)
            elif verb == "burst":
                message = "x" * SIZE
                start = time.monotonic_ns()
                for _ in range(int(args[0])):
                    server.broadcast_text_message(message, group="g")
                print(f"sent {start} {server.broker_dropped}", flush=True)
            elif verb == "stamps":
                for _ in range(int(args[0])):
                    server.broadcast_text_message(str(time.monotonic_ns()).rjust(SIZE), group="g")
                    time.sleep(0.002)
                print("sent", flush=True)
        wsbind.quit()

    threading.Thread(target=commands, daemon=True).start()
    wsbind.run()


# -- a counting process: raw WebSocket clients that count bytes


def count(port: int, clients: int, messages: int) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    selector = selectors.DefaultSelector()
    left: dict[socket.socket, int] = {}
    for _ in range(clients):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        rest = head.split(b"\r\n\r\n", 1)[1]
        s.setblocking(False)
        left[s] = messages * FRAME - len(rest)
        selector.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    last = 0
    while left:
        for key_, _ in selector.select():
            s = key_.fileobj  # type: ignore[assignment]
            data = s.recv(1 << 20)  # type: ignore[attr-defined]
            left[s] -= len(data)  # type: ignore[index]
            if left[s] <= 0:  # type: ignore[index]
                last = time.monotonic_ns()
                selector.unregister(s)
                del left[s]  # type: ignore[arg-type]
    print(f"done {last}", flush=True)


# -- the harness


class Process:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, prefix: str) -> list[str]:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.proc.args} ended")
            if line.startswith(prefix):
                return line.split()[1:]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def start_nodes(count_: int, broker: str) -> tuple[list[Process], list[int]]:
    nodes = [Process("node", broker) for _ in range(count_)]
    ports = [int(n.expect("ready")[0]) for n in nodes]
    return nodes, ports


def wait_members(node_: Process, count_: int) -> None:
    while True:
        node_.send("members")
        if int(node_.expect("members")[0]) >= count_:
            return
        time.sleep(0.01)


def rate(processes: int, broker: str, clients: int, messages: int) -> tuple[float, int]:
    nodes, ports = start_nodes(processes, broker)
    per = clients // processes
    counters = [Process("count", str(p), str(per), str(messages)) for p in ports]
    try:
        for c in counters:
            c.expect("ready")
        for n in nodes:
            wait_members(n, per)
        time.sleep(0.2)  # the last subscription reaches Redis
        nodes[0].send(f"burst {messages}")
        start, dropped = (int(v) for v in nodes[0].expect("sent"))
        last = max(int(c.expect("done")[0]) for c in counters)
        return per * processes * messages / ((last - start) / 1e9), dropped
    finally:
        for p in counters + nodes:
            p.stop()


def latency(broker: str, samples: int) -> tuple[float, float]:
    nodes, ports = start_nodes(2, broker)
    try:
        with socket.create_connection(("127.0.0.1", ports[1])) as s:
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(
                f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                buffer += s.recv(4096)
            buffer = buffer.split(b"\r\n\r\n", 1)[1]
            wait_members(nodes[1], 1)
            time.sleep(0.2)
            nodes[0].send(f"stamps {samples}")
            delays = []
            while len(delays) < samples:
                while len(buffer) < FRAME:
                    buffer += s.recv(1 << 16)
                now = time.monotonic_ns()
                delays.append((now - int(buffer[2:FRAME])) / 1e3)
                buffer = buffer[FRAME:]
        q = statistics.quantiles(delays, n=100)
        return q[49], q[98]
    finally:
        for n in nodes:
            n.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    executable = shutil.which("redis-server")
    if executable is None:
        print("redis-server is missing: make system-deps", file=sys.stderr)
        return 1
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        redis = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(500):
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.01)
            url = f"redis://127.0.0.1:{port}/0"
            print(f"{args.clients} clients, {args.messages} messages of {SIZE} B to one group\n")
            print("| processes | broker | deliveries/s | not carried |")
            print("|---|---|---:|---:|")
            for processes, broker in ((1, ""), (1, url), (2, url), (4, url)):
                per_second, dropped = rate(processes, broker, args.clients, args.messages)
                print(f"| {processes} | {'Redis' if broker else 'none'} | {per_second:,.0f} | {dropped} |")
            p50, p99 = latency(url, args.samples)
            print(f"\nbroadcast in one process -> client of another: p50 {p50:.0f} µs, p99 {p99:.0f} µs")
        finally:
            redis.terminate()
            redis.wait()
    return 0


if __name__ == "__main__":
    # A thousand sockets, and the server's thousand, past the usual soft limit of 1,024.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if sys.argv[1:2] == ["node"]:
        node(sys.argv[2] if len(sys.argv) > 2 else "")
    elif sys.argv[1:2] == ["count"]:
        count(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
