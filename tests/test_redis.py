"""The Redis broadcaster: several workers, faults, deaf workers, presence.

Every test runs its own ``redis-server`` on a free port (see
``tests/redis_server.py``); a real TCP proxy cuts one worker off from it
or makes its subscription silently deaf.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from sanic_chat import BroadcasterUnavailable

from .conftest import (
    TIMEOUT,
    Client,
    LiveServer,
    live,
    make_app,
    remote,
    run_example,
    spawn_example,
    stop_once_workers_are_ready,
)
from .redis_server import RedisServer, free_port
from .tcp_proxy import TcpProxy


async def eventually(check: Callable[[], bool], within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not check():
            await asyncio.sleep(0.05)


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[TcpProxy]:
    tcp = TcpProxy(redis_server.port)
    await tcp.start()
    try:
        yield tcp
    finally:
        await tcp.stop()


def redis_app(url: str, prefix: str) -> object:
    return make_app(broadcaster=f"{url}?prefix={prefix}:&heartbeat=0.5")


@asynccontextmanager
async def two_workers(
    redis_server: RedisServer, proxy: TcpProxy, query: str
) -> AsyncIterator[tuple[LiveServer, LiveServer, Client, Client]]:
    """Worker A on Redis directly, worker B through ``proxy``; a client
    on each (alice on A, bob on B). ``query`` configures both backends.
    """
    async with (
        live(make_app(broadcaster=f"{redis_server.url}?{query}")) as sa,
        live(make_app(broadcaster=f"{proxy.url}?{query}")) as sb,
        sa.client(name="alice") as alice,
        sb.client(name="bob") as bob,
    ):
        yield sa, sb, alice, bob


@pytest.mark.slow
async def test_startup_fails_fast_naming_the_url_without_password() -> None:
    port = free_port()  # nothing listens there
    app = make_app(broadcaster=f"redis://:s3cret@127.0.0.1:{port}/0")
    with pytest.raises(BroadcasterUnavailable) as info:
        async with live(app):
            pass
    message = str(info.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message
    assert "s3cret" not in message


async def test_prefixes_keep_apps_on_one_redis_apart(
    redis_server: RedisServer,
) -> None:
    one = redis_app(redis_server.url, "one")
    two = redis_app(redis_server.url, "two")
    async with (
        live(one) as a,
        live(two) as b,
        a.client() as x,
        b.client() as y,
    ):
        await x.say("only in one")
        await y.nothing()
        assert await b.chat.history("lobby") == []


@pytest.mark.slow
async def test_two_processes_share_rooms_order_history_and_presence(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {
        "SANIC_CHAT_BROADCASTER_URL": redis_server.url + "?prefix=x:",
        "SANIC_CHAT_RATE_BURST": "100",
    }
    with (
        run_example(tmp_path / "a.log", "--allow-anonymous", **env) as port_a,
        run_example(tmp_path / "b.log", "--allow-anonymous", **env) as port_b,
    ):
        async with (
            remote(port_a).client(name="alice") as alice,
            remote(port_b).client(name="bob") as bob,
        ):
            await alice.find("joined", user=bob.user)  # across processes

            async def talk(client: object, who: str) -> None:
                for i in range(20):
                    await client.send(  # type: ignore[attr-defined]
                        {
                            "type": "message",
                            "room": "lobby",
                            "text": f"{who}{i}",
                        }
                    )

            await asyncio.gather(talk(alice, "a"), talk(bob, "b"))
            seen = []
            for client in (alice, bob):
                ids = []
                while len(ids) < 40:
                    frame = await client.recv()
                    if frame["type"] == "message":
                        ids.append((frame["id"], frame["text"]))
                seen.append(ids)
            assert seen[0] == seen[1], "workers disagree on order"
            await bob.send({"type": "history", "room": "lobby", "limit": 40})
            history = await bob.find("history")
            assert [(m["id"], m["text"]) for m in history["messages"]] == seen[
                0
            ]
            await alice.send({"type": "presence", "room": "lobby"})
            presence = await alice.find("presence")
            assert sorted(u["name"] for u in presence["users"]) == [
                "alice",
                "bob",
            ]


@pytest.mark.slow
@pytest.mark.logs_errors
async def test_redis_restart_keeps_clients_and_resumes_delivery(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        app = redis_app(redis.url, "restart")
        async with (
            live(app) as srv,
            srv.client() as alice,
            srv.client() as bob,
        ):
            last = (await alice.say("before"))["id"]
            await bob.find("message", id=last)
            redis.kill()
            await alice.send({"type": "message", "room": "lobby", "text": "x"})
            await alice.find("error", code="unavailable")
            await eventually(lambda: not srv.chat.healthy)
            assert srv.chat.connection_count == 2  # nobody was dropped
            redis.start()
            await eventually(lambda: srv.chat.healthy)
            await bob.find("resync", room="lobby")
            await alice.say("after")
            await bob.find("message", text="after")
            await bob.send({"type": "join", "room": "lobby", "since": last})
            await bob.find("joined", room="lobby", recovered=True)
            await bob.find("message", text="after")
    finally:
        redis.kill()


@pytest.mark.slow
async def test_worker_cut_off_from_redis_recovers_what_it_missed(
    redis_server: RedisServer, proxy: TcpProxy
) -> None:
    async with two_workers(
        redis_server, proxy, "prefix=cut:&heartbeat=0.5"
    ) as (_, sb, alice, bob):
        last = (await alice.say("before"))["id"]
        await bob.find("message", id=last)
        proxy.cut()
        await bob.send({"type": "message", "room": "lobby", "text": "lost"})
        await bob.find("error", code="unavailable")
        missed = [(await alice.say(f"missed {i}"))["id"] for i in range(3)]
        proxy.restore()
        await bob.find("resync", room="lobby")
        await bob.send({"type": "join", "room": "lobby", "since": last})
        await bob.find("joined", room="lobby", recovered=True)
        assert [(await bob.expect("message"))["id"] for _ in missed] == missed
        await alice.say("live again")
        await bob.find("message", text="live again")
        assert sb.chat.connection_count == 1


@pytest.mark.slow
@pytest.mark.logs_errors
async def test_a_deaf_worker_notices_reports_unhealthy_and_recovers(
    redis_server: RedisServer, proxy: TcpProxy
) -> None:
    async with two_workers(
        redis_server, proxy, "prefix=deaf:&heartbeat=0.5"
    ) as (_, sb, alice, bob):
        assert sb.chat.healthy
        proxy.deafen()  # connections stay up; nothing comes back
        await eventually(lambda: not sb.chat.healthy)
        await alice.say("while deaf")
        proxy.restore()
        await eventually(lambda: sb.chat.healthy)
        await bob.find("resync", room="lobby")
        await alice.say("heard again")
        await bob.find("message", text="heard again")


@pytest.mark.slow
async def test_a_crashed_workers_users_leave_presence(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    url = redis_server.url + "?prefix=crash:&presence_ttl=2"
    port, proc = spawn_example(
        tmp_path / "b.log", "--allow-anonymous", SANIC_CHAT_BROADCASTER_URL=url
    )
    try:
        with run_example(
            tmp_path / "a.log",
            "--allow-anonymous",
            SANIC_CHAT_BROADCASTER_URL=url,
        ) as port_a:
            async with remote(port_a).client(name="alice") as alice:
                ghost = await connect(f"ws://127.0.0.1:{port}/ws?name=ghost")
                await alice.find("joined")
                os.kill(proc.pid, signal.SIGKILL)  # no cleanup at all
                proc.wait(10)
                ghost.transport.abort()

                async def names() -> list[str]:
                    await alice.send({"type": "presence", "room": "lobby"})
                    frame = await alice.find("presence")
                    return sorted(u["name"] for u in frame["users"])

                assert await names() == ["alice", "ghost"]
                async with asyncio.timeout(TIMEOUT * 2):
                    while await names() != ["alice"]:
                        await asyncio.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _health(port: int) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.slow
@pytest.mark.logs_errors
async def test_health_reports_a_worker_without_redis_as_not_ready(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        url = redis.url + "?prefix=health:&heartbeat=0.5"
        with run_example(
            tmp_path / "a.log", SANIC_CHAT_BROADCASTER_URL=url
        ) as port:
            assert (await asyncio.to_thread(_health, port))[0] == 200
            redis.kill()
            async with asyncio.timeout(TIMEOUT * 2):
                while (status := await asyncio.to_thread(_health, port))[
                    0
                ] != 503:
                    await asyncio.sleep(0.2)
            assert status[1]["broadcaster"] == "down"
            redis.start()
            async with asyncio.timeout(TIMEOUT * 2):
                while (await asyncio.to_thread(_health, port))[0] != 200:
                    await asyncio.sleep(0.2)
    finally:
        redis.kill()


@pytest.mark.slow
async def test_memory_broadcaster_warns_with_several_workers(
    tmp_path: Path,
) -> None:
    log = tmp_path / "workers.log"
    _, proc = await asyncio.to_thread(spawn_example, log, "--workers", "2")
    await stop_once_workers_are_ready(log, proc, 2)
    assert "rooms are NOT shared between workers" in log.read_text()


async def test_one_chat_message_costs_one_redis_round_trip(
    redis_server: RedisServer,
) -> None:
    """Measured, not assumed: Redis counts the commands it served."""
    import redis.asyncio as aioredis

    app = make_app(broadcaster=f"{redis_server.url}?prefix=cost:&heartbeat=60")
    counter = aioredis.from_url(redis_server.url)
    try:
        async with live(app) as srv, srv.client() as a, srv.client() as b:
            await a.find("joined", user=b.user)
            await counter.config_resetstat()
            for i in range(20):
                await a.send(
                    {"type": "message", "room": "lobby", "text": f"m{i}"}
                )
            for client in (a, b):
                await client.find("message", text="m19")
            stats = await counter.info("commandstats")
    finally:
        await counter.aclose()
    served = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
    assert served.pop("evalsha") == 20  # the message's one round trip
    # Inside the script, not extra round trips: stream append, TTL, publish.
    assert (
        served.pop("xadd"),
        served.pop("expire"),
        served.pop("publish"),
    ) == (
        20,
        20,
        20,
    )
    served.pop("config|resetstat")  # the counter's own command
    assert served == {}, f"other commands on the message path: {served}"


async def test_malformed_messages_on_our_channels_are_ignored(
    redis_server: RedisServer,
) -> None:
    import redis.asyncio as aioredis

    app = redis_app(redis_server.url, "junk")
    intruder = aioredis.from_url(redis_server.url)
    try:
        async with live(app) as srv, srv.client() as alice:
            for junk in (b"\xff\xfe", b"no separators", b""):
                await intruder.publish("junk:room:lobby", junk)
            await alice.say("still delivered")
            assert srv.chat.healthy
    finally:
        await intruder.aclose()


@pytest.mark.slow
async def test_startup_fails_fast_when_redis_refuses_subscriptions(
    redis_server: RedisServer,
) -> None:
    import redis.asyncio as aioredis

    admin = aioredis.from_url(redis_server.url)
    try:
        await admin.execute_command(
            "ACL", "SETUSER", "nochan", "on", ">pw", "~*", "+@all",
            "resetchannels",
        )  # fmt: skip
    finally:
        await admin.aclose()
    url = f"redis://nochan:pw@127.0.0.1:{redis_server.port}/0?timeout=0.5"
    with pytest.raises(BroadcasterUnavailable, match=r"nochan:\*\*\*@"):
        async with asyncio.timeout(5), live(make_app(broadcaster=url)):
            pass


@pytest.mark.slow
@pytest.mark.logs_errors
async def test_presence_comes_back_after_a_partition_longer_than_its_ttl(
    redis_server: RedisServer, proxy: TcpProxy
) -> None:
    async with two_workers(
        redis_server, proxy, "prefix=part:&presence_ttl=1"
    ) as (_, _, alice, _):

        async def names() -> list[str]:
            await alice.send({"type": "presence", "room": "lobby"})
            frame = await alice.find("presence")
            return sorted(u["name"] for u in frame["users"])

        assert await names() == ["alice", "bob"]
        proxy.cut()
        async with asyncio.timeout(TIMEOUT):
            while await names() != ["alice"]:  # bob's worker looks dead
                await asyncio.sleep(0.3)
        proxy.restore()
        async with asyncio.timeout(TIMEOUT * 2):
            while await names() != ["alice", "bob"]:  # and is back
                await asyncio.sleep(0.3)
