"""An upgrade without a Host, or from the ``null`` origin, gets no socket.

The websockets client always sends a proper ``Host``, so these requests
are written by hand on a raw TCP connection.
"""

from __future__ import annotations

import asyncio

import pytest
from sanic import Request

from sanic_chat.auth import origin_allowed

from .conftest import TIMEOUT, LiveServer, live, make_app, new_app

KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


async def _status(srv: LiveServer, head: str) -> tuple[str, bytes]:
    """Send ``head`` (request line and fields) and return the status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        writer.write(
            (
                "GET /ws HTTP/1.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Version: 13\r\n{KEY}{head}\r\n"
            ).encode()
        )
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        body = await asyncio.wait_for(reader.read(4096), TIMEOUT)
    finally:
        writer.close()
    return answer.split(b"\r\n", 1)[0].decode(), body


@pytest.mark.parametrize(
    "head",
    [
        "Host: \r\nOrigin: null\r\n",  # the attack from the review
        "Host: \r\n",
        "Host:    \r\nOrigin: http://evil.example\r\n",
        "Origin: null\r\n",  # no Host at all
        "",
    ],
)
async def test_an_upgrade_without_a_host_is_refused_with_400(
    head: str,
) -> None:
    async with live(make_app()) as srv:
        status, body = await _status(srv, head)
        assert status.startswith("HTTP/1.1 400"), (status, head)
        assert b"bad_request" in body
        assert b"Host" in body
        assert srv.chat.connection_count == 0


async def test_the_null_origin_is_not_the_requests_own_host() -> None:
    async with live(make_app()) as srv:
        host = f"Host: 127.0.0.1:{srv.port}\r\n"
        status, _ = await _status(srv, host)
        assert status == "HTTP/1.1 101 Switching Protocols"
        status, body = await _status(srv, host + "Origin: null\r\n")
        assert status.startswith("HTTP/1.1 403"), status
        assert b"forbidden_origin" in body
        same = f"Origin: http://127.0.0.1:{srv.port}\r\n"
        status, _ = await _status(srv, host + same)
        assert status == "HTTP/1.1 101 Switching Protocols"


def _request(**headers: str) -> Request:
    app = new_app()
    return Request(
        b"/ws",
        {k.replace("_", "-"): v for k, v in headers.items()},  # type: ignore[arg-type]
        "1.1",
        "GET",
        None,
        app,
    )


@pytest.mark.parametrize("origin", ["null", "file://", "data:,x", "http://"])
def test_origins_without_a_host_never_match_an_empty_host(
    origin: str,
) -> None:
    assert not origin_allowed(_request(host="", origin=origin), "")
    assert not origin_allowed(_request(host="h:1", origin=origin), "")
    assert origin_allowed(_request(host="h:1", origin="http://h:1"), "")
