"""websocket-client's client (blocking, one thread): echo round trips against the native echo server.

It has no server side. See common.py for the command line.
"""

import websocket
from common import Meter, client_args

args = client_args()
meter = Meter(args)

# create_connection turns Nagle off by default, as the other libraries do.
ws = websocket.create_connection(args.url)
for _ in range(args.window):
    ws.send_bytes(args.payload)
while True:
    opcode, _data = ws.recv_data()
    if opcode != websocket.ABNF.OPCODE_BINARY:
        continue
    if not meter.tick():
        break
    ws.send_bytes(args.payload)
meter.report()
