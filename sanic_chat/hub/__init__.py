"""The hub: rooms and connections of one process.

The hub is the only stateful part of the chat. For every room with at
least one local member it holds exactly one broadcaster subscription,
which pushes to the room (no task while it works); each event from it is
turned into a frame once and written to
(or queued for) every member (:meth:`Connection.send` never waits).
Whatever the number of sockets, a message costs one publish, one frame
encoding per process and one write per recipient.

:class:`Hub` is a facade over small units with one job each, as
Centrifuge splits its hub into connections and subscriptions:

- :mod:`~sanic_chat.hub.registry`: the process's connections, per-user
  counts and upgrade reservations, closing them;
- :mod:`~sanic_chat.hub.membership`: the room table, joins (with
  recovery), leaves and presence;
- :mod:`~sanic_chat.hub.room`: one room's members, hold-back and replay
  de-duplication, and fan-out (no I/O, no event loop);
- :mod:`~sanic_chat.hub.subscription`: one room's subscription, pushed
  to, retried with backoff;
- :mod:`~sanic_chat.hub.watchdog`: the once-a-second sweep (unsent bytes,
  keepalive, stuck writes);
- :mod:`~sanic_chat.hub.control`: disconnect notices between workers;
- :mod:`~sanic_chat.hub.messages` (``Hub.messages``): storing
  messages, edits, deletes and direct messages, unstored notices
  (``typing``, ``read``), and reading history with the edits folded in;
- :mod:`~sanic_chat.hub.receipts`: read marks, for ``read``,
  ``receipts`` and the ``joined`` reply.

Direct messages need no unit of their own: each user's inbox is a room
(:func:`~sanic_chat.protocol.inbox_name`) that every connection of the
user joins at connect, and a DM is a stored publish into the inboxes of
both users (:meth:`Messages.send_direct
<sanic_chat.hub.messages.Messages.send_direct>`).
"""

from __future__ import annotations

import asyncio
import logging

from .. import protocol
from ..archive import Archive
from ..backends.base import Broadcaster
from ..budget import UnsentBytes
from ..config import ChatConfig
from ..connection import Connection
from ..limits import Throttle
from ..metrics import Metrics
from .control import CONTROL_CHANNEL, ControlChannel
from .membership import Membership
from .messages import Messages
from .receipts import ReadMarks
from .registry import Registry
from .room import Room, event_text
from .sent import SentRefs
from .watchdog import SHED_AFTER, Watchdog

__all__ = ["CONTROL_CHANNEL", "Hub", "Room"]

logger = logging.getLogger(__name__)

# Read when a Hub is built (tests raise it to keep stalled clients).
_SHED_AFTER = SHED_AFTER
TYPING_INTERVAL = 2.0
# Read when a Hub is built: (user, room) keys of the typing throttle.
TYPING_KEYS = 100_000


