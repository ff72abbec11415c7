"""The requests waiting for their answer, under a ref that never changes.

A send keeps its ``ref`` from its first write to its ack: every socket
gets it again until the ack or an error comes back, so a server with
idempotent publish can tell a resend from a new message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from typing import Any

from .errors import ChatClientError, SendTimeout, refused

__all__ = ["PendingSends"]

Frame = dict[str, Any]


class PendingSends:
    """Frames waiting for an ``ack`` or an ``error``, bounded.

    Args:
        limit: How many at once; more raise :class:`SendTimeout`.
        max_bytes: Their UTF-8 JSON bytes at once; a frame that would
            pass it raises :class:`SendTimeout` (offline, sends pile up
            here until the reconnect).
    """

    def __init__(self, limit: int, max_bytes: int = 1 << 20) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        self._waiting: dict[str, tuple[Frame, asyncio.Future[Any], int]] = {}
        # Unique across clients and processes: a user's refs share one
        # window on the server.
        prefix = f"py-{uuid.uuid4().hex[:12]}-"
        self._refs = (f"{prefix}{n}" for n in itertools.count())

    def add(self, frame: Frame) -> asyncio.Future[Any]:
        """Give ``frame`` a ref; return the future of its answer."""
        if len(self._waiting) >= self.limit:
            raise SendTimeout("too many sends waiting", "too_many_pending")
        ref = next(self._refs)
        size = len(
            json.dumps({**frame, "ref": ref}, ensure_ascii=False).encode()
        )
        if self.bytes + size > self.max_bytes:
            raise SendTimeout(
                f"sends waiting would take {self.bytes + size} bytes "
                f"(at most {self.max_bytes})",
                "too_many_pending",
            )
        frame["ref"] = ref
        future = asyncio.get_running_loop().create_future()
        self._waiting[ref] = (frame, future, size)
        self.bytes += size
        return future

    def remove(self, frame: Frame) -> None:
        """Stop waiting for ``frame``'s answer."""
        waiting = self._waiting.pop(frame["ref"], None)
        if waiting is not None:
            self.bytes -= waiting[2]

    def frames(self) -> list[Frame]:
        """Every frame still waiting, oldest first: to send again."""
        return [frame for frame, _, _ in self._waiting.values()]

    def resolve(self, ref: str, answer: object) -> None:
        """Answer the request with ``ref`` (if still waiting).

        ``answer``: a message id (an ``ack``), or what a ``history`` or
        ``receipts`` reply holds.
        """
        waiting = self._waiting.get(ref)
        if waiting is not None and not waiting[1].done():
            waiting[1].set_result(answer)

    def refuse(self, ref: str, code: str, message: str) -> bool:
        """Fail the send with ``ref``; False when no send has that ref."""
        waiting = self._waiting.get(ref)
        if waiting is None:
            return False
        if not waiting[1].done():
            waiting[1].set_exception(refused(code, message))
        return True

    def fail_all(self, failure: ChatClientError) -> None:
        """Fail every waiting send (the client is closed or refused)."""
        for _, future, _ in self._waiting.values():
            if not future.done():
                future.set_exception(failure)
