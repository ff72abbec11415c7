"""Which request a ``history``, ``presence`` or ``receipts`` answer is for.

The server echoes the request's ``ref`` in its answer, so an answer with
a ``ref`` is that request's. A request the client makes for itself (a
catch-up, a presence list) has no ``ref``: an answer without one is the
client's own. Servers before the echo answered a socket's requests in
order with no ``ref``: then each answer goes to the oldest request of its
kind and room sent on that socket.
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
        echoed = frame.get("ref")
        if isinstance(echoed, str):
            if waiting and echoed in waiting:
                waiting.remove(echoed)
            ref: str | None = echoed
        elif not waiting:
            return None
        elif None in waiting:
            waiting.remove(None)  # the client's own request
            ref = None
        else:
            ref = waiting.popleft()  # a server that echoes no ref
        if waiting is not None and not waiting:
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
