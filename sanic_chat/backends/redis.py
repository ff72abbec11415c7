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
queue for one of at most ``_POOL_SIZE`` connections instead of failing when
all are busy, and the presence changes of many joins travel together:
one task writes them, one pipeline per batch (see :meth:`presence_add`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

from ..backoff import Backoff
from ..errors import BroadcasterUnavailable
from . import mask_url
from .base import Broadcaster, Event, HistoryPage, PresenceInfo, Subscription

try:
    import redis.asyncio as aioredis
    from redis.asyncio.client import PubSub
    from redis.asyncio.connection import BlockingConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        "the Redis broadcaster needs the redis extra: "
        "pip install 'sanic-chat[redis]'"
    ) from exc

logger = logging.getLogger(__name__)

_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")

# Connections per worker. Commands beyond it wait for a free connection
# (FIFO) rather than fail: redis-py's default pool raises "Too many
# connections" past 100, which a connect storm reaches in milliseconds.
_POOL_SIZE = 32
# One presence pipeline carries at most this many changes and field bytes;
# beyond _QUEUE_CHANGES waiting changes, joins wait for room in the queue.
_BATCH_CHANGES = 512
_BATCH_BYTES = 64 * 1024
_QUEUE_CHANGES = 8192

_PUBLISH = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '*',
                      'p', ARGV[1], 'o', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', KEYS[2], id .. '|' .. ARGV[4] .. '|' .. ARGV[1])
return id
"""

_PRESENCE_REMOVE = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
"""


class _Change:
    """One connection more (+1) or less (-1) in a presence field."""

    __slots__ = ("abandoned", "delta", "done", "field", "key", "sent")

    def __init__(self, key: str, field: str, delta: int) -> None:
        self.key = key
        self.field = field
        self.delta = delta
        self.done: asyncio.Future[None] = (
            asyncio.get_running_loop().create_future()
        )
        self.sent = False  # in a pipeline on its way to Redis
        self.abandoned = False  # its caller was cancelled meanwhile


def _valid_stream_id(value: str) -> bool:
    """Whether ``value`` can be the id of an entry added with ``XADD *``.

    ``0-0`` and the largest id never are, and they are the two ids that
    Redis refuses as exclusive range bounds (``(0-0`` as an end,
    ``(18446744073709551615-18446744073709551615`` as a start).
    """
    if not _STREAM_ID.fullmatch(value):
        return False
    ms, seq = (int(part) for part in value.split("-"))
    largest = 2**64 - 1
    return (
        ms <= largest
        and seq <= largest
        and (ms, seq) not in ((0, 0), (largest, largest))
    )


