"""Per-connection rate limiting: a token bucket.

Every client frame costs a token, plus one per started 16 KiB, charged
before it is parsed (``join``/``leave`` cost more, so room churn is
limited too); tokens refill at ``rate`` per second up to
``burst``. A frame without a token gets a ``rate_limited`` error frame
and is not processed; a connection that keeps hitting the limit is closed
with 1008. One client can therefore never make the server do more than
``rate`` units of work per second for it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    """A token bucket with a count of consecutive refusals.

    Args:
        rate: Tokens added per second.
        burst: Most tokens held.
        clock: Seconds from a monotonic clock; tests pass their own so
            that refilling needs no sleeping.
    """

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate", "strikes")

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self.strikes = 0

    def take(self, cost: float = 1) -> bool:
        """Take ``cost`` tokens if available; count a strike if not.

        ``strikes`` counts refusals in a row: an accepted frame, or a
        second without any frame, resets it.
        """
        if self._refill() >= 1.0:
            self.strikes = 0  # a second of calm forgives
        if self._tokens >= cost:
            self._tokens -= cost
            self.strikes = 0
            return True
        self.strikes += 1
        return False

    def _refill(self) -> float:
        """Add the tokens earned since the last call; return the seconds."""
        now = self._clock()
        elapsed = now - self._stamp
        self._stamp = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        return elapsed

    def charge(self, cost: float) -> None:
        """Take ``cost`` tokens after the fact, going into debt if need be.

        Work whose cost is known only once it is done (the size of a
        reply) is charged here: it never counts as a strike, but the
        connection waits :meth:`delay` before its next frame is read, so
        a client that keeps asking for large replies is slowed down
        rather than refused. The debt is capped at one ``burst``.
        """
        self._refill()
        self._tokens = max(-float(self.burst), self._tokens - cost)

    def delay(self, cost: float = 1) -> float:
        """Seconds until ``cost`` tokens are available (0.0: now)."""
        elapsed = self._clock() - self._stamp
        missing = cost - self._tokens - elapsed * self.rate
        return max(0.0, missing / self.rate)


class PublishLimiter:
    """Token buckets per caller for the HTTP API's routes (bounded LRU)."""

    def __init__(self, rate: float, burst: int, size: int = 10_000) -> None:
        self.rate, self.burst, self.size = rate, burst, size
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str) -> bool:
        """Charge one publish to ``key``; False when over the limit."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst)
        self._buckets[key] = bucket
        if len(self._buckets) > self.size:
            self._buckets.popitem(last=False)
        return bucket.take(1)

    def charge(self, key: str, cost: float) -> None:
        """Charge ``key`` after the fact (a large answer), into debt."""
        bucket = self._buckets.get(key)
        if bucket is not None and cost > 0:
            bucket.charge(cost)


class Throttle:
    """At most one event per key per ``interval`` seconds (bounded).

    For ephemeral signals such as ``typing``: the first event of a key
    passes, the others within ``interval`` seconds are dropped. Keys
    older than ``interval`` are forgotten as new ones arrive; with
    ``size`` keys all recent, the oldest is forgotten to make room, so a
    flood of distinct keys (``typing`` to many made-up users) cannot
    grow it, nor silence everyone else's keys: it can at most let a key
    of the flood's age through again early.

    Args:
        interval: Seconds between two events of a key.
        size: Most keys remembered.
        clock: Seconds from a monotonic clock.
    """

    __slots__ = ("_clock", "_stamps", "interval", "size")

    def __init__(
        self,
        interval: float = 2.0,
        size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval, self.size, self._clock = interval, size, clock
        # Insertion order is time order: each pass moves its key last.
        self._stamps: OrderedDict[object, float] = OrderedDict()

    def allow(self, key: object) -> bool:
        """Whether an event of ``key`` may pass now (then it is counted)."""
        now = self._clock()
        stamps = self._stamps
        last = stamps.get(key)
        if last is not None and now - last < self.interval:
            return False
        while stamps:
            oldest, stamp = next(iter(stamps.items()))
            if now - stamp < self.interval:
                break
            del stamps[oldest]
        stamps.pop(key, None)
        if len(stamps) >= self.size:
            stamps.popitem(last=False)
        stamps[key] = now
        return True
