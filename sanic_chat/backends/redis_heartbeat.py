"""The heartbeat of the Redis broadcaster: the only judge of Redis.

Commands have no per-command read timeout: under a connect storm the
event loop may take seconds to get back to a reply that arrived long ago,
and a timer cannot tell that from a slow Redis. The heartbeat is the one
timer. Every ``heartbeat`` seconds it refreshes the worker's liveness key
and presence, publishes on the worker's control channel and waits for its
own echo through the pub/sub connection. Twice in a row without an answer
or an echo, it declares the worker deaf: unhealthy, the listener rebuilds
its connection, and every pooled connection is dropped, which fails the
commands waiting on them instead of letting them hang.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from redis.exceptions import RedisError

from .redis_link import RedisLink, reraise_cancellation
from .redis_presence import RedisPresence

logger = logging.getLogger("sanic_chat.backends.redis")


class Listener(Protocol):
    """What the heartbeat needs of a listener.

    One pub/sub connection, or one per shard on Redis Cluster.
    """

    online: bool
    echo: asyncio.Event
    reconnect: asyncio.Event

    async def probe(self) -> None:
        """Send a heartbeat; :attr:`echo` is set when it came back."""


class RedisHeartbeat:
    """Checks the subscription path and keeps the worker alive in Redis.

    A part of :class:`~sanic_chat.backends.redis.RedisBroadcaster`, which
    runs :meth:`run` as a task.

    Args:
        link: The Redis connection shared with the other parts.
        listener: The pub/sub listener whose echo is awaited.
        presence: The presence part, refreshed at each beat.
        interval: Seconds between beats, and the wait for each echo.
    """

    def __init__(
        self,
        link: RedisLink,
        listener: Listener,
        presence: RedisPresence,
        *,
        interval: float,
    ) -> None:
        self._link = link
        self._listener = listener
        self._presence = presence
        self.interval = interval
        self.deaf = False
        """Whether two beats in a row found no answer or no echo."""

    async def run(self) -> None:
        """Beat until the broadcaster closes."""
        link, listener = self._link, self._listener
        redis = link.client()
        worker_key = link.key("worker", link.worker)
        ttl = self._presence.presence_ttl
        misses = 0
        beaten = False  # a first beat finds no key: that is not a loss
        while not link.closed.is_set():
            online = False
            try:
                # The timers that judge Redis: commands have none.
                async with asyncio.timeout(self.interval):
                    was = await redis.set(worker_key, b"1", ex=ttl, get=True)
                    await self._presence.refresh(
                        rewrite=beaten and was is None
                    )
                    beaten = True
                    online = listener.online
                    if online:
                        listener.echo.clear()
                        await listener.probe()
                if online:
                    # Not wait_for: on 3.11 it can swallow a cancel.
                    async with asyncio.timeout(self.interval):
                        await listener.echo.wait()
            except TimeoutError:
                if link.closed.is_set():
                    break  # shutting down, not deaf
                misses += 1
                if misses < 2:
                    # One miss can be a reconnect, or a loop that was busy.
                    continue
                await self._deafened()
            except (RedisError, OSError):
                # The listener logs connection state changes. redis-py may
                # turn a cancellation into an error: do not swallow it.
                reraise_cancellation()
            else:
                if online:
                    misses = 0
                    if self.deaf:
                        logger.warning(
                            "Redis %s: heartbeat is back; healthy",
                            link.masked_url,
                        )
                    self.deaf = False
            await link.pause(min(self.interval, ttl / 3))

    async def _deafened(self) -> None:
        if not self.deaf:
            logger.error(
                "Redis %s: no answer or no heartbeat echo within "
                "%.1fs, twice; reconnecting",
                self._link.masked_url,
                self.interval,
            )
        self.deaf = True
        self._listener.reconnect.set()
        # Fail the commands that wait for it rather than let them hang:
        # they have no timer of their own.
        await self._link.drop_connections()
