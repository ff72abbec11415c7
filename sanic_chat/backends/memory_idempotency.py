"""Refs already sent, in one process's memory, bounded in count and bytes.

The :class:`~.base.Idempotency` part of the memory broadcaster, and what
the chat falls back to, per worker, for a backend that has none. Entries
are kept in the order they were last written; an expired one is dropped
when it is read or reaches the front, and over ``max_entries`` or
``max_bytes`` the oldest go first. Forgetting a settled ref early means
a resend of it after that is published again: the bound is there so
that a client sending unique refs cannot grow the worker's memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .base import PENDING, Idempotency

ENTRY_OVERHEAD = 250
"""Bytes an entry is counted for besides its key and id strings."""


class MemoryIdempotency(Idempotency):
    """Refs of this process, each kept until its deadline.

    Args:
        max_entries: Refs kept at most; the oldest are forgotten first.
        max_bytes: Bytes they may take (keys, ids and
            :data:`ENTRY_OVERHEAD` each); the oldest are forgotten first.
        clock: Monotonic seconds (tests move it).
    """

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        max_bytes: int = 32 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        # (user id, ref) -> (deadline, message id or PENDING)
        self._entries: OrderedDict[tuple[str, str], tuple[float, str]] = (
            OrderedDict()
        )
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes the kept refs are counted for."""
        return self._bytes

    async def claim(self, user_id: str, ref: str, lease: float) -> str | None:
        """Claim ``ref`` unless it is claimed or settled and not expired."""
        key = (user_id, ref)
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        self._put(key, lease, PENDING)
        return None

    async def settle(
        self, user_id: str, ref: str, message_id: str, ttl: float
    ) -> None:
        """Keep ``message_id`` for ``ref`` ``ttl`` seconds."""
        self._put((user_id, ref), ttl, message_id)

    async def release(self, user_id: str, ref: str) -> None:
        """Forget ``ref`` if it is still only claimed."""
        key = (user_id, ref)
        entry = self._entries.get(key)
        if entry is not None and entry[1] == PENDING:
            self._drop(key)

    def _put(self, key: tuple[str, str], ttl: float, value: str) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + ttl, value)
        self._bytes += _size(key, value)
        self._trim()

    def _drop(self, key: tuple[str, str]) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= _size(key, value)

    def _trim(self) -> None:
        entries, now = self._entries, self._clock()
        while entries:
            key, (deadline, _) = next(iter(entries.items()))
            over = (
                len(entries) > self.max_entries or self._bytes > self.max_bytes
            )
            if not over and deadline > now:
                return
            self._drop(key)


def _size(key: tuple[str, str], value: str) -> int:
    return ENTRY_OVERHEAD + len(key[0]) + len(key[1]) + len(value)
