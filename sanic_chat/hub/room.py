"""One room of one process: its members and the fan-out of its events.

A :class:`Room` is plain data and synchronous code: no task, no future,
no event loop. It owns who gets the room's events (its members), what is
held back for connections whose join is replaying history, and which
replayed events a new member must not get twice. The room's subscription
(:mod:`sanic_chat.hub.subscription`) feeds it; the membership logic
(:mod:`sanic_chat.hub.membership`) admits and removes connections.

Replay de-duplication: while a joiner's history is read and sent, live
events are held back for it (:meth:`Room.hold`); when it is admitted, the
held events that the replay already contained are skipped. Every
subscriber sees a channel in the same order as its history, so the
held-back events that the client has (up to the last one replayed, or
its ``since`` when nothing was) always come first: when that last event
is among them, everything up to it is dropped; otherwise the replayed
ids are skipped until the first new event, held or live.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from .. import protocol
from ..backends.base import Event
from ..connection import Connection
from ..metrics import Metrics
from ..wire import text_frame

__all__ = ["Room", "event_frame", "event_text"]


def event_text(event: Event) -> str:
    """The event as the JSON text clients receive.

    A stored message gets its id spliced in; an edit or delete carries
    its target's id already (:mod:`sanic_chat.revisions`) and is sent as
    stored.
    """
    payload = event.payload
    if event.id is None or payload.startswith(_AS_STORED):
        return payload
    return protocol.with_id(payload, event.id)


_AS_STORED = protocol.REVISION_PREFIXES

# Up to this many members a room keeps them in a tuple, not a set: every
# connection's inbox is a room of one, and a set costs 216 bytes at least
# (a tuple of one, 48). Past it, a set (joins and leaves in O(1)).
SMALL_ROOM = 8

# Events that arrive together are written to a member in runs of at most
# this many bytes (or one larger frame): one system call per run instead
# of one per event. A run goes out only while the socket is under its
# high-water mark, so its buffer goes at most this far past it, less than
# one message of the largest size allowed (4,000 characters, JSON
# escaped) could take it; the slow-consumer bounds apply as before.
BATCH_BYTES = 16 * 1024

Members = tuple[Connection, ...] | set[Connection]
"""A room's members: a tuple while it is small, then a set."""


def event_frame(event: Event) -> bytes:
    """The event as a wire frame: built once, written to every member."""
    return text_frame(event_text(event))


