"""Connecting: welcome, default room, identity and refused upgrades."""

from __future__ import annotations

import asyncio
import re

import pytest
from websockets.exceptions import InvalidStatus

from .conftest import LiveServer, live, make_app

# The whole protocol suite runs against every built-in backend.
pytestmark = pytest.mark.usefixtures("backend", "transport")


async def test_first_frame_is_welcome_with_guest_identity(
    server: LiveServer,
) -> None:
    async with server.client(welcome=False) as alice:
        welcome = await alice.expect("welcome", rooms=["lobby"], protocol=1)
        assert welcome["user"]["id"].startswith("guest-")
        joined = await alice.expect("joined", room="lobby")
        assert joined["user"] == welcome["user"]
        assert "recovered" not in joined


async def test_guest_ids_are_unique_and_names_are_proposed(
    server: LiveServer,
) -> None:
    async with (
        server.client(name="alice") as a,
        server.client(name="alice") as b,
    ):
        assert a.user["name"] == b.user["name"] == "alice"
        assert a.user["id"] != b.user["id"]


# Validation, not transport: the refusal itself runs on every transport
# elsewhere (too_many_rooms, per-user limit, origins).
@pytest.mark.transports("sanic")
@pytest.mark.parametrize("name", ["   ", "x" * 33, "bad\x07bell", "<b>"])
async def test_invalid_display_name_is_refused_before_upgrade(
    server: LiveServer, name: str
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with server.client(name=name):
            pass
    assert info.value.response.status_code == 400
    assert b"bad_request" in info.value.response.body


async def test_rooms_from_query_are_joined_at_connect(
    server: LiveServer,
) -> None:
    async with server.client(room=["dev", "ops", "dev"]) as c:
        assert c.welcome["rooms"] == ["dev", "ops"]
        await c.say("in dev", room="dev")


# Validation, not transport: the refusal itself runs on every transport
# elsewhere (too_many_rooms, per-user limit, origins).
@pytest.mark.transports("sanic")
@pytest.mark.parametrize(
    "room", ["a b", "../x", "*", "room?", "[x]", "x" * 65, "é", "dev@"]
)
async def test_invalid_room_names_are_refused_before_upgrade(
    server: LiveServer, room: str
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with server.client(room=room):
            pass
    assert info.value.response.status_code == 400


async def test_too_many_rooms_at_connect_is_refused() -> None:
    async with live(make_app(max_rooms_per_connection=2)) as srv:
        with pytest.raises(InvalidStatus) as info:
            async with srv.client(room=["a", "b", "c"]):
                pass
        assert info.value.response.status_code == 400
        assert b"too_many_rooms" in info.value.response.body


async def _handshake(port: int, **headers: str) -> tuple[bytes, bytes]:
    """Send an upgrade request with ``headers`` replaced; return the head."""
    fields = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        **{k.replace("_", "-"): v for k, v in headers.items()},
    }
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = "GET /ws HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items() if v
    )
    writer.write((request + "\r\n").encode())
    head = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    return head.split(b"\r\n", 1)[0], head


async def test_the_handshake_follows_rfc_6455() -> None:
    async with live(make_app()) as srv:
        status, head = await _handshake(srv.port)
        assert status == b"HTTP/1.1 101 Switching Protocols"
        # The RFC's own example key and answer (section 1.3).
        # Header names are case-insensitive; the value is not.
        assert re.search(
            rb"(?im)^sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r$",
            head,
        )
        assert b"sec-websocket-protocol" not in head.lower()
        status, head = await _handshake(
            srv.port, Sec_WebSocket_Protocol="sanic-chat, bearer.x"
        )
        assert b"sec-websocket-protocol: sanic-chat\r\n" in head.lower()


@pytest.mark.transports("sanic", "sanic-portable")
async def test_a_broken_handshake_gets_an_http_error_and_no_socket() -> None:
    async with live(make_app()) as srv:
        for key in ("", "short", "dGhlIHNhbXBsZSBub25jZQ==AA", "é" * 24):
            status, _ = await _handshake(srv.port, Sec_WebSocket_Key=key)
            assert status.startswith(b"HTTP/1.1 400"), key
        status, head = await _handshake(srv.port, Sec_WebSocket_Version="8")
        assert status.startswith(b"HTTP/1.1 426")
        assert b"sec-websocket-version: 13" in head.lower()
        status, _ = await _handshake(srv.port, Connection="keep-alive")
        assert status.startswith(b"HTTP/1.1 400")
        assert srv.chat.connection_count == 0


@pytest.mark.transports("sanic", "sanic-portable")
async def test_odd_upgrade_requests_are_refused_before_any_socket() -> None:
    async with live(make_app()) as srv:
        base = (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\n"
        )
        key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        for raw in (
            base + key + key,  # two keys
            base + key + "Sec-WebSocket-Version: 13\r\n",  # two versions
            base + key + "Content-Length: 5\r\n\r\nhello",  # a body
            base.replace("HTTP/1.1", "HTTP/1.0") + key,
        ):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", srv.port
            )
            writer.write(
                (raw if raw.endswith("hello") else raw + "\r\n").encode()
            )
            status = (await reader.readuntil(b"\r\n")).decode()
            writer.close()
            assert status.startswith("HTTP/1.1 400"), (status, raw)
        assert srv.chat.connection_count == 0
