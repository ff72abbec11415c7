"""The ``/ws`` handler: upgrade, then one read loop per socket.

Sanic runs this like any route. It first refuses every method but GET,
then runs the pre-upgrade checks (:mod:`sanic_chat.auth`): here, in the
handler, so that every route that reaches this code (sanic-ext's
automatic HEAD route calls it too) meets them. It completes the
WebSocket handshake with the transport chosen at startup
(:mod:`sanic_chat._sanic`, :mod:`sanic_chat.transport`), then reads
client frames until the socket closes and feeds them to the connection's
:class:`~sanic_chat.session.Session`, which decides what each one means;
this module performs what it asks for (replies, hub calls, permission
hooks, the token's expiry timer). The connection then leaves every room.
Frames to the client never wait for this loop:
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
from collections.abc import Awaitable, Callable
from typing import Any, cast

from sanic import HTTPResponse, Request, Sanic

from . import _sanic, protocol
from .auth import check_upgrade, refuse
from .authenticators import SUBPROTOCOL
from .chat import Chat
from .connection import Connection
from .errors import CloseCode
from .identity import RefreshingAuthenticator, User
from .session import (
    Action,
    Close,
    DeleteMessage,
    EditMessage,
    Expire,
    Join,
    JoinInbox,
    Leave,
    MarkRead,
    MayJoin,
    MayMessage,
    MayModerate,
    MayPublish,
    Moderate,
    Publish,
    ReadHistory,
    ReadMessage,
    ReadPresence,
    ReadReceipts,
    Reply,
    SendDirect,
    Session,
    SetUser,
    Signal,
    Steps,
    Verify,
    WaitWritable,
)
from .transport import Socket

logger = logging.getLogger(__name__)
# One line per connection opened and closed, with ``extra`` fields for
# structured handlers; never a token. Opens and ordinary closes are DEBUG
# (thousands per second under load), closes an operator should see
# (policy, slow consumer, errors) are INFO.
connection_log = logging.getLogger("sanic_chat.connections")
_ORDINARY_CLOSES = {1000, 1001, 1005, 1006, 1012}
_BEFORE = "websocket.handler.before"
_AFTER = "websocket.handler.after"
_EXCEPTION = "websocket.handler.exception"


def handler(
    chat_of: Callable[[Sanic[Any, Any]], Chat],
) -> Callable[[Request], Awaitable[HTTPResponse | None]]:
    """The ``/ws`` route's handler, for the chat ``chat_of(app)`` returns.

    One coroutine per connection, not a wrapper around another: an idle
    socket's handler frame is part of what it costs.
    """

    async def serve(request: Request) -> HTTPResponse | None:
        """Upgrade ``request`` and run its chat connection until it closes.

        Returns an HTTP error response when the method is not GET (405),
        the pre-upgrade checks refuse
        (:func:`~sanic_chat.auth.check_upgrade`) or the handshake itself
        is invalid.
        """
        chat = chat_of(request.app)
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
            return (
                None
                if socket is None
                else await _sanic.refuse(request, socket)
            )
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
        if connection_log.isEnabledFor(logging.DEBUG):
            # Its arguments and extra cost; thousands per second in a storm.
            user_id = conn.user.id
            peer = request.client_ip
            connection_log.debug(
                "open %s user=%r peer=%s",
                conn.key,
                user_id,
                peer,
                extra={"chat_event": "open", "connection": conn.key,
                       "user_id": user_id, "peer": peer},
            )  # fmt: skip
        # Taken off the request: kept there, they would live as long as
        # the connection.
        rooms: list[protocol.Join] = request.ctx.chat_rooms
        del request.ctx.chat_rooms
        try:
            if _BEFORE in chat.signals:
                await _signal(chat, _BEFORE, request, socket)
            # The reading loop runs here, not in a coroutine of its own:
            # an idle socket's suspended frames are part of what it costs.
            try:
                session = await _open(chat, conn, socket, rooms)
                while True:
                    # Pay for the replies to the last request before the next.
                    delay = session.pay_replies(conn.replied)
                    if delay is not None:
                        await asyncio.sleep(delay)
                    # Take no new request while replies to earlier ones are
                    # unread.
                    await conn.wait_writable()
                    session.reading(conn.replied)
                    # Awaiting the socket's future itself, not a coroutine of
                    # the socket's: an idle connection holds no other frame.
                    data = socket.take()
                    while data is ...:
                        await socket.arrival()
                        data = socket.take()
                    if data is None or await _run(
                        chat, conn, session.receive(data)
                    ):
                        break
            finally:
                conn.expiry = None
            if _AFTER in chat.signals:
                await _signal(chat, _AFTER, request, socket)
        except asyncio.CancelledError:
            # Sanic cancels the request's task when the TCP connection is
            # lost, and what is left when it stops: normal ends here, not
            # worth an error response or a logged traceback. (On the fast
            # transport a client's close ends the TCP connection at once, so
            # its normal end often arrives this way.)
            lost = request.conn_info is not None and request.conn_info.lost
            if not (lost or chat.closing):
                raise
            if _AFTER in chat.signals:
                await _signal(chat, _AFTER, request, socket)
        except Exception as exc:
            logger.exception("connection %s failed", conn)
            conn.close(CloseCode.INTERNAL_ERROR, "internal server error")
            await _signal(chat, _EXCEPTION, request, socket, exc)
        finally:
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

    return serve


async def _signal(
    chat: Chat,
    event: str,
    request: Request,
    socket: Socket,
    exception: Exception | None = None,
) -> None:
    """Dispatch Sanic's ``websocket.handler.<stage>`` ``event``.

    Nothing without handlers. The calls every connection makes test
    ``event in chat.signals`` before making this coroutine.
    """
    if event not in chat.signals:
        return
    context: dict[str, object] = {"request": request, "websocket": socket}
    if exception is not None:
        context["exception"] = exception
    await request.app.dispatch(
        event,
        inline=True,
        context=context,
        reverse=event != _BEFORE,
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
    level = logging.DEBUG if code in _ORDINARY_CLOSES else logging.INFO
    if not connection_log.isEnabledFor(level):
        return
    connection_log.log(
        level,
        "close %s user=%r code=%d by=%s duration=%.1fs rooms=%d",
        conn.key, conn.user.id, code, by, duration, rooms,
        extra={"chat_event": "close", "connection": conn.key,
               "user_id": conn.user.id, "close_code": code,
               "closed_by": by, "duration": round(duration, 3),
               "rooms": rooms},
    )  # fmt: skip


async def _open(
    chat: Chat,
    conn: Connection,
    socket: Socket,
    rooms: list[protocol.Join],
) -> Session:
    """Open the connection's session: welcome, joins and their replays.

    Returns once the connection is set up (its admission slot given
    back); the handler then reads its requests.
    """
    session = Session(
        conn.user,
        chat.config,
        rooms=conn.rooms,
        can_refresh=_refresher(chat) is not None,
        moderates=chat.hooks.moderates,
        metrics=chat.metrics,
        label=conn,
        inbox=protocol.inbox_name(conn.user.id),
        typing=chat.hub.typing,
    )
    await _run(
        chat,
        conn,
        session.open(rooms),
    )
    rooms.clear()  # no longer needed: an idle socket keeps no list
    socket.limiter = session.bucket
    socket.max_strikes = session.max_strikes
    session.reading(conn.replied)
    # Setup is the server's work; waiting for a client that does not
    # read its replay is not: that gives the admission slot back early.
    conn.on_stall = chat.admission.release
    await _run(chat, conn, session.join_granted())
    conn.on_stall = None
    # The 101, welcome and joined leave together (transport/fast.py).
    conn.uncork()
    chat.admission.release()  # set up: let the next upgrade in
    return session


def _refresher(chat: Chat) -> RefreshingAuthenticator | None:
    """The chat's authenticator, if it can refresh a session.

    The test ``isinstance(authenticator, RefreshingAuthenticator)`` makes
    (a ``from_token`` attribute), without its cost: on a runtime-checkable
    protocol that call takes 15-30 us, and every connection asks.
    """
    authenticator = chat.authenticator
    if getattr(authenticator, "from_token", None) is None:
        return None
    return cast(RefreshingAuthenticator, authenticator)


async def _run(chat: Chat, conn: Connection, steps: Steps) -> bool:
    """Perform ``steps``' actions on ``conn``, the hub and hooks, to the end.

    True when they closed the socket. Functions, not an object holding
    ``chat`` and ``conn``: an idle connection keeps no such object.

    Each action's result is sent back into the steps, its failure
    thrown in (the session turns it into an ``error`` frame, or lets
    it end the connection). Cancellation is not thrown in.
    """
    result: object = None
    failure: Exception | None = None
    try:
        while True:
            try:
                if failure is None:
                    action = steps.send(result)
                else:
                    action = steps.throw(failure)
            except StopIteration:
                return False
            result, failure = None, None
            kind = type(action)
            try:
                # The commonest actions are performed without a
                # coroutine: a connection's set-up yields several.
                if kind is Reply:
                    conn.reply(cast(Reply, action).frame)
                elif kind is Expire:
                    expire = cast(Expire, action)
                    # No timer per connection: the hub's watchdog
                    # closes it within a second (hub/watchdog.py).
                    conn.expiry = None if expire.at is None else expire
                elif kind is WaitWritable:
                    # Asked before each join: a wait only while the
                    # client leaves replies unread.
                    if not conn.closing and conn.backed_up():
                        await conn.wait_writable()
                elif kind is MayJoin and chat.hooks.joins_unchecked:
                    result = True  # no can_join hook: everyone may
                else:
                    result = await _perform(chat, conn, action)
            except Exception as exc:
                failure = exc
            if kind is Close:
                return True
    finally:
        steps.close()


async def _perform(chat: Chat, conn: Connection, action: Action) -> object:
    """Perform an action that may wait (``run`` does the cheap ones)."""
    match action:
        # Every connection's set-up joins: matched first.
        case JoinInbox(name):
            await chat.hub.join_inbox(conn, name)
        case Join(room, since, ref):
            await chat.hub.join(conn, room, since, ref=ref)
        case MayPublish(user, room):
            return await chat.hooks.may_publish(user, room)
        case Publish(room, user, text, meta, ref):
            messages = chat.hub.messages
            return await chat.hub.sent.once(
                user.id,
                ref,
                lambda: messages.publish(room, user, text, meta),
            )
        case Moderate(user, room, text, meta):
            return await chat.hooks.moderate(user, room, text, meta)
        case MayModerate(user, room):
            return await chat.hooks.may_moderate(user, room)
        case ReadMessage(room, message_id):
            return await chat.hub.messages.message(
                room, message_id, conn.charge
            )
        case EditMessage(room, message_id, user, text):
            await chat.hub.messages.edit(room, message_id, user, text)
        case DeleteMessage(room, message_id, user):
            await chat.hub.messages.delete(room, message_id, user)
        case MayJoin(user, room):
            return await chat.hooks.may_join(user, room)
        case Leave(room, reason, ref):
            await chat.hub.leave(conn, room, reason=reason, ref=ref)
        case ReadHistory(room, limit, before, max_bytes):
            return await chat.hub.messages.history_frame(
                room,
                limit,
                before=before,
                max_bytes=max_bytes,
                charge=conn.charge,
            )
        case ReadPresence(room):
            return await chat.hub.presence_frame(room)
        case WaitWritable():
            await conn.wait_writable()
        case Close(code, reason):
            conn.close(code, reason)
        case Verify(token):
            # The session asks only when it was told it can.
            authenticator = _refresher(chat)
            if authenticator is not None:
                return await authenticator.from_token(token)
        case SetUser(user):
            conn.user = user
        case _:
            return await _perform_people(chat, conn, action)
    return None


async def _perform_people(
    chat: Chat, conn: Connection, action: Action
) -> object:
    match action:
        case MayMessage(user, to):
            return await chat.hooks.may_message(user, to)
        case SendDirect(user, to, text, meta, ref):
            # before_publish was asked by the session (Moderate).
            return await chat.hub.sent.once(
                user.id, ref, lambda: _direct(chat, user, to, text, meta)
            )
        case Signal(room, frame):
            await chat.hub.messages.signal(conn, room, frame)
        case MarkRead(room, message_id):
            return await chat.hub.marks.mark(conn.user.id, room, message_id)
        case ReadReceipts(room):
            return await chat.hub.marks.frame(room, conn.user.id)
    return None


async def _direct(
    chat: Chat, user: User, to: str, text: str, meta: dict[str, Any] | None
) -> str:
    """Send a DM; its id in the sender's inbox (what the ``ack`` names)."""
    _, mine = await chat.hub.messages.send_direct(user, to, text, meta)
    return mine
