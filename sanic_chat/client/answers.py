"""Which request an answer that names only its room belongs to.

``history``, ``presence`` and ``receipts`` answers carry their room but
no ``ref``; the server answers one socket's requests in order, so each
answer goes to the oldest request of its kind and room sent on that
socket. A request the client makes for itself (a catch-up, a presence
list) has no ``ref``: its answer is the client's own.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["ANSWERED", "Answers"]

ANSWERED = frozenset({"history", "presence", "receipts"})


class Answers:
    """The requests of the current socket still waiting, per kind and room.

    Bounded by the requests the client allows at once: the application's
    wait in ``PendingSends`` (``max_pending``), the client's own are one
    per room at a time.
    """

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], deque[str | None]] = {}

    def sent(self, frame: dict[str, Any]) -> None:
        """Note ``frame`` as written, if its answer names only a room."""
        kind, room = frame.get("type"), frame.get("room")
        if kind in ANSWERED and isinstance(room, str):
            key = (str(kind), room)
            self._waiting.setdefault(key, deque()).append(frame.get("ref"))

    def answer(self, frame: dict[str, Any]) -> str | None:
        """The ref of the request ``frame`` answers; None: the client's."""
        key = (str(frame.get("type")), str(frame.get("room")))
        waiting = self._waiting.get(key)
        if not waiting:
            return None
        ref = waiting.popleft()
        if not waiting:
            del self._waiting[key]
        return ref

    def refused(self, ref: str) -> None:
        """Forget the request ``ref``: an ``error`` answered it."""
        for key, waiting in list(self._waiting.items()):
            if ref in waiting:
                waiting.remove(ref)
                if not waiting:
                    del self._waiting[key]
                return

    def clear(self) -> None:
        """Forget every request: the socket they were sent on is gone."""
        self._waiting.clear()
