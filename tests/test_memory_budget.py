"""The memory broadcaster's history stays within its byte budget.

Without it, the defaults (10,000 rooms x 100 messages of up to 4,000
emoji, about 16 KiB each) let clients fill 17-20 GiB of one process.
"""

from __future__ import annotations

import random
import sys

import pytest

from sanic_chat import ConfigError, MemoryBroadcaster, broadcaster_from_url
from sanic_chat.backends import memory
from sanic_chat.backends.memory import (
    ENTRY_OVERHEAD,
    MARK_OVERHEAD,
    ROOM_OVERHEAD,
)

from .conftest import UNLIMITED, live, make_app
from .redis_server import RedisServer

BIG = "\U0001f600" * 4000  # the longest text allowed by default
BIG_COST = sys.getsizeof(BIG) + ENTRY_OVERHEAD


async def _held(backend: MemoryBroadcaster, rooms: list[str]) -> int:
    """What ``rooms`` hold, recomputed from the public history."""
    total = 0
    for room in rooms:
        page = await backend.history(room, limit=10_000)
        if page.events:
            total += ROOM_OVERHEAD + sum(
                sys.getsizeof(e.payload) + ENTRY_OVERHEAD for e in page.events
            )
    return total


async def test_the_byte_budget_holds_after_every_publish() -> None:
    budget = 200_000
    backend = MemoryBroadcaster(
        history_size=5, max_channels=8, max_history_bytes=budget
    )
    rooms = [f"r{i}" for i in range(12)]
    rng = random.Random(7)
    for _ in range(400):
        payload = "x" * rng.choice((10, 1000, 20_000)) + rng.choice("é😀")
        await backend.publish(rng.choice(rooms), payload)
        await backend.publish("live", "not stored", store=False)
        assert backend.history_bytes <= budget
        # The running total is exactly what is still readable.
        assert backend.history_bytes == await _held(backend, rooms)
    assert backend.history_bytes > budget // 2  # it did store things


async def test_the_least_recently_published_room_goes_first() -> None:
    backend = MemoryBroadcaster(
        max_history_bytes=3 * (BIG_COST + ROOM_OVERHEAD) + 1000
    )
    ids = {}
    for room in ("a", "b", "c"):
        ids[room] = (await backend.publish(room, BIG)).id
    await backend.publish("a", "{}")  # "a" is now more recent than "b"
    await backend.publish("d", BIG)
    assert (await backend.history("b", limit=10)).events == []
    for room in ("a", "c", "d"):
        assert (await backend.history(room, limit=10)).events, room
    page = await backend.history("b", limit=10, after=ids["b"])
    assert not page.found and page.events == []  # recovered: false
    assert (await backend.history("a", limit=10, after=ids["a"])).found


async def test_a_room_alone_over_budget_loses_its_oldest_events() -> None:
    backend = MemoryBroadcaster(
        history_size=100, max_history_bytes=ROOM_OVERHEAD + 4 * BIG_COST
    )
    ids = [(await backend.publish("a", BIG)).id for _ in range(10)]
    events = (await backend.history("a", limit=100)).events
    assert [e.id for e in events] == ids[-4:]
    assert backend.history_bytes <= backend.max_history_bytes
    assert not (await backend.history("a", limit=5, after=ids[0])).found
    assert (await backend.history("a", limit=5, after=ids[-3])).found


