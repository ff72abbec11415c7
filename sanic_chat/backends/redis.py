"""The Redis broadcaster: rooms shared by every worker on every host.

Requires the ``redis`` extra (``pip install 'sanic-chat[redis]'``: redis-py
with hiredis). Keys and channels are namespaced by ``prefix``
(``sanic-chat:`` by default), so several apps can share one Redis:

=============================  =============================================
``{prefix}room:{room}``        pub/sub channel of the room's live events
``{prefix}history:{room}``     stream of stored messages, capped at
                               ``history_size`` entries, expires after
                               ``history_ttl`` seconds without a message
``{prefix}presence:{room}``    hash ``{worker}|{user json}`` -> connections
``{prefix}read:{room}``        hash user id -> last read stream id,
                               expires with the history
                               (:mod:`.redis_receipts`)
``{prefix}worker:{worker}``    a worker's heartbeat, expiring after
                               ``presence_ttl`` seconds
``{prefix}control:{worker}``   a worker's own heartbeat channel
=============================  =============================================

**One chat message costs one round trip**: a Lua script (``EVALSHA``)
appends it to the room's stream (which assigns the id), refreshes the
stream's TTL and publishes ``id|origin|payload`` on the room's channel,
atomically, so the order of ids in history is the order every subscriber
sees. Streams were chosen over a capped list because their ids are
ordered, unique and cheap to resume from (``XRANGE (id``), which is
exactly what ``since`` recovery needs, and to page back from
(``XREVRANGE (id``).

Every process holds one pub/sub connection, subscribed once per room that
has local members. A listener task reads it; if the connection fails the
backend logs once, reconnects with backoff, resubscribes every room and
interrupts every subscription, so clients are told to re-sync. A
heartbeat published on the worker's own control channel must come back
within ``heartbeat`` seconds, or the worker considers itself deaf, reports
:attr:`RedisBroadcaster.healthy` false and rebuilds its subscription.

**A busy event loop is not a Redis outage.** Commands have no per-command
read timeout: under a connect storm the loop may take seconds to get back
to a reply that arrived long ago, and a timer cannot tell that from a slow
Redis. Only the heartbeat judges Redis (twice ``heartbeat`` seconds
without its echo, or without an answer to its own commands); when it does,
every open connection is dropped, which fails the commands waiting on
them, and a failed connection fails its commands at once. A subscription
waits for Redis's confirmation as long as its connection lives. Commands
queue for one of at most 32 connections instead of failing when all are
busy, and the presence changes of many joins travel together: one task
writes them, one pipeline per batch (see :meth:`presence_add`).

:class:`RedisBroadcaster` is the :class:`~.base.Broker` part (publish,
history, subscriptions) and composes the others, one job each:

* :mod:`.redis_link`: the bounded connection pool, key names, worker id;
* :mod:`.redis_listener`: the pub/sub connection and its reconnection;
* :mod:`.redis_heartbeat`: the heartbeat that judges Redis;
* :mod:`.redis_presence`: the :class:`~.base.Presence` part, with its
  batched writer;
* :mod:`.redis_receipts`: the :class:`~.base.Receipts` part (read
  receipts).
* :mod:`.redis_idempotency`: the :class:`~.base.Idempotency` part (refs
  of messages sent, for resends).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..errors import BroadcasterUnavailable
from .base import (
    Broadcaster,
    Event,
    HistoryPage,
    PresenceInfo,
    Subscribers,
    Subscription,
)

try:
    from redis.exceptions import RedisError

    from .redis_cluster import ClusterLink, ClusterPresence, is_cluster_url
    from .redis_heartbeat import RedisHeartbeat
    from .redis_idempotency import RedisIdempotency
    from .redis_link import RedisLink, valid_stream_id
    from .redis_listener import RedisListener
    from .redis_presence import RedisPresence
    from .redis_receipts import RedisReceipts
    from .redis_shards import ShardedListener
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        "the Redis broadcaster needs the redis extra: "
        "pip install 'sanic-chat[redis]'"
    ) from exc


# {publish} is PUBLISH, or SPUBLISH on Redis Cluster (its channel is in
# KEYS, so the cluster's same-slot check covers it).
_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*',
                      'p', ARGV[1], 'o', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('{publish}', KEYS[2], id .. '|' .. ARGV[4] .. '|' .. ARGV[1])
return id
"""


