"""Every use of Sanic's internals, and the check that they are there.

sanic-chat's fast transport (:mod:`sanic_chat.transport.fast`) runs on
Sanic's private protocol object: it writes ``WebSocketProtocol.websocket``
so that Sanic forwards the connection's bytes and events to a
:class:`~sanic_chat.transport.fast.FastSocket` (``data_received``,
``eof_received``, ``connection_lost``, ``close`` -> ``end_connection``,
``close_if_idle`` -> ``close``), reads its ``websocket_*`` settings and
its ``_can_write`` flow-control event, replaces that event and
``_data_received`` with lighter :class:`~sanic_chat.transport.flag.Flag`
objects, and logs through its ``log_websocket``. None of that is
public, and a Sanic release may rename any of it. So this module is
the only one that touches those names, and :func:`select_transport`
checks them once per worker at startup (:func:`fast_path_problem`):
with one missing, or the app served by an ASGI server, the portable
transport serves every socket instead, after one log line saying why.
A per-request check (the connection's protocol is Sanic's
``WebSocketProtocol``) guards the rest.

The portable transport (:mod:`sanic_chat.transport.portable`) needs far
less: on Sanic's own server, the handshake Sanic's public websocket
routes use (``websocket_handshake``) and the public methods of the
websocket object it returns (``recv``, ``send``, ``close``); under ASGI,
``request.scope`` and the ASGI ``receive``/``send`` callables Sanic
keeps on ``request.transport``.

Two more contracts: the ``/ws`` handler is an ordinary ``GET`` route
that completes the upgrade itself and returns nothing, which Sanic
accepts from handlers marked ``is_websocket`` (:func:`upgrade_handler`);
and which of Sanic's ``websocket.handler.*`` signals have handlers is
read from its signal router's index (:func:`websocket_signals`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import types
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sanic import HTTPResponse, Request, Sanic
from websockets.exceptions import ConnectionClosed

from .errors import ConfigError
from .transport import Kind, Socket, asgi, handshake
from .transport.fast import FastSocket
from .transport.flag import Flag
from .transport.portable import PortableSocket
from .transport.rfc6455 import ServerConnection

logger = logging.getLogger(__name__)

# What the fast path reads and writes on Sanic's WebSocketProtocol: slots.
FAST_ATTRIBUTES = (
    "_can_write",
    "transport",
    "websocket",
    "websocket_max_size",
    "websocket_peer",
    "websocket_ping_interval",
    "websocket_ping_timeout",
    "websocket_timeout",
    "websocket_url",
)
# Its methods, and what their source must show: that they forward to
# ``self.websocket`` (or drive ``_can_write``), as the fast path needs.
FAST_METHODS = {
    "close": "self.websocket.end_connection",
    "close_if_idle": "self.websocket",
    "connection_lost": "self.websocket.connection_lost",
    "data_received": "self.websocket.data_received",
    "eof_received": "self.websocket.eof_received",
    "log_websocket": "self.websocket",
    "pause_writing": "_can_write.clear",
    "resume_writing": "_can_write.set",
}

_DEFAULT_CLOSE_TIMEOUT = 10.0
# The most bytes a client message may have on the chat's sockets when the
# app sets WEBSOCKET_MAX_SIZE to None (no limit): Sanic's own default.
# Every buffer is bounded; the chat's largest request is far smaller.
UNLIMITED_FRAME_FALLBACK = 1 << 20

WEBSOCKET_SIGNALS = frozenset(
    {
        "websocket.handler.after",
        "websocket.handler.before",
        "websocket.handler.exception",
    }
)


@functools.cache
def _protocol_class() -> type | None:
    try:
        from sanic.server.protocols.websocket_protocol import (
            WebSocketProtocol,
        )
    except ImportError:
        return None
    return WebSocketProtocol


@functools.lru_cache(maxsize=64)
def _source_of(method: Callable[..., Any]) -> str | None:
    """``method``'s source, read once per function object.

    Every server start checks the same methods: several per worker, and
    hundreds in a test run.
    """
    try:
        return inspect.getsource(method)
    except (OSError, TypeError):
        return None


def fast_path_problem(app: Sanic[Any, Any]) -> str | None:
    """Why the fast transport cannot serve ``app``; None if it can.

    Checks that ``app`` runs on Sanic's own server and that Sanic's
    ``WebSocketProtocol`` has every slot and method the fast path uses,
    each of the right kind, and that those methods still forward to the
    ``websocket`` they are given.
    """
    if app.asgi:
        return "the app is served by an ASGI server"
    protocol = _protocol_class()
    if protocol is None:
        return "sanic.server.protocols.websocket_protocol is gone"
    for name in FAST_ATTRIBUTES:
        found = inspect.getattr_static(protocol, name, None)
        if not isinstance(found, types.MemberDescriptorType):
            return f"WebSocketProtocol.{name} is not a slot any more"
    for name, needle in FAST_METHODS.items():
        method = getattr(protocol, name, None)
        if not inspect.isfunction(method):
            return f"WebSocketProtocol.{name}() is gone"
        source = _source_of(method)
        if source is None:
            return f"the source of WebSocketProtocol.{name}() is unavailable"
        if needle not in source:
            return f"WebSocketProtocol.{name}() no longer uses {needle}"
    return None


def portable_path_problem(app: Sanic[Any, Any]) -> str | None:
    """Why the portable transport cannot serve ``app``; None if it can."""
    if app.asgi:
        try:
            from sanic.models.asgi import MockTransport
        except ImportError:
            return "sanic.models.asgi is gone"
        for name in ("receive", "send"):
            if not inspect.isfunction(getattr(MockTransport, name, None)):
                return f"Sanic's ASGI transport has no {name}()"
        return None
    protocol = _protocol_class()
    handshake_method = getattr(protocol, "websocket_handshake", None)
    if not inspect.isfunction(handshake_method):
        return "Sanic's WebSocketProtocol.websocket_handshake() is gone"
    return None


def select_transport(app: Sanic[Any, Any], wanted: str) -> Kind:
    """Pick the transport for ``app``'s sockets, once per worker.

    Args:
        app: The app, at ``before_server_start``.
        wanted: ``auto``, ``fast`` or ``portable`` (``CHAT_TRANSPORT``).

    Raises:
        ConfigError: ``fast`` was asked and its check failed, or neither
            transport can run on this Sanic.
    """
    if not app.asgi and app.config.get("WEBSOCKET_MAX_SIZE", 0) is None:
        logger.warning(
            "sanic-chat: WEBSOCKET_MAX_SIZE is None (no limit); the chat's "
            "sockets still refuse messages over %d bytes (close 1009)",
            UNLIMITED_FRAME_FALLBACK,
        )
    problem = None if wanted == "portable" else fast_path_problem(app)
    if problem is None and wanted != "portable":
        return "fast"
    if wanted == "fast":
        raise ConfigError(
            f"CHAT_TRANSPORT is 'fast' but the fast transport cannot run: "
            f"{problem}; use 'auto' or 'portable'"
        )
    unavailable = portable_path_problem(app)
    if unavailable is not None:
        raise ConfigError(
            f"sanic-chat cannot serve WebSockets on this Sanic: {problem}, "
            f"and {unavailable}"
        )
    if problem is None:
        logger.info("sanic-chat: portable transport (CHAT_TRANSPORT)")
    elif app.asgi:
        logger.info("sanic-chat: portable transport (%s)", problem)
    else:
        logger.warning(
            "sanic-chat: Sanic internals the fast WebSocket transport needs "
            "are missing (%s); using the portable transport, which works "
            "but costs more per connection. Pin a tested Sanic release to "
            "get the fast one back.",
            problem,
        )
    return "portable"


def websocket_signals(app: Sanic[Any, Any]) -> frozenset[str]:
    """Sanic's ``websocket.handler.*`` events that have handlers on ``app``.

    Read once at startup, after Sanic has finalized its signals, from its
    router's index; every one of them when that cannot be read.
    """
    index = getattr(app.signal_router, "name_index", None)
    if not isinstance(index, Mapping):
        return WEBSOCKET_SIGNALS
    return frozenset(event for event in WEBSOCKET_SIGNALS if event in index)


async def accept(
    request: Request, kind: Kind, subprotocol: str | None
) -> Socket | HTTPResponse | None:
    """Complete the upgrade of ``request`` with the transport ``kind``.

    Returns the socket, the HTTP refusal of an invalid handshake (400, or
    426 for another WebSocket version; pass it to :func:`refuse`), or
    None when the client left during the handshake. ``subprotocol`` is
    answered if the client offered it. Sanic's ``WEBSOCKET_MAX_SIZE``
    (None: :data:`UNLIMITED_FRAME_FALLBACK`), ``WEBSOCKET_PING_*`` and
    ``WEBSOCKET_TIMEOUT`` apply on Sanic's own server; under ASGI, the
    server's own settings.
    """
    app = request.app
    if not app.asgi:
        io_proto: Any = request.transport.get_protocol()
        protocol = _protocol_class()
        # A server started with another protocol class gets the portable
        # path, not a broken fast one.
        if (
            kind == "fast"
            and protocol is not None
            and isinstance(io_proto, protocol)
        ):
            return _accept_fast(request, io_proto, subprotocol)
    close_timeout = float(
        app.config.get("WEBSOCKET_TIMEOUT", _DEFAULT_CLOSE_TIMEOUT)
    )
    if app.asgi:
        return await _accept_asgi(request, subprotocol, close_timeout)
    accepted = handshake.check(request)
    if isinstance(accepted, HTTPResponse):
        return accepted
    if io_proto.websocket_max_size is None:
        # Upgraded now: this connection serves no other route's request.
        io_proto.websocket_max_size = UNLIMITED_FRAME_FALLBACK
    ws = await io_proto.websocket_handshake(
        request, [subprotocol] if subprotocol else None
    )
    return PortableSocket(
        _SanicChannel(ws, request.transport), close_timeout=close_timeout
    )


def _accept_fast(
    request: Request, io_proto: Any, subprotocol: str | None
) -> Socket | HTTPResponse:
    accepted = handshake.check(request)
    if isinstance(accepted, HTTPResponse):
        return accepted
    # Frames carry tokens (refresh) and what users write: it logs none.
    max_size = io_proto.websocket_max_size
    ws_proto = ServerConnection(
        UNLIMITED_FRAME_FALLBACK if max_size is None else max_size, logger
    )
    # Sanic (25.12) has no setting for it; honour one if the app sets it.
    close_timeout = float(
        request.app.config.get("WEBSOCKET_TIMEOUT", io_proto.websocket_timeout)
    )
    # Sanic's two events of the connection become Flags (same interface,
    # about 48 bytes instead of 860 each; transport/flag.py): it keeps
    # them for the socket's life. Nobody waits on either now: only the
    # connection's own task does, and it is running this handler.
    can_write = Flag(io_proto._can_write.is_set())
    io_proto._can_write = can_write
    received = getattr(io_proto, "_data_received", None)
    if isinstance(received, asyncio.Event):  # a saving, not a need
        io_proto._data_received = Flag(received.is_set())
    socket = FastSocket(
        io_proto.transport,
        can_write,
        ws_proto,
        close_timeout=close_timeout,
        ping_interval=io_proto.websocket_ping_interval,
        ping_timeout=io_proto.websocket_ping_timeout,
    )
    # Held until the endpoint has set the connection up (socket.uncork):
    # the 101 leaves with ``welcome`` and ``joined``, in one write.
    socket.cork(handshake.response_head(accepted, subprotocol))
    # From now on Sanic's WebSocketProtocol forwards bytes, EOF, loss and
    # end-of-task to this object.
    io_proto.websocket = socket
    if getattr(io_proto, "access_log", True):
        # Sanic's access log lines for websockets (OPEN, then CLOSE with
        # the codes; none without a URL); the URL has its token redacted
        # already. Built only when they are logged: it costs.
        io_proto.websocket_url = request.url
        io_proto.websocket_peer = f"{request.client_ip}:{request.port}"
        io_proto.log_websocket("OPEN")
    return socket


async def _accept_asgi(
    request: Request, subprotocol: str | None, close_timeout: float
) -> Socket | HTTPResponse | None:
    if request.scope.get("type") != "websocket":
        return handshake.refusal(
            501, "this ASGI server hands no WebSocket connection to the app"
        )
    transport: Any = request.transport
    channel = await asgi.accept(transport.receive, transport.send, subprotocol)
    if channel is None:
        return None
    return PortableSocket(channel, close_timeout=close_timeout)


async def refuse(
    request: Request, response: HTTPResponse
) -> HTTPResponse | None:
    """Answer a refused upgrade: return ``response`` for Sanic to send.

    Under ASGI, on a WebSocket scope, the answer is sent here instead
    (see :func:`sanic_chat.transport.asgi.refuse`), and None returned:
    an ``http.response`` would be a protocol error there.
    """
    if not request.app.asgi or request.scope.get("type") != "websocket":
        return response
    transport: Any = request.transport
    await asgi.refuse(request.scope, transport.send, response)
    return None


_Handler = TypeVar("_Handler", bound=Callable[..., Any])


def upgrade_handler(handler: _Handler) -> _Handler:
    """Mark ``handler`` as one that answers by upgrading (returns None).

    Without the mark Sanic answers "handler produced no response" with
    a 500, on a connection that is a WebSocket by then.
    """
    handler.is_websocket = True  # type: ignore[attr-defined]
    return handler


class _SanicChannel:
    """Sanic's own websocket object (``recv``, ``send``, ``close``)."""

    __slots__ = ("_transport", "_ws")

    def __init__(self, ws: Any, transport: Any) -> None:
        self._ws = ws
        self._transport = transport

    @property
    def close_received(self) -> int | None:
        received = getattr(self._ws.ws_proto, "close_rcvd", None)
        return None if received is None else int(received.code)

    async def send(self, text: str) -> None:
        await self._ws.send(text)

    async def receive(self) -> str | bytes | None:
        try:
            message: str | bytes | None = await self._ws.recv()
        except ConnectionClosed:
            return None
        return message

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)

    def abort(self) -> None:
        self._transport.abort()
