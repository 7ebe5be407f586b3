"""The stock ticker as a cluster: N server processes behind one port, joined by Redis.

Run it from the repository root, with a Redis to attach to::

    redis-server --port 6379 --save "" &
    .venv/bin/python examples/ticker_cluster.py --processes 4 --port 8765 --broker redis://127.0.0.1:6379/0
    .venv/bin/python examples/stock_ticker.py client --url ws://127.0.0.1:8765 ACME GLOBEX INITECH

Every process listens on the same port (``reuse_port=True``: the kernel
spreads the clients over them, no balancer needed) and speaks the protocol of
``stock_ticker.py``: ``{"subscribe": ["ACME"]}`` joins the group
``prices:ACME``. Each process moves the prices of its share of the symbols
and broadcasts them to the symbol's group; the broker carries each broadcast
to the members in every other process. So a client receives every symbol
it subscribed to, whichever process it landed in. The first price comes
with the next move (a process knows only its own symbols' prices).

The parent process prints ``cluster listening on ws://...`` once every
worker listens and is attached to Redis, and stops them all at Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import wsbind
from wsbind import BrokerState, WebSocket, WebSocketServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stock_ticker import STARTING_PRICES, parse_request


def group(symbol: str) -> str:
    return f"prices:{symbol}"


class Worker:
    """One process of the cluster: serves its clients and moves the prices of ``symbols``."""

    def __init__(self, port: int, broker: str, symbols: list[str], interval: float) -> None:
        self.prices = {s: STARTING_PRICES[s] for s in symbols}
        self.interval = interval
        self.server = WebSocketServer(
            port=port,
            reuse_port=True,
            broker=broker,
            listen=True,
            on_client_connected=self.client_connected,
            on_broker_state_changed=self.broker_state_changed,
            on_error_string_changed=lambda error: error and print(f"worker: {error}", flush=True),
        )
        self.stopped = threading.Event()
        threading.Thread(target=self.tick, name="ticker", daemon=True).start()

    def broker_state_changed(self, state: BrokerState) -> None:
        if state is BrokerState.CONNECTED and self.server.url:
            print(f"worker ready on {self.server.url}", flush=True)

    def client_connected(self, ws: WebSocket) -> None:
        ws.text_message_received.connect(lambda message: self.request(ws, message))

    def request(self, ws: WebSocket, message: str) -> None:
        try:
            subscribe, unsubscribe = parse_request(message)
        except ValueError as error:
            ws.send_text_message(json.dumps({"error": str(error)}))
            return
        for symbol in subscribe:
            self.server.join(ws, group(symbol))
        for symbol in unsubscribe:
            self.server.leave(ws, group(symbol))

    def tick(self) -> None:
        """The ticker thread: broadcasting is thread-safe, so it sends directly."""
        while not self.stopped.wait(self.interval):
            for symbol, price in self.prices.items():
                price = self.prices[symbol] = round(max(0.01, price * random.gauss(1.0, 0.01)), 2)
                update = json.dumps({"symbol": symbol, "price": price})
                self.server.broadcast_text_message(update, group=group(symbol))


def worker(port: int, broker: str, index: int, count: int, interval: float) -> int:
    symbols = sorted(STARTING_PRICES)[index::count]
    Worker(port, broker, symbols, interval)
    # The parent holds our stdin: when it goes, for whatever reason, so do we.
    threading.Thread(target=lambda: (sys.stdin.read(), wsbind.quit()), daemon=True).start()
    wsbind.run()
    return 0


def cluster(processes: int, host_port: int, broker: str, interval: float) -> int:
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "worker",
                str(host_port),
                broker,
                str(i),
                str(processes),
                str(interval),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    # SIGTERM stops the cluster as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        for process in workers:
            assert process.stdout is not None
            for line in process.stdout:
                print(line, end="", flush=True)
                if line.startswith("worker ready"):
                    break
            else:
                print("a worker failed to start", file=sys.stderr)
                return 1
        print(f"cluster listening on ws://127.0.0.1:{host_port} ({processes} processes)", flush=True)
        for process in workers:
            process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for process in workers:
            process.terminate()
            process.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    if (argv or sys.argv[1:])[:1] == ["worker"]:
        port, broker, index, count, interval = (argv or sys.argv[1:])[1:]
        return worker(int(port), broker, int(index), int(count), float(interval))
    parser = argparse.ArgumentParser(
        description="The stock ticker on several processes, one port, one Redis."
    )
    parser.add_argument("--processes", type=int, default=4, help="server processes [default: 4]")
    parser.add_argument("--port", type=int, default=8765, help="the port they share [default: 8765]")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0", help="the Redis URL")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between price moves")
    args = parser.parse_args(argv)
    return cluster(args.processes, args.port, args.broker, args.interval)


if __name__ == "__main__":
    sys.exit(main())
