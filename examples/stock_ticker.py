"""Stock ticker: the use case Qt's WebSocket documentation gives, a server that pushes
price changes to the clients that subscribed to a symbol, and clients that subscribe.

Run it from the repository root (``make demo`` runs the first line)::

    .venv/bin/python examples/stock_ticker.py demo              # the default: server + two clients, 5 s
    .venv/bin/python examples/stock_ticker.py demo --seconds 10
    .venv/bin/python examples/stock_ticker.py server --port 8765
    .venv/bin/python examples/stock_ticker.py client --url ws://127.0.0.1:8765 ACME GLOBEX

``demo`` starts the server on a free port and two clients whose ``url`` is bound
to the server's (QML: ``url: server.url``), prints every update each client
receives as ``client A: ACME 101.23`` for ``--seconds`` seconds, then quits.
``server`` and ``client`` run until Ctrl-C; any WebSocket client can subscribe.

The protocol is JSON text messages. A client sends::

    {"subscribe": ["ACME", "GLOBEX"]}        {"unsubscribe": ["GLOBEX"]}

and the server answers a subscription with the current price, then sends::

    {"symbol": "ACME", "price": 123.45}

to the clients subscribed to ACME whenever its price changes; a request it
cannot follow gets ``{"error": "..."}``. Prices random-walk on a thread of
their own: sending is thread-safe in wsbind, so that thread sends directly.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
from typing import Any

import wsbind
from wsbind import Binding, Status, WebSocket, WebSocketServer, bind

STARTING_PRICES = {"ACME": 100.0, "GLOBEX": 50.0, "INITECH": 20.0, "UMBRELLA": 75.0}


def parse_request(message: str) -> tuple[list[str], list[str]]:
    """The symbols a client's request subscribes to and unsubscribes from; ValueError if malformed."""
    try:
        request = json.loads(message)
    except json.JSONDecodeError:
        raise ValueError("not JSON") from None
    if not isinstance(request, dict) or not request or set(request) - {"subscribe", "unsubscribe"}:
        raise ValueError('expected {"subscribe": [...]} or {"unsubscribe": [...]}')
    lists = []
    for key in ("subscribe", "unsubscribe"):
        symbols = request.get(key, [])
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            raise ValueError(f"{key!r} takes a list of symbols")
        unknown = [s for s in symbols if s not in STARTING_PRICES]
        if unknown:
            raise ValueError(f"unknown symbol(s): {', '.join(unknown)}")
        lists.append(symbols)
    return lists[0], lists[1]


