"""Answers echo the ``ref`` of the request they answer, on a real server.

``joined``, ``left``, ``history``, ``presence`` and ``receipts`` replies
carry the request's ``ref`` as their last field, so a client matches
them as it matches ``ack`` and ``error``; the notices the other members
get never carry it.
"""

from __future__ import annotations

import pytest

from .conftest import LiveServer

pytestmark = pytest.mark.usefixtures("backend")


async def test_room_answers_echo_the_ref(server: LiveServer) -> None:
    async with server.client(name="ann") as ann, server.client() as bob:
        await bob.send({"type": "join", "room": "dev", "ref": "j1"})
        joined = await bob.find("joined", room="dev", user=bob.user)
        assert joined["ref"] == "j1"
        await ann.send({"type": "join", "room": "dev"})
        await ann.find("joined", room="dev", user=ann.user)
        notice = await bob.find("joined", room="dev", user=ann.user)
        assert "ref" not in notice
        sent = await bob.say("hello", room="dev")
        await bob.send(
            {"type": "join", "room": "dev", "since": sent["id"], "ref": "j2"}
        )
        rejoined = await bob.find("joined", room="dev", user=bob.user)
        assert (rejoined["ref"], rejoined["recovered"]) == ("j2", True)
        await bob.send({"type": "join", "room": "dev", "ref": "j3"})
        again = await bob.find("joined", room="dev", user=bob.user)
        assert again["ref"] == "j3"

        await bob.send({"type": "history", "room": "dev", "ref": "h1"})
        history = await bob.find("history", room="dev")
        assert history["ref"] == "h1"
        assert [m["text"] for m in history["messages"]] == ["hello"]
        await bob.send({"type": "presence", "room": "dev", "ref": "p1"})
        presence = await bob.find("presence", room="dev")
        assert (presence["ref"], presence["count"]) == ("p1", 2)
        await bob.send({"type": "receipts", "room": "dev", "ref": "r1"})
        receipts = await bob.find("receipts", room="dev")
        assert receipts["ref"] == "r1"

        # Bob's joins spent his burst of the rate limit: Ann leaves.
        await ann.send({"type": "leave", "room": "dev", "ref": "l1"})
        left = await ann.find("left", room="dev", user=ann.user)
        assert left["ref"] == "l1"
        seen = await bob.find("left", room="dev", user=ann.user)
        assert "ref" not in seen


async def test_answers_without_a_ref_are_unchanged(server: LiveServer) -> None:
    async with server.client() as bob:
        await bob.send({"type": "join", "room": "dev"})
        joined = await bob.find("joined", room="dev", user=bob.user)
        assert "ref" not in joined
        await bob.send({"type": "history", "room": "dev"})
        assert "ref" not in await bob.find("history", room="dev")
