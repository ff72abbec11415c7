"""Messages: echo, ids, order, acks, plain text, history, ping."""

from __future__ import annotations

import asyncio
import time

import pytest

from .conftest import LiveServer

# The whole protocol suite runs against every built-in backend.
pytestmark = pytest.mark.usefixtures("backend", "transport")


async def test_message_reaches_every_member_including_the_sender(
    server: LiveServer,
) -> None:
    async with (
        server.client(name="alice") as alice,
        server.client(name="bob") as bob,
    ):
        await alice.expect("joined", room="lobby", user=bob.user)
        before = time.time() * 1000
        await alice.send({"type": "message", "room": "lobby", "text": "hi"})
        for client in (alice, bob):
            message = await client.expect(
                "message", room="lobby", text="hi", user=alice.user
            )
            assert isinstance(message["id"], str) and message["id"]
            assert isinstance(message["ts"], int)
            assert before - 1000 <= message["ts"] <= time.time() * 1000 + 1000


async def test_user_cannot_be_spoofed(server: LiveServer) -> None:
    async with server.client(name="mallory") as mallory:
        await mallory.send(
            {
                "type": "message",
                "room": "lobby",
                "text": "I am admin",
                "user": {"id": "admin", "name": "Admin"},
                "id": "forged",
            }
        )
        message = await mallory.expect("message", text="I am admin")
        assert message["user"] == mallory.user
        assert message["id"] != "forged"


async def test_ref_is_acknowledged_with_the_message_id(
    server: LiveServer,
) -> None:
    async with server.client() as alice:
        await alice.send(
            {"type": "message", "room": "lobby", "text": "x", "ref": "r1"}
        )
        frames = [await alice.recv(), await alice.recv()]
        ack = next(f for f in frames if f["type"] == "ack")
        message = next(f for f in frames if f["type"] == "message")
        assert ack == {
            "type": "ack",
            "ref": "r1",
            "id": message["id"],
            "room": "lobby",
        }


# Over Redis the echo may come first: it races the publish's reply.
@pytest.mark.parametrize("backend", ["memory"], indirect=True)
async def test_each_ack_comes_before_its_echo(fast_server: LiveServer) -> None:
    """In one process, a room's delivery runs after the ``ack`` is written."""
    async with fast_server.client() as alice, fast_server.client() as bob:
        for n in range(20):
            await alice.send(
                {
                    "type": "message",
                    "room": "lobby",
                    "text": f"{n}",
                    "ref": f"{n}",
                }
            )
        order: list[str] = []
        while len(order) < 40:
            frame = await alice.recv()
            if frame["type"] == "ack":
                order.append(f"ack {frame['ref']}")
            elif frame["type"] == "message":
                order.append(f"echo {frame['text']}")
        for n in range(20):
            assert order.index(f"ack {n}") < order.index(f"echo {n}"), order
        echoes = [e for e in order if e.startswith("echo")]
        assert echoes == [f"echo {n}" for n in range(20)]
        got = [(await bob.expect("message"))["text"] for _ in range(20)]
        assert got == [f"{n}" for n in range(20)]


async def test_plain_text_goes_to_the_default_room(server: LiveServer) -> None:
    async with server.client() as alice, server.client() as bob:
        await alice.expect("joined")
        await bob.send("Hello from JS!")
        for client in (alice, bob):
            message = await client.expect("message", room="lobby")
            assert message["text"] == "Hello from JS!"
            assert message["user"] == bob.user


async def test_all_members_see_the_same_order(fast_server: LiveServer) -> None:
    server = fast_server
    async with (
        server.client() as a,
        server.client() as b,
        server.client() as c,
    ):
        clients = [a, b, c]
        await a.expect("joined")
        await a.expect("joined")
        await b.expect("joined")
        per_client = 30

        async def talk(client_index: int) -> None:
            for i in range(per_client):
                await clients[client_index].send(
                    {
                        "type": "message",
                        "room": "lobby",
                        "text": f"{client_index}:{i}",
                    }
                )

        await asyncio.gather(*(talk(i) for i in range(3)))
        seen = []
        for client in clients:
            ids = []
            texts = []
            while len(ids) < 3 * per_client:
                frame = await client.recv()
                if frame["type"] == "message":
                    ids.append(frame["id"])
                    texts.append(frame["text"])
            seen.append((ids, texts))
        assert seen[0] == seen[1] == seen[2]
        ids, texts = seen[0]
        assert len(set(ids)) == len(ids)
        for sender in range(3):
            mine = [t for t in texts if t.startswith(f"{sender}:")]
            assert mine == [f"{sender}:{i}" for i in range(per_client)]


async def test_history_returns_recent_messages_oldest_first(
    server: LiveServer,
) -> None:
    async with server.client() as alice:
        sent = [(await alice.say(f"m{i}"))["id"] for i in range(5)]
        await alice.send({"type": "history", "room": "lobby", "limit": 3})
        history = await alice.expect("history", room="lobby")
        assert [m["id"] for m in history["messages"]] == sent[-3:]
        assert [m["text"] for m in history["messages"]] == ["m2", "m3", "m4"]
        assert all(m["type"] == "message" for m in history["messages"])
        await alice.send({"type": "history", "room": "lobby"})
        history = await alice.expect("history", room="lobby")
        assert [m["id"] for m in history["messages"]] == sent


async def test_history_is_bounded_by_history_size(app_factory) -> None:
    from .conftest import live

    async with live(app_factory(history_size=3)) as srv:
        async with srv.client() as alice:
            for i in range(5):
                await alice.say(f"m{i}")
            await alice.send({"type": "history", "room": "lobby", "limit": 50})
            history = await alice.expect("history")
            assert [m["text"] for m in history["messages"]] == [
                "m2",
                "m3",
                "m4",
            ]


async def test_ping_gets_pong(server: LiveServer) -> None:
    async with server.client() as alice:
        await alice.send({"type": "ping"})
        await alice.expect("pong")


async def test_server_side_publish_reaches_sockets(server: LiveServer) -> None:
    from sanic_chat import User

    async with server.client() as alice:
        message_id = await server.chat.publish("lobby", "deploy finished")
        message = await alice.expect(
            "message",
            id=message_id,
            text="deploy finished",
            user={"id": "system", "name": "System"},
        )
        assert message["room"] == "lobby"
        await server.chat.publish("lobby", "beep", user=User("bot", "Bot"))
        await alice.expect("message", user={"id": "bot", "name": "Bot"})
        history = await server.chat.history("lobby")
        assert [m["text"] for m in history] == ["deploy finished", "beep"]
