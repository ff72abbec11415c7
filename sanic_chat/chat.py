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
from .authenticators import token_from_request
from .backends.base import Broadcaster, PresenceInfo
from .config import ChatConfig
from .errors import CloseCode, ProtocolError, Unauthorized
from .hub import Hub
from .identity import SYSTEM_USER, Authenticator, GuestAuthenticator, User
from .metrics import Metrics, PrometheusExporter, room_labeller
from .protocol import (
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
    ) -> None:
        self.config = config
        self.broadcaster = broadcaster
        self.authenticator = authenticator
        self._can_join = can_join
        self._can_publish = can_publish
        self._can_message = can_message
        self.metrics = Metrics()
        self.hub = Hub(broadcaster, config, self.metrics)
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

    # Server-side API ---------------------------------------------------------

    async def publish(
        self, room: str, text: str, *, user: User = SYSTEM_USER
    ) -> str:
        """Post ``text`` to ``room`` as ``user``; return the message id.

        The message takes the same path as one sent over a socket: it gets
        an id, goes into history and reaches every member on every worker.

        Raises:
            ValueError: ``room`` is not a valid room name, or ``text`` is
                empty, longer than ``max_text_length`` or not encodable
                as UTF-8 (the same rules as for a client's message).
            BroadcasterUnavailable: The broadcaster cannot be reached.
        """
        try:
            check_room(room)
            check_text(text, self.config.max_text_length)
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        return await self.hub.publish(room, user, text)

    async def send_to_user(
        self, user_id: str, text: str, *, user: User = SYSTEM_USER
    ) -> str:
        """Send a direct message to ``user_id`` as ``user``; return its id.

        The message takes the path of a DM sent over a socket (the
        ``can_message`` hook is not asked: server code decides): it is
        stored in the recipient's inbox and in the sender's, and reaches
        every connection of both on every worker; a recipient who is
        offline finds it in their inbox's history.

        Returns:
            The id of the recipient's copy (in their inbox).

        Raises:
            ValueError: ``user_id`` is empty or longer than 128
                characters, or ``text`` breaks the rules of a message.
            BroadcasterUnavailable: The broadcaster cannot be reached.
        """
        try:
            check_user_id(user_id, "user_id")
            check_text(text, self.config.max_text_length)
        except ProtocolError as exc:
            raise ValueError(exc.message) from None
        # MODERATION: before_publish(user, inbox, text, meta) goes here
        # once it lands (issue 14, item 6), as in Chat.publish.
        delivered, _ = await self.hub.send_direct(user, user_id, text)
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
