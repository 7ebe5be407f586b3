"""One server process of a cluster, for tests/test_broker.py.

Run as ``python broker_node.py PORT BROKER_URL REUSE_PORT``. It prints
``listening PORT`` once it listens and ``broker STATE`` at every change of
its broker's state, and its clients drive it with text messages:

- ``join GROUP`` / ``leave GROUP``: the server answers ``joined GROUP True``...
- ``say GROUP MESSAGE``: broadcasts MESSAGE to GROUP; answers ``said N``, N
  being the members of this process that took it;
- ``pid``: answers ``pid`` and the process's id.
"""

from __future__ import annotations

import os
import sys

import wsbind
from wsbind import BrokerState, WebSocket, WebSocketServer


def main() -> None:
    port, broker, reuse_port = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
    server = WebSocketServer(port=port, broker=broker, reuse_port=reuse_port)

    def accept(ws: WebSocket) -> None:
        def command(text: str) -> None:
            verb, _, rest = text.partition(" ")
            if verb == "join":
                ws.send_text_message(f"joined {rest} {server.join(ws, rest)}")
            elif verb == "leave":
                ws.send_text_message(f"left {rest} {server.leave(ws, rest)}")
            elif verb == "say":
                group, _, message = rest.partition(" ")
                ws.send_text_message(f"said {server.broadcast_text_message(message, group=group)}")
            elif verb == "pid":
                ws.send_text_message(f"pid {os.getpid()}")

        ws.text_message_received.connect(command)

    server.client_connected.connect(accept)
    server.broker_state_changed.connect(
        lambda state: print(f"broker {BrokerState(state).name} {server.error_string}", flush=True)
    )
    server.url_changed.connect(lambda url: url and print(f"listening {server.port}", flush=True))
    server.error_string_changed.connect(lambda e: print(f"error {e}", flush=True))
    server.listen = True
    wsbind.run()


if __name__ == "__main__":
    main()
