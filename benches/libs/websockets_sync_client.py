"""websockets' blocking client (``websockets.sync``): echo round trips against the native echo server.

It has a server side too, but the blocking rows are client rows, as for
websocket-client. See common.py for the command line.
"""

from common import Meter, client_args
from websockets.sync.client import connect

args = client_args()
meter = Meter(args)

compression = "deflate" if args.compression else None
with connect(args.url, max_size=None, compression=compression) as ws:
    for _ in range(args.window):
        ws.send(args.payload)
    for _message in ws:
        if not meter.tick():
            break
        ws.send(args.payload)
    # Take the echoes still in flight before closing: with its receive queue
    # full, websockets would not read the peer's close frame and would wait
    # out its close timeout instead.
    for _ in range(args.window - 1):
        ws.recv()
meter.report()