class StockTicker:
    """The server: pushes every price change to the clients subscribed to its symbol."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, interval: float = 0.5) -> None:
        self.prices = dict(STARTING_PRICES)
        # The symbols each connected client subscribed to, keyed on its WebSocket.
        self.subscriptions: dict[WebSocket, set[str]] = {}
        # Handlers run on wsbind's event thread, price changes on the ticker thread.
        self.lock = threading.Lock()
        self.server = WebSocketServer(
            host=host,
            port=port,
            listen=True,
            on_client_connected=self.client_connected,
            on_url_changed=self.url_changed,
            on_error_string_changed=self.listen_failed,
        )
        self.interval = interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.tick, name="ticker", daemon=True)
        self.thread.start()

    def url_changed(self, url: str) -> None:
        if url:
            print(f"stock ticker listening on {url}")

    def listen_failed(self, error: str) -> None:
        if error:
            print(f"stock ticker: {error}", file=sys.stderr)
            wsbind.quit()

    def client_connected(self, ws: WebSocket) -> None:
        with self.lock:
            self.subscriptions[ws] = set()
        ws.text_message_received.connect(lambda message: self.request(ws, message))
        ws.status_changed.connect(lambda status: self.status_changed(ws, status))

    def status_changed(self, ws: WebSocket, status: Status) -> None:
        if status in (Status.CLOSED, Status.ERROR):
            with self.lock:
                self.subscriptions.pop(ws, None)

    def request(self, ws: WebSocket, message: str) -> None:
        try:
            subscribe, unsubscribe = parse_request(message)
        except ValueError as error:
            ws.send_text_message(json.dumps({"error": str(error)}))
            return
        with self.lock:
            symbols = self.subscriptions.get(ws)
            if symbols is None:  # already gone
                return
            new = [s for s in subscribe if s not in symbols]
            symbols.update(subscribe)
            symbols.difference_update(unsubscribe)
            current = [(s, self.prices[s]) for s in new]
        for symbol, price in current:
            self.send(ws, symbol, price)

    def tick(self) -> None:
        """The ticker thread: moves every price a little, and sends the changes."""
        while not self.stopped.wait(self.interval):
            with self.lock:
                changed = []
                for symbol, price in self.prices.items():
                    new_price = round(max(0.01, price * random.gauss(1.0, 0.01)), 2)
                    if new_price != price:
                        self.prices[symbol] = new_price
                        changed.append((symbol, new_price))
                sends = [
                    (ws, symbol, price)
                    for symbol, price in changed
                    for ws, symbols in self.subscriptions.items()
                    if symbol in symbols
                ]
            for ws, symbol, price in sends:
                self.send(ws, symbol, price)

    def send(self, ws: WebSocket, symbol: str, price: float) -> None:
        try:
            ws.send_text_message(json.dumps({"symbol": symbol, "price": price}))
        except (wsbind.NotOpenError, wsbind.BufferFullError):
            pass  # closing, or not reading: its status handler drops it soon

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.server.listen = False


class Subscriber:
    """A client: subscribes to ``symbols`` once connected and prints every update it receives."""

    def __init__(
        self, name: str, url: str | Binding[str], symbols: list[str], *, quit_when_closed: bool = False
    ) -> None:
        self.name = name
        self.symbols = symbols
        self.quit_when_closed = quit_when_closed
        self.updates: list[tuple[str, float]] = []
        self.ws = WebSocket(
            url=url,
            active=True,
            on_status_changed=self.status_changed,
            on_text_message_received=self.message_received,
        )

    def status_changed(self, status: Status) -> None:
        if status is Status.OPEN:
            print(f"client {self.name} subscribes to {', '.join(self.symbols)}")
            self.ws.send_text_message(json.dumps({"subscribe": self.symbols}))
        elif status is Status.ERROR:
            print(f"client {self.name} failed: {self.ws.error_string}", file=sys.stderr)
        elif status is Status.CLOSED:
            print(f"client {self.name} disconnected (close code {self.ws.close_code})")
        if self.quit_when_closed and status in (Status.CLOSED, Status.ERROR):
            wsbind.quit()

    def message_received(self, message: str) -> None:
        update: dict[str, Any] = json.loads(message)
        if "error" in update:
            print(f"client {self.name} got an error: {update['error']}", file=sys.stderr)
            return
        self.updates.append((update["symbol"], update["price"]))
        print(f"client {self.name}: {update['symbol']} {update['price']:.2f}")


def demo(seconds: float, interval: float) -> int:
    ticker = StockTicker(interval=interval)
    # QML: url: server.url -- the clients connect once the server knows its port.
    clients = [
        Subscriber("A", bind(lambda: ticker.server.url), ["ACME", "GLOBEX"]),
        Subscriber("B", bind(lambda: ticker.server.url), ["INITECH"]),
    ]
    timer = threading.Timer(seconds, wsbind.quit)
    timer.start()
    wsbind.run()  # until the timer quits; then closes the clients with 1001 and stops the server
    timer.cancel()
    ticker.stop()
    for client in clients:
        print(f"client {client.name} received {len(client.updates)} updates")
    return 0 if all(client.updates for client in clients) else 1


def serve(host: str, port: int, interval: float) -> int:
    ticker = StockTicker(host=host, port=port, interval=interval)
    wsbind.run()
    ticker.stop()
    return 1 if ticker.server.error_string else 0


def subscribe(url: str, symbols: list[str], name: str) -> int:
    client = Subscriber(name, url, symbols, quit_when_closed=True)
    wsbind.run()
    return 1 if client.ws.status is Status.ERROR else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A stock ticker over WebSockets, with wsbind.")
    parser.set_defaults(command="demo", seconds=5.0, interval=0.5)
    commands = parser.add_subparsers(dest="command", title="commands")

    demo_parser = commands.add_parser("demo", help="server and two clients in one process (the default)")
    demo_parser.add_argument("--seconds", type=float, default=5.0, help="how long to run [default: 5]")
    demo_parser.add_argument("--interval", type=float, default=0.5, help="seconds between price moves")

    server_parser = commands.add_parser("server", help="run the server until Ctrl-C")
    server_parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on [default: 127.0.0.1]"
    )
    server_parser.add_argument("--port", type=int, default=8765, help="port to listen on [default: 8765]")
    server_parser.add_argument("--interval", type=float, default=0.5, help="seconds between price moves")

    client_parser = commands.add_parser("client", help="subscribe to symbols and print updates until Ctrl-C")
    client_parser.add_argument("--url", default="ws://127.0.0.1:8765", help="[default: ws://127.0.0.1:8765]")
    client_parser.add_argument("--name", default="A", help="the name printed with each update")
    client_parser.add_argument(
        "symbols", nargs="+", choices=sorted(STARTING_PRICES), metavar="SYMBOL", help="e.g. ACME GLOBEX"
    )

    args = parser.parse_args(argv)
    if args.command == "server":
        return serve(args.host, args.port, args.interval)
    if args.command == "client":
        return subscribe(args.url, args.symbols, args.name)
    return demo(args.seconds, args.interval)


if __name__ == "__main__":
    sys.exit(main())
