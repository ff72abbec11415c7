"""One consumer asleep until its producer has something for it.

The socket's inbox (:class:`sanic_chat.transport.base.Inbox`) and a
broadcaster's subscription (:class:`sanic_chat.backends.base.Subscription`)
are both a queue with one reader: the producer appends and wakes the
reader, which sleeps only while there is nothing to take. An
:class:`asyncio.Event` would do, but it allocates a deque of waiters per
instance and needs clearing; this costs one slot, and a future only while
the reader sleeps.
"""

from __future__ import annotations

import asyncio

__all__ = ["Wakeup"]


class Wakeup:
    """The single reader's waiting: :meth:`_sleep` until :meth:`_wake`.

    A base class for one-reader queues. A wake with nobody asleep is not
    remembered: the reader checks its queue before it sleeps, and the loop
    runs nothing in between.
    """

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        """Wake the reader, if it sleeps."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self) -> None:
        """Sleep until the next :meth:`_wake` (or a cancellation)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