def _reraise_cancellation() -> None:
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisBroadcaster(Broadcaster):
    """Broadcaster backed by Redis pub/sub and streams.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL of the server.
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
        self.worker = secrets.token_hex(6)
        self._redis: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._online = False
        self._deaf = False
        self._subscribers: dict[str, set[Subscription]] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._echo = asyncio.Event()
        self._reconnect = asyncio.Event()
        self._closed = asyncio.Event()
        self._publish: Any = None
        # presence key -> field -> connections of this worker
        self._presence_local: dict[str, dict[str, int]] = {}
        self._malformed_logged = False
        self._presence_remove: Any = None
        # Presence changes not yet written, the task writing them, and the
        # fields whose count in Redis is unknown (a failed write).
        self._changes: deque[_Change] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._queue_room = asyncio.Event()
        self._dirty: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return (
            f"<RedisBroadcaster {mask_url(self.url)} prefix={self.prefix!r}>"
        )

    @property
    def healthy(self) -> bool:
        """Whether the subscription path through Redis works right now."""
        return self._online and not self._deaf

    # -- lifecycle ----------------------------------------------------------

    async def connect(self) -> None:
        """Connect and start the listener and the heartbeat.

        Raises:
            BroadcasterUnavailable: Redis cannot be reached at ``url``
                (the message names the URL with its password masked).
        """
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=_POOL_SIZE,
            timeout=None,  # wait for a connection; the heartbeat bounds it
            socket_connect_timeout=self.timeout,
            socket_timeout=None,  # see the module docstring
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        self._redis = aioredis.Redis.from_pool(pool)
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            await self._redis.aclose()
            self._redis = None
            raise BroadcasterUnavailable(
                f"cannot connect to Redis at {mask_url(self.url)}: {exc}"
            ) from None
        self._closed.clear()
        self._publish = self._redis.register_script(_PUBLISH)
        self._presence_remove = self._redis.register_script(_PRESENCE_REMOVE)
        ready = asyncio.get_running_loop().create_future()
        try:
            # Load now, so that the first message does not pay for it
            # (after a Redis restart redis-py reloads on NOSCRIPT).
            for script in (_PUBLISH, _PRESENCE_REMOVE):
                await self._redis.script_load(script)
            self._tasks = [
                asyncio.create_task(
                    self._listen(ready), name="sanic-chat redis"
                ),
                asyncio.create_task(self._beat(), name="sanic-chat heartbeat"),
            ]
            # Bounded: a subscription Redis never confirms (an ACL without
            # channel rights, a silent network) must not hang the start.
            async with asyncio.timeout(self.timeout * 2):
                await asyncio.shield(ready)
        except (RedisError, OSError, TimeoutError) as exc:
            await self.disconnect()
            raise BroadcasterUnavailable(
                f"cannot use Redis at {mask_url(self.url)}: "
                f"{exc or 'no confirmation of the subscription'}"
            ) from None

    async def disconnect(self) -> None:
        """Stop the tasks, forget this worker's presence, close Redis."""
        # A flag as well as cancel(): redis-py can turn a cancellation into
        # a timeout error, and a swallowed cancel must not hang shutdown.
        self._closed.set()
        self._echo.set()  # release a heartbeat waiting for its echo
        if self._writer is not None:
            self._tasks.append(self._writer)
            self._writer = None
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.timeout * 2)
        self._tasks = []
        self._fail_changes(self._changes, "broadcaster disconnected")
        self._changes.clear()
        for subscriptions in list(self._subscribers.values()):
            for subscription in list(subscriptions):
                subscription.close()
        self._subscribers.clear()
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self._redis.delete(self._key("worker", self.worker))
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self._redis.aclose()
            self._redis = None
        self._online = False

    # -- publishing and history ----------------------------------------------

    async def publish(
        self,
        channel: str,
        payload: str,
        *,
        store: bool = True,
        origin: str | None = None,
    ) -> Event:
        """Store (optionally) and publish ``payload`` in one round trip."""
        redis = self._client()
        tag = origin or ""
        if "|" in tag:
            raise ValueError("origin must not contain '|'")
        try:
            if not store:
                await redis.publish(
                    self._key("room", channel), f"|{tag}|{payload}"
                )
                return Event(channel, payload, None, origin)
            raw = await self._publish(
                keys=[
                    self._key("history", channel),
                    self._key("room", channel),
                ],
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
        redis = self._client()
        key = self._key("history", channel)
        anchors = [i for i in (after, before) if i is not None]
        if not all(_valid_stream_id(anchor) for anchor in anchors):
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

    # -- presence -----------------------------------------------------------

    def _presence_field(self, user: Mapping[str, str]) -> str:
        return (
            self.worker
            + "|"
            + json.dumps(
                {"id": user["id"], "name": user["name"]}, separators=(",", ":")
            )
        )

    async def presence_add(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one more connection of ``user`` on this worker.

        The change joins a queue that one task writes in batches (one
        pipeline for the joins of a whole loop iteration), so a connect
        storm costs a few round trips, not one per join. Cancelling the
        call withdraws the change: if it was already on its way to Redis,
        it is taken back afterwards; a cancelled join never leaves a
        count behind.
        """
        await self._presence_change(channel, user, 1)

    async def presence_remove(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one connection of ``user`` on this worker less.

        Goes through the same queue as :meth:`presence_add`, so the two
        reach Redis in order; cancelling the call does not withdraw it.
        """
        await self._presence_change(channel, user, -1)

    async def _presence_change(
        self, channel: str, user: Mapping[str, str], delta: int
    ) -> None:
        self._client()  # fail at once when not connected
        while len(self._changes) >= _QUEUE_CHANGES:
            self._queue_room.clear()
            await self._queue_room.wait()
        change = _Change(
            self._key("presence", channel), self._presence_field(user), delta
        )
        self._changes.append(change)
        self._write_presence()
        try:
            await asyncio.shield(change.done)
        except asyncio.CancelledError:
            if delta < 0:
                pass  # a connection that is gone leaves presence anyway
            elif change.sent:
                change.abandoned = True  # taken back once written
            else:
                with contextlib.suppress(ValueError):
                    self._changes.remove(change)
            raise

    def _write_presence(self) -> None:
        """Make sure the presence writer runs if it has work."""
        if (self._changes or self._dirty) and (
            self._writer is None or self._writer.done()
        ):
            self._writer = asyncio.create_task(
                self._write_changes(), name="sanic-chat redis presence"
            )

    async def _write_changes(self) -> None:
        """Write queued presence changes, one pipeline per batch, in order.

        This task is the only writer of this worker's presence fields, so
        the local counts are exact and can repair Redis: a field whose
        write failed is set to its local count in the next batch.
        """
        await asyncio.sleep(0)  # let this loop iteration's joins queue up
        # Capped low: joins wait on these writes.
        backoff = Backoff(cap=0.5)
        while (self._changes or self._dirty) and self._redis is not None:
            batch: list[_Change] = []
            size = 0
            while (
                self._changes
                and len(batch) < _BATCH_CHANGES
                and size < _BATCH_BYTES
            ):
                change = self._changes.popleft()
                change.sent = True
                batch.append(change)
                size += len(change.key) + len(change.field)
            self._queue_room.set()
            repairs, self._dirty = self._dirty, set()
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    # Before this batch's changes count locally: both
                    # Redis and the local counts then apply them in turn.
                    for key, field in repairs:
                        count = self._presence_local.get(key, {}).get(field)
                        if count:
                            pipe.hset(key, field, count)
                        else:
                            pipe.hdel(key, field)
                    for change in batch:
                        key, field = change.key, change.field
                        self._count_locally(key, field, change.delta)
                        if change.delta > 0:
                            pipe.hincrby(key, field, 1)
                        else:
                            await self._presence_remove(
                                keys=[key], args=[field], client=pipe
                            )
                    keys = {c.key for c in batch} | {k for k, _ in repairs}
                    for key in keys:
                        pipe.expire(key, self.presence_ttl * 3)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                _reraise_cancellation()
                # Whether Redis applied them is unknown: the callers of
                # additions are told they failed, the local counts take
                # them back, and the next batch writes the true counts.
                for change in batch:
                    if change.delta > 0:
                        self._count_locally(change.key, change.field, -1)
                self._dirty |= repairs | {(c.key, c.field) for c in batch}
                self._fail_changes(batch, f"presence failed: {exc}")
                if not self._changes:
                    return  # the heartbeat or the next change retries
                # Redis is failing: no hot loop over the next batches.
                await backoff.pause(self._closed)
                continue
            backoff.reset()
            for change in batch:
                if change.abandoned:
                    # Its caller was cancelled while Redis counted it.
                    self._changes.append(_Change(change.key, change.field, -1))
                elif not change.done.done():
                    change.done.set_result(None)

    def _count_locally(self, key: str, field: str, delta: int) -> None:
        counts = self._presence_local.setdefault(key, {})
        count = counts.get(field, 0) + delta
        if count > 0:
            counts[field] = count
        else:
            counts.pop(field, None)
            if not counts:
                del self._presence_local[key]

    @staticmethod
    def _fail_changes(changes: Iterable[_Change], reason: str) -> None:
        for change in changes:
            if not change.done.done():
                change.done.set_exception(BroadcasterUnavailable(reason))
                change.done.exception()  # retrieved: its caller may be gone

    async def presence(self, channel: str, *, limit: int) -> PresenceInfo:
        """List distinct users of live workers; prune dead workers' users."""
        redis = self._client()
        key = self._key("presence", channel)
        try:
            fields = cast(dict[bytes, bytes], await redis.hgetall(key))
            workers = sorted({f.split(b"|", 1)[0] for f in fields})
            alive: set[bytes] = set()
            if workers:
                flags = await redis.mget(
                    [self._key("worker", w.decode()) for w in workers]
                )
                alive = {w for w, f in zip(workers, flags, strict=True) if f}
            dead = [f for f in fields if f.split(b"|", 1)[0] not in alive]
            if dead:
                await redis.hdel(key, *dead)
        except (RedisError, OSError) as exc:
            raise BroadcasterUnavailable(f"presence failed: {exc}") from None
        users: dict[str, Mapping[str, str]] = {}
        for field, count in fields.items():
            worker, _, data = field.partition(b"|")
            if worker in alive and int(count) > 0:
                user = json.loads(data)
                users.setdefault(user["id"], user)
        return PresenceInfo(list(users.values())[:limit], len(users))

    # -- subscriptions ------------------------------------------------------

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        """Follow ``channel``; returns once Redis confirmed the subscription.

        Raises:
            BroadcasterUnavailable: The pub/sub connection is down, or
                ended (it failed, or the heartbeat found it deaf) before
                Redis confirmed the subscription.
        """
        key = self._key("room", channel)
        subscription = Subscription(channel, self.queue_size)
        subscribers = self._subscribers.setdefault(key, set())
        first = not subscribers
        subscribers.add(subscription)
        try:
            if first:
                await self._redis_subscribe(key)
            yield subscription
        finally:
            subscription.close()
            subscribers.discard(subscription)
            if not subscribers and self._subscribers.get(key) is subscribers:
                del self._subscribers[key]
                pubsub = self._pubsub
                if pubsub is not None and self._online:
                    with contextlib.suppress(RedisError, OSError):
                        await pubsub.unsubscribe(key)

    async def _redis_subscribe(self, key: str) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self._online:
            raise BroadcasterUnavailable("not connected to Redis")
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[key] = confirmed
        try:
            await pubsub.subscribe(key)
            # No timer: a busy loop reads the confirmation late, and that
            # is no reason to rebuild every subscription. The listener
            # fails this future if the connection ends first; the
            # heartbeat ends a connection that went deaf.
            await confirmed
        except (RedisError, OSError) as exc:
            self._reconnect.set()
            raise BroadcasterUnavailable(f"subscribe failed: {exc}") from None
        finally:
            if self._confirmations.get(key) is confirmed:
                del self._confirmations[key]

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        """Read the pub/sub connection; reconnect whenever it fails."""
        backoff = Backoff()
        was_online = False
        while not self._closed.is_set():
            pubsub = self._client().pubsub()
            try:
                control = self._key("control", self.worker)
                rooms = list(self._subscribers)
                await pubsub.subscribe(control, *rooms)
                self._pubsub = pubsub
                self._reconnect.clear()
                async with asyncio.timeout(self.timeout):
                    while True:  # wait for the confirmations
                        message = await pubsub.get_message(timeout=None)
                        if (
                            message
                            and message["type"] == "subscribe"
                            and message["channel"] == control.encode()
                        ):
                            break
                self._online = True
                # Rooms whose last member left while we were resubscribing.
                stale = [
                    room for room in rooms if room not in self._subscribers
                ]
                if stale:
                    await pubsub.unsubscribe(*stale)
                if was_online or backoff.failing:
                    self.reconnects += 1
                    logger.warning(
                        "Redis %s: reconnected; resubscribed %d rooms",
                        mask_url(self.url),
                        len(self._subscribers),
                    )
                    for subscriptions in self._subscribers.values():
                        for subscription in subscriptions:
                            subscription.interrupt()
                was_online = True
                backoff.reset()
                if not ready.done():
                    ready.set_result(None)
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                _reraise_cancellation()
                if not backoff.failing:
                    logger.warning(
                        "Redis %s: connection lost (%s); reconnecting",
                        mask_url(self.url),
                        str(exc) or type(exc).__name__,
                    )
            finally:
                self._online = False
                self._pubsub = None
                for confirmed in self._confirmations.values():
                    if not confirmed.done():
                        confirmed.set_exception(
                            BroadcasterUnavailable("connection to Redis lost")
                        )
                        confirmed.exception()  # retrieved: caller may be gone
                # Bounded: closing can wait on a read that was cancelled.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.timeout):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            await backoff.pause(self._closed)

    async def _read(self, pubsub: PubSub) -> None:
        control = self._key("control", self.worker).encode()
        while not self._reconnect.is_set() and not self._closed.is_set():
            message = await pubsub.get_message(timeout=0.5)
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"].decode()
            if kind == "subscribe":
                confirmed = self._confirmations.get(channel)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            elif kind == "message":
                if message["channel"] == control:
                    self._echo.set()
                    continue
                self._dispatch(channel, message["data"])
        raise TimeoutError("subscription path is deaf")

    def _dispatch(self, key: str, data: bytes) -> None:
        subscriptions = self._subscribers.get(key)
        if not subscriptions:
            return
        try:
            raw_id, origin, payload = data.decode().split("|", 2)
        except (UnicodeDecodeError, ValueError):
            # A foreign publisher on our prefix must not kill the listener.
            if not self._malformed_logged:
                self._malformed_logged = True
                logger.warning(
                    "Redis %s: ignoring malformed message(s) on %s",
                    mask_url(self.url),
                    key,
                )
            return
        event = Event(
            key[len(self.prefix) + len("room:") :],
            payload,
            raw_id or None,
            origin or None,
        )
        for subscription in subscriptions:
            subscription.put(event)

    async def _beat(self) -> None:
        """Refresh this worker's liveness and check its own echo."""
        redis = self._client()
        worker_key = self._key("worker", self.worker)
        control = self._key("control", self.worker)
        misses = 0
        beaten = False  # a first beat finds no key: that is not a loss
        while not self._closed.is_set():
            online = False
            try:
                # The timers that judge Redis: commands have none.
                async with asyncio.timeout(self.heartbeat):
                    was = await redis.set(
                        worker_key, b"1", ex=self.presence_ttl, get=True
                    )
                    await self._refresh_presence(
                        rewrite=beaten and was is None
                    )
                    beaten = True
                    online = self._online
                    if online:
                        self._echo.clear()
                        await redis.publish(control, b"ping")
                if online:
                    # Not wait_for: on 3.11 it can swallow a cancel.
                    async with asyncio.timeout(self.heartbeat):
                        await self._echo.wait()
            except TimeoutError:
                if self._closed.is_set():
                    break  # shutting down, not deaf
                misses += 1
                if misses < 2:
                    # One miss can be a reconnect, or a loop that was busy.
                    continue
                if not self._deaf:
                    logger.error(
                        "Redis %s: no answer or no heartbeat echo within "
                        "%.1fs, twice; reconnecting",
                        mask_url(self.url),
                        self.heartbeat,
                    )
                self._deaf = True
                self._reconnect.set()
                # Fail the commands that wait for it rather than let them
                # hang: they have no timer of their own.
                await self._drop_connections()
            except (RedisError, OSError):
                # The listener logs connection state changes. redis-py may
                # turn a cancellation into an error: do not swallow it.
                _reraise_cancellation()
            else:
                if online:
                    misses = 0
                    if self._deaf:
                        logger.warning(
                            "Redis %s: heartbeat is back; healthy",
                            mask_url(self.url),
                        )
                    self._deaf = False
            await self._pause(min(self.heartbeat, self.presence_ttl / 3))

    async def _drop_connections(self) -> None:
        """Close every pooled connection; commands waiting on them fail."""
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.connection_pool.disconnect()

    async def _refresh_presence(self, rewrite: bool) -> None:
        """Keep this worker's presence alive; restore it if Redis lost it.

        ``rewrite`` is set when this worker's heartbeat key had expired (a
        partition longer than ``presence_ttl``, or a Redis restart): other
        workers may have pruned its users, so the counts are written back.
        """
        if rewrite:
            # Through the presence writer, in order with every join and
            # leave of this worker, so the counts written are exact.
            self._dirty.update(
                (key, field)
                for key, counts in self._presence_local.items()
                for field in counts
            )
        self._write_presence()  # also retries a failed write
        if not self._presence_local:
            return
        async with self._client().pipeline(transaction=False) as pipe:
            for key in self._presence_local:
                pipe.expire(key, self.presence_ttl * 3)
            await pipe.execute()

    # -- helpers ------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when the broadcaster is closed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closed.wait()

    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise BroadcasterUnavailable("Redis broadcaster is not connected")
        return self._redis

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"
