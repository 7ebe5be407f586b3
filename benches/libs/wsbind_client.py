"""wsbind's client: echo round trips against the native echo server (see common.py).

Written as a wsbind user would write a script: handlers on wsbind's event
thread, the main thread waiting for them to finish.
"""

import threading

from common import MAX_MESSAGE, Meter, client_args

from wsbind import SslConfiguration, Status, WebSocket

args = client_args()
meter = Meter(args)
done = threading.Event()
failure = ""


def on_status(status: Status) -> None:
    global failure
    if status is Status.OPEN:
        for _ in range(args.window):
            ws.send_binary_message(args.payload)
    elif status is Status.ERROR and not done.is_set():
        failure = ws.error_string
        done.set()


def on_message(message: bytes) -> None:
    if done.is_set():
        return
    if meter.tick():
        ws.send_binary_message(args.payload)
    else:
        done.set()


ws = WebSocket(
    url=args.url,
    compression="deflate" if args.compression else None,
    # wss://: the run's CA trusted besides the system's (rustls, TLS 1.3).
    ssl_configuration=SslConfiguration(ca_certificates=[args.ca]) if args.ca else None,
    max_allowed_incoming_frame_size=MAX_MESSAGE,
    max_allowed_incoming_message_size=MAX_MESSAGE,
    on_status_changed=on_status,
    on_binary_message_received=on_message,
    active=True,
)
done.wait()
if failure:
    raise SystemExit(f"wsbind: {failure}")
meter.report()