class Room:
    """The local members of one room and the fan-out of its events.

    Args:
        name: The room.
        hold_limit: Most events held back for one replaying joiner; past
            it the oldest is dropped and counted as the joiner's overflow
            (its slow-consumer policy).
        metrics: Counts the frames sent.
    """

    __slots__ = (
        "_held",
        "_hold_limit",
        "_metrics",
        "_skip",
        "members",
        "name",
    )

    def __init__(self, name: str, hold_limit: int, metrics: Metrics) -> None:
        self.name = name
        self.members: Members = ()
        """Connections that get the room's events as they come (read
        only: iterate it, ``len`` it, test ``in`` it)."""
        # Connections whose join is in progress, with the live events held
        # back for them meanwhile; None when there are none (an idle room
        # holds no empty dict).
        self._held: dict[Connection, deque[Event]] | None = None
        # Ids a member already got from a history replay; None when none.
        self._skip: dict[Connection, set[str]] | None = None
        self._hold_limit = hold_limit
        self._metrics = metrics

    def __repr__(self) -> str:
        return f"<Room {self.name!r} members={len(self.members)}>"

    def empty(self) -> bool:
        """Whether no connection is in or joining the room."""
        return not self.members and not self._held

    def holding(self, conn: Connection) -> bool:
        """Whether events are being held back for ``conn`` (it is joining)."""
        held = self._held
        return held is not None and conn in held

    def hold(self, conn: Connection) -> None:
        """Hold back the room's events for ``conn`` until :meth:`admit`.

        A member that re-syncs stops being one meanwhile: what it gets next
        is its replay, then the held events it did not replay.
        """
        self._forget(conn)
        if self._held is None:
            self._held = {}
        self._held[conn] = deque()

    def admit(
        self,
        conn: Connection,
        replayed: Sequence[str] = (),
        since: str | None = None,
    ) -> bool:
        """Make ``conn`` a member and deliver what was held back for it.

        Args:
            conn: A connection held by :meth:`hold`.
            replayed: Ids of the events its replay contained, oldest
                first: held events among them are skipped, as are later
                live events with those ids.
            since: The id the client said it had (its replay started
                after it), if any.

        Returns:
            ``False``, and nothing changes, when ``conn`` is not held
            (it was removed meanwhile: it is closing).
        """
        holding = self._held
        held = None if holding is None else holding.pop(conn, None)
        if held is None:
            return False
        if not holding:
            self._held = None
        self.add(conn)
        last = replayed[-1] if replayed else since
        if last is not None and any(e.id == last for e in held):
            # The subscription was behind the history read: what it held
            # up to the client's last event, the client has.
            while held.popleft().id != last:
                pass
        elif replayed:
            if self._skip is None:
                self._skip = {}
            self._skip[conn] = set(replayed)
        for event in held:
            self.deliver(conn, event)
        return True

    def add(self, conn: Connection) -> None:
        """Make ``conn`` a member at once, with nothing held back for it.

        For a join that replies and replays nothing (the inbox at
        connect): later events are simply delivered to it.
        """
        members = self.members
        if isinstance(members, set):
            members.add(conn)
        elif conn in members:
            return
        elif len(members) < SMALL_ROOM:
            self.members = (*members, conn)
        else:
            self.members = {*members, conn}

    def remove(self, conn: Connection) -> bool:
        """Take ``conn`` out (member or joiner); whether it was a member."""
        was_member = self._forget(conn)
        holding = self._held
        if holding is not None:
            holding.pop(conn, None)
            if not holding:
                self._held = None
        return was_member

    def _forget(self, conn: Connection) -> bool:
        """Drop ``conn`` from the members and the skipping; if a member."""
        self._forget_skip(conn)
        members = self.members
        if conn not in members:
            return False
        if isinstance(members, set):
            members.discard(conn)
        else:
            self.members = tuple(c for c in members if c is not conn)
        return True

    def fanout(self, events: Sequence[Event]) -> None:
        """Deliver events of the room's subscription to its members.

        Each frame is built once. With no replay de-duplication pending,
        a member costs one :meth:`Connection.send` of the same ``bytes``
        per event and nothing else; several events that arrived together
        (in one loop iteration) go out in runs of up to ``BATCH_BYTES``,
        one write per member and run instead of one per event. Presence
        notices (no id) are offered (best-effort) to every member except
        the one they are about.
        """
        if len(events) == 1 or self._skip:
            for event in events:
                self._fanout_one(event)
            return
        run: list[Event] = []
        frames: list[bytes] = []
        size = 0
        for event in events:
            frame = event_frame(event)
            if size + len(frame) > BATCH_BYTES and run:
                self._fanout_run(run, frames)
                run, frames, size = [], [], 0
            run.append(event)
            frames.append(frame)
            size += len(frame)
        self._fanout_run(run, frames)

    def _fanout_one(self, event: Event, frame: bytes | None = None) -> None:
        if frame is None:
            frame = event_frame(event)
        name = self.name
        if event.id is None:
            # Ephemeral (presence) notices are best-effort.
            for conn in self.members:
                if conn.key != event.origin:
                    conn.offer(frame, name)
        elif not self._skip:
            # The hot path: one frame, one write (or append) per member.
            self._metrics.messages_sent += len(self.members)
            for conn in self.members:
                conn.send(frame, name)
        else:
            for conn in list(self.members):
                self.deliver(conn, event, frame)
        self._hold(event)

    def _fanout_run(self, events: list[Event], frames: list[bytes]) -> None:
        """Several events, one write of all their frames per member.

        A member gets none of the notices about itself. One that cannot
        take them at once (backed up, lagging, closing) gets them one by
        one, each sent or offered as :meth:`_fanout_one` would.
        """
        if len(events) == 1:
            self._fanout_one(events[0], frames[0])
            return
        data = b"".join(frames)
        about = {e.origin for e in events if e.id is None}
        stored = sum(1 for e in events if e.id is not None)
        members = self.members
        self._metrics.messages_sent += stored * len(members)
        best_effort = stored < len(events)
        # Members some notices are about come last: the others share
        # ``data`` one after another (the portable transport decodes a
        # frame object once for a run of members).
        subjects: list[Connection] = []
        for conn in members:
            if conn.key in about:
                subjects.append(conn)
            elif not conn.send_all(data, best_effort):
                self._one_by_one(conn, events, frames)
        for conn in subjects:
            # Its own notices left out (a join storm: most members).
            key = conn.key
            mine = b"".join(
                frame
                for event, frame in zip(events, frames, strict=True)
                if event.id is not None or event.origin != key
            )
            if mine and not conn.send_all(mine, True):
                self._one_by_one(conn, events, frames)
        for event in events:
            self._hold(event)

    def _one_by_one(
        self, conn: Connection, events: list[Event], frames: list[bytes]
    ) -> None:
        """A run for a member that cannot take it at once, as before."""
        for event, frame in zip(events, frames, strict=True):
            self.deliver(conn, event, frame)

    def _hold(self, event: Event) -> None:
        """Keep ``event`` for the connections whose join is replaying."""
        if self._held:
            limit = self._hold_limit
            name = self.name
            for conn, held in self._held.items():
                held.append(event)
                if len(held) > limit and held.popleft().id is not None:
                    conn.overflow(name)

    def deliver(
        self, conn: Connection, event: Event, frame: bytes | None = None
    ) -> None:
        """Send ``event`` to one member unless its replay already did."""
        if event.id is None:
            if conn.key != event.origin:
                conn.offer(frame or event_frame(event), self.name)
            return
        skips = self._skip
        skip = None if skips is None else skips.get(conn)
        if skip is not None:
            if event.id in skip:
                return
            # Events arrive in history order: nothing later was replayed.
            self._forget_skip(conn)
        conn.send(frame or event_frame(event), self.name)

    def _forget_skip(self, conn: Connection) -> None:
        skips = self._skip
        if skips is not None:
            skips.pop(conn, None)
            if not skips:
                self._skip = None

    def resync(self) -> None:
        """Tell every member to re-sync: events may have been missed."""
        frame = text_frame(protocol.resync(self.name))
        for conn in self.members:
            conn.send(frame, self.name)
