"""Rooms: join, leave, presence and recovery with ``since``."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from sanic_chat import MemoryBroadcaster, create_blueprint
from sanic_chat.protocol import message_payload

from .conftest import LiveServer, drain_each, live, make_app, new_app

# The whole protocol suite runs against every built-in backend.
pytestmark = pytest.mark.usefixtures("backend", "transport")


async def test_join_and_leave_are_confirmed_and_announced(
    server: LiveServer,
) -> None:
    async with server.client() as alice, server.client() as bob:
        await alice.find("joined", room="lobby", user=bob.user)
        await bob.send({"type": "join", "room": "dev"})
        await bob.find("joined", room="dev", user=bob.user)
        await alice.send({"type": "join", "room": "dev"})
        await alice.find("joined", room="dev", user=alice.user)
        await bob.find("joined", room="dev", user=alice.user)
        await bob.send({"type": "leave", "room": "dev"})
        await bob.find("left", room="dev", user=bob.user)
        await alice.find("left", room="dev", user=bob.user)
        await bob.send({"type": "message", "room": "dev", "text": "x"})
        await bob.expect("error", code="not_joined")


async def test_messages_stay_in_their_room(server: LiveServer) -> None:
    async with server.client(room="a") as a, server.client(room="b") as b:
        await a.say("only a", room="a")
        await b.say("only b", room="b")
        await a.nothing()


async def test_presence_lists_users_of_the_room(server: LiveServer) -> None:
    async with (
        server.client(name="alice") as alice,
        server.client(name="bob") as bob,
    ):
        await alice.send({"type": "presence", "room": "lobby"})
        presence = await alice.until(lambda f: f["type"] == "presence")
        assert presence["count"] == 2
        assert sorted(u["name"] for u in presence["users"]) == ["alice", "bob"]
        await bob.send({"type": "presence", "room": "nowhere"})
        await bob.until(lambda f: f["type"] == "error")


async def test_presence_events_can_be_turned_off() -> None:
    async with live(make_app(presence_events=False)) as srv:
        async with srv.client() as alice, srv.client() as bob:
            await bob.send({"type": "join", "room": "dev"})
            await bob.expect("joined", room="dev")
            await alice.nothing()


async def test_large_rooms_stop_announcing_joins() -> None:
    async with live(make_app(presence_events_max_members=2)) as srv:
        async with srv.client() as a, srv.client() as b:
            await a.expect("joined", user=b.user)
            async with srv.client() as c:
                for frames in await drain_each(0.3, a, b):
                    assert all(f.get("user") != c.user for f in frames)


async def test_join_since_replays_missed_messages_then_live(
    server: LiveServer,
) -> None:
    async with server.client() as bob:
        last_seen = (await bob.say("before"))["id"]
        async with server.client(room="elsewhere") as alice:
            missed = [(await bob.say(f"missed {i}"))["id"] for i in range(3)]
            await alice.send(
                {"type": "join", "room": "lobby", "since": last_seen}
            )
            await alice.expect("joined", room="lobby", recovered=True)
            replayed = [await alice.expect("message") for _ in missed]
            assert [m["id"] for m in replayed] == missed
            live_id = (await bob.say("live"))["id"]
            await alice.expect("message", id=live_id)
            await alice.nothing()


async def test_join_since_unknown_id_reports_not_recovered(
    fast_server: LiveServer,
) -> None:
    server = fast_server
    async with server.client() as alice:
        await alice.say("x")
        for garbage in [
            "nope",
            "0-0",
            "999999999999-1",
            "ffffff-999999",
            "99999999999999999999-1",
        ]:
            await alice.send({"type": "leave", "room": "lobby"})
            await alice.expect("left")
            await alice.send(
                {"type": "join", "room": "lobby", "since": garbage}
            )
            await alice.expect("joined", room="lobby", recovered=False)
            await alice.nothing(0.05)


async def test_recovery_at_connect_with_room_at_id(server: LiveServer) -> None:
    async with server.client() as bob:
        last_seen = (await bob.say("seen"))["id"]
        missed = [(await bob.say(f"m{i}"))["id"] for i in range(2)]
        async with server.client(
            welcome=False, room=f"lobby@{last_seen}"
        ) as alice:
            await alice.expect("welcome", rooms=["lobby"])
            await alice.expect("joined", room="lobby", recovered=True)
            assert [(await alice.expect("message"))["id"] for _ in missed] == (
                missed
            )


async def test_joining_twice_is_idempotent(server: LiveServer) -> None:
    async with server.client() as alice, server.client() as bob:
        await alice.expect("joined", user=bob.user)
        await bob.send({"type": "join", "room": "lobby"})
        await bob.expect("joined", room="lobby")
        await alice.nothing()
        await bob.say("once")
        await bob.nothing()


async def test_rooms_per_connection_are_limited() -> None:
    async with live(make_app(max_rooms_per_connection=2)) as srv:
        async with srv.client() as alice:
            await alice.send({"type": "join", "room": "two"})
            await alice.expect("joined", room="two")
            await alice.send({"type": "join", "room": "three"})
            await alice.expect("error", code="too_many_rooms")


async def test_recovery_under_load_has_no_gap_and_no_duplicate(
    fast_server: LiveServer,
) -> None:
    server = fast_server
    chat = server.chat
    published = [await chat.publish("busy", "start")]
    stop = asyncio.Event()

    async def chatter() -> None:
        # Bursts without yielding, so joins land while the room's own
        # subscription still holds events that history already has.
        i = 0
        while not stop.is_set():
            for _ in range(5):
                published.append(await chat.publish("busy", f"n{i}"))
                i += 1
            await asyncio.sleep(0.005)

    # Bob keeps the room's subscription alive while Alice leaves and joins.
    async with (
        server.client(room="lobby") as alice,
        server.client(room="busy", max_queue=None),
    ):
        publisher = asyncio.create_task(chatter())
        try:
            last = published[0]
            for _ in range(15):
                head = published[-1]
                await alice.send(
                    {"type": "join", "room": "busy", "since": last}
                )
                await alice.expect("joined", room="busy", recovered=True)
                received: list[str] = []
                # Read through the replay and a few live messages.
                target = published.index(head) + 3
                while not received or published.index(received[-1]) < target:
                    frame = await alice.recv()
                    if frame["type"] == "message":
                        received.append(frame["id"])
                # Replay then live: exactly the published sequence after it.
                start = published.index(last) + 1
                assert received == published[start : start + len(received)]
                last = received[-1]
                await alice.send({"type": "leave", "room": "busy"})
                await alice.until(lambda f: f["type"] == "left")
        finally:
            stop.set()
            await publisher


class RacingHistory(MemoryBroadcaster):
    """A real memory backend whose history read overlaps with publishes,
    as a network backend's does: three messages are published just before
    the read and three just after it, before the reply arrives.
    """

    async def history(self, channel, *, limit, after=None):  # type: ignore[no-untyped-def]
        if after is None:
            return await super().history(channel, limit=limit)
        user = {"id": "racer", "name": "racer"}
        for i in range(3):
            await self.publish(
                channel, message_payload(channel, user, f"b{i}", 0)
            )
        page = await super().history(channel, limit=limit, after=after)
        for i in range(3):
            await self.publish(
                channel, message_payload(channel, user, f"a{i}", 0)
            )
        await asyncio.sleep(0)  # the room's task runs: the reply is "late"
        return page


async def test_recovery_racing_with_publishes_has_no_gap_and_no_duplicate() -> (
    None
):
    app = new_app()
    app.blueprint(create_blueprint(broadcaster=RacingHistory()))
    async with (
        live(app) as srv,
        srv.client() as bob,
        srv.client(room="elsewhere") as alice,
    ):
        since = (await bob.say("seen"))["id"]
        await bob.say("missed")
        await alice.send({"type": "join", "room": "lobby", "since": since})
        await alice.expect("joined", room="lobby", recovered=True)
        texts = [(await alice.expect("message"))["text"] for _ in range(7)]
        assert texts == ["missed", "b0", "b1", "b2", "a0", "a1", "a2"]
        await alice.nothing()


async def test_recovering_two_full_rooms_at_connect_is_not_slow(
    server: LiveServer,
) -> None:
    """Replays are replies: never a reason for the 1013 slow-consumer close."""
    chat = server.chat
    since = {room: await chat.publish(room, "seen") for room in ("a", "b")}
    for i in range(60):
        for room in ("a", "b"):
            await chat.publish(room, f"{room}{i}")
    async with server.client(
        welcome=False, room=[f"{r}@{since[r]}" for r in ("a", "b")]
    ) as alice:
        await alice.expect("welcome", rooms=["a", "b"])
        for room in ("a", "b"):
            await alice.expect("joined", room=room, recovered=True)
            texts = [
                (await alice.expect("message"))["text"] for _ in range(60)
            ]
            assert texts == [f"{room}{i}" for i in range(60)]
        await alice.send({"type": "ping"})
        await alice.expect("pong")


async def test_recovery_pages_through_a_longer_broadcaster_history() -> None:
    app = new_app()
    app.blueprint(
        create_blueprint(broadcaster=MemoryBroadcaster(history_size=1000))
    )
    async with live(app) as srv:
        first = await srv.chat.publish("lobby", "m0")
        for i in range(1, 300):
            await srv.chat.publish("lobby", f"m{i}")
        async with srv.client(welcome=False, room=f"lobby@{first}") as alice:
            await alice.expect("welcome")
            await alice.expect("joined", recovered=True)
            texts = [
                (await alice.expect("message"))["text"] for _ in range(299)
            ]
            assert texts == [f"m{i}" for i in range(1, 300)]


async def test_join_since_while_joined_resyncs_without_duplicates(
    server: LiveServer,
) -> None:
    async with server.client() as alice:
        first = (await alice.say("one"))["id"]
        await alice.say("two")
        await alice.say("three")
        await alice.send({"type": "join", "room": "lobby", "since": first})
        await alice.expect("joined", room="lobby", recovered=True)
        assert (await alice.expect("message"))["text"] == "two"
        assert (await alice.expect("message"))["text"] == "three"
        await alice.nothing()
        await alice.say("live")
        await alice.nothing()


@pytest.mark.slow
async def test_nothing_of_a_room_follows_its_left() -> None:
    app = make_app(slow_consumer="drop_oldest")
    async with live(app) as srv, srv.client(max_queue=1) as alice:
        alice.ws.transport.pause_reading()
        for i in range(3000):  # fills the socket, then the outbox
            await srv.chat.publish("lobby", f"{i:04}" + "x" * 3990)
        await alice.send({"type": "leave", "room": "lobby"})
        await asyncio.sleep(0.2)
        alice.ws.transport.resume_reading()
        frames = []
        async with asyncio.timeout(10):
            while not frames or frames[-1]["type"] != "left":
                frames.append(await alice.recv())
        after = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                while True:
                    after.append(await alice.recv())
        assert after == [], [f.get("type") for f in after[:3]] + [after[0]]
