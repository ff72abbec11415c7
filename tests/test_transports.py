"""Transports: the startup check, the fallback, Sanic's signals, ASGI.

The protocol suites run on every transport (the ``transport`` fixture);
this file covers what is about transports themselves.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from sanic import Request
from sanic.server.protocols.http_protocol import HttpProtocol
from sanic.server.protocols.websocket_protocol import WebSocketProtocol

from sanic_chat import ConfigError, TokenAuthenticator, User, _sanic
from sanic_chat.auth import refuse
from sanic_chat.transport import asgi
from sanic_chat.transport.flag import Flag

from .conftest import TIMEOUT, live, live_asgi, make_app


@pytest.mark.usefixtures("transport")
async def test_each_server_gets_the_transport_it_should(
    transport: str,
) -> None:
    async with live(make_app()) as srv, srv.client() as alice:
        await alice.say("hello")
        expected = "fast" if transport == "sanic" else "portable"
        assert srv.chat.transport == expected


def _pause_writing(self: Any) -> None:
    # What a Sanic release that renamed ``_can_write`` might do: the same
    # behaviour, through names the fast path does not know.
    HttpProtocol.pause_writing(self)


async def test_missing_sanic_internals_fall_back_to_portable_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(WebSocketProtocol, "pause_writing", _pause_writing)
    assert "pause_writing" in (_sanic.fast_path_problem(make_app()) or "")
    caplog.set_level(logging.INFO, "sanic_chat")
    async with live(make_app()) as srv:
        assert srv.chat.transport == "portable"
        async with srv.client() as alice, srv.client() as bob:
            await alice.say("still chatting")
            await bob.find("message", text="still chatting")
    warnings = [
        r
        for r in caplog.records
        if r.name == "sanic_chat._sanic" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, warnings
    assert "pause_writing" in warnings[0].getMessage()


async def test_fast_on_demand_fails_at_startup_when_the_check_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(WebSocketProtocol, "pause_writing", _pause_writing)
    with pytest.raises(ConfigError, match="CHAT_TRANSPORT is 'fast'"):
        async with live(make_app(transport="fast")):
            pass


def test_the_check_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Renamed(WebSocketProtocol):
        __slots__ = ()

    app = make_app()
    assert _sanic.fast_path_problem(app) is None
    monkeypatch.setattr(_sanic, "_protocol_class", lambda: Renamed)
    monkeypatch.setattr(
        _sanic, "FAST_ATTRIBUTES", (*_sanic.FAST_ATTRIBUTES, "websocket_ws")
    )
    assert _sanic.fast_path_problem(app) == (
        "WebSocketProtocol.websocket_ws is not a slot any more"
    )
    monkeypatch.setattr(_sanic, "_protocol_class", lambda: None)
    assert "is gone" in (_sanic.fast_path_problem(app) or "")


async def test_the_fast_transport_swaps_sanics_two_events_for_flags() -> None:
    # Sanic's protocol keeps them for the socket's life: about 860 bytes
    # each as asyncio.Events, 48 as Flags; its flow control drives the one.
    app = make_app(transport="fast")
    seen: list[tuple[Any, Any, Any]] = []

    @app.signal("websocket.handler.before")
    async def before(request: Request, websocket: Any) -> None:
        protocol = request.transport.get_protocol()
        seen.append(
            (protocol._can_write, protocol._data_received, websocket.can_write)
        )

    async with live(app) as srv:
        async with srv.client() as alice:
            assert (await alice.say("hi"))["text"] == "hi"
    [(can_write, data_received, socket_can_write)] = seen
    assert type(can_write) is Flag and can_write.is_set()
    assert socket_can_write is can_write  # pause_writing reaches the socket
    assert type(data_received) is Flag


@pytest.mark.usefixtures("transport")
async def test_sanic_websocket_signals_fire_for_the_chat_socket() -> None:
    app = make_app()
    seen: list[tuple[str, str]] = []

    @app.signal("websocket.handler.before")
    async def before(request: Request, websocket: Any) -> None:
        seen.append(("before", request.path))

    @app.signal("websocket.handler.after")
    async def after(request: Request, websocket: Any) -> None:
        seen.append(("after", request.path))

    async with live(app) as srv:
        async with srv.client() as alice:
            await alice.say("hi")
            assert seen == [("before", "/ws")]
        async with asyncio.timeout(TIMEOUT):
            while len(seen) < 2:
                await asyncio.sleep(0.01)
    assert seen == [("before", "/ws"), ("after", "/ws")]


@pytest.mark.logs_errors  # the failing hook is logged, as it should be
@pytest.mark.usefixtures("transport")
async def test_the_exception_signal_fires_when_serving_a_socket_fails() -> (
    None
):
    def can_join(user: User, room: str) -> bool:
        raise RuntimeError("hook failed")

    app = make_app(can_join=can_join)
    failures: list[str] = []

    @app.signal("websocket.handler.exception")
    async def failed(
        request: Request, websocket: Any, exception: BaseException
    ) -> None:
        failures.append(str(exception))

    async with live(app) as srv, srv.client(welcome=False) as client:
        assert await client.close_code() == 1011
        async with asyncio.timeout(TIMEOUT):
            while not failures:
                await asyncio.sleep(0.01)
    assert failures == ["hook failed"]


class Sent(list[dict[str, Any]]):
    async def __call__(self, message: dict[str, Any]) -> None:
        self.append(message)


async def test_asgi_refusals_are_http_answers_with_the_extension() -> None:
    sent = Sent()
    scope = {"type": "websocket", "extensions": {asgi.HTTP_RESPONSE: {}}}
    response = refuse(401, "unauthorized", "authentication required")
    await asgi.refuse(scope, sent, response)
    assert [m["type"] for m in sent] == [
        "websocket.http.response.start",
        "websocket.http.response.body",
    ]
    assert sent[0]["status"] == 401
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    body = json.loads(sent[1]["body"])
    assert body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("extensions", [None, {}, {"other": {}}])
async def test_asgi_refusals_are_a_1008_close_without_it(
    extensions: dict[str, Any] | None,
) -> None:
    sent = Sent()
    scope: dict[str, Any] = {"type": "websocket"}
    if extensions is not None:
        scope["extensions"] = extensions
    response = refuse(429, "too_many_connections", "at most 20")
    await asgi.refuse(scope, sent, response)
    assert sent == [
        {
            "type": "websocket.close",
            "code": 1008,
            "reason": "too_many_connections",
        }
    ]


@pytest.mark.parametrize("extension", [True, False])
async def test_a_refused_asgi_upgrade_never_sends_an_http_response(
    extension: bool,
) -> None:
    """Through Sanic's ASGI side, without a server: ``http.response.start``
    on a WebSocket scope is what made uvicorn answer 500.
    """
    app = make_app(authenticator=TokenAuthenticator({"t": User("u1", "U")}))
    lifespan = asyncio.Queue[dict[str, Any]]()
    started = Sent()
    await lifespan.put({"type": "lifespan.startup"})
    life = asyncio.create_task(
        app({"type": "lifespan"}, lifespan.get, started)
    )
    async with asyncio.timeout(TIMEOUT):
        while not started:
            await asyncio.sleep(0.01)
    assert started == [{"type": "lifespan.startup.complete"}]
    try:
        sent = Sent()
        incoming = [{"type": "websocket.connect"}]

        async def receive() -> dict[str, Any]:
            if incoming:
                return incoming.pop()
            await asyncio.Event().wait()  # nothing more from this client
            raise AssertionError

        scope = {
            "type": "websocket", "asgi": {"version": "3.0"},
            "http_version": "1.1", "scheme": "ws",
            "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
            "root_path": "", "path": "/ws", "raw_path": b"/ws",
            "query_string": b"", "subprotocols": [],
            "headers": [
                (b"host", b"127.0.0.1:8000"), (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-version", b"13"),
                (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            "extensions": {asgi.HTTP_RESPONSE: {}} if extension else {},
        }  # fmt: skip
        async with asyncio.timeout(TIMEOUT):
            await app(scope, receive, sent)
        kinds = [m["type"] for m in sent]
        assert not any(k.startswith("http.") for k in kinds), kinds
        if extension:
            assert kinds == [
                "websocket.http.response.start",
                "websocket.http.response.body",
            ]
            assert sent[0]["status"] == 401
        else:
            assert sent == [
                {
                    "type": "websocket.close",
                    "code": 1008,
                    "reason": "unauthorized",
                }
            ]
    finally:
        await lifespan.put({"type": "lifespan.shutdown"})
        async with asyncio.timeout(TIMEOUT):
            await life


async def test_uvicorn_log_lines_never_show_query_tokens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    secret = "s3cr3t-query-token"
    app = make_app(
        authenticator=TokenAuthenticator({secret: User("u1", "Una")})
    )
    async with live_asgi(app) as srv:
        async with srv.client(token=secret) as una:
            await una.say("hi")
    lines = [r for r in caplog.records if r.name.startswith("uvicorn")]
    assert any("/ws?token=REDACTED" in r.getMessage() for r in lines), lines
    assert not any(secret in r.getMessage() for r in caplog.records)
