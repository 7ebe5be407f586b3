"""examples/ticker_cluster.py: the stock ticker on two processes behind one port, on a real Redis."""

from __future__ import annotations

import json

from redis_server import RedisServer, redis_server
from test_examples import background
from websockets.sync.client import connect

from conftest import free_port, wait_until

__all__ = ["redis_server"]  # the fixture, imported for pytest


def test_a_client_of_one_process_gets_the_prices_every_process_moves(redis_server: RedisServer) -> None:
    port = free_port()
    args = ("--processes", "2", "--port", str(port), "--broker", redis_server.url, "--interval", "0.05")
    with background("ticker_cluster.py", *args) as cluster:
        cluster.wait_for(f"cluster listening on ws://127.0.0.1:{port} (2 processes)")
        seen: set[str] = set()
        with connect(f"ws://127.0.0.1:{port}") as ws:
            ws.send(json.dumps({"subscribe": ["ACME", "GLOBEX", "INITECH", "UMBRELLA"]}))

            def every_symbol() -> bool:
                seen.add(json.loads(ws.recv(timeout=15))["symbol"])
                return len(seen) == 4

            # Two symbols move in the other process: only the broker brings them.
            wait_until(every_symbol, what="a price of every symbol")
        assert cluster.interrupt() == 0
