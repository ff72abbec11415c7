"""The connection to Redis that every part of the Redis broadcaster shares.

:class:`~sanic_chat.backends.redis.RedisBroadcaster` is made of parts
(:mod:`.redis_listener`, :mod:`.redis_heartbeat`, :mod:`.redis_presence`)
that each do one job over the same Redis: this module holds what they
share, the bounded connection pool, the key names, the worker's id and
the flag that says the broadcaster is closing. It imports redis-py, so
it is reached through :mod:`sanic_chat.backends.redis`, which explains
a missing ``redis`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..errors import BroadcasterUnavailable
from . import mask_url

# Connections per worker. Commands beyond it wait for a free connection
# (FIFO) rather than fail: redis-py's default pool raises "Too many
# connections" past 100, which a connect storm reaches in milliseconds.
POOL_SIZE = 32


def reraise_cancellation() -> None:
    """Raise ``CancelledError`` if the current task is being cancelled.

    redis-py can turn a cancellation into one of its errors; an ``except
    RedisError`` that swallowed it would keep a cancelled task running.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisLink:
    """One worker's Redis client, key names and lifecycle flag.

    :class:`~.redis_cluster.ClusterLink` is the same for Redis Cluster:
    it names keys with hash tags and publishes with ``SPUBLISH``.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL of the server.
        prefix: Namespace of every key and channel.
        timeout: Seconds to wait for Redis when connecting.
    """

    PUBLISH = "PUBLISH"
    """The command that publishes on a room or control channel."""

    def __init__(self, url: str, *, prefix: str, timeout: float) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.worker = secrets.token_hex(6)
        self.redis: aioredis.Redis | None = None
        self.closed = asyncio.Event()
        """Set while the broadcaster is closed: every loop ends on it."""

    @property
    def masked_url(self) -> str:
        """The URL with its credentials masked, for logs and errors."""
        return mask_url(self.url)

    async def open(self) -> None:
        """Create the bounded pool and check that Redis answers.

        Raises:
            BroadcasterUnavailable: Redis cannot be reached.
        """
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=POOL_SIZE,
            timeout=None,  # wait for a connection; the heartbeat bounds it
            socket_connect_timeout=self.timeout,
            # No read timeout: only the heartbeat judges Redis (see the
            # docstring of sanic_chat.backends.redis).
            socket_timeout=None,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        self.redis = aioredis.Redis.from_pool(pool)
        try:
            await self.redis.ping()
        except (RedisError, OSError) as exc:
            await self.redis.aclose()
            self.redis = None
            raise BroadcasterUnavailable(
                f"cannot connect to Redis at {self.masked_url}: {exc}"
            ) from None
        self.closed.clear()

    async def close(self) -> None:
        """Delete this worker's liveness key and close the pool."""
        if self.redis is None:
            return
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(self.timeout):
                await self.redis.delete(self.key("worker", self.worker))
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(self.timeout):
                await self.redis.aclose()
        self.redis = None

    async def drop_connections(self) -> None:
        """Close every pooled connection; commands waiting on them fail."""
        if self.redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.connection_pool.disconnect()

    def client(self) -> aioredis.Redis:
        """Return the client.

        Raises:
            BroadcasterUnavailable: The broadcaster is not connected.
        """
        if self.redis is None:
            raise BroadcasterUnavailable("Redis broadcaster is not connected")
        return self.redis

    def key(self, kind: str, name: str) -> str:
        """Return the name of the ``kind`` key or channel of ``name``."""
        return f"{self.prefix}{kind}:{name}"

    async def publish(self, channel: str, data: bytes | str) -> None:
        """Publish ``data`` on ``channel`` (one command)."""
        client = self.client()
        await client.execute_command(  # type: ignore[no-untyped-call]
            self.PUBLISH, channel, data
        )

    async def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Read several string keys at once (one ``MGET``)."""
        values = await self.client().mget(list(keys))
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when the broadcaster is closed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.closed.wait()


STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def valid_stream_id(value: str) -> bool:
    """Whether ``value`` can be the id of an entry added with ``XADD *``.

    ``0-0`` and the largest id never are, and they are the two ids that
    Redis refuses as exclusive range bounds (``(0-0`` as an end,
    ``(18446744073709551615-18446744073709551615`` as a start).
    """
    if not STREAM_ID.fullmatch(value):
        return False
    ms, seq = (int(part) for part in value.split("-"))
    largest = 2**64 - 1
    return (
        ms <= largest
        and seq <= largest
        and (ms, seq) not in ((0, 0), (largest, largest))
    )
