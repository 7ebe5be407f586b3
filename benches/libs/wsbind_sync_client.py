"""wsbind's blocking face (``wsbind.sync``): echo round trips against the native echo server.

Written as a websocket-client or ``websockets.sync`` user writes a script
(compare ``websocket_client_client.py``, ``websockets_sync_client.py``):
``send()`` and ``recv()`` on the main thread. See common.py for the command line.
"""

from common import MAX_MESSAGE, Meter, client_args

from wsbind.sync import connect

args = client_args()
meter = Meter(args)

with connect(
    args.url,
    compression="deflate" if args.compression else None,
    max_allowed_incoming_frame_size=MAX_MESSAGE,
    max_allowed_incoming_message_size=MAX_MESSAGE,
) as ws:
    for _ in range(args.window):
        ws.send(args.payload)
    for _message in ws:
        if not meter.tick():
            break
        ws.send(args.payload)
meter.report()
