"""How long to wait before each attempt to reconnect: exponential backoff with jitter.

One schedule for every way wsbind reconnects (``WebSocket.auto_reconnect``
today). The numbers are websockets' own, so that a fleet of clients of either
library behaves alike when their server restarts:

- the first delay is random, from 0 to ``FIRST_MAX`` (5 s), as RFC 6455
  (section 7.2.3) asks, so that the clients of a server that went down do not
  all come back in the same instant;
- then ``MINIMUM`` (3.1 s), growing by ``FACTOR`` (1.618) after each failed
  attempt, up to ``MAXIMUM`` (90 s), so that a server that stays down is asked
  less and less often, but at least every minute and a half.

A connection that opens starts the schedule over. The constants are read on
each new schedule: a program (or a test) may lower them, e.g.
``wsbind.backoff.FIRST_MAX = 0.1``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["FACTOR", "FIRST_MAX", "MAXIMUM", "MINIMUM", "delays"]

FIRST_MAX = 5.0
"""The first delay is random, from 0 to this many seconds."""
MINIMUM = 3.1
"""The second delay, in seconds; each later one grows by ``FACTOR``."""
FACTOR = 1.618
"""How much each delay after the second grows."""
MAXIMUM = 90.0
"""The longest delay, in seconds."""


def delays(
    first_max: float | None = None,
    minimum: float | None = None,
    factor: float | None = None,
    maximum: float | None = None,
) -> Iterator[float]:
    """Yields the seconds to wait before each attempt to reconnect, for ever.

    An argument left out (None) is the module's constant of that name, read now.
    """
    first_max = FIRST_MAX if first_max is None else first_max
    delay = MINIMUM if minimum is None else minimum
    factor = FACTOR if factor is None else factor
    maximum = MAXIMUM if maximum is None else maximum
    yield random.random() * first_max
    while delay < maximum:
        yield delay
        delay *= factor
    while True:
        yield maximum
