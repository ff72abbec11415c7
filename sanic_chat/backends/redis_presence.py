"""The presence part of the Redis broadcaster: batched, exact, repaired.

Each room's presence is a hash ``{prefix}presence:{room}`` whose fields
are ``{worker}|{user json}`` and whose values count that user's
connections on that worker. A worker's fields count only while its
liveness key ``{prefix}worker:{worker}`` exists (the heartbeat refreshes
it); :meth:`RedisPresence.presence` ignores and prunes the fields of
workers that died without cleaning up.

**The changes of many joins travel together**: one task writes them,
one pipeline per batch (at most ``_BATCH_CHANGES`` changes or
``_BATCH_BYTES`` bytes), so a connect storm costs a few round trips,
not one per join. That task is the only writer of this worker's fields,
so the local counts it keeps are exact: a field whose write failed is
set to its local count in the next batch, and after a long partition
(this worker's liveness key expired, other workers pruned its users)
every field is written back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, cast

from redis.exceptions import RedisError

from ..backoff import Backoff
from ..errors import BroadcasterUnavailable
from .base import Presence, PresenceInfo
from .redis_link import RedisLink, reraise_cancellation

# One presence pipeline carries at most this many changes and field bytes;
# beyond _QUEUE_CHANGES waiting changes, joins wait for room in the queue.
_BATCH_CHANGES = 512
_BATCH_BYTES = 64 * 1024
_QUEUE_CHANGES = 8192

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


class RedisPresence(Presence):
    """Presence across every worker, kept in Redis hashes.

    A part of :class:`~sanic_chat.backends.redis.RedisBroadcaster`, which
    loads its script (:meth:`load`), refreshes it from its heartbeat
    (:meth:`refresh`) and stops it (:meth:`stop`).

    Args:
        link: The Redis connection shared with the other parts.
        presence_ttl: Seconds after which the users of a worker that died
            without cleaning up disappear; hashes expire after three times
            that without a refresh.
    """

    def __init__(self, link: RedisLink, *, presence_ttl: int) -> None:
        self._link = link
        self.presence_ttl = presence_ttl
        self._remove: Any = None
        # presence key -> field -> connections of this worker
        self._local: dict[str, dict[str, int]] = {}
        # Changes not yet written, the task writing them, and the fields
        # whose count in Redis is unknown (a failed write).
        self._changes: deque[_Change] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._queue_room = asyncio.Event()
        self._dirty: set[tuple[str, str]] = set()

    async def load(self) -> None:
        """Load the removal script now, so the first leave does not pay.

        After a Redis restart redis-py reloads it on ``NOSCRIPT``.
        """
        redis = self._link.client()
        self._remove = redis.register_script(_PRESENCE_REMOVE)
        await redis.script_load(_PRESENCE_REMOVE)

    def stop(self) -> list[asyncio.Task[None]]:
        """Detach the writer task, for the caller to cancel and await."""
        writer, self._writer = self._writer, None
        return [] if writer is None else [writer]

    def fail_pending(self, reason: str) -> None:
        """Fail every change not written yet (the broadcaster closed)."""
        _fail(self._changes, reason)
        self._changes.clear()

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
        await self._change(channel, user, 1)

    async def presence_remove(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one connection of ``user`` on this worker less.

        Goes through the same queue as :meth:`presence_add`, so the two
        reach Redis in order; cancelling the call does not withdraw it.
        """
        await self._change(channel, user, -1)

    async def presence(self, channel: str, *, limit: int) -> PresenceInfo:
        """List distinct users of live workers; prune dead workers' users."""
        redis = self._link.client()
        key = self._link.key("presence", channel)
        try:
            fields = cast(dict[bytes, bytes], await redis.hgetall(key))
            workers = sorted({f.split(b"|", 1)[0] for f in fields})
            alive: set[bytes] = set()
            if workers:
                flags = await self._link.mget(
                    [self._link.key("worker", w.decode()) for w in workers]
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

    async def refresh(self, rewrite: bool) -> None:
        """Keep this worker's presence alive; restore it if Redis lost it.

        Called by the heartbeat. ``rewrite`` is set when this worker's
        liveness key had expired (a partition longer than
        ``presence_ttl``, or a Redis restart): other workers may have
        pruned its users, so the counts are written back.
        """
        if rewrite:
            # Through the writer, in order with every join and leave of
            # this worker, so the counts written are exact.
            self._dirty.update(
                (key, field)
                for key, counts in self._local.items()
                for field in counts
            )
        self._write()  # also retries a failed write
        if not self._local:
            return
        async with self._link.client().pipeline(transaction=False) as pipe:
            for key in self._local:
                pipe.expire(key, self.presence_ttl * 3)
            await pipe.execute()

    def _field(self, user: Mapping[str, str]) -> str:
        public = {"id": user["id"], "name": user["name"]}
        return (
            self._link.worker + "|" + json.dumps(public, separators=(",", ":"))
        )

    async def _change(
        self, channel: str, user: Mapping[str, str], delta: int
    ) -> None:
        self._link.client()  # fail at once when not connected
        while len(self._changes) >= _QUEUE_CHANGES:
            self._queue_room.clear()
            await self._queue_room.wait()
        change = _Change(
            self._link.key("presence", channel), self._field(user), delta
        )
        self._changes.append(change)
        self._write()
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

    def _write(self) -> None:
        """Make sure the writer runs if it has work."""
        if (self._changes or self._dirty) and (
            self._writer is None or self._writer.done()
        ):
            self._writer = asyncio.create_task(
                self._write_changes(), name="sanic-chat redis presence"
            )

    async def _write_changes(self) -> None:
        """Write queued changes, one pipeline per batch, in order."""
        await asyncio.sleep(0)  # let this loop iteration's joins queue up
        # Capped low: joins wait on these writes.
        backoff = Backoff(cap=0.5)
        while (self._changes or self._dirty) and self._link.redis is not None:
            batch = self._next_batch()
            repairs, self._dirty = self._dirty, set()
            try:
                await self._send(batch, repairs)
            except (RedisError, OSError) as exc:
                reraise_cancellation()
                # Whether Redis applied them is unknown: the callers of
                # additions are told they failed, the local counts take
                # them back, and the next batch writes the true counts.
                for change in batch:
                    if change.delta > 0:
                        self._count_locally(change.key, change.field, -1)
                self._dirty |= repairs | {(c.key, c.field) for c in batch}
                _fail(batch, f"presence failed: {exc}")
                if not self._changes:
                    return  # the heartbeat or the next change retries
                # Redis is failing: no hot loop over the next batches.
                await backoff.pause(self._link.closed)
                continue
            backoff.reset()
            for change in batch:
                if change.abandoned:
                    # Its caller was cancelled while Redis counted it.
                    self._changes.append(_Change(change.key, change.field, -1))
                elif not change.done.done():
                    change.done.set_result(None)

    def _next_batch(self) -> list[_Change]:
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
        return batch

    async def _send(
        self, batch: list[_Change], repairs: set[tuple[str, str]]
    ) -> None:
        async with self._link.client().pipeline(transaction=False) as pipe:
            # Before this batch's changes count locally: both Redis and
            # the local counts then apply them in turn.
            for key, field in repairs:
                count = self._local.get(key, {}).get(field)
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
                    await self._queue_remove(pipe, key, field)
            keys = {c.key for c in batch} | {k for k, _ in repairs}
            for key in keys:
                pipe.expire(key, self.presence_ttl * 3)
            await pipe.execute()

    async def _queue_remove(self, pipe: Any, key: str, field: str) -> None:
        """Queue one connection less in ``pipe``, deleting a field at 0."""
        await self._remove(keys=[key], args=[field], client=pipe)

    def _count_locally(self, key: str, field: str, delta: int) -> None:
        counts = self._local.setdefault(key, {})
        count = counts.get(field, 0) + delta
        if count > 0:
            counts[field] = count
        else:
            counts.pop(field, None)
            if not counts:
                del self._local[key]


def _fail(changes: Iterable[_Change], reason: str) -> None:
    for change in changes:
        if not change.done.done():
            change.done.set_exception(BroadcasterUnavailable(reason))
            change.done.exception()  # retrieved: its caller may be gone
