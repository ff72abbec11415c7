"""Every built-in broadcaster passes the public conformance suite."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from sanic_chat import (
    Broadcaster,
    Gap,
    MemoryBroadcaster,
    broadcaster_from_url,
)
from sanic_chat.testing import BROADCASTER_CHECKS, Check, check_broadcaster


@pytest.fixture(params=["memory", "redis"])
def factory(request: pytest.FixtureRequest) -> Callable[[], Broadcaster]:
    """A factory of fresh broadcasters of each built-in kind."""
    if request.param == "memory":
        return lambda: broadcaster_from_url("memory://", history_size=20)
    url = request.getfixturevalue("redis_server").url
    return lambda: broadcaster_from_url(url, history_size=20)


@pytest.mark.parametrize("check", BROADCASTER_CHECKS, ids=lambda c: c.__name__)
async def test_conformance(
    factory: Callable[[], Broadcaster], check: Check
) -> None:
    broadcaster = factory()
    await broadcaster.connect()
    try:
        await check(broadcaster)
    finally:
        await broadcaster.disconnect()


async def test_check_broadcaster_runs_the_whole_suite() -> None:
    await check_broadcaster(MemoryBroadcaster)


async def test_the_suite_catches_a_broken_backend() -> None:
    class Forgetful(MemoryBroadcaster):
        async def history(self, channel, *, limit, after=None, before=None):  # type: ignore[no-untyped-def]
            page = await super().history(
                channel, limit=limit, after=after, before=before
            )
            page.events.reverse()
            return page

    with pytest.raises(AssertionError, match="check_order"):
        await check_broadcaster(Forgetful)


async def test_ids_pushed_out_of_history_are_not_found(
    factory: Callable[[], Broadcaster],
) -> None:
    broadcaster = factory()  # history_size=20
    channel = f"paging-{secrets.token_hex(4)}"
    await broadcaster.connect()
    try:
        ids = [
            (await broadcaster.publish(channel, f'{{"n":{i}}}')).id
            for i in range(25)
        ]
        gone, oldest = ids[0], ids[5]
        for after, before in ((gone, None), (None, gone), (gone, ids[10])):
            page = await broadcaster.history(
                channel, limit=10, after=after, before=before
            )
            assert not page.found and page.events == [], (after, before)
        page = await broadcaster.history(channel, limit=10, before=oldest)
        assert page.found and page.events == []
        page = await broadcaster.history(channel, limit=10, before=ids[10])
        assert [e.id for e in page.events] == ids[5:10]
        page = await broadcaster.history(
            channel, limit=10, after=oldest, before=ids[-1]
        )
        assert [e.id for e in page.events] == ids[6:16]
    finally:
        await broadcaster.disconnect()


async def test_memory_history_ring_and_channel_limit() -> None:
    backend = MemoryBroadcaster(history_size=3, max_channels=2)
    first = (await backend.publish("a", "{}")).id
    for _ in range(3):
        await backend.publish("a", "{}")
    page = await backend.history("a", limit=10, after=first)
    assert not page.found, "pushed out of the ring: cannot recover"
    assert len((await backend.history("a", limit=10)).events) == 3
    await backend.publish("b", "{}")
    await backend.publish("c", "{}")  # evicts "a", the least recent
    assert (await backend.history("a", limit=10)).events == []


async def test_ids_from_another_process_lifetime_are_not_recovered() -> None:
    old, new = MemoryBroadcaster(), MemoryBroadcaster()
    stale = (await old.publish("a", "{}")).id
    await new.publish("a", "{}")
    assert stale is not None
    assert not (await new.history("a", limit=10, after=stale)).found


async def test_a_subscriber_that_falls_behind_gets_a_gap() -> None:
    backend = MemoryBroadcaster(queue_size=3)
    async with backend.subscribe("a") as subscription:
        for i in range(10):
            await backend.publish("a", f'{{"n":{i}}}')
        items = [await anext(subscription) for _ in range(4)]
        assert [type(i).__name__ for i in items] == ["Event"] * 3 + ["Gap"]
        assert items[3] == Gap("a", 7)
        await backend.publish("a", '{"n":"live"}')
        live = await anext(subscription)
        assert not isinstance(live, Gap) and live.payload == '{"n":"live"}'