class RedisBroadcaster(Broadcaster):
    """Broadcaster backed by Redis pub/sub and streams.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL of the server,
            or ``redis+cluster://host:port[,host:port...]/`` of a Redis
            Cluster (see :mod:`.redis_cluster`).
        prefix: Namespace of every key and channel.
        history_size: Messages kept per room.
        history_ttl: Seconds a room's history survives without messages.
        presence_ttl: Seconds after which the users of a worker that died
            without cleaning up disappear from presence.
        heartbeat: Seconds between self-checks of the subscription path;
            a heartbeat that has not come back one interval later marks
            the worker deaf.
        queue_size: Events a subscription may fall behind before a gap.
        timeout: Seconds to wait for Redis when connecting, and per
            command once the heartbeat has found Redis unhealthy. While
            it is healthy, commands wait for their answer (see above).
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        prefix: str = "sanic-chat:",
        history_size: int = 100,
        history_ttl: int = 86_400,
        presence_ttl: int = 30,
        heartbeat: float = 5.0,
        queue_size: int = 10_000,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.presence_ttl = presence_ttl
        self.heartbeat = heartbeat
        self.queue_size = queue_size
        self.timeout = timeout
        # The listener reads into the subscriptions, which subscribe and
        # unsubscribe rooms through the listener.
        self._subscribers = Subscribers(
            queue_size,
            on_first=lambda room: self._listener.subscribe_room(room),
            on_last=lambda room: self._listener.unsubscribe_room(room),
        )
        self._listener: RedisListener | ShardedListener
        if is_cluster_url(url):
            cluster = ClusterLink(url, prefix=prefix, timeout=timeout)
            self._link: RedisLink = cluster
            self._listener = ShardedListener(
                cluster, self._subscribers, self._count_reconnect
            )
            presence: type[RedisPresence] = ClusterPresence
        else:
            self._link = RedisLink(url, prefix=prefix, timeout=timeout)
            self._listener = RedisListener(
                self._link, self._subscribers, self._count_reconnect
            )
            presence = RedisPresence
        self.worker = self._link.worker
        self._presence = presence(self._link, presence_ttl=presence_ttl)
        # Read receipts: the part this broker offers (see receipts_of).
        self.receipts_part = RedisReceipts(self._link, history_ttl=history_ttl)
        # Refs of messages sent, shared by every worker (idempotency_of).
        self.idempotency_part = RedisIdempotency(self._link)
        self._heartbeat = RedisHeartbeat(
            self._link, self._listener, self._presence, interval=heartbeat
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._publish: Any = None

    def __repr__(self) -> str:
        url = self._link.masked_url
        return f"<RedisBroadcaster {url} prefix={self.prefix!r}>"

    @property
    def healthy(self) -> bool:
        """Whether the subscription path through Redis works right now."""
        return self._listener.online and not self._heartbeat.deaf

    def _count_reconnect(self) -> None:
        self.reconnects += 1

    # -- lifecycle ----------------------------------------------------------

    async def connect(self) -> None:
        """Connect and start the listener and the heartbeat.

        Raises:
            BroadcasterUnavailable: Redis cannot be reached at ``url``
                (the message names the URL with its password masked).
        """
        link = self._link
        await link.open()
        redis = link.client()
        script = _PUBLISH.format(publish=link.PUBLISH)
        self._publish = redis.register_script(script)
        ready = asyncio.get_running_loop().create_future()
        try:
            # Load now, so that the first message does not pay for it
            # (after a Redis restart redis-py reloads on NOSCRIPT).
            await redis.script_load(script)
            await self._presence.load()
            await self.receipts_part.load()
            await self.idempotency_part.load()
            self._tasks = [
                asyncio.create_task(
                    self._listener.run(ready), name="sanic-chat redis"
                ),
                asyncio.create_task(
                    self._heartbeat.run(), name="sanic-chat heartbeat"
                ),
            ]
            # Bounded: a subscription Redis never confirms (an ACL without
            # channel rights, a silent network) must not hang the start.
            async with asyncio.timeout(self.timeout * 2):
                await asyncio.shield(ready)
        except (RedisError, OSError, TimeoutError) as exc:
            await self.disconnect()
            raise BroadcasterUnavailable(
                f"cannot use Redis at {link.masked_url}: "
                f"{exc or 'no confirmation of the subscription'}"
            ) from None

    async def disconnect(self) -> None:
        """Stop the tasks, forget this worker's presence, close Redis."""
        # A flag as well as cancel(): redis-py can turn a cancellation into
        # a timeout error, and a swallowed cancel must not hang shutdown.
        self._link.closed.set()
        self._listener.echo.set()  # release a heartbeat awaiting its echo
        tasks = self._tasks + self._presence.stop()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout * 2)
        self._tasks = []
        self._presence.fail_pending("broadcaster disconnected")
        self._subscribers.close()
        await self._link.close()
        self._listener.online = False

    # -- the broker part ------------------------------------------------------

    async def publish(
        self,
        channel: str,
        payload: str,
        *,
        store: bool = True,
        origin: str | None = None,
    ) -> Event:
        """Store (optionally) and publish ``payload`` in one round trip."""
        tag = origin or ""
        if "|" in tag:
            raise ValueError("origin must not contain '|'")
        room = self._link.key("room", channel)
        try:
            if not store:
                await self._link.publish(room, f"|{tag}|{payload}")
                return Event(channel, payload, None, origin)
            raw = await self._publish(
                keys=[self._link.key("history", channel), room],
                args=[payload, self.history_size, self.history_ttl, tag],
            )
        except (RedisError, OSError) as exc:
            raise BroadcasterUnavailable(f"publish failed: {exc}") from None
        return Event(channel, payload, raw.decode(), origin)

    async def history(
        self,
        channel: str,
        *,
        limit: int,
        after: str | None = None,
        before: str | None = None,
    ) -> HistoryPage:
        """Read the room's stream: newest ``limit``, or between ids.

        With ids, one round trip: a pipeline that checks each id is still
        in the stream (``XRANGE id id``) and reads the page with an
        exclusive bound, ``XRANGE (after`` (up to ``(before``), or
        ``XREVRANGE (before`` for ``before`` alone.
        """
        redis = self._link.client()
        key = self._link.key("history", channel)
        anchors = [i for i in (after, before) if i is not None]
        if not all(valid_stream_id(anchor) for anchor in anchors):
            return HistoryPage([], found=False)
        try:
            if not anchors:
                rows: list[Any] = list(
                    await redis.xrevrange(key, count=limit) or ()
                )
                rows.reverse()
                return HistoryPage(self._events(channel, rows))
            async with redis.pipeline(transaction=False) as pipe:
                for anchor in anchors:
                    pipe.xrange(key, anchor, anchor, count=1)
                if after is not None:
                    end = "+" if before is None else "(" + before
                    pipe.xrange(key, "(" + after, end, count=limit)
                elif before is not None:
                    pipe.xrevrange(key, "(" + before, "-", count=limit)
                *found, rows = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BroadcasterUnavailable(f"history failed: {exc}") from None
        if not all(found):
            return HistoryPage([], found=False)
        if after is None:
            rows.reverse()
        return HistoryPage(self._events(channel, rows))

    @staticmethod
    def _events(channel: str, rows: list[Any]) -> list[Event]:
        events = []
        for raw_id, fields in rows:
            origin = fields.get(b"o", b"").decode() or None
            events.append(
                Event(channel, fields[b"p"].decode(), raw_id.decode(), origin)
            )
        return events

    def subscribe(
        self, channel: str
    ) -> AbstractAsyncContextManager[Subscription]:
        """Follow ``channel``; returns once Redis confirmed the subscription.

        This worker subscribes once per room, however many local
        subscriptions follow it.

        Raises:
            BroadcasterUnavailable: The pub/sub connection is down, or
                ended (it failed, or the heartbeat found it deaf) before
                Redis confirmed the subscription.
        """
        return self._subscribers.subscribe(channel)

    # -- the presence part (redis_presence.py) --------------------------------

    async def presence_add(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one more connection of ``user`` on this worker.

        Batched with the other joins and leaves of this worker; a
        cancelled call leaves no count behind (see
        :meth:`.RedisPresence.presence_add`).
        """
        await self._presence.presence_add(channel, user)

    async def presence_remove(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one connection of ``user`` on this worker less, in order."""
        await self._presence.presence_remove(channel, user)

    async def presence(self, channel: str, *, limit: int) -> PresenceInfo:
        """List distinct users of live workers; prune dead workers' users."""
        return await self._presence.presence(channel, limit=limit)
