"""Joining and leaving rooms: the room table, presence and recovery.

The table holds a :class:`Room` and its :class:`RoomSubscription` for
every room with at least one local member (or joiner), and nothing else:
a room is created by its first joiner (who subscribes it) and dropped,
its subscription ended, when the last one leaves.

Joining with ``since`` replays history without gap or duplicate: the
room holds live events back for the joiner while its history is read and
sent (what it missed: :mod:`sanic_chat.hub.recovery`), then delivers
those the replay did not contain (see
:mod:`sanic_chat.hub.room`).

An inbox (a user's DMs, named by :func:`~sanic_chat.protocol.inbox_name`)
is a room like any other here, except that it counts against no room
limit and has no presence: nobody else is ever in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .. import protocol
from ..backends.base import Broadcaster
from ..config import ChatConfig
from ..connection import Connection
from ..errors import BroadcasterUnavailable, ProtocolError
from ..metrics import Metrics
from ..protocol import PublicUser
from .receipts import ReadMarks
from .recovery import missed
from .room import Room, event_frame
from .subscription import RoomSubscription

__all__ = ["Membership"]

logger = logging.getLogger(__name__)


class Membership:
    """The rooms of one process and the connections in them.

    Args:
        broadcaster: Subscriptions, history and presence.
        config: Room limits, history size and presence settings.
        metrics: Counts the frames the rooms send.
        marks: Read marks, for the ``joined`` reply.
    """

    __slots__ = (
        "_broadcaster", "_config", "_leaving", "_marks", "_metrics",
        "_subs", "rooms",
    )  # fmt: skip

    def __init__(
        self,
        broadcaster: Broadcaster,
        config: ChatConfig,
        metrics: Metrics,
        marks: ReadMarks | None = None,
    ) -> None:
        self._broadcaster = broadcaster
        self._config = config
        self._metrics = metrics
        self._marks = marks or ReadMarks(broadcaster, config)
        self.rooms: dict[str, Room] = {}
        """Rooms with local members or joiners, by name."""
        self._subs: dict[str, RoomSubscription] = {}
        # Unsubscribes still awaiting their broker (rooms just dropped).
        self._leaving: set[asyncio.Task[None]] = set()

    async def join(
        self,
        conn: Connection,
        name: str,
        since: str | None = None,
        *,
        ref: str | None = None,
    ) -> None:
        """Add ``conn`` to room ``name``; see :meth:`Hub.join`."""
        room = self.rooms.get(name)
        if name in conn.rooms and room is not None:
            if since is None:
                conn.reply(await self._joined(conn, name, ref=ref))
                return
            room.hold(conn)
            conn.forget(name)
            try:
                await self._replay(conn, room, since, ref)
            except BaseException:
                # The re-sync failed (e.g. the broadcaster is down): stay a
                # member and keep receiving; the client may try again.
                if name in conn.rooms:
                    room.admit(conn)
                else:
                    room.remove(conn)
                raise
            return
        private = protocol.is_inbox(name)
        limit = self._config.max_rooms_per_connection
        if not private and _rooms(conn) >= limit:
            raise ProtocolError(
                "too_many_rooms",
                f"a connection may be in at most {limit} rooms",
            )
        room, sub = self._room(name)
        conn.rooms.add(name)
        room.hold(conn)
        user = conn.user.public()
        try:
            await sub.subscribed()
            if private:
                await self._replay(conn, room, since, ref)
                return
            # Counted if and only if it returns, even when cancelled (the
            # broadcaster takes back a change it could not finish).
            await self._broadcaster.presence_add(name, user)
            try:
                await self._replay(conn, room, since, ref)
            except BaseException:
                # Shielded: a second cancellation must not skip it.
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self._broadcaster.presence_remove(name, user)
                    )
                raise
        except BaseException:
            conn.rooms.discard(name)
            room.remove(conn)
            self._close_if_empty(room)
            raise
        if self._announces(room):
            # The client has its ``joined``: a lost notice to the others
            # (best-effort anyway) must not answer it with an error.
            try:
                await self._publish_presence(protocol.joined, name, conn)
            except BroadcasterUnavailable as exc:
                logger.debug("join notice in %s not sent: %s", name, exc)

    async def _joined(
        self,
        conn: Connection,
        name: str,
        recovered: bool | None = None,
        ref: str | None = None,
    ) -> str:
        """The ``joined`` reply, with the user's read state and ``ref``."""
        user = conn.user
        last_read, unread = await self._marks.state(user.id, name)
        reply = protocol.joined(
            name, user.public(), recovered, last_read, unread
        )
        return protocol.with_ref(reply, ref)

    async def _replay(
        self,
        conn: Connection,
        room: Room,
        since: str | None,
        ref: str | None = None,
    ) -> None:
        """Confirm a join, replay history after ``since``, then go live.

        Live events of the room stay held back (``room.hold``) until the
        replay is out; events both replayed and held are delivered once.
        """
        name = room.name
        found, replayed = await missed(
            self._broadcaster, name, since, self._config.history_size
        )
        recovered = None if since is None else bool(found)
        reply = await self._joined(conn, name, recovered, ref)
        if not room.holding(conn):
            # The connection was detached while history was read (it is
            # closing; its task's cancellation is still on the way).
            raise asyncio.CancelledError
        conn.reply(reply)
        for event in replayed:
            conn.reply(event_frame(event))
            if conn.backed_up():
                # A long replay goes out as fast as the client reads it,
                # within its byte bound; live events stay held meanwhile.
                await conn.wait_writable()
                if name not in conn.rooms:
                    raise asyncio.CancelledError  # detached: closing
        ids = [e.id for e in replayed if e.id is not None]
        if not room.admit(conn, ids, since if found else None):
            raise asyncio.CancelledError  # detached: closing

    async def join_inbox(self, conn: Connection, name: str) -> None:
        """Make ``conn`` a member of its inbox ``name`` at connect.

        No reply and nothing to replay: the connection is a member at
        once, with nothing held back for it (events that arrive are
        delivered to it as they come). Every connection makes this join,
        so it is the cheapest one; rejoining an inbox with ``since``
        (recovery) is an ordinary :meth:`join`.
        """
        if name in conn.rooms:
            return
        room, sub = self._room(name)
        conn.rooms.add(name)
        room.add(conn)
        try:
            await sub.subscribed()
            if name not in conn.rooms:
                raise asyncio.CancelledError  # detached meanwhile: closing
        except BaseException:
            conn.rooms.discard(name)
            room.remove(conn)
            self._close_if_empty(room)
            raise

    async def leave(
        self,
        conn: Connection,
        name: str,
        reason: str | None = None,
        *,
        ref: str | None = None,
    ) -> None:
        """Take ``conn`` out of room ``name``; see :meth:`Hub.leave`."""
        if name not in conn.rooms:
            raise ProtocolError("not_joined", f"not in room {name!r}")
        announce = self._detach_room(conn, name)
        # Nothing of the room may follow its ``left`` confirmation.
        conn.forget(name)
        left = protocol.left(name, conn.user.public(), reason)
        conn.reply(protocol.with_ref(left, ref))
        if announce is not None:
            await self.departed(conn, name, announce)

    def detach(self, conn: Connection) -> list[tuple[str, bool]]:
        """Take ``conn`` out of every room; see :meth:`Hub.detach`."""
        left = []
        for name in list(conn.rooms):
            announce = self._detach_room(conn, name)
            if announce is not None and not protocol.is_inbox(name):
                left.append((name, announce))
        return left

    async def departed(
        self, conn: Connection, name: str, announce: bool
    ) -> None:
        """Update presence for ``conn`` having left ``name``."""
        await self._broadcaster.presence_remove(name, conn.user.public())
        if announce:
            await self._publish_presence(protocol.left, name, conn)

    def stop(self) -> list[asyncio.Task[None]]:
        """Cancel every room's subscription and forget the rooms.

        Returns:
            The tasks still finishing (cancelled retries, unsubscribes),
            for the caller to await.
        """
        tasks = list(self._leaving)
        for sub in self._subs.values():
            if sub.task is not None:
                tasks.append(sub.task)
            leaving = sub.cancel()
            if leaving is not None:
                tasks.append(leaving)
        self._subs.clear()
        self.rooms.clear()
        return tasks

    def _detach_room(self, conn: Connection, name: str) -> bool | None:
        """Remove ``conn`` from ``name``; ``None`` if it was not a member.

        Otherwise tell whether its leaving is announced to the others.
        """
        conn.rooms.discard(name)
        room = self.rooms.get(name)
        if room is None:
            return None
        was_member = room.remove(conn)
        announce = self._announces(room)
        self._close_if_empty(room)
        return announce if was_member else None

    def _room(self, name: str) -> tuple[Room, RoomSubscription]:
        room = self.rooms.get(name)
        if room is None:
            hold_limit = self._config.send_queue_size
            room = self.rooms[name] = Room(name, hold_limit, self._metrics)
            sub = self._subs[name] = RoomSubscription(room, self._broadcaster)
            return room, sub
        return room, self._subs[name]

    def _close_if_empty(self, room: Room) -> None:
        if room.empty() and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            leaving = self._subs.pop(room.name).cancel()
            if leaving is not None:
                self._leaving.add(leaving)
                leaving.add_done_callback(self._leaving.discard)

    def _announces(self, room: Room) -> bool:
        return (
            not protocol.is_inbox(room.name)
            and self._config.presence_events
            and len(room.members) <= self._config.presence_events_max_members
        )

    async def _publish_presence(
        self,
        notice: Callable[[str, PublicUser], str],
        room: str,
        conn: Connection,
    ) -> None:
        """Tell the room's other members, best-effort (not stored)."""
        await self._broadcaster.publish(
            room,
            notice(room, conn.user.public()),
            store=False,
            origin=conn.key,
        )


def _rooms(conn: Connection) -> int:
    """Rooms ``conn`` is in that count against its limit (not its inbox)."""
    return sum(1 for name in conn.rooms if not protocol.is_inbox(name))
