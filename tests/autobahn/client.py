"""wsbind as the client of the Autobahn|Testsuite's fuzzingserver: runs every case
the server has, echoing each message back, then asks it to write its reports.

    python tests/autobahn/client.py ws://127.0.0.1:9002

tests/test_autobahn.py starts the fuzzingserver and runs this script.
"""

from __future__ import annotations

import sys
import threading

from wsbind import Status, WebSocket

AGENT = "wsbind"
# One case may send a 16 MiB message in 1 MiB frames; none takes this long.
CASE_TIMEOUT = 120.0


def session(url: str, echo: bool) -> list[str]:
    """Opens `url`, echoes what comes if `echo`, and returns the text messages once it is over."""
    over = threading.Event()
    texts: list[str] = []
    ws = WebSocket()

    def on_text(message: str) -> None:
        texts.append(message)
        if echo:
            ws.send_text_message(message)

    def on_binary(message: bytes) -> None:
        if echo:
            ws.send_binary_message(message)

    def on_status(status: Status) -> None:
        if status in (Status.CLOSED, Status.ERROR):
            over.set()

    ws.text_message_received.connect(on_text)
    ws.binary_message_received.connect(on_binary)
    ws.status_changed.connect(on_status)
    ws.url = url
    ws.active = True
    if not over.wait(CASE_TIMEOUT):
        raise SystemExit(f"{url} did not end within {CASE_TIMEOUT} s")
    return texts


def main() -> int:
    base = sys.argv[1].rstrip("/")
    count = int(session(f"{base}/getCaseCount", echo=False)[0])
    for case in range(1, count + 1):
        session(f"{base}/runCase?case={case}&agent={AGENT}", echo=True)
    session(f"{base}/updateReports?agent={AGENT}", echo=False)
    print(f"ran {count} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
