"""How long to wait between attempts to reconnect: one schedule for every style.

``async for ws in wsbind.connect(url)`` waits these delays between failed
attempts, and so should anything else in wsbind that reconnects by itself.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["backoff"]

# websockets' numbers (BACKOFF_* in websockets.client), so that a fleet of
# wsbind and websockets clients treats a server the same way.
# A random first wait of up to 5 s spreads the clients of a server that just
# restarted over a few seconds, rather than all reconnecting in the same
# instant (RFC 6455, 7.2.3).
INITIAL_DELAY = 5.0
# The second wait, once the first attempt failed too.
MIN_DELAY = 3.1
# Each later wait is this much longer (the golden ratio: steeper than linear,
# gentler than doubling)...
FACTOR = 1.618
# ...up to this: 90 s, so that a server back after a long outage is found
# within a minute and a half, while a dead one costs one attempt per 90 s.
MAX_DELAY = 90.0


def backoff(
    initial_delay: float | None = None,
    min_delay: float | None = None,
    max_delay: float | None = None,
    factor: float | None = None,
) -> Iterator[float]:
    """The seconds to wait before each new attempt to connect, without end (websockets: ``backoff()``).

    First a random delay between 0 and ``initial_delay`` (5 s), then
    ``min_delay`` (3.1 s), growing by ``factor`` (1.618) each time up to
    ``max_delay`` (90 s), then ``max_delay`` for ever. Start a new series
    after a success. An argument left out is the module's constant of that
    name, read now: a program, or a test that need not wait seconds, may
    lower them (``wsbind.retry.INITIAL_DELAY = 0.1``)::

        delays = backoff()
        await asyncio.sleep(next(delays))
    """
    initial_delay = INITIAL_DELAY if initial_delay is None else initial_delay
    delay = MIN_DELAY if min_delay is None else min_delay
    max_delay = MAX_DELAY if max_delay is None else max_delay
    factor = FACTOR if factor is None else factor
    yield random.random() * initial_delay
    while delay < max_delay:
        yield delay
        delay *= factor
    while True:
        yield max_delay
