"""Memory held for clients that do not read is bounded in bytes.

One ``history`` reply of large messages is hundreds of KiB; a client
that keeps asking and never reads used to make the server queue up to a
hundred of them. Now every connection is bounded by ``max_unsent_bytes``
(its queues plus its socket's buffer), history answers are cut to a
quarter of it, replies are charged to the rate limit by size, and the
worker's total is bounded by ``max_worker_unsent_bytes`` (503 for new
upgrades and HTTP history reads while it is exceeded).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from sanic_chat.limits import TokenBucket

from .conftest import (
    TIMEOUT,
    UNLIMITED,
    Client,
    LiveServer,
    live,
    make_app,
    remote,
    run_example,
)

BIG = "😀" * 4000  # the longest text by default: 16 KB of UTF-8
MIB = 1 << 20


def rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def example_pid(port: int) -> int:
    """The pid of the process listening on ``port`` (the example app)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            inode = fields[9]
    assert inode is not None
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if fd.readlink().name == f"socket:[{inode}]":
                return int(fd.parts[2])
        except OSError:
            continue
    raise AssertionError("no process listens on the port")


@asynccontextmanager
async def stalled(url: str, port: int) -> AsyncIterator[ClientConnection]:
    """A client that reads its welcome, then never reads again.

    Its receive buffer is small, so the server feels it soon.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    async with connect(
        url, sock=sock, open_timeout=TIMEOUT, close_timeout=0.1
    ) as ws:
        await Client(ws).expect("welcome")
        ws.transport.pause_reading()
        try:
            yield ws
        finally:
            ws.transport.abort()


async def fill_history(srv: LiveServer, room: str, n: int, text: str) -> None:
    for _ in range(n):
        await srv.chat.publish(room, text)


@pytest.mark.slow
async def test_clients_that_never_read_cannot_grow_the_server(
    tmp_path: Path,
) -> None:
    """The attack from the review, against the example app as users run it.

    Rate limits are lifted so that only the byte bounds hold. Ten guest
    sockets that never read each ask 300 times for the largest history
    (100 messages of 4000 emoji, about 1.6 MB before the cut), and thirty
    HTTP clients that never read ask for it over the HTTP API.
    """
    env = {
        "SANIC_CHAT_RATE_LIMIT": "100000",
        "SANIC_CHAT_RATE_BURST": "100000",
    }
    with run_example(tmp_path / "app.log", "--allow-anonymous", **env) as port:
        srv = remote(port)
        async with srv.client() as writer:
            for _ in range(100):
                await writer.send(
                    {"type": "message", "room": "lobby", "text": BIG}
                )
            for _ in range(100):
                await writer.find("message")
        pid = example_pid(port)
        before = rss(pid)
        request = json.dumps({"type": "history", "room": "lobby"})
        async with AsyncExitStack() as stack:
            sockets = [
                await stack.enter_async_context(stalled(srv.url(), port))
                for _ in range(10)
            ]
            for ws in sockets:
                for _ in range(300):
                    await ws.send(request)
            http = [
                socket.create_connection(("127.0.0.1", port))
                for _ in range(30)
            ]
            for conn in http:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                conn.sendall(
                    b"GET /api/rooms/lobby/history?limit=100 HTTP/1.1\r\n"
                    b"Host: x\r\n\r\n" * 20
                )
            await asyncio.sleep(4)
            grown = rss(pid) - before
            for conn in http:
                conn.close()
        # Documented bound: max_unsent_bytes plus the inbox (1 MiB each)
        # per socket, a quarter of max_unsent_bytes per HTTP answer being
        # written; the rest is allocator slack.
        assert grown < 10 * 2 * MIB + 30 * MIB // 4 + 16 * MIB, grown / MIB
        async with srv.client() as bystander:
            await bystander.say("still serving")


async def test_history_is_cut_to_fit_and_pages_back_with_before(
    backend: str,
) -> None:
    app = make_app(max_unsent_bytes=65536, **UNLIMITED)
    async with live(app) as srv, srv.client() as alice:
        texts = [f"{i:02d}" + "é" * 1500 for i in range(20)]  # ~3 KB each
        for text in texts:
            await srv.chat.publish("lobby", text)
        seen: list[str] = []
        before = None
        while True:
            request: dict[str, Any] = {"type": "history", "room": "lobby"}
            if before is not None:
                request["before"] = before
            await alice.send(request)
            frame = await alice.find("history")
            size = sum(
                len(json.dumps(m, ensure_ascii=False).encode())
                for m in frame["messages"]
            )
            assert size <= 65536 // 4
            seen = [m["text"] for m in frame["messages"]] + seen
            if not frame.get("truncated"):
                break
            assert frame["messages"], frame
            before = frame["messages"][0]["id"]
        assert seen == texts
        await alice.send({"type": "history", "room": "lobby", "before": "x"})
        await alice.find("error", code="not_found")


@pytest.mark.slow
async def test_large_replies_slow_the_client_down_but_never_fail_it() -> None:
    app = make_app(rate_limit=20, rate_burst=20)
    async with live(app) as srv:
        await fill_history(srv, "lobby", 100, BIG)
        async with srv.client() as reader:
            started = time.monotonic()
            for _ in range(10):
                await reader.send({"type": "history", "room": "lobby"})
            for _ in range(10):
                frame = await reader.find("history")
                assert frame["truncated"] is True
            # Each answer of about 256 KiB costs 3 tokens more (one per 64
            # KiB started after the first), paid by waiting: the 10th
            # request needs 37 tokens of a burst of 20, refilled at 20/s.
            assert time.monotonic() - started >= 0.8
            assert reader.ws.close_code is None


def test_a_charge_is_paid_by_waiting_not_by_strikes() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    assert bucket.take(1)
    bucket.charge(8)  # 4 left: 4 of debt
    assert bucket.strikes == 0
    assert 0.45 < bucket.delay() <= 0.5  # until one token is back
    bucket.charge(100)  # the debt is capped at one burst
    assert 0.55 < bucket.delay() <= 0.6
    assert not bucket.take(1)
    assert bucket.strikes == 1


async def fill_worker_budget(srv: LiveServer, limit: int) -> AsyncExitStack:
    """Four clients that never read, asking until the worker is full."""
    await fill_history(srv, "lobby", 20, "é" * 4000)  # 8 KB each
    request = json.dumps({"type": "history", "room": "lobby"})
    stack = AsyncExitStack()
    sockets = [
        await stack.enter_async_context(stalled(srv.url(), srv.port))
        for _ in range(4)
    ]
    async with asyncio.timeout(20):
        while srv.chat.metrics_snapshot()["unsent_bytes"] < limit:
            for ws in sockets:
                for _ in range(20):
                    await ws.send(request)
            await asyncio.sleep(0.05)
    return stack


@pytest.mark.slow
async def test_a_worker_over_its_unsent_budget_refuses_new_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Here the stalled clients are not shed (the next test is about that),
    # so the worker stays over its budget as long as they are connected.
    monkeypatch.setattr("sanic_chat.hub._SHED_AFTER", 3600.0)
    limit = 65536
    app = make_app(
        max_unsent_bytes=limit, max_worker_unsent_bytes=limit, **UNLIMITED
    )
    async with live(app) as srv:
        async with await fill_worker_budget(srv, limit):
            with pytest.raises(InvalidStatus) as info:
                async with connect(srv.url(), open_timeout=TIMEOUT):
                    pass
            assert info.value.response.status_code == 503
            assert info.value.response.headers["Retry-After"] == "5"
            status = await asyncio.to_thread(
                http_status, srv, "/api/rooms/lobby/history"
            )
            assert status == 503
            # Not ready: a load balancer sends new clients elsewhere.
            status = await asyncio.to_thread(http_status, srv, "/api/health")
            assert status == 503
        # The stalled clients are gone: their bytes are released.
        async with asyncio.timeout(TIMEOUT):
            while srv.chat.metrics_snapshot()["unsent_bytes"]:
                await asyncio.sleep(0.1)
        async with srv.client() as newcomer:
            await newcomer.say("in again")
        status = await asyncio.to_thread(
            http_status, srv, "/api/rooms/lobby/history"
        )
        assert status == 200


@pytest.mark.slow
async def test_over_budget_the_clients_that_stopped_reading_are_shed() -> None:
    """Nobody can keep a worker refusing everyone by not reading."""
    limit = 65536
    app = make_app(
        max_unsent_bytes=limit, max_worker_unsent_bytes=limit, **UNLIMITED
    )
    async with live(app) as srv, srv.client() as reader:
        async with await fill_worker_budget(srv, limit):
            # Within seconds, not the 30 s send timeout, the hogs are
            # dropped and the worker takes new clients again; the client
            # that reads is untouched.
            async with asyncio.timeout(TIMEOUT):
                while srv.chat.connection_count > 1:
                    await asyncio.sleep(0.1)
            async with srv.client() as newcomer:
                await newcomer.say("in again")
            await reader.find("message", text="in again")
        snapshot = srv.chat.metrics_snapshot()
        assert snapshot["slow_consumer_disconnects"] >= 1


def http_status(srv: LiveServer, path: str) -> int:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{srv.port}{path}", timeout=TIMEOUT
        ) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.slow
async def test_a_client_that_stops_reading_its_replies_is_timed_out() -> None:
    """Replies sitting in the socket's buffer count as a stuck send too,
    even when nothing is queued and the server stopped reading the client.
    """
    app = make_app(max_unsent_bytes=65536, send_timeout=1.0, **UNLIMITED)
    async with live(app) as srv:
        await fill_history(srv, "lobby", 20, "é" * 4000)
        request = json.dumps({"type": "history", "room": "lobby"})
        async with stalled(srv.url(), srv.port) as ws:
            for _ in range(400):
                await ws.send(request)
            async with asyncio.timeout(TIMEOUT):
                while srv.chat.connection_count:
                    await asyncio.sleep(0.1)
        assert srv.chat.metrics_snapshot()["slow_consumer_disconnects"] == 1
