"""Slow consumers, shutdown, isolation between apps, and task hygiene."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

import sanic_chat

from .conftest import TIMEOUT, Client, live, make_app

BIG = "x" * 4000


async def _close_code(client: Client) -> int | None:
    """Read until the server closes; return the close code it sent."""
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(TIMEOUT * 2):
            while True:
                await client.ws.recv()
    return info.value.rcvd.code if info.value.rcvd else None


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
            assert await _close_code(slow) == 1013


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


async def test_shutdown_closes_every_socket_with_1001() -> None:
    app = make_app()
    stopped = False
    async with live(app) as srv:
        async with srv.client() as a, srv.client(room="dev") as b:
            codes = asyncio.gather(_close_code(a), _close_code(b))
            # Leaving the ``live`` block stops the server.
            await srv.stop()
            stopped = True
            assert await codes == [1001, 1001]
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
