"""A connect storm: every client the server accepts must get in.

1,000 real WebSocket clients connect to ``python -m example_app`` with
256 handshakes in flight, on the in-memory broadcaster and on Redis with
one and two workers. Each must receive ``welcome`` then its own
``joined``; a busy event loop is not a Redis outage, so no client may get
an ``error`` frame (``unavailable``) or be dropped after its upgrade.

Then one test per cause found behind the storm's failures: a subscription
confirmed late by a busy loop, a first subscription that failed, a
presence change cancelled on its way to Redis.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from sanic_chat import BroadcasterUnavailable
from sanic_chat.backends import Subscription
from sanic_chat.backends.redis import RedisBroadcaster

from .conftest import live, make_app, run_example
from .redis_server import RedisServer
from .tcp_proxy import TcpProxy

CLIENTS = 1000
IN_FLIGHT = 256


async def _one(
    url: str, gate: asyncio.Semaphore, opened: list[ClientConnection]
) -> str:
    """Connect, read ``welcome`` and the own ``joined``; name the outcome."""
    async with gate:
        try:
            ws = await connect(url, open_timeout=60, ping_interval=None)
        except InvalidStatus as exc:
            return f"http {exc.response.status_code}"
        except (OSError, TimeoutError) as exc:
            return f"connect {type(exc).__name__}"
        opened.append(ws)
        try:
            async with asyncio.timeout(60):
                welcome = json.loads(await ws.recv())
                if welcome["type"] != "welcome":
                    return f"first frame {welcome['type']}"
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] == "error":
                        return f"error {frame['code']}"
                    if (
                        frame["type"] == "joined"
                        and frame["user"] == welcome["user"]
                    ):
                        return "joined"
        except TimeoutError:
            return "no joined within 60 s"
        except Exception as exc:
            return f"failed {type(exc).__name__}"


async def storm(port: int) -> Counter[str]:
    """Run the storm against ``port``; count outcomes by kind."""
    url = f"ws://127.0.0.1:{port}/ws"
    gate = asyncio.Semaphore(IN_FLIGHT)
    opened: list[ClientConnection] = []
    try:
        outcomes = await asyncio.gather(
            *(_one(url, gate, opened) for _ in range(CLIENTS))
        )
    finally:
        for ws in opened:
            ws.transport.abort()  # the server's cleanup is not measured
    return Counter(outcomes)


async def _drained(port: int) -> None:
    """Wait until the workers report no connection, a few times running."""
    url = f"http://127.0.0.1:{port}/health"

    def connections() -> int:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(json.loads(response.read())["connections"])

    zeros = 0
    async with asyncio.timeout(30):
        while zeros < 5:
            busy = await asyncio.to_thread(connections)
            zeros = 0 if busy else zeros + 1
            await asyncio.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("backend", "workers"),
    [("memory", 1), ("redis", 1), ("redis", 2)],
    ids=["memory", "redis-1-worker", "redis-2-workers"],
)
async def test_every_client_of_a_connect_storm_joins(
    backend: str, workers: int, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {}
    if backend == "redis":
        env["SANIC_CHAT_BROADCASTER_URL"] = (
            f"{redis_server.url}?prefix=storm{workers}:"
        )
    log = tmp_path / "example.log"
    args = ("--allow-anonymous", "--workers", str(workers))
    with run_example(log, *args, **env) as port:
        outcomes = await storm(port)
        await _drained(port)  # then it stops at once
    assert outcomes == Counter(joined=CLIENTS), (
        outcomes,
        log.read_text()[-3000:],
    )


@pytest.mark.slow
async def test_a_subscription_confirmed_late_by_a_busy_loop_still_joins(
    redis_server: RedisServer,
) -> None:
    """The loop stalls (as in a storm) while Redis confirms a subscription.

    The confirmation arrives long before the loop reads it, after the
    backend's ``timeout``: neither the join nor the other rooms (no
    reconnect, no ``resync``) may suffer.
    """
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    url = f"{proxy.url}?prefix=busy:&timeout=0.2&heartbeat=5"
    try:
        async with (
            live(make_app(broadcaster=url)) as srv,
            srv.client(room="first") as alice,
        ):
            proxy.stall = 0.6
            await alice.send({"type": "join", "room": "second"})
            await alice.expect("joined", room="second")
            proxy.stall = 0
            await alice.say("heard", room="first")
            await alice.nothing(0.5)  # no resync of "first"
            assert srv.chat.broadcaster.reconnects == 0
            assert srv.chat.healthy
    finally:
        await proxy.stop()


@pytest.mark.slow
async def test_a_room_whose_first_subscription_failed_recovers(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live(make_app()) as srv:
        broadcaster = srv.chat.broadcaster
        subscribe = broadcaster.subscribe
        failures = [BroadcasterUnavailable("injected")]

        @asynccontextmanager
        async def failing_once(channel: str) -> AsyncIterator[Subscription]:
            if failures and channel == "lobby":
                raise failures.pop()
            async with subscribe(channel) as subscription:
                yield subscription

        monkeypatch.setattr(broadcaster, "subscribe", failing_once)
        async with srv.client() as alice, srv.client() as bob:
            # Both joined (the client fixture checks it), despite the
            # failed first attempt: the room's task retried it.
            assert not failures
            await alice.say("after the retry")
            await bob.find("message", text="after the retry")


async def test_a_presence_change_cancelled_in_flight_is_taken_back(
    redis_server: RedisServer,
) -> None:
    """Cancelled after Redis applied its HINCRBY: no count may stay behind.

    Also cancelled before it was sent: it must never reach Redis.
    """
    import redis.asyncio as aioredis

    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    broadcaster = RedisBroadcaster(proxy.url, prefix="cancel:", heartbeat=60)
    admin = aioredis.from_url(redis_server.url)
    alice = {"id": "alice", "name": "Alice"}
    await broadcaster.connect()
    try:
        await broadcaster.presence_add("lobby", {"id": "bob", "name": "Bob"})
        proxy.hold()  # Redis applies commands; their replies wait
        in_flight = asyncio.create_task(
            broadcaster.presence_add("lobby", alice)
        )
        await asyncio.sleep(0.2)
        assert len(await admin.hgetall("cancel:presence:lobby")) == 2
        queued = asyncio.create_task(broadcaster.presence_add("lobby", alice))
        await asyncio.sleep(0.05)
        for task in (in_flight, queued):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        proxy.restore()
        expected = [b'{"id":"bob","name":"Bob"}']
        async with asyncio.timeout(5):
            while [
                f.split(b"|", 1)[1]
                for f in await admin.hgetall("cancel:presence:lobby")
            ] != expected:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # and nothing comes later
        info = await broadcaster.presence("lobby", limit=10)
        assert [u["id"] for u in info.users] == ["bob"]
        assert info.count == 1
    finally:
        await admin.aclose()
        await broadcaster.disconnect()
        await proxy.stop()


async def test_a_presence_write_that_failed_midway_is_repaired(
    redis_server: RedisServer,
) -> None:
    """Redis applied the HINCRBY, the connection died before the reply.

    The caller is told it failed (so nothing will remove it): the next
    write sets the field back to the worker's own count.
    """
    import redis.asyncio as aioredis

    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    broadcaster = RedisBroadcaster(proxy.url, prefix="repair:", heartbeat=60)
    admin = aioredis.from_url(redis_server.url)
    await broadcaster.connect()
    try:
        await broadcaster.presence_add("lobby", {"id": "a", "name": "A"})
        proxy.hold()
        failing = asyncio.create_task(
            broadcaster.presence_add("lobby", {"id": "b", "name": "B"})
        )
        await asyncio.sleep(0.2)
        assert len(await admin.hgetall("repair:presence:lobby")) == 2
        proxy.cut()
        with pytest.raises(BroadcasterUnavailable):
            await asyncio.wait_for(failing, 5)
        proxy.restore()
        await broadcaster.presence_add("lobby", {"id": "c", "name": "C"})
        fields = await admin.hgetall("repair:presence:lobby")
        assert sorted(f.split(b"|", 1)[1] for f in fields) == [
            b'{"id":"a","name":"A"}',
            b'{"id":"c","name":"C"}',
        ]
    finally:
        await admin.aclose()
        await broadcaster.disconnect()
        await proxy.stop()


@pytest.mark.slow
@pytest.mark.logs_errors
async def test_a_command_to_a_hung_redis_fails_within_two_heartbeats(
    redis_server: RedisServer,
) -> None:
    """Commands have no timer of their own; the heartbeat bounds them."""
    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    url = f"{proxy.url}?prefix=hung:&heartbeat=0.5"
    try:
        async with (
            live(make_app(broadcaster=url)) as srv,
            srv.client() as alice,
        ):
            proxy.hold()  # Redis answers nothing any more
            await alice.send({"type": "message", "room": "lobby", "text": "x"})
            frame = await alice.until(lambda f: f["type"] == "error", 5)
            assert frame["code"] == "unavailable"
            assert not srv.chat.healthy
            proxy.restore()
            async with asyncio.timeout(10):
                while not srv.chat.healthy:
                    await asyncio.sleep(0.05)
            await alice.say("heard again")
    finally:
        await proxy.stop()
