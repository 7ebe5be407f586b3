"""QML WebSocket server: wsbind's version of Qt's "QML WebSocket Server" example
(qtwebsockets/examples/qmlwebsocketserver).

As in Qt's qmlwebsocketserver.qml, a WebSocketServer answers every message
with "Hello Client!", and a WebSocket in the same program connects to it
through bindings: its ``url`` follows ``server.url`` (known only once the
system picked a free port) and its ``active`` follows ``server.listen``.
Qt's example shows the exchange in a window; here the client sends a message
when its status becomes OPEN, prints the reply, and the program quits.

Run it from the repository root; it prints "Hello Client!" and exits 0::

    .venv/bin/python examples/qml_server.py
"""

from __future__ import annotations

import wsbind

# The QML of Qt's example, in Python, as wsbind's package docstring shows it.
# fmt: off
# isort: off
from wsbind import WebSocket, WebSocketServer, bind
server = WebSocketServer(listen=True)
server.client_connected.connect(
    lambda ws: ws.text_message_received.connect(lambda m: ws.send_text_message("Hello Client!")))
client = WebSocket(url=bind(lambda: server.url), active=bind(lambda: server.listen),
                   on_text_message_received=print)
# isort: on
# fmt: on

# What makes it visible: Qt's example sends from a MouseArea; this one sends as
# soon as the client is OPEN, and quits once the reply (printed above) arrived.


def send_when_open(status: wsbind.Status) -> None:
    if status is wsbind.Status.OPEN:
        print(f"client connected to {client.url}, sending: Hello Server!")
        client.send_text_message("Hello Server!")
    elif status is wsbind.Status.ERROR:
        print(f"error: {client.error_string}")
        wsbind.quit()


client.status_changed.connect(send_when_open)
client.text_message_received.connect(lambda message: wsbind.quit())

wsbind.run()
