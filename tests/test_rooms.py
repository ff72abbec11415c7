"""Rooms: join, leave, presence and recovery with ``since``."""

from __future__ import annotations

from .conftest import LiveServer, live, make_app


async def test_join_and_leave_are_confirmed_and_announced(
    server: LiveServer,
) -> None:
    async with server.client() as alice, server.client() as bob:
        await alice.expect("joined", room="lobby", user=bob.user)
        await bob.send({"type": "join", "room": "dev"})
        await bob.expect("joined", room="dev", user=bob.user)
        await alice.send({"type": "join", "room": "dev"})
        await alice.expect("joined", room="dev", user=alice.user)
        await bob.expect("joined", room="dev", user=alice.user)
        await bob.send({"type": "leave", "room": "dev"})
        await bob.expect("left", room="dev", user=bob.user)
        await alice.expect("left", room="dev", user=bob.user)
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
            async with srv.client():
                await a.nothing()
                await b.nothing()


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
    server: LiveServer,
) -> None:
    async with server.client() as alice:
        await alice.say("x")
        for garbage in ["nope", "0-0", "999999999999-1", "ffffff-999999"]:
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
