"""Sans-I/O: who is in each joined room, kept live.

A room's list starts from a ``presence`` request the client sends after
its own ``joined``. Another member's ``joined`` notice adds them at
once; a ``left`` notice is only a hint (the user may be there from
another tab), so it asks ``presence`` again, at most one request per
room at a time. Notices are best-effort on the server (none in rooms
over ``CHAT_PRESENCE_EVENTS_MAX_MEMBERS``); each reconnect asks anew.
"""

from __future__ import annotations

from typing import Any

from .events import Event, Presence

__all__ = ["Roster"]

Frame = dict[str, Any]


class Roster:
    """The members of each joined room, at most ``limit`` per room.

    Args:
        limit: Users listed per room; ``count`` stays exact when the
            server says so.
    """

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._users: dict[str, dict[str, dict[str, str]]] = {}
        self._count: dict[str, int] = {}
        self._asking: dict[str, bool] = {}  # room: ask again after it

    def members(self, room: str) -> list[dict[str, str]]:
        """The users in ``room`` (``{"id", "name"}``), as last known."""
        return list(self._users.get(room, {}).values())

    def count(self, room: str) -> int:
        """How many distinct users are in ``room``, as last known."""
        return self._count.get(room, 0)

    def reset(self) -> None:
        """A new socket: requests of the old one will not be answered."""
        self._asking.clear()

    def receive(
        self, frame: Frame, mine: bool
    ) -> tuple[list[Event], list[Frame]]:
        """Read a ``presence``, ``joined`` or ``left`` frame.

        Args:
            frame: The frame.
            mine: Whether its ``user`` is this client (a confirmation).

        Returns:
            The :class:`Presence` events of a change, and the requests
            to send.
        """
        kind, room = frame.get("type"), frame.get("room")
        if not isinstance(room, str) or room.startswith("@"):
            return [], []  # an inbox has no presence
        user = frame.get("user")
        if kind == "presence":
            return self._listed(frame, room)
        if kind == "joined" and mine:
            self._users.setdefault(room, {})
            return [], self._ask(room)
        if kind == "left" and mine:
            self._users.pop(room, None)
            self._count.pop(room, None)
            return [], []
        if room not in self._users or not isinstance(user, dict):
            return [], []
        if kind == "joined":
            users = self._users[room]
            if user.get("id") in users or len(users) >= self.limit:
                return [], []
            users[str(user.get("id"))] = user
            self._count[room] = self._count.get(room, 0) + 1
            return [self._event(frame, room)], []
        if kind == "left":
            return [], self._ask(room)
        return [], []

    def _listed(
        self, frame: Frame, room: str
    ) -> tuple[list[Event], list[Frame]]:
        again = self._asking.pop(room, False)
        asks = self._ask(room) if again else []
        if room not in self._users:
            return [], asks  # left meanwhile
        users = {
            str(u["id"]): u
            for u in frame.get("users", ())[: self.limit]
            if isinstance(u, dict) and "id" in u
        }
        count = frame.get("count")
        count = count if isinstance(count, int) else len(users)
        if users == self._users[room] and count == self._count.get(room):
            return [], asks
        self._users[room], self._count[room] = users, count
        return [self._event(frame, room)], asks

    def _ask(self, room: str) -> list[Frame]:
        if room in self._asking:
            self._asking[room] = True  # changed since that was sent
            return []
        self._asking[room] = False
        return [{"type": "presence", "room": room}]

    def _event(self, frame: Frame, room: str) -> Presence:
        return Presence(frame, room, self.members(room), self.count(room))
