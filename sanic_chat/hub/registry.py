"""The connections of one process, counted per user, and closing them.

The registry knows every open connection of the worker and how many each
user holds, counting accepted upgrades whose socket does not exist yet
(reservations), so that a burst of concurrent upgrades cannot get past
``max_connections_per_user``. It closes them: one user's (an admin's
disconnect) or all of them in spread-out batches (shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from ..connection import Connection
from ..errors import CloseCode

__all__ = ["RESERVATION_LIFETIME", "Registry"]

logger = logging.getLogger(__name__)

# Seconds after which an upgrade reservation that no connection claimed
# (a failed handshake) lapses.
RESERVATION_LIFETIME = 10.0

# Shutdown closes sockets in batches at least this far apart (seconds).
_CLOSE_BATCH_GAP = 0.05


class Registry:
    """The open connections of one process, per user.

    Args:
        clock: Monotonic seconds; tests pass their own to see reservations
            lapse.
    """

    __slots__ = (
        "_all_closed",
        "_clock",
        "_pending",
        "_per_user",
        "connections",
    )

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.connections: set[Connection] = set()
        """Every open connection of this process."""
        self._per_user: dict[str, int] = {}
        # Upgrades accepted but not yet connected: user id -> deadlines.
        self._pending: dict[str, list[float]] = {}
        self._clock = clock
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    def add(self, conn: Connection) -> None:
        """Track ``conn`` until :meth:`remove`; it claims a reservation."""
        self.connections.add(conn)
        uid = conn.user.id
        self._per_user[uid] = self._per_user.get(uid, 0) + 1
        self.release(uid)
        self._all_closed.clear()

    def remove(self, conn: Connection) -> None:
        """Stop tracking ``conn``; a second call changes nothing."""
        if conn in self.connections:
            self.connections.discard(conn)
            uid = conn.user.id
            if self._per_user.get(uid, 0) > 1:
                self._per_user[uid] -= 1
            else:
                self._per_user.pop(uid, None)
        if not self.connections:
            self._all_closed.set()

    def reserve(self, user_id: str) -> None:
        """Count an accepted upgrade of ``user_id`` before its socket exists.

        Concurrent upgrades would otherwise all see the old count. A
        reservation that no connection claims (a failed handshake) lapses
        after ``RESERVATION_LIFETIME`` seconds.
        """
        deadline = self._clock() + RESERVATION_LIFETIME
        self._pending.setdefault(user_id, []).append(deadline)

    def release(self, user_id: str) -> None:
        """Drop one reservation of ``user_id`` (its handshake failed)."""
        pending = self._pending.get(user_id)
        if pending:
            pending.pop(0)
            if not pending:
                del self._pending[user_id]

    def connections_of(self, user_id: str) -> int:
        """Open (or about to open) connections of ``user_id`` here."""
        pending = self._pending.get(user_id)
        if pending:
            now = self._clock()
            pending[:] = [d for d in pending if d > now]
            if not pending:
                del self._pending[user_id]
        return self._per_user.get(user_id, 0) + len(pending or ())

    def close_user(self, user_id: str, reason: str) -> int:
        """Close ``user_id``'s connections here with 1008; return how many."""
        closed = 0
        for conn in list(self.connections):
            if conn.user.id == user_id and not conn.closing:
                conn.close(CloseCode.POLICY_VIOLATION, reason)
                closed += 1
        if closed:
            logger.info(
                "disconnected user %r (%d connections)", user_id, closed
            )
        return closed

    async def close_all(
        self, code: int, reason: str, wait: float, spread: float = 0.0
    ) -> None:
        """Close every connection after its queued frames; wait for them.

        Connections are closed in random order, in batches spread over
        ``spread`` seconds, so that thousands of clients do not all
        reconnect in the same millisecond.

        Args:
            code: Close code, 1012 on shutdown.
            reason: Close reason sent to clients.
            wait: Seconds to wait, after the last batch, for clients to
                finish closing; those still connected then are dropped.
            spread: Seconds over which the batches are spread.
        """
        conns = list(self.connections)
        random.shuffle(conns)
        batches = max(1, min(len(conns), int(spread / _CLOSE_BATCH_GAP)))
        size = max(1, -(-len(conns) // batches))  # ceiling division
        for start in range(0, len(conns), size):
            if start:
                await asyncio.sleep(spread / batches)
            for conn in conns[start : start + size]:
                conn.close(code, reason, flush=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._all_closed.wait()
        for conn in list(self.connections):
            # It had ``wait`` seconds to read its frames and the close.
            conn.socket.abort()
