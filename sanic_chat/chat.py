"""The chat of one app: what server code uses to talk to the rooms.

Each app that registers a chat blueprint gets its own :class:`Chat`
(nothing is shared between apps). Reach it from handlers or background
tasks with :func:`get_chat`::

    chat = sanic_chat.get_chat(request.app)
    await chat.publish("lobby", "Deploy finished", user=User("bot", "CI"))
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sanic import Request, Sanic

from .admission import Admission
from .archive import Archive, MessageHook
from .authenticators import token_from_request
from .backends.base import Broadcaster, PresenceInfo
from .config import ChatConfig
from .errors import Unauthorized
from .hooks import Hooks
from .hub import Hub
from .identity import SYSTEM_USER, Authenticator, GuestAuthenticator, User
from .metrics import Metrics, PrometheusExporter
from .posting import Posting
from .protocol import (
    inbox_name,
    is_inbox,
)
from .transport import Kind

logger = logging.getLogger(__name__)

DEFAULT_NAME = "sanic_chat"

WEBSOCKET_SIGNALS = frozenset(
    {
        "websocket.handler.after",
        "websocket.handler.before",
        "websocket.handler.exception",
    }
)
"""Sanic's ``websocket.handler.*`` events (until startup finds which
have handlers)."""


class Chat:
    """Rooms, broadcaster and settings of one chat blueprint in one app.

    Args:
        config: Resolved settings.
        broadcaster: The backend that carries events.
        authenticator: Identifies users before the upgrade.
        hooks: The app's permission and moderation hooks (none: everyone
            may join, publish and message; nobody moderates).
        on_message: Gets every message, edit and delete this worker
            stores, from a bounded queue (:mod:`sanic_chat.archive`).
    """

    def __init__(
        self,
        config: ChatConfig,
        broadcaster: Broadcaster,
        authenticator: Authenticator,
        *,
        hooks: Hooks | None = None,
        on_message: MessageHook | None = None,
    ) -> None:
        self.config = config
        self.broadcaster = broadcaster
        self.authenticator = authenticator
        self.hooks = hooks or Hooks(config.max_text_length)
        """The app's hooks, asked on every path."""
        self.metrics = Metrics()
        self.hub = Hub(broadcaster, config, self.metrics)
        self._posting = Posting(config, self.hooks, self.hub)
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
        self.signals: frozenset[str] = WEBSOCKET_SIGNALS
        # Prometheus exposition, when prometheus-client is installed and a
        # metrics route is configured (created per worker, at start).
        self.exporter: PrometheusExporter | None = None

    # Identity ------------------------------------------------------------

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
        return await self._posting.publish(room, text, user, meta)

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
        await self._posting.edit(room, message_id, text, user)

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
        await self._posting.delete(room, message_id, user)

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
        return await self._posting.send_to_user(user_id, text, user, meta)

    def inbox(self, user_id: str) -> str:
        """Return the name of ``user_id``'s inbox (its DMs' room)."""
        return inbox_name(user_id)

    async def history(
        self, room: str, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Return the room's stored messages as dicts, oldest first."""
        frame = await self.hub.messages.history_frame(room, limit)
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
