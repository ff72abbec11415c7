"""The delays between attempts of every retry loop in sanic-chat.

A room's subscription, the control channel, the Redis listener and the
Redis presence writer all retry the same way: the first retry comes fast
(a blip costs a tenth of a second), later ones back off exponentially up
to a cap (a Redis that is down is not hammered), and every delay is
jittered so that thousands of rooms whose subscriptions failed together
do not retry in lockstep. Success resets the sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Jittered, capped exponential delays for one retry loop.

    Attempt ``n`` (from 0) waits ``min(cap, first * factor ** n)`` scaled
    by a random factor in ``[1 - jitter, 1]``: jitter only shortens a
    delay, so ``first`` and ``cap`` stay upper bounds.

    Typical use::

        backoff = Backoff()
        while True:
            try:
                ...  # connect
                backoff.reset()
                ...  # work until it fails
            except SomeError:
                if not backoff.failing:
                    logger.warning("failed; retrying")  # once per outage
            await backoff.pause(closed)

    Args:
        first: The longest wait before the first retry, in seconds.
        cap: The longest wait before any retry, in seconds.
        factor: How much longer each retry may wait than the one before.
        jitter: The fraction of each delay that is random, from 0 (none)
            to 1 (anywhere between 0 and the full delay).
        rng: Returns a float in ``[0, 1)``; tests pass their own.

    Raises:
        ValueError: A negative delay, a cap below ``first``, a factor
            below 1 or a jitter outside ``[0, 1]``.
    """

    __slots__ = (
        "_next",
        "_rng",
        "attempt",
        "cap",
        "factor",
        "first",
        "jitter",
    )

    def __init__(
        self,
        first: float = 0.1,
        cap: float = 5.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if first < 0 or cap < first:
            raise ValueError("backoff needs 0 <= first <= cap")
        if factor < 1:
            raise ValueError("backoff factor must be at least 1")
        if not 0 <= jitter <= 1:
            raise ValueError("backoff jitter must be between 0 and 1")
        self.first = first
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng
        self._next = first
        self.attempt = 0
        """Retries since the last :meth:`reset` (0: not failing)."""

    @property
    def failing(self) -> bool:
        """Whether a retry has been made since the last success."""
        return self.attempt > 0

    def reset(self) -> None:
        """Record a success: the next failure retries fast again."""
        self.attempt = 0
        self._next = self.first

    def delay(self) -> float:
        """Return the delay before the next retry, and count the retry."""
        # Grown step by step, not as factor ** attempt: an outage of
        # thousands of retries must not overflow a float.
        base = self._next
        self._next = min(self.cap, base * self.factor)
        self.attempt += 1
        return base * (1.0 - self.jitter * self._rng())

    async def pause(self, wake: asyncio.Event | None = None) -> None:
        """Sleep for the next :meth:`delay`; return early once ``wake`` is set.

        Args:
            wake: Ends the pause at once when set (a broadcaster closing),
                so that shutting down never waits out a backoff.
        """
        seconds = self.delay()
        if wake is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()
