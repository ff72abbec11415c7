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

    Args:
        rooms: The rooms to be in.
        window: How many delivered ids are remembered per room to drop
            duplicates; at least the server's ``CHAT_HISTORY_SIZE``, as
            a recovery replays at most that many.
    """

    def __init__(self, rooms: list[str], window: int = 4096) -> None:
        self.last: dict[str, str | None] = dict.fromkeys(rooms)
        self.window = window
        self.me: dict[str, str] | None = None
        self.inbox: str | None = None
        self.inbox_last: str | None = None
        self._seen: dict[str, OrderedDict[str, None]] = {}

    def query(self) -> list[tuple[str, str]]:
        """Return the ``room`` query parameters of the next connect.

        Each room, with ``@ID`` where a message of it has been seen.
        """
        return [
            ("room", room if last is None else f"{room}@{last}")
            for room, last in self.last.items()
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
        inbox = frame.get("inbox")
        self.inbox = inbox if isinstance(inbox, str) else None
        for room in frame.get("rooms", []):
            self.last.setdefault(room, None)
        since = self.inbox_last
        if self.inbox is None or since is None:
            return []
        return [{"type": "join", "room": self.inbox, "since": since}]

    def join_frame(self, room: str) -> Frame:
        """The ``join`` of ``room``, with ``since`` when one is known."""
        self.last.setdefault(room, None)
        since = self.last[room]
        frame: Frame = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        return frame

    def forget(self, room: str) -> None:
        """Stop recovering ``room`` (it was left)."""
        self.last.pop(room, None)
        self._seen.pop(room, None)

    def receive(self, frame: Frame) -> Outcome:
        """Read one server frame (not ``welcome``)."""
        out = Outcome()
        kind = frame.get("type")
        if kind == "ack":
            if "ref" in frame and "id" in frame:
                out.acks.append((frame["ref"], frame["id"]))
            return out
        if kind == "error" and isinstance(frame.get("ref"), str):
            out.errors.append(
                (
                    frame["ref"],
                    str(frame.get("code")),
                    str(frame.get("message")),
                )
            )
            return out
        if kind in ("lagged", "resync"):
            room = frame.get("room")
            if isinstance(room, str) and room in self.last:
                out.replies.append(self.join_frame(room))
            elif room == self.inbox and self.inbox_last is not None:
                out.replies.append(
                    {"type": "join", "room": room, "since": self.inbox_last}
                )
        event = event_from_frame(frame, self.me)
        if isinstance(event, Message):
            self._message(frame, out)
            return out
        if isinstance(event, Joined) and event.mine:
            self.last.setdefault(event.room, None)
        if event is not None:
            out.events.append(event)
        return out

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
        if room == self.inbox:
            self.inbox_last = id_
        elif room in self.last:
            self.last[room] = id_
        event = event_from_frame(frame, self.me)
        if event is not None:
            out.events.append(event)
