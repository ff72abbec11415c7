"""Meta, edit and delete, and on_message across two workers on one Redis
(two apps in this process on one redis-server, as tests/test_redis.py).
"""

from __future__ import annotations

import asyncio

from sanic_chat import MessageEvent

from .conftest import live, make_app
from .redis_server import RedisServer


async def test_edits_cross_workers_and_reach_a_client_recovering_elsewhere(
    redis_server: RedisServer,
) -> None:
    archived: dict[str, list[MessageEvent]] = {"a": [], "b": []}
    url = f"{redis_server.url}?prefix=edits:"

    def app(worker: str) -> object:
        return make_app(broadcaster=url, on_message=archived[worker].append)

    async with live(app("a")) as sa, live(app("b")) as sb:
        async with sa.client(name="alice") as alice:
            async with sb.client(name="bob") as bob:
                await alice.find("joined", user=bob.user)
                await alice.send(
                    {"type": "message", "room": "lobby", "text": "first",
                     "meta": {"reply_to": None}}
                )  # fmt: skip
                first = await bob.find("message", text="first")
                assert first["meta"] == {"reply_to": None}
                # Bob, on worker B, may not touch alice's message: the
                # author is read from the shared history.
                await bob.send(
                    {"type": "delete", "room": "lobby", "id": first["id"]}
                )
                assert (await bob.find("error"))["code"] == "forbidden"
                mine = await bob.say("bobs")
                await bob.send(
                    {"type": "edit", "room": "lobby", "id": mine["id"],
                     "text": "bob's"}
                )  # fmt: skip
                assert (await alice.find("edited"))["text"] == "bob's"
            # Bob is offline: alice edits and deletes on worker A.
            second = await alice.say("second")
            await alice.send(
                {"type": "edit", "room": "lobby", "id": first["id"],
                 "text": "first!"}
            )  # fmt: skip
            await alice.find("edited")
            await alice.send(
                {"type": "delete", "room": "lobby", "id": second["id"]}
            )
            await alice.find("deleted")
        # Bob comes back on worker B and recovers after the last id seen.
        async with sb.client(room=f"lobby@{mine['id']}") as bob:
            frames = await bob.drain(0.5)
            kinds = [(f["type"], f.get("id"), f.get("text")) for f in frames]
            assert ("edited", first["id"], "first!") in kinds
            assert ("deleted", second["id"], None) in kinds
            (replayed,) = [f for f in frames if f["type"] == "message"]
            assert replayed["id"] == second["id"] and replayed["deleted"]
            await bob.send({"type": "history", "room": "lobby"})
            history = (await bob.find("history"))["messages"]
            assert [m.get("text") for m in history] == [
                "first!", "bob's", None
            ]  # fmt: skip
    # Each event was archived once, by the worker that stored it.
    async with asyncio.timeout(5):
        while len(archived["a"]) + len(archived["b"]) < 6:
            await asyncio.sleep(0.01)
    assert [(e.kind, e.text) for e in archived["a"]] == [
        ("message", "first"),
        ("message", "second"),
        ("edited", "first!"),
        ("deleted", None),
    ]
    assert [(e.kind, e.text) for e in archived["b"]] == [
        ("message", "bobs"),
        ("edited", "bob's"),
    ]
