"""Sans-I/O: what the client remembers across reconnects.

:class:`RoomLog` holds the rooms the client is in, the last message id
seen in each (the ``since`` of the next reconnect) and a bounded window
of the ids already delivered, so a message that reaches the client twice
(a recovery replay overlapping live traffic, a resend after a lost ack)
is delivered once. It reads frames and answers with what to do; it never
touches a socket, so it is tested frame in, events out.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .events import Event, Joined, Message, event_from_frame

__all__ = ["Outcome", "RoomLog"]

Frame = dict[str, Any]


@dataclass
class Outcome:
    """What one server frame asks of the client.

    Attributes:
        events: To deliver to the application, in order.
        acks: ``(ref, id)`` of sends the server accepted.
        errors: ``(ref, code, message)`` of sends it refused.
        replies: Frames to send back (re-joins after ``lagged``).
    """

    events: list[Event] = field(default_factory=list)
    acks: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    replies: list[Frame] = field(default_factory=list)


class RoomLog:
    """Rooms, last ids and delivered ids of one client, across sockets.

    A room in which no message has been seen yet has no ``since``: after
    its first join the log asks for its newest stored message
    (``history`` with ``limit: 1``) and keeps that id as the room's
    ``since``. A room still without one at a reconnect (it was empty, or
    the socket dropped before the answer) catches up instead: its whole
    stored history is delivered, which may include messages from before
    the first join but leaves no gap. A join answered ``recovered:
    false`` catches up the same way. Live messages of a room wait for
    its catch-up, and those the catch-up also holds are delivered once.

    Args:
        rooms: The rooms to be in.
        window: How many delivered ids are remembered per room to drop
            duplicates; at least the server's ``CHAT_HISTORY_SIZE``, as
            a recovery replays at most that many.
    """

    def __init__(self, rooms: list[str], window: int = 4096) -> None:
        self.last: dict[str, str | None] = dict.fromkeys(rooms)
        """Each room's last message id (the inbox's too), or None."""
        self.window = window
        self.me: dict[str, str] | None = None
        self.inbox: str | None = None
        self._seen: dict[str, OrderedDict[str, None]] = {}
        self._joined: set[str] = set()  # joined on some socket already
        self._asked: dict[str, bool] = {}  # room: whether to catch up
        # Live messages of a room held back until its catch-up arrives,
        # so that they come after it.
        self._held: dict[str, list[Frame]] = {}
        # Rooms re-joined after ``lagged``/``resync``: their live messages
        # are dropped until the ``joined`` reply, as the replay that
        # follows it brings them again, in order after the missed ones.
        self._rejoining: set[str] = set()

    def query(self) -> list[tuple[str, str]]:
        """Return the ``room`` query parameters of the next connect.

        Each room, with ``@ID`` where a message of it has been seen.
        """
        return [
            ("room", room if last is None else f"{room}@{last}")
            for room, last in self.last.items()
            if not room.startswith("@")  # an inbox: joined by the server
        ]

    def url(self, base: str, name: str | None) -> str:
        """Return ``base`` with the query of the next connect."""
        parts = urlsplit(base)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "room"]
        query += self.query()
        if name is not None:
            query.append(("name", name))
        return urlunsplit(parts._replace(query=urlencode(query)))

    def welcome(self, frame: Frame) -> list[Frame]:
        """Read ``welcome``; return the frames that recover the inbox."""
        self.me = frame.get("user")
        self._asked.clear()
        self._held.clear()  # the next catch-up holds them too
        self._rejoining.clear()  # every room is joined again, with since
        for room in frame.get("rooms", []):
            self.last.setdefault(room, None)
        inbox = frame.get("inbox")
        inbox = inbox if isinstance(inbox, str) else None
        if self.inbox is not None and inbox != self.inbox:
            self.forget(self.inbox)  # a guest is someone new each time
        self.inbox = inbox
        if self.inbox is None:
            return []
        since = self.last.setdefault(self.inbox, None)
        if since is not None:
            return [{"type": "join", "room": self.inbox, "since": since}]
        return self._check(self.inbox)

    def join_frame(self, room: str) -> Frame:
        """The ``join`` of ``room``, with ``since`` when one is known."""
        since = self.last.setdefault(room, None)
        frame: Frame = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        return frame

    def forget(self, room: str) -> None:
        """Stop recovering ``room`` (it was left)."""
        self.last.pop(room, None)
        self._seen.pop(room, None)
        self._joined.discard(room)

    def receive(self, frame: Frame) -> Outcome:
        """Read one server frame (not ``welcome``)."""
        out = Outcome()
        kind = frame.get("type")
        if kind == "ack":
            if "ref" in frame and "id" in frame:
                out.acks.append((frame["ref"], frame["id"]))
            return out
        if kind == "error" and isinstance(frame.get("ref"), str):
            ref, code = frame["ref"], str(frame.get("code"))
            out.errors.append((ref, code, str(frame.get("message"))))
            return out
        if kind == "history":
            self._history(frame, out)
            return out
        room = frame.get("room")
        if kind in ("lagged", "resync") and room in self.last:
            out.replies.append(self.join_frame(str(room)))
            self._rejoining.add(str(room))
        elif kind == "error" and room in self._rejoining:
            # The re-join failed: deliver live messages again; the gap is
            # recovered at the next lagged, resync or reconnect.
            self._rejoining.discard(str(room))
        event = event_from_frame(frame, self.me)
        if isinstance(event, Message):
            if room in self._rejoining:
                return out  # the re-join's replay brings it, in order
            held = self._held.get(str(room))
            if held is not None and len(held) < self.window:
                held.append(frame)
            else:
                self._message(frame, out)
            return out
        if isinstance(event, Joined) and event.mine:
            self._rejoining.discard(event.room)
            self.last.setdefault(event.room, None)
            if event.recovered is False:
                self.last[event.room] = None
                out.replies += self._check(event.room, catch_up=True)
            else:
                out.replies += self._check(event.room)
        if event is not None:
            out.events.append(event)
        return out

    def _check(self, room: str, catch_up: bool | None = None) -> list[Frame]:
        """Ask for what ``room`` holds, when it has no ``since``."""
        if self.last.get(room) is not None or room in self._asked:
            return []
        if catch_up is None:
            catch_up = room in self._joined
        self._joined.add(room)
        self._asked[room] = catch_up
        if catch_up:
            self._held[room] = []
        frame: Frame = {"type": "history", "room": room}
        if not catch_up:
            frame["limit"] = 1
        return [frame]

    def _history(self, frame: Frame, out: Outcome) -> None:
        room = frame.get("room")
        if not isinstance(room, str) or room not in self._asked:
            return
        catch_up = self._asked.pop(room)
        messages = [m for m in frame.get("messages", ()) if "id" in m]
        if catch_up:
            for message in messages + self._held.pop(room, []):
                self._message(message, out)
        elif self.last.get(room) is None and messages:
            self.last[room] = str(messages[-1]["id"])

    def _message(self, frame: Frame, out: Outcome) -> None:
        room, id_ = frame.get("room"), frame.get("id")
        if not isinstance(room, str) or not isinstance(id_, str):
            return
        seen = self._seen.setdefault(room, OrderedDict())
        if id_ in seen:
            return
        seen[id_] = None
        if len(seen) > self.window:
            seen.popitem(last=False)
        if room in self.last:
            self.last[room] = id_
        event = event_from_frame(frame, self.me)
        if event is not None:
            out.events.append(event)
