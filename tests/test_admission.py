"""Admission control: a worker busy setting up connections slows new ones.

Connections stay *in setup* here because the room check (``can_join``)
waits until the test lets them through.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from sanic_chat.admission import Admission
from sanic_chat.identity import User

from .conftest import TIMEOUT, LiveServer, live, make_app, until


def gated_app(**options: object) -> tuple[object, asyncio.Event]:
    """An app whose connections stay in setup until the event is set."""
    gate = asyncio.Event()

    async def can_join(user: User, room: str) -> bool:
        await gate.wait()
        return True

    return make_app(can_join=can_join, **options), gate


async def joined(srv: LiveServer) -> ClientConnection:
    """Connect; return once ``welcome`` and ``joined`` have arrived."""
    ws = await connect(srv.url(), open_timeout=TIMEOUT * 2)
    for kind in ("welcome", "joined"):
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert frame["type"] == kind, frame
    return ws


async def test_a_busy_worker_refuses_new_upgrades_with_503() -> None:
    app, gate = gated_app(max_connections_in_setup=1, setup_wait=0)
    async with live(app) as srv:  # type: ignore[arg-type]
        first = asyncio.create_task(joined(srv))
        await asyncio.sleep(0.2)  # upgraded, waiting in can_join
        with pytest.raises(InvalidStatus) as info:
            await connect(srv.url(), open_timeout=TIMEOUT)
        response = info.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert b'"overloaded"' in response.body
        gate.set()
        ws = await asyncio.wait_for(first, TIMEOUT)  # joined
        async with srv.client():  # set up: the next one gets in
            pass
        await ws.close()
        assert srv.chat.metrics.auth_failures == {"overloaded": 1}


async def test_a_busy_worker_slows_upgrades_but_accepts_them() -> None:
    app, gate = gated_app(max_connections_in_setup=2, setup_wait=10)
    async with live(app) as srv:  # type: ignore[arg-type]
        admission = srv.chat.admission
        clients = [asyncio.create_task(joined(srv)) for _ in range(2)]
        await until(lambda: admission.in_setup == 2)
        # Two in setup: these wait before their 101, not refused.
        clients += [asyncio.create_task(joined(srv)) for _ in range(4)]
        await until(lambda: len(admission._waiters) == 4)
        assert admission.in_setup == 2
        assert srv.chat.connection_count == 2
        gate.set()
        sockets = await asyncio.wait_for(asyncio.gather(*clients), TIMEOUT)
        assert srv.chat.connection_count == 6
        assert srv.chat.admission.in_setup == 0
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_a_connection_ending_in_setup_frees_its_slot() -> None:
    app, gate = gated_app(max_connections_in_setup=1, setup_wait=0)
    async with live(app) as srv:  # type: ignore[arg-type]
        ws = await connect(srv.url(), open_timeout=TIMEOUT)
        await asyncio.sleep(0.2)
        assert srv.chat.admission.in_setup == 1
        ws.transport.abort()
        async with asyncio.timeout(TIMEOUT):
            while srv.chat.admission.in_setup:
                await asyncio.sleep(0.05)
        gate.set()
        async with srv.client():
            pass


async def test_slots_go_to_waiters_first_come_first_served() -> None:
    admission = Admission(limit=1, wait=5)
    order: list[int] = []

    async def setup(i: int, hold: asyncio.Event) -> None:
        assert await admission.admit()
        order.append(i)
        await hold.wait()
        admission.release()

    holds = [asyncio.Event() for _ in range(3)]
    tasks = []
    for i, hold in enumerate(holds):
        tasks.append(asyncio.create_task(setup(i, hold)))
        await asyncio.sleep(0.01)
    assert order == [0] and admission.in_setup == 1
    for hold in holds:
        hold.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert admission.in_setup == 0


async def test_a_waiter_that_times_out_is_refused_and_queues_no_more() -> None:
    admission = Admission(limit=1, wait=0.1)
    hold = asyncio.Event()

    async def holder() -> None:
        assert await admission.admit()
        await hold.wait()

    task = asyncio.create_task(holder())
    await asyncio.sleep(0)
    assert not await admission.admit()  # waited 0.1 s, refused
    hold.set()
    await task  # the slot comes back when the task ends
    assert await asyncio.create_task(admission.admit())
    await asyncio.sleep(0)  # that task ended: its slot came back
    assert admission.in_setup == 0


async def test_a_client_that_does_not_read_its_replay_holds_no_slot() -> None:
    """Waiting for a client to read is not setup work: the slot goes back.

    The replay of a recovery is larger than the socket buffers can take,
    so it waits for a client that never reads; a second client must still
    be admitted at once.
    """
    import socket

    app = make_app(
        max_connections_in_setup=1,
        setup_wait=0,
        history_size=500,
        rate_limit=10_000.0,
        rate_burst=10_000,
    )
    async with live(app) as srv:
        first = await srv.chat.publish("lobby", "first")
        for _ in range(400):  # 6.4 MB: more than any socket buffer
            await srv.chat.publish("lobby", "😀" * 4000)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", srv.port))
        stalled = await connect(
            srv.url(room=f"lobby@{first}"), sock=sock, close_timeout=0.1
        )
        stalled.transport.pause_reading()
        try:
            async with asyncio.timeout(TIMEOUT):
                while srv.chat.admission.in_setup:
                    await asyncio.sleep(0.05)
            async with srv.client(room="other") as newcomer:
                await newcomer.say("admitted", room="other")
        finally:
            stalled.transport.abort()
