"""``Flag`` behaves as ``asyncio.Event`` does, at a fraction of its size."""

from __future__ import annotations

import asyncio
import sys

import pytest

from sanic_chat.transport.flag import Flag


def test_starts_as_told_and_set_clear_flip_it() -> None:
    flag = Flag()
    assert not flag.is_set()
    flag.set()
    assert flag.is_set()
    flag.clear()
    assert not flag.is_set()
    assert Flag(True).is_set()


async def test_wait_returns_at_once_when_set() -> None:
    assert await Flag(True).wait() is True


async def test_set_wakes_every_waiter_and_clear_blocks_the_next() -> None:
    flag = Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    flag.clear()
    late = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    assert not late.done()
    flag.set()
    assert await late is True


async def test_a_waiter_woken_then_cleared_still_returns_true() -> None:
    # As with asyncio.Event: a set() that wakes a waiter is not undone by
    # a clear() before the waiter runs.
    flag = Flag()
    waiter = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    flag.set()
    flag.clear()
    assert await waiter is True


async def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    flag = Flag()
    waiter = asyncio.create_task(flag.wait())
    other = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert flag._waiters is not None and len(flag._waiters) == 1
    flag.set()
    assert await other is True
    assert flag._waiters is None  # the list goes with its last waiter


def test_an_idle_flag_is_far_smaller_than_an_event() -> None:
    flag = Flag(True)
    event = asyncio.Event()
    flag_bytes = sys.getsizeof(flag)
    event_bytes = (
        sys.getsizeof(event)
        + sys.getsizeof(vars(event))
        + sys.getsizeof(event._waiters)  # type: ignore[attr-defined]
    )
    assert flag_bytes <= 64
    assert event_bytes > 8 * flag_bytes
