"""Direct messages, typing and read receipts across two workers on Redis.

Two Sanic servers in this process share one ``redis-server``, as two
workers (or hosts) would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .conftest import LiveServer, live
from .redis_server import RedisServer
from .test_people import dm, people_app


@asynccontextmanager
async def two_workers(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    url = f"{redis_server.url}?prefix=people{id(redis_server)}:&heartbeat=1"
    async with (
        live(people_app(broadcaster=url)) as a,
        live(people_app(broadcaster=url)) as b,
    ):
        yield a, b


async def test_a_dm_crosses_workers_and_is_recovered_there(
    redis_server: RedisServer,
) -> None:
    async with two_workers(redis_server) as (a, b):
        async with a.client(token="ta") as alice, b.client(token="tb") as bob:
            await dm(alice, "bob", "across", ref="x")
            mine = await alice.find("message", text="across")
            theirs = await bob.find("message", text="across")
            assert theirs["room"] == "@bob" and mine["room"] == "@alice"
            # Bob goes offline; alice writes; bob recovers on worker A.
        async with a.client(token="ta") as alice:
            await dm(alice, "bob", "while away")
            await alice.find("message", text="while away")
        async with a.client(token="tb") as bob:
            await bob.send(
                {"type": "join", "room": "@bob", "since": theirs["id"]}
            )
            await bob.find("joined", room="@bob", recovered=True)
            assert (await bob.expect("message"))["text"] == "while away"


async def test_receipts_and_typing_cross_workers(
    redis_server: RedisServer,
) -> None:
    async with (
        two_workers(redis_server) as (a, b),
        a.client(token="ta") as alice,
        b.client(token="tb") as bob,
    ):
        said = await alice.say("read me")
        await bob.find("message", text="read me")
        await bob.send({"type": "typing", "room": "lobby"})
        await alice.find("typing", user=bob.user)
        await bob.send({"type": "read", "room": "lobby", "id": said["id"]})
        await alice.find("read", user=bob.user, id=said["id"])
        await alice.send({"type": "receipts", "room": "lobby"})
        receipts = await alice.find("receipts")
        assert receipts["read"] == {"bob": said["id"]}
        # The DM typing signal reaches bob's inbox on the other worker.
        await alice.send({"type": "typing", "to": "bob"})
        await bob.find("typing", room="@bob", user=alice.user)
