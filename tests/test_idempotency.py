"""A message resent with a ref already accepted is not published again.

On every backend (the ``backend`` fixture), and across two workers on
one ``redis-server``: a client that lost an ``ack`` resends with the
same ``ref`` and gets the first message's id, and the room has it once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect

from sanic_chat import ChatConfig, MemoryBroadcaster
from sanic_chat.backends.memory_idempotency import MemoryIdempotency
from sanic_chat.errors import BroadcasterUnavailable
from sanic_chat.hub.sent import SentRefs

from .conftest import UNLIMITED, Client, LiveServer, live
from .redis_server import RedisServer
from .tcp_proxy import TcpProxy
from .test_backends import OldStyleBroadcaster
from .test_people import people_app

TIMEOUT = 5.0


@asynccontextmanager
async def chat(**options: Any) -> AsyncIterator[LiveServer]:
    async with live(people_app(**UNLIMITED, **options)) as srv:
        yield srv


def message(ref: str, text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"type": "message", "room": "lobby", "text": text, "ref": ref,
            **extra}  # fmt: skip


async def acked(client: Client, frame: dict[str, Any]) -> str:
    """Send ``frame``; the id its ``ack`` names."""
    await client.send(frame)
    ack = await client.find("ack", ref=frame["ref"])
    return str(ack["id"])


async def texts(srv: LiveServer, room: str = "lobby") -> list[str]:
    return [m["text"] for m in await srv.chat.history(room)]


@pytest.mark.usefixtures("backend")
async def test_a_resend_gets_the_first_id_and_is_not_published() -> None:
    async with (
        chat() as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
    ):
        first = await acked(alice, message("r1"))
        assert (await bob.find("message", text="hi"))["id"] == first
        assert await acked(alice, message("r1")) == first
        # A resend is answered, never delivered: bob sees it once.
        await bob.nothing(0.3)
        # Its ack is the same frame, byte for byte in content.
        await alice.send(message("r1"))
        ack = await alice.find("ack", ref="r1")
        assert ack == {"type": "ack", "ref": "r1", "id": first,
                       "room": "lobby"}  # fmt: skip
        assert await texts(srv) == ["hi"]
        # Another ref is another message.
        assert await acked(alice, message("r2")) != first
        assert await texts(srv) == ["hi", "hi"]


@pytest.mark.usefixtures("backend")
async def test_a_resent_direct_message_is_stored_once() -> None:
    async with (
        chat() as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
    ):
        frame = {"type": "message", "to": "bob", "text": "psst", "ref": "d"}
        first = await acked(alice, frame)
        await bob.find("message", text="psst")
        assert await acked(alice, frame) == first
        await bob.nothing(0.3)
        assert await texts(srv, "@bob") == ["psst"]
        assert await texts(srv, "@alice") == ["psst"]


@pytest.mark.usefixtures("backend")
async def test_refs_of_other_users_do_not_collide() -> None:
    async with (
        chat() as srv,
        srv.client(token="ta") as alice,
        srv.client(token="tb") as bob,
    ):
        mine = await acked(alice, message("same", "from alice"))
        theirs = await acked(bob, message("same", "from bob"))
        assert mine != theirs
        assert await texts(srv) == ["from alice", "from bob"]


@pytest.mark.usefixtures("backend")
async def test_concurrent_duplicates_publish_once() -> None:
    """Two sockets of one user send one ref at once: one publish."""
    async with chat() as srv:
        async with (
            srv.client(token="ta") as one,
            srv.client(token="ta") as two,
        ):
            for n in range(5):
                frame = message(f"c{n}", f"text {n}")
                ids = await asyncio.gather(
                    acked(one, frame), acked(two, frame)
                )
                assert ids[0] == ids[1]
        assert await texts(srv) == [f"text {n}" for n in range(5)]


@pytest.mark.usefixtures("backend")
async def test_the_window_expires_and_zero_turns_it_off() -> None:
    async with (
        chat(idempotency_window=0.3) as srv,
        srv.client(token="ta") as alice,
    ):
        first = await acked(alice, message("w"))
        assert await acked(alice, message("w")) == first
        await asyncio.sleep(0.5)
        assert await acked(alice, message("w")) != first
        assert await texts(srv) == ["hi", "hi"]
    async with (
        chat(idempotency_window=0) as srv,
        srv.client(token="ta") as alice,
    ):
        assert await acked(alice, message("w")) != await acked(
            alice, message("w")
        )
        assert await texts(srv) == ["hi", "hi"]


@pytest.mark.usefixtures("backend")
async def test_a_refused_send_does_not_use_up_its_ref() -> None:
    async with chat() as srv, srv.client(token="ta") as alice:
        await alice.send({**message("x"), "room": "elsewhere"})
        error = await alice.find("error", ref="x")
        assert (error["code"], error["room"]) == ("not_joined", "elsewhere")
        first = await acked(alice, message("x"))
        assert await texts(srv) == ["hi"]
        assert first


async def test_memory_refs_are_bounded_in_count_and_bytes() -> None:
    refs = MemoryIdempotency(max_entries=100, max_bytes=100 * 400)
    for n in range(1000):
        await refs.settle("u", f"r{n}", f"{n}-0", 300)
    assert len(refs) == 100
    assert await refs.claim("u", "r999", 30) == "999-0"
    assert await refs.claim("u", "r0", 30) is None  # the oldest went
    big = MemoryIdempotency(max_entries=10**6, max_bytes=10_000)
    for n in range(1000):
        await big.settle("u" * 100, f"r{n}" * 10, f"{n}-0", 300)
    assert big.bytes <= 10_000
    assert len(big) > 0


# --------------------------------------------------------------------------
# Across two workers on one redis-server


@asynccontextmanager
async def two_workers(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    url = f"{redis_server.url}?prefix=idem{id(object())}:&heartbeat=1"
    async with (
        chat(broadcaster=url) as a,
        chat(broadcaster=url) as b,
    ):
        yield a, b


async def test_a_lost_ack_resent_on_another_worker_is_published_once(
    redis_server: RedisServer,
) -> None:
    """Send on worker A, lose the ack, reconnect to B, resend: one message.

    The client reaches A through a TCP proxy that holds A's answers, then
    cuts the connection once the message is stored: the ack never
    arrives, as when a connection drops at the wrong moment.
    """
    async with two_workers(redis_server) as (a, b):
        proxy = TcpProxy(a.port)
        await proxy.start()
        try:
            url = f"ws://127.0.0.1:{proxy.port}/ws?token=ta"
            async with connect(
                url, open_timeout=TIMEOUT, close_timeout=1
            ) as ws:
                lost = Client(ws)
                lost.welcome = await lost.expect("welcome")
                await lost.expect("joined", room="lobby")
                proxy.hold()
                await lost.send(message("lost", "only once"))
                async with asyncio.timeout(TIMEOUT):
                    while await texts(a) != ["only once"]:
                        await asyncio.sleep(0.02)
                proxy.cut()
        finally:
            await proxy.stop()
        stored = (await a.chat.history("lobby"))[0]["id"]
        async with b.client(token="ta") as alice:
            assert await acked(alice, message("lost", "only once")) == stored
            await alice.nothing(0.3)
        assert await texts(b) == ["only once"]


async def test_concurrent_duplicates_on_two_workers_publish_once(
    redis_server: RedisServer,
) -> None:
    async with (
        two_workers(redis_server) as (a, b),
        a.client(token="ta") as one,
        b.client(token="ta") as two,
    ):
        for n in range(5):
            frame = message(f"c{n}", f"text {n}")
            ids = await asyncio.gather(acked(one, frame), acked(two, frame))
            assert ids[0] == ids[1]
        assert await texts(a) == [f"text {n}" for n in range(5)]


async def test_error_frames_carry_ref_and_room_end_to_end(
    redis_server: RedisServer,
) -> None:
    """One live error per request type: its ref and room come back."""
    url = f"{redis_server.url}?prefix=errs{id(object())}:"
    frames = [
        {"type": "join", "room": "no room!"},
        {"type": "leave", "room": "nowhere"},
        {"type": "history", "room": "nowhere"},
        {"type": "presence", "room": "nowhere"},
        {"type": "message", "room": "nowhere", "text": "x"},
        {"type": "edit", "room": "nowhere", "id": "1-0", "text": "x"},
        {"type": "delete", "room": "nowhere", "id": "1-0"},
        {"type": "typing", "room": "nowhere"},
        {"type": "read", "room": "nowhere", "id": "1-0"},
        {"type": "receipts", "room": "nowhere"},
    ]
    async with chat(broadcaster=url) as srv, srv.client(token="ta") as alice:
        for n, frame in enumerate(frames):
            await alice.send({**frame, "ref": f"e{n}"})
            error = await alice.find("error", ref=f"e{n}")
            room = frame["room"] if frame["room"] != "no room!" else None
            assert error.get("room") == room, (frame, error)
        raw = json.dumps({"type": "leave", "room": "nowhere"})
        await alice.send(raw)
        error = await alice.expect("error")
        assert (error["room"], "ref" in error) == ("nowhere", False)


# --------------------------------------------------------------------------
# SentRefs alone: the claim, publish, settle or release sequence


async def test_a_failed_publish_releases_its_ref_for_the_resend() -> None:
    refs = SentRefs(MemoryBroadcaster(), ChatConfig())

    async def fail() -> str:
        raise BroadcasterUnavailable("down")

    with pytest.raises(BroadcasterUnavailable):
        await refs.once("u", "r", fail)
    assert await refs.once("u", "r", _returns("1-0")) == "1-0"
    assert await refs.once("u", "r", _returns("2-0")) == "1-0"
    assert await refs.once("u", None, _returns("3-0")) == "3-0"


async def test_a_concurrent_send_waits_for_the_first_id_or_gives_up() -> None:
    refs = SentRefs(MemoryBroadcaster(), ChatConfig())
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "1-0"

    first = asyncio.create_task(refs.once("u", "r", slow))
    second = asyncio.create_task(refs.once("u", "r", _returns("2-0")))
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.gather(first, second) == ["1-0", "1-0"]
    gate.clear()
    refs.wait = 0.1
    stuck = asyncio.create_task(refs.once("u", "s", slow))
    await asyncio.sleep(0.01)
    with pytest.raises(BroadcasterUnavailable):
        await refs.once("u", "s", _returns("3-0"))
    gate.set()
    assert await stuck == "1-0"


async def test_a_backend_without_the_part_gets_refs_per_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broadcaster = OldStyleBroadcaster()
    with caplog.at_level(logging.INFO, "sanic_chat.hub.sent"):
        refs = SentRefs(broadcaster, ChatConfig())
    assert "resends are recognised on the worker" in caplog.text
    assert await refs.once("u", "r", _returns("1-0")) == "1-0"
    assert await refs.once("u", "r", _returns("2-0")) == "1-0"


def _returns(message_id: str) -> Callable[[], Awaitable[str]]:
    async def publish() -> str:
        return message_id

    return publish
