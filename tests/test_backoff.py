"""The retry delays every retry loop shares: pure, no sockets."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from sanic_chat.backoff import Backoff


def delays(backoff: Backoff, n: int) -> list[float]:
    return [round(backoff.delay(), 6) for _ in range(n)]


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(0.1, 5.0, jitter=0.0)
    assert delays(backoff, 9) == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5, 5]


def test_jitter_only_shortens_delays() -> None:
    longest = Backoff(0.1, 5.0, rng=lambda: 0.0)
    shortest = Backoff(0.1, 5.0, rng=lambda: 1.0)
    assert delays(longest, 8) == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5]
    assert delays(shortest, 8) == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.5, 2.5]


def test_jitter_spreads_loops_that_fail_together() -> None:
    first = {Backoff().delay() for _ in range(1000)}
    assert len(first) > 900
    assert all(0.05 <= d <= 0.1 for d in first)


def test_success_resets_to_a_fast_retry() -> None:
    backoff = Backoff(0.1, 5.0, jitter=0.0)
    assert not backoff.failing
    delays(backoff, 20)
    assert backoff.failing and backoff.attempt == 20
    backoff.reset()
    assert not backoff.failing
    assert backoff.delay() == 0.1


def test_a_long_outage_stays_at_the_cap() -> None:
    backoff = Backoff(0.1, 5.0, jitter=0.0)
    for _ in itertools.repeat(None, 5000):
        last = backoff.delay()
    assert last == 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first": -1.0},
        {"first": 2.0, "cap": 1.0},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"jitter": -0.1},
    ],
)
def test_nonsense_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)


async def test_pause_sleeps_the_delay() -> None:
    backoff = Backoff(0.05, 0.05, jitter=0.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await backoff.pause()
    assert loop.time() - started >= 0.04
    assert backoff.attempt == 1


async def test_pause_wakes_early_when_the_event_is_set() -> None:
    backoff = Backoff(30.0, 30.0)
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, wake.set)
    started = loop.time()
    async with asyncio.timeout(5):
        await backoff.pause(wake)
    assert loop.time() - started < 1


async def test_pause_returns_at_once_when_the_event_is_already_set() -> None:
    wake = asyncio.Event()
    wake.set()
    async with asyncio.timeout(1):
        await Backoff(30.0, 30.0).pause(wake)