async def test_an_event_larger_than_the_budget_is_delivered_not_stored() -> (
    None
):
    backend = MemoryBroadcaster(max_history_bytes=BIG_COST // 2)
    async with backend.subscribe("a") as subscription:
        event = await backend.publish("a", BIG)
        assert (await anext(subscription)) == event
    assert (await backend.history("a", limit=10)).events == []
    assert backend.history_bytes == 0


def test_the_budget_is_set_in_the_url() -> None:
    default = broadcaster_from_url("memory://")
    assert isinstance(default, MemoryBroadcaster)
    assert default.max_history_bytes == 64 * 1024 * 1024
    backend = broadcaster_from_url("memory://?max_history_bytes=1000")
    assert isinstance(backend, MemoryBroadcaster)
    assert backend.max_history_bytes == 1000
    for bad in ("-1", "lots"):
        with pytest.raises(ConfigError, match="max_history_bytes"):
            broadcaster_from_url(f"memory://?max_history_bytes={bad}")


async def test_clients_filling_many_rooms_with_big_messages_stay_in_budget() -> (
    None
):
    budget = 2 * 1024 * 1024
    app = make_app(
        broadcaster=f"memory://?max_history_bytes={budget}", **UNLIMITED
    )
    rooms = [f"room{i:02d}" for i in range(20)]
    async with live(app) as srv:
        backend = srv.chat.broadcaster
        assert isinstance(backend, MemoryBroadcaster)
        first_ids = {}
        async with srv.client(room=rooms, max_queue=64) as mallory:
            for room in rooms:
                for i in range(10):
                    echo = await mallory.say(f"{i}{BIG[:-1]}", room=room)
                    first_ids.setdefault(room, echo["id"])
                    assert backend.history_bytes <= budget
        # 200 messages of about 16 KiB (3.2 MiB) went to a 2 MiB budget.
        assert backend.history_bytes > budget // 2
        assert await srv.chat.history(rooms[0]) == []  # evicted first
        assert len(await srv.chat.history(rooms[-1])) == 10
        # Recovery from an evicted id is honest.
        async with srv.client(
            welcome=False, room=f"{rooms[0]}@{first_ids[rooms[0]]}"
        ) as late:
            await late.expect("welcome")
            joined = await late.expect("joined", room=rooms[0])
            assert joined["recovered"] is False


async def test_what_a_room_costs_in_redis(redis_server: RedisServer) -> None:
    """The numbers docs/backends.md gives for maxmemory sizing."""
    import redis.asyncio as aioredis

    app = make_app(broadcaster=f"{redis_server.url}?prefix=cost:", **UNLIMITED)
    async with live(app) as srv, srv.client(room=["big", "small"]) as c:
        for i in range(100):
            await c.say(f"{i:03d}{BIG[3:]}", room="big")
            await c.say(f"hello {i:03d}", room="small")
    client = aioredis.from_url(redis_server.url)
    try:
        big = await client.memory_usage("cost:history:big", samples=0)
        small = await client.memory_usage("cost:history:small", samples=0)
    finally:
        await client.aclose()
    # Documented: 1,689,424 and 19,040 bytes on Redis 7.0.15.
    assert 1_500_000 < big < 1_900_000, big
    assert 10_000 < small < 30_000, small


async def test_read_marks_of_passing_guests_are_counted_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every guest is a new user: each one that reads leaves a mark.

    They used to be kept outside the budget, forever, in a live room.
    """
    monkeypatch.setattr(memory, "MAX_MARKS", 20)
    app = make_app(broadcaster="memory://", **UNLIMITED)
    async with live(app) as srv:
        backend = srv.chat.broadcaster
        assert isinstance(backend, MemoryBroadcaster)
        message_id = await srv.chat.publish("lobby", "read me")
        before = backend.history_bytes
        for i in range(30):
            async with srv.client() as guest:
                await guest.send(
                    {"type": "read", "room": "lobby", "id": message_id,
                     "ref": f"r{i}"}
                )  # fmt: skip
                await guest.find("ack", ref=f"r{i}")
        # The 20 most recent readers are kept, and counted.
        grown = backend.history_bytes - before
        assert 20 * MARK_OVERHEAD <= grown < 30 * MARK_OVERHEAD
        async with srv.client() as last:
            await last.send(
                {"type": "read", "room": "lobby", "id": message_id}
            )
            await last.send({"type": "receipts", "room": "lobby"})
            receipts = await last.find("receipts")
            assert receipts["read"] == {last.user["id"]: message_id}
    budget = ROOM_OVERHEAD + 2000
    backend = MemoryBroadcaster(max_history_bytes=budget)
    event = await backend.publish("a", "x")
    for i in range(20):
        await backend.mark_read("a", f"user-{i}", str(event.id))
        assert backend.history_bytes <= budget
    # Over the budget, the room went as a publish would have made it go.
    assert (await backend.history("a", limit=5)).events == []
