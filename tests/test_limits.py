"""Limits against hostile clients: none of them lets one degrade others."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sanic_chat import TokenAuthenticator, User

from .conftest import UNLIMITED, live, make_app

pytestmark = pytest.mark.usefixtures("backend", "transport")


async def test_flooding_gets_rate_limited_then_closed_and_others_are_fine() -> (
    None
):
    app = make_app(rate_limit=5, rate_burst=5, rate_limit_strikes=10)
    async with live(app) as srv, srv.client() as flood, srv.client() as calm:
        for i in range(40):
            await flood.send({"type": "ping", "n": i})
        frames = []
        with pytest.raises(ConnectionClosed):
            while True:
                frames.append(await flood.recv())
        kinds = [f["type"] for f in frames]
        assert kinds.count("pong") == 5  # the burst was served
        assert "rate_limited" in {f.get("code") for f in frames}
        assert flood.ws.close_code == 1008
        await calm.say("unaffected")


async def test_join_leave_churn_costs_more() -> None:
    app = make_app(rate_limit=1, rate_burst=10, churn_cost=5)
    async with live(app) as srv, srv.client() as churner:
        await churner.send({"type": "join", "room": "a"})
        await churner.find("joined", room="a")
        await churner.send({"type": "leave", "room": "a"})
        await churner.find("left", room="a")
        await churner.send({"type": "join", "room": "a"})
        await churner.find("error", code="rate_limited")


async def test_connections_per_user_are_limited_before_the_upgrade() -> None:
    alice = User("a", "Alice")
    auth = TokenAuthenticator({"t": alice})
    app = make_app(authenticator=auth, max_connections_per_user=2)
    async with live(app) as srv:
        async with srv.client(token="t"), srv.client(token="t"):
            with pytest.raises(InvalidStatus) as info:
                async with srv.client(token="t"):
                    pass
            assert info.value.response.status_code == 429
        async with srv.client(token="t"):  # freed again
            pass


async def test_concurrent_upgrades_cannot_bypass_the_per_user_limit() -> None:
    auth = TokenAuthenticator({"t": User("a", "Alice")})
    app = make_app(authenticator=auth, max_connections_per_user=2)
    async with live(app) as srv:
        attempts = await asyncio.gather(
            *(connect(srv.url(token="t")) for _ in range(20)),
            return_exceptions=True,
        )
        opened = [ws for ws in attempts if not isinstance(ws, BaseException)]
        refused = [e for e in attempts if isinstance(e, InvalidStatus)]
        assert len(opened) == 2 and len(refused) == 18
        assert {e.response.status_code for e in refused} == {429}
        await asyncio.gather(*(ws.close() for ws in opened))


@pytest.mark.slow
async def test_an_occasionally_limited_client_is_not_disconnected() -> None:
    app = make_app(rate_limit=10, rate_burst=2, rate_limit_strikes=3)
    async with live(app) as srv, srv.client() as eager:
        limited = 0
        for _ in range(30):  # ~15/s against a limit of 10/s
            await eager.send({"type": "ping"})
            frame = await eager.recv()
            limited += frame.get("code") == "rate_limited"
            await asyncio.sleep(1 / 15)
        assert limited >= 3  # more refusals than strikes, never in a row
        assert eager.ws.close_code is None


@pytest.mark.transports("sanic")
async def test_a_ping_flood_is_closed_and_bystanders_keep_their_latency() -> (
    None
):
    """Control frames are charged to the rate limit like messages."""
    async with live(make_app()) as srv, srv.client() as calm:
        async with connect(srv.url(), close_timeout=1) as flood:
            for _ in range(5000):
                flood.protocol.send_ping(b"")
            flood.send_data()
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        await flood.recv()
            assert flood.close_code == 1008
            assert flood.protocol.close_rcvd is not None
            assert "control frames" in flood.protocol.close_rcvd.reason
        await calm.say("unaffected")


@pytest.mark.transports("sanic")
async def test_endless_empty_continuation_frames_are_refused() -> None:
    async with live(make_app()) as srv, srv.client() as calm:
        async with connect(srv.url(), close_timeout=1) as sneaky:
            sneaky.protocol.send_text(b"{", fin=False)
            for _ in range(10_000):
                sneaky.protocol.send_continuation(b"", fin=False)
            sneaky.send_data()
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(5):
                    while True:
                        await sneaky.recv()
            assert sneaky.close_code == 1008
        await calm.say("unaffected")


async def test_a_message_in_a_few_fragments_is_still_taken() -> None:
    async with live(make_app()) as srv, srv.client() as alice:
        await alice.ws.send(["hello ", "in ", "pieces"])
        frame = await alice.find("message")
        assert frame["text"] == "hello in pieces"


@pytest.mark.slow
@pytest.mark.transports("sanic")
async def test_keepalive_does_not_close_a_client_whose_requests_queue_up() -> (
    None
):
    """While the server does not read (its inbox is full), a pong cannot
    arrive: that is no reason to close a client that reads everything.
    """

    async def slow_publish(user: User, room: str) -> bool:
        await asyncio.sleep(0.05)
        return True

    app = make_app(send_timeout=1.0, can_publish=slow_publish, **UNLIMITED)
    app.config.WEBSOCKET_PING_INTERVAL = 0.3
    app.config.WEBSOCKET_PING_TIMEOUT = 0.3
    async with live(app) as srv, srv.client() as busy:
        for i in range(60):  # three seconds of work, sent at once
            await busy.send(
                {"type": "message", "room": "lobby", "text": f"m{i}"}
            )
        for i in range(60):
            frame = await busy.find("message")
            assert frame["text"] == f"m{i}"
        assert busy.ws.close_code is None


def _raw_upgrade(port: int) -> socket.socket:
    """A hand-made WebSocket connection: send any bytes, count replies."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.transports("sanic")
@pytest.mark.parametrize(
    "flood",
    [
        b"\x89\x80\x00\x00\x00\x00" * 40_000,  # empty pings
        # one message in endless empty fragments
        b"\x01\x81\x00\x00\x00\x00{" + b"\x00\x80\x00\x00\x00\x00" * 40_000,
    ],
    ids=["pings", "fragments"],
)
async def test_a_flood_in_one_read_is_cut_off_after_a_slice(
    flood: bytes,
) -> None:
    """Frames are checked as they are parsed, a few KiB at a time: a
    40,000-frame read gets at most a slice's worth of answers.
    """
    async with live(make_app()) as srv:
        sock = await asyncio.to_thread(_raw_upgrade, srv.port)
        try:
            await asyncio.to_thread(sock.sendall, flood)
            data = await asyncio.to_thread(_read_until_closed, sock)
        finally:
            sock.close()
        pongs = data.count(b"\x8a\x00")
        assert pongs < 1000, pongs
        assert b"\x88" in data  # the close frame, 1008
        assert b"\x03\xf0" in data
