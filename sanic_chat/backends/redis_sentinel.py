"""Redis behind Sentinel: the pool that follows the primary.

``redis+sentinel://host:port[,host:port...]/SERVICE/DB`` names the
sentinels, not Redis: every new connection asks them where the primary
of ``SERVICE`` is (redis-py's :class:`~redis.asyncio.sentinel.
SentinelConnectionPool`), and a connection to a primary that was demoted
(``READONLY``) is closed and fails as a lost connection. The pool keeps
the two properties of the plain one (:mod:`.redis_link`): at most
:data:`~.redis_link.POOL_SIZE` connections that commands queue for, and
no per-command timeout. Sentinels themselves are asked with a timeout:
one that does not answer is skipped.

The broadcaster's parts then handle a failover as any lost connection:
commands fail (``unavailable``), the listener reconnects (to the new
primary) and interrupts subscriptions (``resync``); the heartbeat asks
the sentinels at every beat where the primary is, and moves the
listener when it is still subscribed to the old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool


@dataclass(frozen=True)
class SentinelTarget:
    """Where the sentinels are and which service to follow.

    Args:
        sentinels: ``(host, port)`` of each sentinel.
        service: The name the sentinels monitor the primary under.
        db: The database number on the primary.
        username: ACL user on the primary, if any.
        password: Password on the primary, if any.
        sentinel_password: Password on the sentinels, if any.
    """

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)


class BlockingSentinelConnectionPool(
    SentinelConnectionPool, BlockingConnectionPool
):
    """A Sentinel pool whose commands wait for a free connection.

    The MRO puts :class:`SentinelConnectionPool` (where connections go)
    before :class:`BlockingConnectionPool` (how many, and the queue).
    """


def sentinel_pool(
    target: SentinelTarget, ask_timeout: float, **connection: Any
) -> tuple[BlockingSentinelConnectionPool, Sentinel]:
    """Return a pool on the primary of ``target`` and its sentinels.

    Args:
        target: The sentinels and the service.
        ask_timeout: Seconds to wait for a sentinel's answer.
        connection: Keyword arguments of the pool and its connections.
    """
    sentinel_options: dict[str, Any] = {
        "socket_timeout": ask_timeout,
        "socket_connect_timeout": ask_timeout,
    }
    if target.sentinel_password is not None:
        sentinel_options["password"] = target.sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=sentinel_options
    )
    pool = BlockingSentinelConnectionPool(  # type: ignore[no-untyped-call]
        target.service,
        sentinel,
        db=target.db,
        username=target.username,
        password=target.password,
        **connection,
    )
    return pool, sentinel