class Hub:
    """Membership and fan-out for the connections of one process.

    Args:
        broadcaster: Carries events between processes.
        config: Limits and presence settings.
        metrics: The worker's counters (a fresh set when omitted).
    """

    def __init__(
        self,
        broadcaster: Broadcaster,
        config: ChatConfig,
        metrics: Metrics | None = None,
    ) -> None:
        self.broadcaster = broadcaster
        self.config = config
        self.metrics = metrics or Metrics()
        # Bytes produced for this worker's clients and not yet read.
        self.unsent = UnsentBytes(config.max_worker_unsent_bytes)
        self._registry = Registry()
        self.marks = ReadMarks(broadcaster, config)
        self._membership = Membership(
            broadcaster, config, self.metrics, self.marks
        )
        # One per worker: a user's typing in a room, once per 2 s.
        self.typing = Throttle(TYPING_INTERVAL, TYPING_KEYS)
        self._watchdog = Watchdog(
            self._registry.connections,
            self.unsent,
            config.send_timeout,
            self.metrics,
            shed_after=_SHED_AFTER,
        )
        self._control = ControlChannel(broadcaster, self._registry)
        self.messages = Messages(broadcaster, config, self.metrics)
        """Messages, edits, deletes, DMs and notices of rooms and inboxes."""
        self.sent = SentRefs(broadcaster, config)
        """Refs of the messages sent, so a resend is not published twice."""

    @property
    def archive(self) -> Archive | None:
        """The ``on_message`` hook's queue (None: the app has no hook)."""
        return self.messages.archive

    @archive.setter
    def archive(self, archive: Archive | None) -> None:
        self.messages.archive = archive

    @property
    def rooms(self) -> dict[str, Room]:
        """Rooms with members (or joiners) on this process, by name."""
        return self._membership.rooms

    @property
    def connections(self) -> set[Connection]:
        """Every open connection of this process."""
        return self._registry.connections

    # ------------------------------------------------------------------
    # Connections

    def add(self, conn: Connection) -> None:
        """Track ``conn`` until :meth:`detach`."""
        self._registry.add(conn)

    def reserve(self, user_id: str) -> None:
        """Count an accepted upgrade of ``user_id`` before its socket exists.

        Concurrent upgrades would otherwise all see the old count. A
        reservation that no connection claims (a failed handshake) lapses
        after 10 seconds.
        """
        self._registry.reserve(user_id)

    def release(self, user_id: str) -> None:
        """Drop one reservation of ``user_id`` (its handshake failed)."""
        self._registry.release(user_id)

    def connections_of(self, user_id: str) -> int:
        """Open (or about to open) connections of ``user_id`` here."""
        return self._registry.connections_of(user_id)

    def detach(self, conn: Connection) -> list[tuple[str, bool]]:
        """Take ``conn`` out of every room at once, without awaiting.

        Returns:
            ``(room, announce)`` for each room it was a member of; pass it
            to :meth:`departed` to update presence.
        """
        left = self._membership.detach(conn)
        self._registry.remove(conn)
        return left

    async def departed(
        self, conn: Connection, rooms: list[tuple[str, bool]]
    ) -> None:
        """Update presence for a detached connection; never raises."""
        for name, announce in rooms:
            try:
                await self._membership.departed(conn, name, announce)
            except Exception as exc:
                logger.debug("presence of %s in %s: %s", conn, name, exc)

    async def close_all(
        self, code: int, reason: str, wait: float, spread: float = 0.0
    ) -> None:
        """Close every connection after its queued frames; wait for them.

        See :meth:`Registry.close_all
        <sanic_chat.hub.registry.Registry.close_all>`.
        """
        await self._registry.close_all(code, reason, wait, spread)

    def start(self) -> None:
        """Start the watchdog and the control channel.

        The watchdog sends keepalive pings and closes stuck clients; the
        control channel carries disconnect notices between workers.
        """
        self._watchdog.start()
        self._control.start()

    async def stop(self) -> None:
        """Cancel the watchdog and end every room's subscription."""
        tasks = self._membership.stop()
        for task in (self._watchdog.stop(), self._control.stop()):
            if task is not None:
                tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def disconnect_user(self, user_id: str, reason: str) -> int:
        """Close ``user_id``'s connections here and tell other workers.

        Returns:
            How many connections were closed on this worker.
        """
        return await self._control.disconnect_user(user_id, reason)

    # ------------------------------------------------------------------
    # Rooms

    async def join(
        self,
        conn: Connection,
        name: str,
        since: str | None = None,
        *,
        ref: str | None = None,
    ) -> None:
        """Add ``conn`` to room ``name`` and confirm with ``joined``.

        With ``since``, the room's stored messages after that id are sent
        between the confirmation and the first live message. Joining a
        room the connection is already in changes nothing, unless
        ``since`` is given: then it re-syncs (frames of the room still
        queued are dropped and the replay starts after ``since``). The
        ``joined`` reply echoes ``ref``.

        Raises:
            ProtocolError: ``too_many_rooms`` when the connection is
                already in as many rooms as allowed.
            BroadcasterUnavailable: The broadcaster cannot be reached.
        """
        await self._membership.join(conn, name, since, ref=ref)

    async def leave(
        self,
        conn: Connection,
        name: str,
        reason: str | None = None,
        *,
        ref: str | None = None,
    ) -> None:
        """Take ``conn`` out of room ``name`` and confirm with ``left``.

        Args:
            conn: The connection.
            name: The room.
            reason: Why the server took it out (``"forbidden"``), carried
                in the ``left`` frame; ``None`` when the client asked.
            ref: The request's ``ref``, echoed by the ``left`` reply.

        Raises:
            ProtocolError: ``not_joined`` if it is not in the room.
        """
        await self._membership.leave(conn, name, reason, ref=ref)

    async def join_inbox(self, conn: Connection, name: str) -> None:
        """Put ``conn`` in its inbox ``name``, without a reply."""
        await self._membership.join_inbox(conn, name)

    # ------------------------------------------------------------------
    # Requests

    event_text = staticmethod(event_text)

    async def presence_frame(self, room: str) -> str:
        """Encode the ``presence`` reply for ``room``."""
        info = await self.broadcaster.presence(
            room, limit=self.config.presence_list_limit
        )
        return protocol.presence(room, info.users, info.count)
