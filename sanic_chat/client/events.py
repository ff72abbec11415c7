"""The typed events a :class:`~sanic_chat.client.ChatClient` yields.

Each server frame of interest becomes one frozen dataclass; the frame
itself stays available as ``frame`` for fields added in later protocol
versions. :class:`StateChange` is the client's own: the connection went
up or down.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Deleted",
    "Delivery",
    "Edited",
    "Error",
    "Event",
    "Joined",
    "Lagged",
    "Left",
    "Message",
    "Presence",
    "Resync",
    "StateChange",
    "Typing",
    "event_from_frame",
]

Frame = dict[str, Any]


@dataclass(frozen=True)
class Event:
    """Base of every event; ``frame`` is the server frame it came from."""

    frame: Frame = field(repr=False, compare=False)


@dataclass(frozen=True)
class Message(Event):
    """A message of a room (or of your inbox: a direct message).

    Delivered once per id, in the room's order, across reconnects.
    """

    room: str
    id: str
    user: dict[str, str]
    text: str
    ts: int
    meta: dict[str, Any] | None = None
    to: str | None = None
    deleted: bool = False


@dataclass(frozen=True)
class Edited(Event):
    """Message ``id`` of ``room`` now reads ``text``."""

    room: str
    id: str
    text: str
    user: dict[str, str]


@dataclass(frozen=True)
class Deleted(Event):
    """Message ``id`` of ``room`` was deleted by ``user``."""

    room: str
    id: str
    user: dict[str, str]


@dataclass(frozen=True)
class Joined(Event):
    """Someone (``mine``: this connection) joined ``room``.

    ``recovered`` is False when a reconnect could not replay what was
    missed (the id was no longer stored): fetch history if it matters.
    """

    room: str
    user: dict[str, str]
    mine: bool
    recovered: bool | None = None


@dataclass(frozen=True)
class Left(Event):
    """Someone (``mine``: this connection) left ``room``."""

    room: str
    user: dict[str, str]
    mine: bool
    reason: str | None = None


@dataclass(frozen=True)
class Presence(Event):
    """Who is in ``room`` now: after each change of its member list.

    ``users`` is what :meth:`ChatClient.members` returns (at most the
    server's ``CHAT_PRESENCE_LIST_LIMIT``); ``count`` is exact.
    """

    room: str
    users: list[dict[str, str]]
    count: int


@dataclass(frozen=True)
class Typing(Event):
    """``user`` is typing in ``room``."""

    room: str
    user: dict[str, str]


@dataclass(frozen=True)
class Lagged(Event):
    """``skipped`` frames of ``room`` were dropped by the server.

    The client re-joins the room with ``since`` by itself, so the
    messages missed are delivered next; this event says it happened.
    """

    room: str
    skipped: int


@dataclass(frozen=True)
class Resync(Event):
    """The server may have missed messages of ``room``.

    Re-joined by the client as after :class:`Lagged`.
    """

    room: str


@dataclass(frozen=True)
class Error(Event):
    """An ``error`` frame that answers no pending :meth:`send`."""

    code: str
    message: str
    ref: str | None = None


@dataclass(frozen=True)
class StateChange(Event):
    """The connection changed state.

    ``state`` is one of ``"connected"``, ``"disconnected"`` (reconnecting
    follows), ``"unauthorized"`` (401 or 1008: no reconnect),
    ``"refused"`` (the server refused the connect request itself, 400
    or 403: no reconnect) and ``"closed"``.
    ``reason`` says why, for people.
    """

    state: str
    reason: str = ""


def event_from_frame(frame: Frame, me: dict[str, str] | None) -> Event | None:
    """Return the event for a server frame, or None.

    None: frames the client handles itself (``welcome``, ``ack``...).
    """
    kind = frame.get("type")
    room = str(frame.get("room", ""))
    user = frame.get("user") or {}
    if kind == "message":
        return Message(
            frame,
            room=room,
            id=str(frame["id"]),
            user=user,
            text=str(frame.get("text", "")),
            ts=int(frame.get("ts", 0)),
            meta=frame.get("meta"),
            to=frame.get("to"),
            deleted=bool(frame.get("deleted", False)),
        )
    if kind == "edited":
        return Edited(frame, room, str(frame["id"]), frame["text"], user)
    if kind == "deleted":
        return Deleted(frame, room, str(frame["id"]), user)
    if kind == "joined":
        return Joined(frame, room, user, user == me, frame.get("recovered"))
    if kind == "left":
        return Left(frame, room, user, user == me, frame.get("reason"))
    if kind == "presence":
        return Presence(
            frame, room, list(frame.get("users", [])), frame.get("count", 0)
        )
    if kind == "typing":
        return Typing(frame, room, user)
    if kind == "lagged":
        return Lagged(frame, room, int(frame.get("skipped", 0)))
    if kind == "resync":
        return Resync(frame, room)
    if kind == "error":
        return Error(
            frame, str(frame.get("code")), str(frame.get("message", "")),
            frame.get("ref"),
        )  # fmt: skip
    return None


class Delivery:
    """The events waiting for the application, bounded twice.

    At most ``limit`` events and ``max_bytes`` of their frames (as
    JSON). The client never waits for the application: when it reads slower
    than events come, the oldest are dropped (and counted), so that
    acks and reconnects go on. ``None`` marks the end, for every read
    after it.
    """

    def __init__(self, limit: int, max_bytes: int = 16 << 20) -> None:
        self.dropped = 0
        self.max_bytes = max_bytes
        self.bytes = 0
        self._queue: deque[tuple[Event | None, int]] = deque()
        self._limit = limit
        self._ready = asyncio.Event()

    def put(self, event: Event | None) -> None:
        """Queue ``event`` (None: the end), dropping the oldest if full."""
        size = 0 if event is None else _size(event.frame)
        while self._queue and (
            len(self._queue) >= self._limit
            or self.bytes + size > self.max_bytes
        ):
            _, dropped = self._queue.popleft()
            self.bytes -= dropped
            self.dropped += 1
        self._queue.append((event, size))
        self.bytes += size
        self._ready.set()

    async def get(self) -> Event | None:
        """Return the next event, or None once the end is reached."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        event, size = self._queue[0]
        if event is not None:  # the end stays, for every later read
            self._queue.popleft()
            self.bytes -= size
        return event


def _size(frame: Mapping[str, Any]) -> int:
    """The bytes ``frame`` counts for: its JSON, ASCII-escaped."""
    return len(json.dumps(frame, separators=(",", ":")))
