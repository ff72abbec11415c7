"""Slow consumers, shutdown, isolation between apps, and task hygiene."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
from typing import Any

import pytest

import sanic_chat
from sanic_chat.protocol import message_payload

from .conftest import TIMEOUT, live, make_app, new_app

# The whole protocol suite runs against every built-in backend.
pytestmark = pytest.mark.usefixtures("backend", "transport")

# Incompressible: ASGI servers negotiate permessage-deflate, which would
# shrink a run of one letter to a few bytes and never fill a socket.
BIG = base64.b64encode(os.urandom(3000)).decode()


@pytest.mark.slow
async def test_slow_consumer_is_closed_with_1013_while_others_keep_up() -> (
    None
):
    async with live(make_app(send_queue_size=10)) as srv:
        async with srv.client() as fast, srv.client(max_queue=1) as slow:
            await fast.expect("joined", user=slow.user)
            chat = srv.chat
            # Flood, at the pace of the reading client, until the server
            # gives up on the client that never reads.
            sent = 0
            while chat.connection_count == 2 and sent < 20_000:
                message_id = await chat.publish("lobby", BIG)
                sent += 1
                await fast.expect("message", id=message_id)
            assert chat.connection_count == 1, "slow consumer was not closed"
            assert srv.chat.room_sizes() == {"lobby": 1}
            last = await chat.publish("lobby", "after")
            await fast.until(lambda f: f.get("id") == last)
            assert await slow.close_code() == 1013


@pytest.mark.slow
async def test_drop_oldest_tells_the_client_how_much_it_lagged() -> None:
    app = make_app(send_queue_size=10, slow_consumer="drop_oldest")
    async with live(app) as srv, srv.client(max_queue=1) as slow:
        chat = srv.chat
        for _ in range(3000):
            await chat.publish("lobby", BIG)
        last = await chat.publish("lobby", "the end")
        lagged = 0
        async with asyncio.timeout(TIMEOUT * 2):
            while True:
                frame = await slow.recv()
                if frame["type"] == "lagged":
                    assert frame["room"] == "lobby"
                    lagged += frame["skipped"]
                elif frame.get("id") == last:
                    break
        assert lagged > 0
        assert chat.connection_count == 1
        await slow.say("still connected")


async def test_shutdown_closes_every_socket_with_1012() -> None:
    # Closes at once: the spread over time is tested below.
    app = make_app(shutdown_spread=0)
    stopped = False
    async with live(app) as srv:
        async with srv.client() as a, srv.client(room="dev") as b:
            codes = asyncio.gather(a.close_code(), b.close_code())
            # Leaving the ``live`` block stops the server.
            await srv.stop()
            stopped = True
            assert await codes == [1012, 1012]
    assert stopped


async def test_two_apps_in_one_process_share_nothing() -> None:
    async with live(make_app()) as one, live(make_app()) as two:
        assert one.chat is not two.chat
        assert one.chat.broadcaster is not two.chat.broadcaster
        async with one.client() as a, two.client() as b:
            await a.say("only in one")
            await b.nothing()
            assert [m["text"] for m in await one.chat.history("lobby")] == [
                "only in one"
            ]
            assert await two.chat.history("lobby") == []


async def test_one_blueprint_serves_several_apps_on_the_fast_path() -> None:
    """README: register it on as many apps as you like."""
    blueprint = sanic_chat.create_blueprint()
    apps = [new_app(), new_app()]
    for app in apps:
        app.blueprint(blueprint)
    async with live(apps[0]) as one, live(apps[1]) as two:
        async with one.client() as a, two.client() as b:
            await a.say("in one")
            await b.say("in two")
            await b.nothing()
        assert [m["text"] for m in await two.chat.history("lobby")] == [
            "in two"
        ]


async def test_no_task_outlives_its_connections() -> None:
    async with live(make_app()) as srv:
        baseline = asyncio.all_tasks()
        clients = [srv.client(room=["lobby", f"r{i % 2}"]) for i in range(6)]
        entered = [await c.__aenter__() for c in clients]
        await entered[0].say("hello")
        await entered[1].send({"type": "join", "room": "extra"})
        assert srv.chat.connection_count == 6
        # Half leave politely, half vanish without a close handshake.
        for i, (cm, client) in enumerate(zip(clients, entered)):
            if i % 2:
                client.ws.transport.abort()
            await cm.__aexit__(None, None, None)
        async with asyncio.timeout(TIMEOUT):
            while srv.chat.connection_count or asyncio.all_tasks() - baseline:
                await asyncio.sleep(0.02)
        assert srv.chat.room_sizes() == {}
        leftover = asyncio.all_tasks() - baseline
        assert not leftover, leftover


def test_get_chat_names_the_missing_blueprint() -> None:
    app = make_app()
    with pytest.raises(LookupError, match="other"):
        sanic_chat.get_chat(app, "other")


@pytest.mark.slow
async def test_drop_oldest_never_drops_replies() -> None:
    app = make_app(send_queue_size=10, slow_consumer="drop_oldest")
    async with live(app) as srv, srv.client(max_queue=1) as slow:
        await slow.send(
            {"type": "message", "room": "lobby", "text": "mine", "ref": "r1"}
        )
        await slow.send({"type": "ping"})
        for _ in range(2000):
            await srv.chat.publish("lobby", BIG)
        kinds = set()
        async with asyncio.timeout(TIMEOUT * 2):
            while not {"ack", "pong", "lagged"} <= kinds:
                kinds.add((await slow.recv())["type"])
        assert srv.chat.connection_count == 1


@pytest.mark.slow
async def test_a_client_that_stops_reading_is_closed_after_send_timeout() -> (
    None
):
    app = make_app(slow_consumer="drop_oldest", send_timeout=1.0)
    async with live(app) as srv, srv.client(max_queue=1) as stuck:
        stuck.ws.transport.pause_reading()
        # A small window: loopback buffers (up to 32 MiB) could otherwise
        # take everything a transport that writes from a task sends.
        sock = stuck.ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for i in range(3000):
            await srv.chat.publish("lobby", BIG)
            if i % 100 == 0:
                await asyncio.sleep(0)
        async with asyncio.timeout(TIMEOUT):
            while srv.chat.connection_count:
                # Until the socket is full, whatever the kernel buffers: a
                # transport that writes from a task fills them later.
                for _ in range(100):
                    await srv.chat.publish("lobby", BIG)
                await asyncio.sleep(0.05)
        assert srv.chat.room_sizes() == {}
        stuck.ws.transport.abort()  # it would never read the close frame


class FloodDuringHistory(sanic_chat.MemoryBroadcaster):
    """A real memory backend whose history read is slow while the room is
    busy: 150 messages are published (and fanned out) before it answers.
    """

    async def history(self, channel, *, limit, after=None):  # type: ignore[no-untyped-def]
        page = await super().history(channel, limit=limit, after=after)
        if after is not None:
            user = {"id": "bot", "name": "bot"}
            for i in range(150):
                await self.publish(
                    channel, message_payload(channel, user, f"m{i}", 0)
                )
            await asyncio.sleep(0.05)
        return page


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["drop_oldest", "close"])
async def test_a_join_that_falls_behind_follows_the_policy(
    policy: str,
) -> None:
    """Live events held back during a replay are bounded like the outbox."""
    app = new_app()
    app.blueprint(
        sanic_chat.create_blueprint(
            broadcaster=FloodDuringHistory(),
            send_queue_size=10,
            slow_consumer=policy,
        )
    )
    async with (
        live(app) as srv,
        srv.client() as bob,
        srv.client(room="elsewhere") as alice,
    ):
        first = (await bob.say("first"))["id"]
        await alice.send({"type": "join", "room": "lobby", "since": first})
        if policy == "close":
            assert await alice.close_code() == 1013
            return
        await alice.expect("joined", recovered=True)
        lagged = await alice.expect("lagged", room="lobby")
        assert lagged["skipped"] == 140
        texts = [(await alice.expect("message"))["text"] for _ in range(10)]
        assert texts == [f"m{i}" for i in range(140, 150)]
        assert srv.chat.connection_count == 2


@pytest.mark.slow
@pytest.mark.transports("sanic", "sanic-portable")
async def test_keepalive_pings_close_a_silent_client_and_keep_the_rest() -> (
    None
):
    app = make_app(send_timeout=1.0)  # the watchdog sweeps every 0.5 s
    app.config.WEBSOCKET_PING_INTERVAL = 0.5
    app.config.WEBSOCKET_PING_TIMEOUT = 1.0
    async with live(app) as srv, srv.client() as alive, srv.client() as gone:
        gone.ws.transport.pause_reading()  # it will never answer a ping
        async with asyncio.timeout(TIMEOUT):
            while srv.chat.connection_count == 2:
                await asyncio.sleep(0.1)
        # The client that answers pings (websockets does) stays connected.
        await asyncio.sleep(1.5)
        assert srv.chat.connection_count == 1
        await alive.say("still here")
        gone.ws.transport.abort()


@pytest.mark.transports("sanic", "sanic-portable")
async def test_shutdown_spreads_closes_over_time_in_random_order() -> None:
    app = make_app(shutdown_spread=0.5)
    async with live(app) as srv, contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(srv.client()) for _ in range(20)
        ]
        loop = asyncio.get_running_loop()

        async def closed_at(client: Any) -> float:
            await client.close_code()
            return loop.time()

        times = asyncio.gather(*(closed_at(c) for c in clients))
        started = loop.time()
        await srv.stop()
        spread = [t - started for t in await times]
        assert max(spread) - min(spread) >= 0.3  # not all at once
        assert max(spread) < 0.5 + 2.0  # within the spread (and slack)
        codes = {c.ws.close_code for c in clients}
        assert codes == {1012}


async def test_connections_are_logged_without_tokens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from .test_auth import jwt_app, token

    caplog.set_level(logging.DEBUG, logger="sanic_chat.connections")
    secret = token("u1", "Alice")
    async with live(jwt_app()) as srv:
        async with srv.client(token=secret) as alice:
            await alice.say("hi")
        async with asyncio.timeout(TIMEOUT):
            while not any("close" in r.message for r in caplog.records):
                await asyncio.sleep(0.05)
    records = [r for r in caplog.records if r.name == "sanic_chat.connections"]
    events = [r.chat_event for r in records]  # type: ignore[attr-defined]
    assert events == ["open", "close"]
    close = records[1]
    assert close.user_id == "u1"  # type: ignore[attr-defined]
    assert close.close_code == 1000  # type: ignore[attr-defined]
    assert close.closed_by == "client"  # type: ignore[attr-defined]
    assert close.levelno == logging.DEBUG  # an ordinary close
    assert all(secret not in r.getMessage() for r in caplog.records)


async def test_at_info_only_closes_an_operator_should_see_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from websockets.exceptions import ConnectionClosed

    from .conftest import make_app

    caplog.set_level(logging.INFO, logger="sanic_chat.connections")
    app = make_app(rate_limit=5, rate_burst=5, rate_limit_strikes=10)
    async with live(app) as srv:
        async with srv.client() as calm:
            await calm.say("hi")
        async with srv.client() as flood:
            for i in range(40):
                await flood.send({"type": "ping", "n": i})
            with pytest.raises(ConnectionClosed):
                while True:
                    await flood.recv()
        async with asyncio.timeout(TIMEOUT):
            while not caplog.records:
                await asyncio.sleep(0.05)
    records = [r for r in caplog.records if r.name == "sanic_chat.connections"]
    # No open line, no ordinary close: the policy close (1008) alone.
    assert [(r.chat_event, r.close_code) for r in records] == [  # type: ignore[attr-defined]
        ("close", 1008)
    ]
    assert records[0].levelno == logging.INFO
