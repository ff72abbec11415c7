"""The ``/ws`` handler: one reader and one writer per socket.

The reader parses client frames and acts on them; the writer drains the
connection's outbox (see :mod:`sanic_chat.connection`). Whichever ends
first ends the other, and the connection leaves every room, so no task
outlives its socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import replace

from sanic import Request
from sanic.exceptions import WebsocketClosed
from sanic.server.websockets.frame import WebsocketFrameAssembler
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame

from . import protocol
from .auth import RoomRequest
from .chat import Chat
from .config import ChatConfig
from .connection import Connection
from .errors import BroadcasterUnavailable, CloseCode, ProtocolError
from .limits import TokenBucket

logger = logging.getLogger(__name__)

# What a socket raises once the client has gone: normal, not an error.
_CLOSED = (ConnectionClosed, WebsocketClosed)


async def serve(
    chat: Chat, request: Request, ws: WebsocketImplProtocol
) -> None:
    """Run one chat connection until either side closes it."""
    if chat.closing:
        await ws.close(CloseCode.GOING_AWAY, "server shutting down")
        return
    _guard_utf8(ws)
    config = chat.config
    conn = Connection(
        ws,
        request.ctx.chat_user,
        queue_size=config.send_queue_size,
        policy=config.slow_consumer,
    )
    hub = chat.hub
    hub.add(conn)
    rooms: list[RoomRequest] = request.ctx.chat_rooms
    writer = asyncio.create_task(conn.run_writer())
    reader = asyncio.create_task(_read(chat, conn, ws, rooms))
    try:
        await asyncio.wait(
            (reader, writer), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        if conn.expiry is not None:
            conn.expiry.cancel()
        for task in (reader, writer):
            task.cancel()
        # Membership ends now, synchronously; the rest is shielded so that
        # a second cancellation (Sanic cancels on connection loss too)
        # cannot skip it.
        left = hub.detach(conn)
        await asyncio.shield(
            _finish(conn, hub.departed(conn, left), reader, writer)
        )


async def _finish(
    conn: Connection,
    departed: Awaitable[None],
    *tasks: asyncio.Task[None],
) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
    await departed
    for task in tasks:
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, _CLOSED):
            logger.error("connection %s failed", conn, exc_info=exc)


class _Utf8GuardedAssembler(WebsocketFrameAssembler):
    """Sanic's frame assembler, closing with 1007 on invalid UTF-8.

    Sanic (25.12) decodes text frames in a background task and lets a
    ``UnicodeDecodeError`` kill it: the connection then hangs forever.
    RFC 6455 requires failing the connection with 1007 instead.
    """

    __slots__ = ()

    async def put(self, frame: Frame) -> None:
        try:
            await super().put(frame)
        except UnicodeDecodeError:
            self.protocol.fail_connection(1007, "invalid UTF-8")


def _guard_utf8(ws: WebsocketImplProtocol) -> None:
    # Swap the class rather than the object: frames may already be in it.
    if type(ws.assembler) is WebsocketFrameAssembler:
        ws.assembler.__class__ = _Utf8GuardedAssembler


async def _read(
    chat: Chat,
    conn: Connection,
    ws: WebsocketImplProtocol,
    rooms: list[RoomRequest],
) -> None:
    config = chat.config
    allowed = [r for r in rooms if await chat.may_join(conn.user, r.room)]
    conn.reply(
        protocol.encode(
            {
                "type": "welcome",
                "protocol": 1,
                "user": conn.user.public(),
                "rooms": [r.room for r in allowed],
            }
        )
    )
    for request in rooms:
        if request not in allowed:
            refused = _forbidden(request.room)
            conn.reply(protocol.error(refused.code, refused.message))
    _schedule_expiry(conn)
    for request in allowed:
        await conn.wait_writable()
        await _guarded(conn, chat.hub.join(conn, request.room, request.since))
    bucket = TokenBucket(config.rate_limit, config.rate_burst)
    while not conn.closing:
        # Take no new request while replies to earlier ones are unread.
        await conn.wait_writable()
        data = await ws.recv()
        if data is None:
            continue
        # Charged before parsing, by size too: refused frames cost no work.
        if not bucket.take(1 + len(data) // 16384):
            if _rate_limited(conn, bucket, config):
                break
            continue
        command: protocol.Command | ProtocolError
        try:
            command = protocol.parse(
                data,
                default_room=config.default_room,
                max_text_length=config.max_text_length,
            )
        except ProtocolError as exc:
            command = exc
        churn = isinstance(command, protocol.Join | protocol.Leave)
        if churn and not bucket.take(config.churn_cost - 1):
            if _rate_limited(conn, bucket, config):
                break
            continue
        if isinstance(command, ProtocolError):
            conn.reply(protocol.error(command.code, command.message))
            continue
        await _guarded(conn, _dispatch(chat, conn, command))


def _rate_limited(
    conn: Connection, bucket: TokenBucket, config: ChatConfig
) -> bool:
    """Answer ``rate_limited``, or close on sustained abuse (True)."""
    if bucket.strikes >= config.rate_limit_strikes:
        conn.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")
        return True
    conn.reply(
        protocol.error(
            "rate_limited",
            f"too many frames; at most {config.rate_limit:g} per second, "
            "this one was not processed",
        )
    )
    return False


async def _guarded(conn: Connection, action: Awaitable[None]) -> None:
    """Await ``action``; turn its failure into an ``error`` frame."""
    try:
        await action
    except ProtocolError as exc:
        conn.reply(protocol.error(exc.code, exc.message))
    except BroadcasterUnavailable as exc:
        # The backend logs its state changes once; not a line per frame.
        logger.debug("broadcaster unavailable: %s", exc)
        conn.reply(
            protocol.error("unavailable", "chat backend unavailable, retry")
        )
    except (asyncio.CancelledError, *_CLOSED):
        raise
    except Exception:
        logger.exception("error while serving %s", conn)
        conn.reply(protocol.error("internal_error", "internal server error"))


async def _dispatch(
    chat: Chat, conn: Connection, command: protocol.Command
) -> None:
    hub = chat.hub
    match command:
        case protocol.Send(room, text, ref):
            _require_member(conn, room)
            if not await chat.may_publish(conn.user, room):
                raise _forbidden(room)
            message_id = await hub.publish(room, conn.user, text)
            if ref is not None:
                conn.reply(
                    protocol.encode(
                        {
                            "type": "ack",
                            "ref": ref,
                            "id": message_id,
                            "room": room,
                        }
                    )
                )
        case protocol.Join(room, since):
            if not await chat.may_join(conn.user, room):
                raise _forbidden(room)
            await hub.join(conn, room, since)
        case protocol.Leave(room):
            await hub.leave(conn, room)
        case protocol.History(room, limit):
            _require_member(conn, room)
            conn.reply(await hub.history_frame(room, limit))
        case protocol.Presence(room):
            _require_member(conn, room)
            conn.reply(await hub.presence_frame(room))
        case protocol.Refresh(token):
            await _refresh(chat, conn, token)
        case protocol.Ping():
            conn.reply(protocol.PONG)


def _forbidden(room: str) -> ProtocolError:
    return ProtocolError("forbidden", f"not allowed in room {room!r}")


def _schedule_expiry(conn: Connection) -> None:
    """Close the connection with 1008 when its identity expires."""
    if conn.expiry is not None:
        conn.expiry.cancel()
        conn.expiry = None
    expires_at = conn.user.expires_at
    if expires_at is None:
        return
    loop = asyncio.get_running_loop()
    delay = max(0.0, expires_at - time.time())
    conn.expiry = loop.call_later(
        delay, conn.close, CloseCode.POLICY_VIOLATION, "token expired"
    )


async def _refresh(chat: Chat, conn: Connection, token: str) -> None:
    """Extend the session with a new token for the same identity."""
    from_token = getattr(chat.authenticator, "from_token", None)
    if from_token is None:
        raise ProtocolError(
            "bad_request", "this server's authenticator cannot refresh"
        )
    user = await from_token(token)
    if user is None or user.id != conn.user.id:
        raise ProtocolError("forbidden", "token invalid or for another user")
    conn.user = replace(
        conn.user, claims=user.claims, expires_at=user.expires_at
    )
    _schedule_expiry(conn)
    conn.reply(
        protocol.encode({"type": "refreshed", "expires_at": user.expires_at})
    )


def _require_member(conn: Connection, room: str) -> None:
    if room not in conn.rooms:
        raise ProtocolError("not_joined", f"join room {room!r} first")
