"""The chat of one app: what server code uses to talk to the rooms.

Each app that registers a chat blueprint gets its own :class:`Chat`
(nothing is shared between apps). Reach it from handlers or background
tasks with :func:`get_chat`::

    chat = sanic_chat.get_chat(request.app)
    await chat.publish("lobby", "Deploy finished", user=User("bot", "CI"))
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sanic import Request, Sanic

from .admission import Admission
from .archive import Archive, MessageHook
from .authenticators import token_from_request
from .backends.base import Broadcaster, PresenceInfo
from .config import ChatConfig
from .errors import CloseCode, ProtocolError, Unauthorized
from .hub import Hub
from .identity import SYSTEM_USER, Authenticator, GuestAuthenticator, User
from .metrics import Metrics, PrometheusExporter, room_labeller
from .protocol import (
    check_meta,
    check_room,
    check_text,
    check_user_id,
    inbox_name,
    is_inbox,
)
from .transport import Kind

logger = logging.getLogger(__name__)

DEFAULT_NAME = "sanic_chat"

RoomCheck = Callable[[User, str], "bool | Awaitable[bool]"]
"""``(user, room) -> bool``, sync or async: may this user do it here?"""

MessageCheck = Callable[[User, str], "bool | Awaitable[bool]"]
"""``(sender, recipient_id) -> bool``, sync or async: may they DM them?"""

BeforePublish = Callable[
    [User, str, str, "dict[str, Any] | None"],
    "str | Awaitable[str | None] | None",
]
"""``(user, room, text, meta) -> text | None``, sync or async.

