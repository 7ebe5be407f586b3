"""The reconnection schedule: websockets' numbers, a random first delay, and constants a program may lower."""

from __future__ import annotations

import itertools

import pytest

from wsbind import retry


def test_the_schedule_is_websockets_own() -> None:
    """A random first delay up to 5 s, then 3.1 s growing by 1.618 up to 90 s, for ever."""
    delays = list(itertools.islice(retry.backoff(), 14))
    assert 0 <= delays[0] <= 5.0
    assert delays[1] == 3.1
    for before, after in itertools.pairwise(delays[1:9]):
        assert after == pytest.approx(before * 1.618)
    assert delays[-3:] == [90.0, 90.0, 90.0]
    assert max(delays) == 90.0


def test_the_first_delay_is_jittered() -> None:
    """Clients of a server that restarts do not all come back in the same instant."""
    firsts = {next(retry.backoff()) for _ in range(20)}
    assert len(firsts) > 1


def test_the_module_constants_are_read_for_each_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "INITIAL_DELAY", 0.0)
    monkeypatch.setattr(retry, "MIN_DELAY", 0.5)
    monkeypatch.setattr(retry, "FACTOR", 2.0)
    monkeypatch.setattr(retry, "MAX_DELAY", 3.0)
    assert list(itertools.islice(retry.backoff(), 6)) == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_arguments_override_the_constants() -> None:
    schedule = retry.backoff(initial_delay=0.0, min_delay=1.0, factor=3.0, max_delay=5.0)
    assert list(itertools.islice(schedule, 5)) == [0.0, 1.0, 3.0, 5.0, 5.0]
