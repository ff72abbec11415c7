"""The ``/ws`` handler: upgrade, then one read loop per socket.

Sanic runs this like any route. It first refuses every method but GET,
then runs the pre-upgrade checks (:mod:`sanic_chat.auth`): here, in the
handler, so that every route that reaches this code (sanic-ext's
automatic HEAD route calls it too) meets them. It completes the
WebSocket handshake with the transport chosen at startup
(:mod:`sanic_chat._sanic`, :mod:`sanic_chat.transport`), then reads
client frames and acts on them until the socket closes; the connection
then leaves every room. Frames to the client never wait for this loop:
the hub writes them directly (:mod:`sanic_chat.connection`), so on the
fast transport a connection needs no task of its own besides the one
Sanic already runs for its request.

Sanic's ``websocket.handler.before``, ``.after`` and ``.exception``
signals are dispatched as Sanic does for its own websocket routes: after
the handshake, when the connection ends without an error (closed by
either side, lost, or closed at shutdown; Sanic's own routes skip
``after`` when their task is cancelled, which is how Sanic reports a lost
connection), and when serving it failed. Their ``websocket`` is the
chat's :class:`~sanic_chat.transport.Socket`, not Sanic's websocket
object.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import replace

from sanic import HTTPResponse, Request

from . import _sanic, protocol
from .auth import RoomRequest, check_upgrade, refuse
from .authenticators import SUBPROTOCOL
from .chat import Chat
from .config import ChatConfig
from .connection import Connection
from .errors import BroadcasterUnavailable, CloseCode, ProtocolError
from .limits import TokenBucket
from .metrics import Metrics
from .transport import Socket

logger = logging.getLogger(__name__)
# One line per connection opened and closed, with ``extra`` fields for
# structured handlers; never a token. Opens and ordinary closes are DEBUG
# (thousands per second under load), closes an operator should see
# (policy, slow consumer, errors) are INFO.
connection_log = logging.getLogger("sanic_chat.connections")
_ORDINARY_CLOSES = {1000, 1001, 1005, 1006, 1012}
# Replies are charged to the rate limit at one token per this many bytes
# (requests pay one per 16 KiB they carry).
_REPLY_BYTES_PER_TOKEN = 65536


async def serve(chat: Chat, request: Request) -> HTTPResponse | None:
    """Upgrade ``request`` and run its chat connection until it closes.

    Returns an HTTP error response when the method is not GET (405),
    the pre-upgrade checks refuse (:func:`~sanic_chat.auth.check_upgrade`)
    or the handshake itself is invalid.
    """
    if request.method != "GET":
        # RFC 6455, 4.1: an upgrade is a GET. Anything else (sanic-ext's
        # automatic HEAD route calls this handler) never gets near it.
        wrong_method = refuse(
            405, "method_not_allowed", "a WebSocket upgrade is a GET"
        )
        wrong_method.headers["Allow"] = "GET"
        return wrong_method
    refused = await check_upgrade(chat, request)
    if refused is not None:
        return await _sanic.refuse(request, refused)
    # From here check_upgrade holds a reservation for the user: every
    # path that does not end in hub.add releases it.
    offered = request.headers.get("sec-websocket-protocol", "")
    try:
        socket = await _sanic.accept(
            request,
            chat.transport,
            SUBPROTOCOL
            if SUBPROTOCOL in (p.strip() for p in offered.split(","))
            else None,
        )
    except BaseException:
        chat.hub.release(request.ctx.chat_user.id)
        raise
    if socket is None or isinstance(socket, HTTPResponse):
        chat.hub.release(request.ctx.chat_user.id)
        return None if socket is None else await _sanic.refuse(request, socket)
    if chat.closing:
        chat.hub.release(request.ctx.chat_user.id)
        socket.start_closing(CloseCode.GOING_AWAY, "server shutting down")
        await socket.wait_closed()
        return None
    config = chat.config
    conn = Connection(
        socket,
        request.ctx.chat_user,
        queue_size=config.send_queue_size,
        policy=config.slow_consumer,
        metrics=chat.metrics,
        max_unsent_bytes=config.max_unsent_bytes,
        budget=chat.hub.unsent,
    )
    hub = chat.hub
    hub.add(conn)
    opened = time.monotonic()
    user_id = conn.user.id
    connection_log.debug(
        "open %s user=%r peer=%s",
        conn.key,
        user_id,
        request.client_ip,
        extra={"chat_event": "open", "connection": conn.key,
               "user_id": user_id, "peer": request.client_ip},
    )  # fmt: skip
    rooms: list[RoomRequest] = request.ctx.chat_rooms
    try:
        await _signal(chat, "before", request, socket)
        await _read(chat, conn, socket, rooms)
        await _signal(chat, "after", request, socket)
    except asyncio.CancelledError:
        # Sanic cancels the request's task when the TCP connection is
        # lost, and what is left when it stops: normal ends here, not
        # worth an error response or a logged traceback. (On the fast
        # transport a client's close ends the TCP connection at once, so
        # its normal end often arrives this way.)
        lost = request.conn_info is not None and request.conn_info.lost
        if not (lost or chat.closing):
            raise
        await _signal(chat, "after", request, socket)
    except Exception as exc:
        logger.exception("connection %s failed", conn)
        conn.close(CloseCode.INTERNAL_ERROR, "internal server error")
        await _signal(chat, "exception", request, socket, exc)
    finally:
        if conn.expiry is not None:
            conn.expiry.cancel()
        if not conn.closing:
            conn.close(CloseCode.GOING_AWAY, "")
        # Membership ends now, synchronously; presence is shielded so that
        # a cancellation (Sanic cancels on shutdown) cannot skip it.
        left = hub.detach(conn)
        _log_close(conn, socket, time.monotonic() - opened, len(left))
        await asyncio.shield(hub.departed(conn, left))
        # The portable transport's close frame must be out before the
        # handler returns: its server ends the connection then.
        await socket.wait_closed()
    return None


async def _signal(
    chat: Chat,
    stage: str,
    request: Request,
    socket: Socket,
    exception: Exception | None = None,
) -> None:
    """Dispatch Sanic's ``websocket.handler.<stage>``, if it has handlers.

    Checked first: a dispatch without handlers still costs microseconds
    that every connection would pay.
    """
    event = f"websocket.handler.{stage}"
    if event not in chat.signals:
        return
    context: dict[str, object] = {"request": request, "websocket": socket}
    if exception is not None:
        context["exception"] = exception
    await request.app.dispatch(
        event,
        inline=True,
        context=context,
        reverse=stage != "before",
        fail_not_found=False,
    )


def _log_close(
    conn: Connection, socket: Socket, duration: float, rooms: int
) -> None:
    received = socket.close_received
    if received is not None:
        code, by = received, "client"
    else:
        code, by = conn.close_code or 1006, "server"
    connection_log.log(
        logging.DEBUG if code in _ORDINARY_CLOSES else logging.INFO,
        "close %s user=%r code=%d by=%s duration=%.1fs rooms=%d",
        conn.key, conn.user.id, code, by, duration, rooms,
        extra={"chat_event": "close", "connection": conn.key,
               "user_id": conn.user.id, "close_code": code,
               "closed_by": by, "duration": round(duration, 3),
               "rooms": rooms},
    )  # fmt: skip


async def _read(
    chat: Chat,
    conn: Connection,
    socket: Socket,
    rooms: list[RoomRequest],
) -> None:
    config = chat.config
    allowed = [r for r in rooms if await chat.may_join(conn.user, r.room)]
    conn.reply(protocol.welcome(conn.user.public(), [r.room for r in allowed]))
    for request in rooms:
        if request not in allowed:
            refused = _forbidden(request.room)
            conn.reply(protocol.error(refused.code, refused.message))
    _schedule_expiry(conn)
    bucket = TokenBucket(config.rate_limit, config.rate_burst)
    socket.limiter = bucket
    socket.max_strikes = config.rate_limit_strikes
    replied = conn.replied
    # Setup is the server's work; waiting for a client that does not read
    # its replay is not: that gives the admission slot back early.
    conn.on_stall = chat.admission.release
    for request in allowed:
        await conn.wait_writable()
        await _guarded(conn, chat.hub.join(conn, request.room, request.since))
    conn.on_stall = None
    chat.admission.release()  # set up: let the next upgrade in
    while True:
        # Replies cost by their size too: a small request can ask for a
        # large reply. Pay before the next request, by waiting.
        cost = (conn.replied - replied) // _REPLY_BYTES_PER_TOKEN
        if cost:
            bucket.charge(cost)
            await asyncio.sleep(bucket.delay())
        # Take no new request while replies to earlier ones are unread.
        await conn.wait_writable()
        replied = conn.replied
        data = await socket.recv()
        if data is None:
            break
        # Charged before parsing, by size too: refused frames cost no work.
        if not bucket.take(1 + len(data) // 16384):
            if _rate_limited(conn, bucket, config, chat.metrics):
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
            if _rate_limited(conn, bucket, config, chat.metrics):
                break
            continue
        if isinstance(command, ProtocolError):
            conn.reply(protocol.error(command.code, command.message))
            continue
        await _guarded(conn, _dispatch(chat, conn, command))


def _rate_limited(
    conn: Connection,
    bucket: TokenBucket,
    config: ChatConfig,
    metrics: Metrics,
) -> bool:
    """Answer ``rate_limited``, or close on sustained abuse (True)."""
    metrics.rate_limited += 1
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
    except asyncio.CancelledError:
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
                conn.reply(protocol.ack(ref, message_id, room))
        case protocol.Join(room, since):
            if not await chat.may_join(conn.user, room):
                raise _forbidden(room)
            await hub.join(conn, room, since)
        case protocol.Leave(room):
            await hub.leave(conn, room)
        case protocol.History(room, limit, before):
            _require_member(conn, room)
            conn.reply(
                await hub.history_frame(
                    room,
                    limit,
                    before=before,
                    max_bytes=chat.config.max_unsent_bytes // 4,
                )
            )
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
    # The new claims may no longer grant every room: ask again.
    for room in sorted(conn.rooms):
        if not await chat.may_join(conn.user, room):
            await chat.hub.leave(conn, room, reason="forbidden")
    conn.reply(protocol.refreshed(user.expires_at))


def _require_member(conn: Connection, room: str) -> None:
    if room not in conn.rooms:
        raise ProtocolError("not_joined", f"join room {room!r} first")
