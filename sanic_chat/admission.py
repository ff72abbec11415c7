"""Admission control: a worker busy setting up connections slows new ones.

A connection is *in setup* from the moment its upgrade passes the checks
(:func:`sanic_chat.auth.check_upgrade`) until its first rooms are joined,
or its request ends. At most ``max_connections_in_setup`` are; a further
upgrade waits before the ``101`` (first come, first served) for up to
``setup_wait`` seconds, then is refused with ``503`` and ``Retry-After``,
before any socket exists. So overload slows admission, and a client the
worker accepted is never failed for it.

A slot belongs to the task that serves the request (Sanic runs the
checks and the handler in one task): the handler gives it back with
:meth:`Admission.release` once its rooms are joined, and it comes back by
itself when the task ends, whatever ends it.

Trade-off: the wait is measured by the event loop's clock, so a loop that
is far behind refuses sooner than the number suggests; that is what it is
for (a worker that far behind should send clients elsewhere), and it
happens before the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque

# Upgrades that may wait per slot; more are refused at once (each waiting
# upgrade holds a TCP connection and a request task).
_WAITERS_PER_SLOT = 8


class Admission:
    """Slots for connections in setup, and a bounded queue for them.

    Args:
        limit: Connections in setup at once.
        wait: Seconds an upgrade may wait for a slot (0: refuse at once).
    """

    def __init__(self, limit: int, wait: float) -> None:
        self.limit = limit
        self.wait = wait
        #: Seconds a refused client is told to wait (``Retry-After``).
        self.retry_after = max(1, math.ceil(wait))
        self._holders: set[asyncio.Task[object]] = set()
        # Slots handed to waiters that have not resumed yet.
        self._granted = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def in_setup(self) -> int:
        """Connections holding (or just handed) a slot now."""
        return len(self._holders) + self._granted

    async def admit(self) -> bool:
        """Take a slot for the current task; ``False``: refuse (503).

        Waits up to ``wait`` seconds when every slot is taken; at most
        8 upgrades per slot wait at once, more are refused immediately.
        """
        task = asyncio.current_task()
        if task is None or task in self._holders:
            return True
        if self.in_setup >= self.limit or self._waiters:
            full = len(self._waiters) >= self.limit * _WAITERS_PER_SLOT
            if self.wait <= 0 or full:
                return False
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(self.wait):
                    await waiter
            except BaseException as exc:
                if waiter.done() and not waiter.cancelled():
                    # Handed a slot at the last moment: pass it on.
                    self._granted -= 1
                    self._wake()
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                if isinstance(exc, TimeoutError):
                    return False
                raise
            self._granted -= 1
        self._holders.add(task)
        task.add_done_callback(self._ended)
        return True

    def release(self) -> None:
        """Give back the current task's slot, if it holds one."""
        task = asyncio.current_task()
        if task is not None and task in self._holders:
            task.remove_done_callback(self._ended)
            self._ended(task)

    def _ended(self, task: asyncio.Task[object]) -> None:
        self._holders.discard(task)
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_setup < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._granted += 1
