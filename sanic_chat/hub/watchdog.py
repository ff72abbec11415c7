"""One sweep a second over every connection of the process.

Instead of a keepalive task and timers per socket, one task per worker
measures the bytes its clients have not read, closes the clients whose
token expired, drops the clients that stopped reading when the worker is
over its unsent budget, pings idle clients and closes those whose ping or
write is stuck.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection

from ..budget import UnsentBytes
from ..connection import Connection
from ..errors import CloseCode
from ..metrics import Metrics

__all__ = ["SHED_AFTER", "Watchdog"]

logger = logging.getLogger(__name__)

# Over the worker's unsent budget, a client whose socket has refused data
# for this long (seconds) is dropped.
SHED_AFTER = 1.0


class Watchdog:
    """Keepalive, send timeout and the unsent budget of one process.

    Args:
        connections: The process's open connections (read at each sweep).
        unsent: The worker's account of unsent bytes.
        send_timeout: Seconds one write may take before its client is
            closed with 1013.
        metrics: Counts the clients closed as slow consumers.
        shed_after: Over the budget, how long (seconds) a socket must have
            refused data for its client to be dropped.
    """

    __slots__ = (
        "_checked",
        "_connections",
        "_metrics",
        "_task",
        "every",
        "send_timeout",
        "shed_after",
        "unsent",
    )

    def __init__(
        self,
        connections: Collection[Connection],
        unsent: UnsentBytes,
        send_timeout: float,
        metrics: Metrics,
        shed_after: float = SHED_AFTER,
    ) -> None:
        self._connections = connections
        self.unsent = unsent
        self.send_timeout = send_timeout
        self.every = min(5.0, send_timeout / 2)
        """Seconds between keepalive and send-timeout checks."""
        self.shed_after = shed_after
        self._metrics = metrics
        self._checked = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping, once a second (needs a running loop)."""
        if self._task is None:
            self._checked = time.monotonic()
            self._task = asyncio.create_task(
                self._run(), name="sanic-chat watchdog"
            )

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the sweeping task; return it, for the caller to await."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.every))
            try:
                self.sweep(time.monotonic())
            except Exception:
                # One bad connection must not end keepalive, token expiry
                # and the unsent budget for every other one.
                logger.exception("watchdog sweep failed; sweeping on")

    def sweep(self, now: float, wall: float | None = None) -> None:
        """Measure unsent bytes; close expired, shed, ping and stuck clients.

        A connection whose identity expired (``Connection.expiry``, by the
        wall clock) is closed with its code: one check a second here
        instead of a timer per connection. ``now`` is
        ``time.monotonic()``, ``wall`` the epoch time (``time.time()``
        when not given).

        The sockets' write buffers are summed into :attr:`unsent` (one
        cheap call per socket); over the worker's budget the clients that
        stopped reading are shed at once (:meth:`shed`). Keepalive and the
        send timeout are checked when :attr:`every` seconds have passed
        since the last check.
        """
        conns = list(self._connections)
        buffered = 0
        if wall is None:
            wall = time.time()
        for conn in conns:
            buffered += conn.socket.buffered()
            expiry = conn.expiry
            if (
                expiry is not None
                and expiry.at is not None
                and (wall >= expiry.at)
            ):
                conn.expiry = None
                conn.close(expiry.code, expiry.reason)
        self.unsent.buffered = buffered
        if self.unsent.full:
            self.shed(conns, now)
        if now - self._checked < self.every:
            return
        self._checked = now
        timeout = self.send_timeout
        for conn in conns:
            conn.keepalive(now)
            started = conn.sending_since
            if started is not None and now - started > timeout:
                logger.info("closing %s: send stuck %.0fs", conn, timeout)
                self._metrics.slow_consumer_disconnects += 1
                conn.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")

    def shed(self, conns: list[Connection], now: float) -> None:
        """Over the unsent budget: drop clients that stopped reading.

        Waiting ``send_timeout`` (30 s) for them would let a few hundred
        sockets that never read keep the worker refusing everyone else.
        Those whose socket has refused data for over :attr:`shed_after`
        seconds are disconnected at once (1013 queued, then the TCP
        connection dropped), the largest first, until the worker is under
        budget.
        """
        unsent = self.unsent
        total = unsent.total
        after = self.shed_after
        stuck = [
            c
            for c in conns
            if c.sending_since is not None and now - c.sending_since > after
        ]
        stuck.sort(key=lambda c: c.unsent, reverse=True)
        shed = 0
        for conn in stuck:
            if total < unsent.limit:
                break
            total -= conn.unsent
            unsent.buffered -= conn.socket.buffered()
            conn.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")
            conn.socket.abort()
            shed += 1
        if shed:
            self._metrics.slow_consumer_disconnects += shed
            logger.warning(
                "over the unsent bytes budget: dropped %d clients that "
                "stopped reading",
                shed,
            )
