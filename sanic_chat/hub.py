"""Rooms of one process: membership, fan-out and recovery.

The hub is the only stateful part of the chat. For every room with at
least one local member it holds exactly one broadcaster subscription, in
one task; each event from it is turned into a frame once and appended to
the outbox of every member (:meth:`Connection.send` never waits). Whatever
the number of sockets, a message costs one publish, one frame encoding
per process and one queue append per recipient.

Joining with ``since`` replays history without gap or duplicate: live
events are held back while history is read, then events that the replay
already contained are skipped. Because every subscriber sees a channel in
the same order as its history, the held-back events that were replayed
always come first, so the check ends at the first new event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable

from . import protocol
from .backends.base import Broadcaster, Event, Gap
from .backoff import Backoff
from .budget import UnsentBytes
from .config import ChatConfig
from .connection import Connection
from .errors import BroadcasterUnavailable, CloseCode, ProtocolError
from .identity import User
from .metrics import Metrics
from .protocol import (
    PublicUser,
    encode,
    fit,
    message_payload,
    now_ms,
    with_id,
)
from .wire import text_frame

logger = logging.getLogger(__name__)

# A joiner outlives failed attempts to subscribe its room for this many
# seconds; the first attempt that fails after that refuses it. Judged when
# an attempt fails, not by a timer: a slow (busy) loop refuses nobody.
_JOIN_PATIENCE = 3.0

# Over the worker's unsent budget, a client whose socket has refused data
# for this long (seconds) is dropped.
_SHED_AFTER = 1.0

# Shutdown closes sockets in batches at least this far apart (seconds).
_CLOSE_BATCH_GAP = 0.05

# Carries notices between workers (disconnect a user). Not a valid room
# name, so no client can join or publish to it.
CONTROL_CHANNEL = "#sanic-chat-control"


class Room:
    """Local state of one room: its members and its subscription task."""

    __slots__ = ("members", "name", "ready", "recovering", "skip", "task")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: set[Connection] = set()
        # Connections whose join is in progress, with the live events held
        # back for them meanwhile.
        self.recovering: dict[Connection, deque[Event]] = {}
        # Ids a member already got from a history replay.
        self.skip: dict[Connection, set[str]] = {}
        self.ready: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future()
        )
        self.task: asyncio.Task[None] | None = None

    def empty(self) -> bool:
        """Whether no connection is in or joining the room."""
        return not self.members and not self.recovering


class Hub:
    """Membership and fan-out for the connections of one process.

    Args:
        broadcaster: Carries events between processes.
        config: Limits and presence settings.
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
        self.rooms: dict[str, Room] = {}
        self.connections: set[Connection] = set()
        # Bytes produced for this worker's clients and not yet read.
        self.unsent = UnsentBytes(config.max_worker_unsent_bytes)
        self._per_user: dict[str, int] = {}
        # Upgrades accepted but not yet connected: user id -> deadlines.
        self._pending: dict[str, list[float]] = {}
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self._watchdog: asyncio.Task[None] | None = None
        self._control: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------
    # Connections

    def add(self, conn: Connection) -> None:
        """Track ``conn`` until :meth:`detach`."""
        self.connections.add(conn)
        uid = conn.user.id
        self._per_user[uid] = self._per_user.get(uid, 0) + 1
        pending = self._pending.get(uid)
        if pending:
            pending.pop(0)
            if not pending:
                del self._pending[uid]
        self._all_closed.clear()

    def reserve(self, user_id: str) -> None:
        """Count an accepted upgrade of ``user_id`` before its socket exists.

        Concurrent upgrades would otherwise all see the old count. A
        reservation that no connection claims (a failed handshake) lapses
        after 10 seconds.
        """
        self._pending.setdefault(user_id, []).append(time.monotonic() + 10)

    def release(self, user_id: str) -> None:
        """Drop one reservation of ``user_id`` (its handshake failed)."""
        pending = self._pending.get(user_id)
        if pending:
            pending.pop(0)
            if not pending:
                del self._pending[user_id]

    def connections_of(self, user_id: str) -> int:
        """Open (or about to open) connections of ``user_id`` here."""
        pending = self._pending.get(user_id)
        if pending:
            now = time.monotonic()
            pending[:] = [d for d in pending if d > now]
            if not pending:
                del self._pending[user_id]
        return self._per_user.get(user_id, 0) + len(pending or ())

    def detach(self, conn: Connection) -> list[tuple[str, bool]]:
        """Take ``conn`` out of every room at once, without awaiting.

        Returns:
            ``(room, announce)`` for each room it was a member of; pass it
            to :meth:`departed` to update presence.
        """
        left = []
        for name in list(conn.rooms):
            announce = self._detach_room(conn, name)
            if announce is not None:
                left.append((name, announce))
        if conn in self.connections:
            self.connections.discard(conn)
            uid = conn.user.id
            if self._per_user.get(uid, 0) > 1:
                self._per_user[uid] -= 1
            else:
                self._per_user.pop(uid, None)
        if not self.connections:
            self._all_closed.set()
        return left

    async def departed(
        self, conn: Connection, rooms: list[tuple[str, bool]]
    ) -> None:
        """Update presence for a detached connection; never raises."""
        for name, announce in rooms:
            try:
                await self._departed(conn, name, announce)
            except Exception as exc:
                logger.debug("presence of %s in %s: %s", conn, name, exc)

    async def close_all(
        self, code: int, reason: str, wait: float, spread: float = 0.0
    ) -> None:
        """Close every connection after its queued frames; wait for them.

        Connections are closed in random order, in batches spread over
        ``spread`` seconds, so that thousands of clients do not all
        reconnect in the same millisecond.

        Args:
            code: Close code, 1012 on shutdown.
            reason: Close reason sent to clients.
            wait: Seconds to wait, after the last batch, for clients to
                finish closing; those still connected then are dropped.
            spread: Seconds over which the batches are spread.
        """
        conns = list(self.connections)
        random.shuffle(conns)
        batches = max(1, min(len(conns), int(spread / _CLOSE_BATCH_GAP)))
        size = max(1, -(-len(conns) // batches))  # ceiling division
        for start in range(0, len(conns), size):
            if start:
                await asyncio.sleep(spread / batches)
            for conn in conns[start : start + size]:
                conn.close(code, reason, flush=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._all_closed.wait()
        for conn in list(self.connections):
            # It had ``wait`` seconds to read its frames and the close.
            conn.socket.abort()

    def start(self) -> None:
        """Start the watchdog and the control channel.

        The watchdog sends keepalive pings and closes stuck clients; the
        control channel carries disconnect notices between workers.
        """
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(
                self._watch(), name="sanic-chat watchdog"
            )
        if self._control is None:
            self._control = asyncio.create_task(
                self._follow_control(), name="sanic-chat control"
            )

    async def disconnect_user(self, user_id: str, reason: str) -> int:
        """Close ``user_id``'s connections here and tell other workers.

        Returns:
            How many connections were closed on this worker.
        """
        closed = self._close_user(user_id, reason)
        await self.broadcaster.publish(
            CONTROL_CHANNEL,
            encode({"op": "disconnect", "user": user_id, "reason": reason}),
            store=False,
        )
        return closed

    def _close_user(self, user_id: str, reason: str) -> int:
        closed = 0
        for conn in list(self.connections):
            if conn.user.id == user_id and not conn.closing:
                conn.close(CloseCode.POLICY_VIOLATION, reason)
                closed += 1
        if closed:
            logger.info(
                "disconnected user %r (%d connections)", user_id, closed
            )
        return closed

    async def _follow_control(self) -> None:
        """Act on control notices (published by any worker) until cancelled."""
        backoff = Backoff()
        while True:
            try:
                async with self.broadcaster.subscribe(
                    CONTROL_CHANNEL
                ) as events:
                    backoff.reset()
                    async for item in events:
                        if isinstance(item, Gap):
                            continue
                        notice = json.loads(item.payload)
                        if notice.get("op") == "disconnect":
                            self._close_user(
                                str(notice["user"]), str(notice["reason"])
                            )
                raise BroadcasterUnavailable("subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not backoff.failing:
                    logger.warning(
                        "control channel failed (%s); retrying", exc
                    )
                await backoff.pause()

    async def _watch(self) -> None:
        """Measure unsent bytes each second; ping and close stuck clients.

        The sockets' write buffers are summed into :attr:`unsent` once a
        second (one cheap call per socket); over the worker's budget the
        clients that stopped reading are shed at once (:meth:`_shed`).
        Keepalive and the send timeout are checked every
        ``min(5, send_timeout / 2)`` seconds.
        """
        timeout = self.config.send_timeout
        every = min(5.0, timeout / 2)
        checked = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, every))
            now = time.monotonic()
            conns = list(self.connections)
            self.unsent.buffered = sum(c.socket.buffered() for c in conns)
            if self.unsent.full:
                self._shed(conns, now)
            if now - checked < every:
                continue
            checked = now
            for conn in conns:
                conn.keepalive(now)
                started = conn.sending_since
                if started is not None and now - started > timeout:
                    logger.info("closing %s: send stuck %.0fs", conn, timeout)
                    self.metrics.slow_consumer_disconnects += 1
                    conn.close(1013, "slow consumer")

    def _shed(self, conns: list[Connection], now: float) -> None:
        """Over the unsent budget: drop clients that stopped reading.

        Waiting ``send_timeout`` (30 s) for them would let a few hundred
        sockets that never read keep the worker refusing everyone else.
        Those whose socket has refused data for over a second are
        disconnected at once (1013 queued, then the TCP connection
        dropped), the largest first, until the worker is under budget.
        """
        unsent = self.unsent
        total = unsent.total
        stuck = [
            c
            for c in conns
            if c.sending_since is not None
            and now - c.sending_since > _SHED_AFTER
        ]
        stuck.sort(key=lambda c: c.unsent, reverse=True)
        shed = 0
        for conn in stuck:
            if total < unsent.limit:
                break
            total -= conn.unsent
            unsent.buffered -= conn.socket.buffered()
            conn.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")
            conn.socket.abort()
            shed += 1
        if shed:
            self.metrics.slow_consumer_disconnects += shed
            logger.warning(
                "over the unsent bytes budget: dropped %d clients that "
                "stopped reading",
                shed,
            )

    async def stop(self) -> None:
        """Cancel the watchdog and every room's subscription task."""
        tasks = [room.task for room in self.rooms.values() if room.task]
        for task in (self._watchdog, self._control):
            if task is not None:
                tasks.append(task)
        self._watchdog = self._control = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.rooms.clear()

    # ------------------------------------------------------------------
    # Rooms

    async def join(
        self, conn: Connection, name: str, since: str | None = None
    ) -> None:
        """Add ``conn`` to room ``name`` and confirm with ``joined``.

        With ``since``, the room's stored messages after that id are sent
        between the confirmation and the first live message. Joining a
        room the connection is already in changes nothing, unless
        ``since`` is given: then it re-syncs (frames of the room still
        queued are dropped and the replay starts after ``since``).

        Raises:
            ProtocolError: ``too_many_rooms`` when the connection is
                already in as many rooms as allowed.
            BroadcasterUnavailable: The broadcaster cannot be reached.
        """
        room = self.rooms.get(name)
        if name in conn.rooms and room is not None:
            if since is None:
                conn.reply(protocol.joined(name, conn.user.public()))
                return
            room.members.discard(conn)
            room.skip.pop(conn, None)
            conn.forget(name)
            room.recovering[conn] = deque()
            try:
                await self._replay(conn, room, since)
            except BaseException:
                # The re-sync failed (e.g. the broadcaster is down): stay a
                # member and keep receiving; the client may try again.
                held = room.recovering.pop(conn, deque())
                if name in conn.rooms:
                    room.members.add(conn)
                    for event in held:
                        self._deliver(room, conn, event)
                raise
            return
        if len(conn.rooms) >= self.config.max_rooms_per_connection:
            raise ProtocolError(
                "too_many_rooms",
                "a connection may be in at most "
                f"{self.config.max_rooms_per_connection} rooms",
            )
        room = self._room(name)
        conn.rooms.add(name)
        room.recovering[conn] = deque()
        user = conn.user.public()
        try:
            await self._subscribed(room)
            # Counted if and only if it returns, even when cancelled (the
            # broadcaster takes back a change it could not finish).
            await self.broadcaster.presence_add(name, user)
            try:
                await self._replay(conn, room, since)
            except BaseException:
                # Shielded: a second cancellation must not skip it.
                with contextlib.suppress(Exception):
                    await asyncio.shield(
                        self.broadcaster.presence_remove(name, user)
                    )
                raise
        except BaseException:
            conn.rooms.discard(name)
            room.recovering.pop(conn, None)
            room.members.discard(conn)
            room.skip.pop(conn, None)
            self._close_if_empty(room)
            raise
        if self._announces(room):
            # The client has its ``joined``: a lost notice to the others
            # (best-effort anyway) must not answer it with an error.
            try:
                await self._publish_presence(protocol.joined, room.name, conn)
            except BroadcasterUnavailable as exc:
                logger.debug("join notice in %s not sent: %s", name, exc)

    @staticmethod
    async def _subscribed(room: Room) -> None:
        """Wait until the room's subscription works (see _JOIN_PATIENCE)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            ready = room.ready
            try:
                await asyncio.shield(ready)
                return
            except BroadcasterUnavailable:
                if ready is room.ready or (
                    loop.time() - started >= _JOIN_PATIENCE
                ):
                    raise
                # The room's task is trying again: wait for that attempt.

    async def _replay(
        self, conn: Connection, room: Room, since: str | None
    ) -> None:
        """Confirm a join, replay history after ``since``, then go live.

        Live events of the room are held back in ``room.recovering``
        meanwhile; events both replayed and held are delivered once.
        """
        name = room.name
        found: bool | None = None
        replayed: list[Event] = []
        after = since
        while after is not None:
            # Page through the broadcaster's history, which may be longer
            # than one page: stopping early would leave a gap.
            page = await self.broadcaster.history(
                name, limit=self.config.history_size, after=after
            )
            if not page.found:
                found, replayed = False, []
                break
            found = True
            replayed += page.events
            full = len(page.events) >= self.config.history_size
            after = page.events[-1].id if full else None
        held = room.recovering.pop(conn, None)
        if held is None:
            # The connection was detached while history was read (it is
            # closing; its task's cancellation is still on the way).
            raise asyncio.CancelledError
        recovered = None if since is None else bool(found)
        conn.reply(protocol.joined(name, conn.user.public(), recovered))
        for event in replayed:
            conn.reply(self._frame(event))
            if conn.backed_up():
                # A long replay goes out as fast as the client reads it,
                # within its byte bound; live events stay held meanwhile.
                await conn.wait_writable()
                if name not in conn.rooms:
                    raise asyncio.CancelledError  # detached: closing
        room.members.add(conn)
        if replayed:
            room.skip[conn] = {e.id for e in replayed if e.id is not None}
        for event in held:
            self._deliver(room, conn, event)

    async def leave(
        self, conn: Connection, name: str, reason: str | None = None
    ) -> None:
        """Take ``conn`` out of room ``name`` and confirm with ``left``.

        Args:
            conn: The connection.
            name: The room.
            reason: Why the server took it out (``"forbidden"``), carried
                in the ``left`` frame; ``None`` when the client asked.

        Raises:
            ProtocolError: ``not_joined`` if it is not in the room.
        """
        if name not in conn.rooms:
            raise ProtocolError("not_joined", f"not in room {name!r}")
        announce = self._detach_room(conn, name)
        # Nothing of the room may follow its ``left`` confirmation.
        conn.forget(name)
        conn.reply(protocol.left(name, conn.user.public(), reason))
        if announce is not None:
            await self._departed(conn, name, announce)

    def _detach_room(self, conn: Connection, name: str) -> bool | None:
        """Remove ``conn`` from ``name``; ``None`` if it was not a member.

        Otherwise tell whether its leaving is announced to the others.
        """
        conn.rooms.discard(name)
        room = self.rooms.get(name)
        if room is None:
            return None
        was_member = conn in room.members
        room.members.discard(conn)
        room.recovering.pop(conn, None)
        room.skip.pop(conn, None)
        announce = self._announces(room)
        self._close_if_empty(room)
        return announce if was_member else None

    async def _departed(
        self, conn: Connection, name: str, announce: bool
    ) -> None:
        await self.broadcaster.presence_remove(name, conn.user.public())
        if announce:
            await self._publish_presence(protocol.left, name, conn)

    def _room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name)
            room.task = asyncio.create_task(
                self._follow(room), name=f"sanic-chat room {name}"
            )
        return room

    def _close_if_empty(self, room: Room) -> None:
        if room.empty() and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            if room.task is not None:
                room.task.cancel()
            if not room.ready.done():
                room.ready.cancel()

    def _announces(self, room: Room) -> bool:
        return (
            self.config.presence_events
            and len(room.members) <= self.config.presence_events_max_members
        )

    async def _publish_presence(
        self,
        notice: Callable[[str, PublicUser], str],
        room: str,
        conn: Connection,
    ) -> None:
        """Tell the room's other members, best-effort (not stored)."""
        await self.broadcaster.publish(
            room,
            notice(room, conn.user.public()),
            store=False,
            origin=conn.key,
        )

    # ------------------------------------------------------------------
    # Fan-out

    async def _follow(self, room: Room) -> None:
        """Deliver the room's events to its members until cancelled.

        A failing subscription is logged once and retried with backoff;
        members are told to re-sync when it is back, because events may
        have been missed meanwhile (they are in history). The first one
        is retried the same way: each failed attempt fails ``room.ready``
        and puts a fresh future in its place, which joiners that have
        waited less than ``_JOIN_PATIENCE`` wait on; a room never stays
        broken while connections wait for it.
        """
        backoff = Backoff()
        while True:
            try:
                async with self.broadcaster.subscribe(room.name) as events:
                    if room.ready.done():
                        logger.info(
                            "room %s: subscription restored", room.name
                        )
                        self._resync(room)
                    else:
                        room.ready.set_result(None)
                    backoff.reset()
                    async for item in events:
                        if isinstance(item, Gap):
                            logger.warning(
                                "room %s: fell %d events behind, asking "
                                "members to re-sync",
                                room.name,
                                item.skipped,
                            )
                            self._resync(room)
                        else:
                            self._fanout(room, item)
                # The room still has members (else this task would have
                # been cancelled): an ended subscription is a failure.
                raise BroadcasterUnavailable("subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ready = room.ready
                if not ready.done():
                    ready.set_exception(
                        BroadcasterUnavailable(f"cannot subscribe: {exc}")
                    )
                    ready.exception()  # retrieved, even if nobody waited
                    room.ready = asyncio.get_running_loop().create_future()
                if not backoff.failing:
                    logger.warning(
                        "room %s: subscription failed (%s); retrying",
                        room.name,
                        exc,
                    )
                await backoff.pause()

    def _fanout(self, room: Room, event: Event) -> None:
        frame = self._frame(event)
        name = room.name
        if event.id is None:
            # Ephemeral (presence) notices are best-effort.
            for conn in room.members:
                if conn.key != event.origin:
                    conn.offer(frame, name)
        elif not room.skip:
            # The hot path: one frame, one write (or append) per member.
            self.metrics.messages_sent += len(room.members)
            for conn in room.members:
                conn.send(frame, name)
        else:
            for conn in list(room.members):
                self._deliver(room, conn, event, frame)
        limit = self.config.send_queue_size
        for conn, held in room.recovering.items():
            held.append(event)
            if len(held) > limit and held.popleft().id is not None:
                conn.overflow(name)

    def _deliver(
        self,
        room: Room,
        conn: Connection,
        event: Event,
        frame: bytes | None = None,
    ) -> None:
        """Send ``event`` to one member unless a replay already did."""
        if event.id is None:
            if conn.key != event.origin:
                conn.offer(frame or self._frame(event), room.name)
            return
        skip = room.skip.get(conn)
        if skip is not None:
            if event.id in skip:
                return
            # Events arrive in history order: nothing later was replayed.
            room.skip.pop(conn, None)
        conn.send(frame or self._frame(event), room.name)

    def _resync(self, room: Room) -> None:
        frame = text_frame(protocol.resync(room.name))
        for conn in room.members:
            conn.send(frame, room.name)

    @staticmethod
    def event_text(event: Event) -> str:
        """The event as the JSON text clients receive."""
        if event.id is None:
            return event.payload
        return with_id(event.payload, event.id)

    @classmethod
    def _frame(cls, event: Event) -> bytes:
        """The event as a wire frame: built once, written to every member."""
        return text_frame(cls.event_text(event))

    # ------------------------------------------------------------------
    # Requests

    async def publish(self, room: str, user: User, text: str) -> str:
        """Publish a chat message; return its id.

        Raises:
            BroadcasterUnavailable: The message could not be published.
        """
        payload = message_payload(room, user.public(), text, now_ms())
        started = time.perf_counter()
        event = await self.broadcaster.publish(room, payload)
        metrics = self.metrics
        metrics.observe_publish(time.perf_counter() - started)
        metrics.messages_received += 1
        if event.id is None:
            raise BroadcasterUnavailable("broadcaster stored no id")
        return event.id

    async def history_frame(
        self,
        room: str,
        limit: int | None,
        *,
        before: str | None = None,
        max_bytes: int | None = None,
    ) -> str:
        """Encode the ``history`` reply for ``room``, oldest first.

        Args:
            room: The room.
            limit: Most messages (at most ``history_size``).
            before: Only messages older than this id (paging backwards).
            max_bytes: Most bytes of messages in the reply: the oldest
                ones that do not fit are left out and the frame says
                ``"truncated":true`` (ask again with ``before``).

        Raises:
            ProtocolError: ``not_found`` when ``before`` is not an id in
                the room's history (any more).
        """
        size = self.config.history_size
        page = await self.broadcaster.history(
            room, limit=min(limit or size, size), before=before
        )
        if not page.found:
            raise ProtocolError("not_found", "message id not in history")
        texts, truncated = fit(page.events, self.event_text, max_bytes)
        return protocol.history(room, texts, truncated)

    async def presence_frame(self, room: str) -> str:
        """Encode the ``presence`` reply for ``room``."""
        info = await self.broadcaster.presence(
            room, limit=self.config.presence_list_limit
        )
        return protocol.presence(room, info.users, info.count)
