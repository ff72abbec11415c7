"""Every HTTP method on ``/ws`` meets the same pre-upgrade checks.

sanic-ext adds a HEAD route for every GET route; it calls the same
handler. Raw sockets here, so that any method and any header can be sent.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import websockets

from sanic_chat import TokenAuthenticator, User

from .conftest import TIMEOUT, LiveServer, live, make_app

SECRET = "SECRET-upgrade-token-1234"
WATCHED = ("sanic.access", "sanic.error", "sanic.root", "sanic_chat")
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"]


async def raw_request(port: int, head: str, body: bytes = b"") -> bytes:
    """Send ``head`` (CRLF added) and return the response's head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(TIMEOUT):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


def upgrade_head(
    method: str, srv: LiveServer, query: str, **headers: str
) -> str:
    lines = [
        f"{method} /ws?{query} HTTP/1.1",
        f"Host: 127.0.0.1:{srv.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    return "\n".join(lines) + "\n"


def status_of(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    plain = logging.Formatter("%(message)s")
    return "\n".join(
        plain.format(r) + " " + repr(r.__dict__) for r in caplog.records
    )


def watch_logs(caplog: pytest.LogCaptureFixture) -> None:
    for name in WATCHED:
        caplog.set_level(logging.DEBUG, logger=name)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("query", "origin"),
    [
        # a valid token, sent by a foreign page: refused on the origin
        (f"token={SECRET}", "https://evil.example"),
        # no valid identity, no origin (not a browser)
        (f"token={SECRET}-wrong", None),
    ],
    ids=["foreign-origin", "unauthenticated"],
)
async def test_no_method_upgrades_without_the_checks(
    method: str,
    query: str,
    origin: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch_logs(caplog)
    app = make_app(
        authenticator=TokenAuthenticator({SECRET: User("a", "Alice")})
    )
    async with live(app, access_log=True) as srv:
        extra = {"Origin": origin} if origin else {}
        head = await raw_request(
            srv.port, upgrade_head(method, srv, query, **extra)
        )
        status = status_of(head)
        assert status != 101, head
        assert status < 500, head
        if method == "GET":
            assert status == (403 if origin else 401), head
        assert srv.chat.connection_count == 0
        # Nothing reserved a slot: the user can still connect at once.
        assert srv.chat.hub.connections_of("a") == 0
        await asyncio.sleep(0.05)  # let the access log line out
    assert f"{method} " in logged_text(caplog) or method == "BREW"
    assert SECRET not in logged_text(caplog)


async def test_head_is_refused_before_the_upgrade_even_when_allowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch_logs(caplog)
    app = make_app(
        authenticator=TokenAuthenticator({SECRET: User("a", "Alice")})
    )
    async with live(app, access_log=True) as srv:
        head = await raw_request(
            srv.port, upgrade_head("HEAD", srv, f"token={SECRET}")
        )
        assert status_of(head) == 405 and b"allow: get" in head.lower()
        # The same request as a GET upgrades: only the method differs.
        head = await raw_request(
            srv.port, upgrade_head("GET", srv, f"token={SECRET}")
        )
        assert status_of(head) == 101, head


@pytest.mark.transports("sanic", "sanic-portable")  # Sanic's protocol
@pytest.mark.logs_errors  # the start-up warning about the setting
async def test_the_frame_limit_fallback_stays_on_the_chats_connections() -> (
    None
):
    """With ``WEBSOCKET_MAX_SIZE = None`` only the chat's sockets change.

    The chat's take at most 1 MiB (close 1009); the app's own WebSocket
    route keeps the app's choice, no limit. A refused ``/ws`` handshake
    ends its TCP connection (``connection: close``): no later request
    on it can meet a setting changed for the chat.
    """
    app = make_app()
    app.config.WEBSOCKET_MAX_SIZE = None

    @app.websocket("/echo-size")
    async def echo_size(request: object, ws: object) -> None:
        message = await ws.recv()  # type: ignore[attr-defined]
        await ws.send(str(len(message)))  # type: ignore[attr-defined]

    size = (1 << 20) + 10  # over the chat's fallback
    async with live(app) as srv:
        url = f"ws://127.0.0.1:{srv.port}/echo-size"
        async with websockets.connect(url, max_size=None) as ws:
            await ws.send("x" * size)
            async with asyncio.timeout(TIMEOUT):
                assert await ws.recv() == str(size)
        async with srv.client() as chat:
            await chat.send(json.dumps({"type": "ping", "pad": "x" * size}))
            assert await chat.close_code() == 1009
        bad = upgrade_head("GET", srv, "room=lobby").replace(
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n", ""
        )
        head = await raw_request(srv.port, bad)
        assert status_of(head) == 400
        assert b"connection: close" in head.lower()
