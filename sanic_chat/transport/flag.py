"""``Flag``: an ``asyncio.Event`` at a fraction of its size.

Every upgraded connection holds flow-control flags for its whole life:
its own ``can_write``, and on Sanic's server the two events Sanic's
protocol object keeps per connection (``_can_write``, which drives ours,
and ``_data_received``, idle once the connection is a WebSocket). An
``asyncio.Event`` costs about 860 bytes: an instance dict, and a
``deque`` of waiters made up front whether anyone ever waits. Nearly
nobody does: a waiter exists only while a socket is backed up. A
:class:`Flag` is two slots, 48 bytes, with the list of waiters made
by the first wait and dropped by the last.
"""

from __future__ import annotations

import asyncio
from typing import Literal

__all__ = ["Flag"]


class Flag:
    """``asyncio.Event``'s interface and behaviour, in two slots.

    ``set``, ``clear``, ``is_set`` and ``wait`` do what the event's do.
    Like an ``asyncio.Event``, it belongs to the loop of its first
    waiter; unlike one, it makes nothing until somebody waits.

    Args:
        value: Whether it starts set.
    """

    __slots__ = ("_value", "_waiters")

    def __init__(self, value: bool = False) -> None:
        self._value = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def __repr__(self) -> str:
        state = "set" if self._value else "unset"
        waiters = len(self._waiters) if self._waiters else 0
        return f"<Flag [{state}, waiters:{waiters}]>"

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._value

    def set(self) -> None:
        """Set the flag and wake every waiter."""
        if self._value:
            return
        self._value = True
        waiters = self._waiters
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def clear(self) -> None:
        """Unset the flag: :meth:`wait` blocks until :meth:`set`."""
        self._value = False

    async def wait(self) -> Literal[True]:
        """Wait until the flag is set; return ``True`` (as ``Event``)."""
        if self._value:
            return True
        waiter: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future()
        )
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            waiters.remove(waiter)
            if not waiters and self._waiters is waiters:
                self._waiters = None