Runs before a message or an edit is stored: return the text to publish
(possibly changed), ``None`` to publish it unchanged, or raise
:class:`~sanic_chat.errors.Forbidden` with a reason to refuse it.
"""


class Chat:
    """Rooms, broadcaster and settings of one chat blueprint in one app.

    Args:
        config: Resolved settings.
        broadcaster: The backend that carries events.
        authenticator: Identifies users before the upgrade.
        can_join: May a user join (or connect into) a room?
        can_publish: May a user post a message to a room?
        can_message: May a user send a direct message (or ``typing``)
            to another user (block lists)?
        can_moderate: May a user edit and delete others' messages in a
            room? (Nobody may without it.)
        before_publish: Checks or changes every message and edit before
            it is stored (:data:`BeforePublish`).
        on_message: Gets every message, edit and delete this worker
            stores, from a bounded queue (:mod:`sanic_chat.archive`).
    """

    def __init__(
        self,
        config: ChatConfig,
        broadcaster: Broadcaster,
        authenticator: Authenticator,
        *,
        can_join: RoomCheck | None = None,
        can_publish: RoomCheck | None = None,
        can_message: MessageCheck | None = None,
        can_moderate: RoomCheck | None = None,
        before_publish: BeforePublish | None = None,
        on_message: MessageHook | None = None,
    ) -> None:
        self.config = config
        self.broadcaster = broadcaster
        self.authenticator = authenticator
        self._can_join = can_join
        self._can_publish = can_publish
        self._can_message = can_message
        self._can_moderate = can_moderate
        self._before_publish = before_publish
        self.metrics = Metrics()
        self.hub = Hub(broadcaster, config, self.metrics)
        if on_message is not None:
            self.hub.archive = Archive(on_message, self.metrics)
        self.admission = Admission(
            config.max_connections_in_setup, config.setup_wait
        )
        self.closing = False
        # The transport of this worker's sockets, chosen at startup by the
        # blueprint (sanic_chat._sanic.select_transport).
        self.transport: Kind = "fast"
        # Sanic's websocket.handler.* events the endpoint dispatches (those
        # with handlers; set with the transport).
        self.signals: frozenset[str] = frozenset(
            {
                "websocket.handler.after",
                "websocket.handler.before",
                "websocket.handler.exception",
            }
        )
        # Prometheus exposition, when prometheus-client is installed and a
        # metrics route is configured (created per worker, at start).
        self.exporter: PrometheusExporter | None = None

    # Lifecycle, driven by the blueprint's listeners -----------------------

    async def start(self) -> None:
        """Connect the broadcaster (once per worker, before serving)."""
        self.closing = False
        if self.config.metrics_path and self.exporter is None:
            try:
                config = self.config
                self.exporter = PrometheusExporter(
                    self.metrics_snapshot,
                    room_labeller(
                        config.metrics_room_labels,
                        config.metrics_key or config.api_key,
                    ),
                )
            except ImportError:
                logger.info(
                    "sanic-chat: no /metrics (pip install prometheus-client)"
                )
        await self.broadcaster.connect()
        self.hub.start()
        if self.exporter is not None:
            self.exporter.start()

    async def shutdown(self) -> None:
        """Close every socket with 1012 (service restart), in batches.

        Each socket gets the frames already queued for it first; the
        batches are spread over ``shutdown_spread`` seconds so clients do
        not reconnect all at once. Messages in flight are in history, so
        clients that reconnect with ``since`` lose nothing.
        """
        self.closing = True
        await self.hub.close_all(
            CloseCode.SERVICE_RESTART,
            "server restarting",
            self.config.shutdown_close_timeout,
            self.config.shutdown_spread,
        )

    async def stop(self) -> None:
        """Stop room subscriptions and disconnect the broadcaster."""
        if self.exporter is not None:
            await self.exporter.stop()
        if self.hub.archive is not None:
            await self.hub.archive.stop()
        await self.hub.stop()
        await self.broadcaster.disconnect()

    async def identify(self, request: Request) -> User | None:
        """Run the chat's authenticator for one of the app's own requests.

        The ``/ws`` route stores its user on ``request.ctx.chat_user``; the
        app's other handlers can get the same identity with this. Without
        a valid identity: a guest with ``allow_anonymous``, else ``None``
        (:meth:`authenticate` says why).

        Raises:
            Forbidden: The authenticator refuses the identity.
        """
        try:
            return await self.authenticate(request)
        except Unauthorized:
            if not self.config.allow_anonymous:
                return None
        return await GuestAuthenticator()(request)

    async def authenticate(self, request: Request) -> User:
        """Run the chat's authenticator; say why when there is no identity.

        Guests are never made here, whatever ``allow_anonymous`` says.

        Raises:
            Unauthorized: No valid identity, with its ``reason``: the
                authenticator's own, or for one that returned ``None``
                ``missing`` (the request carries no token where the
                built-in authenticators look) or ``rejected``.
            Forbidden: The authenticator refuses the identity.
        """
        user = await self.authenticator(request)
        if user is None:
            carried = token_from_request(request) is not None
            raise Unauthorized("rejected" if carried else "missing")
        return user

    # Authorization -----------------------------------------------------

    async def may_join(self, user: User, room: str) -> bool:
        """Ask the ``can_join`` hook (everyone may when there is none)."""
        return await _ask(self._can_join, user, room)

    async def may_publish(self, user: User, room: str) -> bool:
        """Ask the ``can_publish`` hook (everyone may when there is none)."""
        return await _ask(self._can_publish, user, room)

    async def may_message(self, sender: User, recipient_id: str) -> bool:
        """Ask the ``can_message`` hook (everyone may when there is none)."""
        return await _ask(self._can_message, sender, recipient_id)

    async def may_moderate(self, user: User, room: str) -> bool:
        """Ask the ``can_moderate`` hook (nobody may when there is none)."""
        if self._can_moderate is None:
            return False
        return await _ask(self._can_moderate, user, room)

    @property
    def moderates(self) -> bool:
        """Whether the chat has a ``before_publish`` hook."""
        return self._before_publish is not None

    async def moderate(
        self,
        user: User,
        room: str,
        text: str,
        meta: dict[str, Any] | None = None,
    ) -> str:
        """Run ``before_publish``: return the text to store.

        Every path that stores a message or an edit calls it (sockets,
        :meth:`publish`, :meth:`edit`, the HTTP API): call it too from
        your own. ``room`` is the room (for a direct message: the
        recipient's inbox).

        Raises:
            Forbidden: The hook refused the message; its text is the
                reason.
            ProtocolError: The text the hook returned is not a valid
                message (empty, too long: ``bad_request``, ``too_large``).
            TypeError: The hook returned neither a string nor ``None``.
        """
        hook = self._before_publish
        if hook is None:
            return text
        answer = hook(user, room, text, meta)
        if inspect.isawaitable(answer):
            answer = await answer
        if answer is None:
            return text
        if not isinstance(answer, str):
            raise TypeError(
                "before_publish must return a str or None, not "
                f"{type(answer).__name__}"
            )
        return check_text(answer, self.config.max_text_length)

    # Server-side API ---------------------------------------------------------

    async def publish(
        self,
        room: str,
        text: str,
        *,
        user: User = SYSTEM_USER,
        meta: dict[str, Any] | None = None,
    ) -> str:
        """Post ``text`` to ``room`` as ``user``; return the message id.

        The message takes the same path as one sent over a socket: the
        ``before_publish`` hook, an id, history, every member on every
        worker, the ``on_message`` hook.

        Args:
            room: The room.
            text: The message.
            user: The sender shown (the system user by default).
            meta: A JSON object carried with the message (at most 2 KB
                encoded), as a client's ``meta``.

        Raises:
            ValueError: ``room`` is not a valid room name, ``text`` is
                empty, longer than ``max_text_length`` or not encodable
                as UTF-8, or ``meta`` is not a JSON object of at most
                2 KB (the same rules as for a client's message).
            Forbidden: ``before_publish`` refused it.
            BroadcasterUnavailable: The broadcaster cannot be reached.
        """
        try:
            check_room(room)
            check_text(text, self.config.max_text_length)
            check_meta(meta)
            text = await self.moderate(user, room, text, meta)
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        return await self.hub.publish(room, user, text, meta)

    async def edit(
        self,
        room: str,
        message_id: str,
        text: str,
        *,
        user: User = SYSTEM_USER,
    ) -> None:
        """Replace the text of a stored message, as a moderator would.

        Members get ``edited``; history and recovery show the new text.
        No author check: server code may edit any message. The
        ``before_publish`` hook runs on the new text.

        Raises:
            ValueError: Invalid ``room`` or ``text``.
            LookupError: ``message_id`` is not in the room's history (any
                more), or was deleted.
            Forbidden: ``before_publish`` refused the new text.
            BroadcasterUnavailable: The broadcaster cannot be reached.
        """
        try:
            check_room(room)
            check_text(text, self.config.max_text_length)
            message = await self._stored(room, message_id)
            text = await self.moderate(user, room, text, message.get("meta"))
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        await self.hub.edit(room, message_id, user, text)

    async def delete(
        self, room: str, message_id: str, *, user: User = SYSTEM_USER
    ) -> None:
        """Delete a stored message, as a moderator would.

        Members get ``deleted``; history and recovery show a tombstone.

        Raises:
            ValueError: Invalid ``room``.
            LookupError: ``message_id`` is not in the room's history (any
                more), or was deleted already.
            BroadcasterUnavailable: The broadcaster cannot be reached.
        """
        try:
            check_room(room)
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        await self._stored(room, message_id)
        await self.hub.delete(room, message_id, user)

    async def _stored(self, room: str, message_id: str) -> dict[str, Any]:
        message = await self.hub.message(room, message_id)
        if message is None:
            raise LookupError(
                f"message {message_id!r} is not in the history of {room!r}"
            )
        return message

    async def send_to_user(
        self,
        user_id: str,
        text: str,
        *,
        user: User = SYSTEM_USER,
        meta: dict[str, Any] | None = None,
    ) -> str:
        """Send a direct message to ``user_id`` as ``user``; return its id.

        The message takes the path of a DM sent over a socket (the
        ``can_message`` hook is not asked: server code decides): the
        ``before_publish`` hook (its room is the recipient's inbox), then
        stored in the recipient's inbox and in the sender's, and reaches
        every connection of both on every worker; a recipient who is
        offline finds it in their inbox's history.

        Args:
            user_id: The recipient.
            text: The message.
            user: The sender shown (the system user by default).
            meta: A JSON object carried with the message (at most 2 KB
                encoded), as a client's ``meta``.

        Returns:
            The id of the recipient's copy (in their inbox).

        Raises:
            ValueError: ``user_id`` is empty or longer than 128
                characters, ``text`` or ``meta`` breaks the rules of a
                message.
            Forbidden: ``before_publish`` refused it.
            BroadcasterUnavailable: The broadcaster cannot be reached.
        """
        try:
            check_user_id(user_id, "user_id")
            check_text(text, self.config.max_text_length)
            check_meta(meta)
            inbox = inbox_name(user_id)
            text = await self.moderate(user, inbox, text, meta)
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        delivered, _ = await self.hub.send_direct(user, user_id, text, meta)
        return delivered

    def inbox(self, user_id: str) -> str:
        """Return the name of ``user_id``'s inbox (its DMs' room)."""
        return inbox_name(user_id)

    async def history(
        self, room: str, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Return the room's stored messages as dicts, oldest first."""
        frame = await self.hub.history_frame(room, limit)
        messages: list[dict[str, Any]] = json.loads(frame)["messages"]
        return messages

    async def disconnect_user(
        self, user_id: str, reason: str = "disconnected by the server"
    ) -> int:
        """Close every connection of ``user_id`` on every worker with 1008.

        Returns:
            How many were closed on this worker; other workers close
            theirs when the notice reaches them through the broadcaster.
        """
        return await self.hub.disconnect_user(user_id, reason)

    async def presence(self, room: str) -> PresenceInfo:
        """Return the users connected to ``room`` (on every worker)."""
        return await self.broadcaster.presence(
            room, limit=self.config.presence_list_limit
        )

    @property
    def healthy(self) -> bool:
        """Whether this worker takes new clients (readiness).

        False while it cannot reach its broadcaster, while it shuts down,
        and while it is over its unsent bytes budget (it answers new
        upgrades 503 then).
        """
        return (
            self.broadcaster.healthy
            and not self.closing
            and not self.hub.unsent.full
        )

    def metrics_snapshot(self) -> dict[str, Any]:
        """This worker's counters and gauges (see :mod:`sanic_chat.metrics`).

        Counters count since the worker started: ``messages_received``
        (published), ``messages_sent`` (frames handed to sockets),
        ``messages_dropped``, ``slow_consumer_disconnects``, ``lagged``,
        ``rate_limited``, ``auth_failures`` by reason, ``publish_count``
        and ``publish_seconds``, ``broadcaster_reconnects``; gauges:
        ``connections``, ``rooms``, ``room_members`` (largest rooms),
        ``broadcaster_healthy``.
        """
        return self.metrics.snapshot(self)

    @property
    def archive_queued(self) -> int:
        """Events waiting for the ``on_message`` hook on this worker."""
        archive = self.hub.archive
        return 0 if archive is None else archive.pending

    @property
    def connection_count(self) -> int:
        """Open WebSocket connections on this worker."""
        return len(self.hub.connections)

    def room_sizes(self) -> dict[str, int]:
        """Members per room on this worker (inboxes are not rooms here)."""
        return {
            name: len(r.members)
            for name, r in self.hub.rooms.items()
            if not is_inbox(name)
        }


async def _ask(check: RoomCheck | None, user: User, room: str) -> bool:
    if check is None:
        return True
    answer = check(user, room)
    if inspect.isawaitable(answer):
        answer = await answer
    return bool(answer)


def get_chat(app: Sanic[Any, Any] | Request, name: str = DEFAULT_NAME) -> Chat:
    """Return the :class:`Chat` registered on ``app`` under ``name``.

    Args:
        app: The Sanic app, or a request of it.
        name: The blueprint's name, if it was given one.

    Raises:
        LookupError: No chat blueprint of that name is registered.
    """
    if isinstance(app, Request):
        app = app.app
    chats: dict[str, Chat] = getattr(app.ctx, "sanic_chat", {})
    try:
        return chats[name]
    except KeyError:
        raise LookupError(
            f"no sanic-chat blueprint named {name!r} is registered on "
            f"app {app.name!r}"
        ) from None
