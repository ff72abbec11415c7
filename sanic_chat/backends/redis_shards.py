r"""The pub/sub part of the Redis broadcaster on Redis Cluster: per shard.

Each room's channel lives on the shard (primary) that owns its slot, and
is followed with ``SSUBSCRIBE`` there: the worker holds one pub/sub
connection per shard it uses, and one task per connection reads it into
the room's subscriptions (:class:`~sanic_chat.backends.base.Subscribers`).
The worker's control channel (the heartbeat's echo) lives on its own
shard; each heartbeat also sends ``PING`` on every shard's connection,
and :attr:`ShardedListener.echo` is set only once the echo and every
shard's ``PONG`` came back, so the heartbeat judges every shard.

Why not redis-py's ``ClusterPubSub``: it polls its nodes in turn (a
message on one shard waits for the read timeout of the others), it
reconnects and resubscribes silently (the chat must tell members that
they may have missed messages), and it is missing from the redis-py 5
that the package supports.

A topology change is handled like a lost connection on one Redis: a shard
connection fails (its primary died), Redis ``MOVED`` a subscription or
``sunsubscribe``\\ d a channel whose slot migrated, or the heartbeat found
a shard deaf. The listener then logs once, reads the slot map again,
resubscribes every room on its new owner (with backoff while a failover
is under way) and interrupts every subscription, so that clients get
``resync`` and recover with ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import RedisError

from ..backoff import Backoff
from ..errors import BroadcasterUnavailable
from .base import Event, Subscribers
from .redis_cluster import ClusterLink
from .redis_link import reraise_cancellation

logger = logging.getLogger("sanic_chat.backends.redis")


class _Shard:
    """One pub/sub connection to one primary, and the task reading it."""

    def __init__(self, node: ClusterNode, pubsub: PubSub) -> None:
        self.name = node.name
        self.pubsub = pubsub
        self.keys: set[str] = set()
        self.lock = asyncio.Lock()  # one SSUBSCRIBE at a time
        self.reader: asyncio.Task[None] | None = None


class ShardedListener:
    """Reads one sharded pub/sub connection per shard.

    Rebuilds them all when one fails or the cluster's topology changes.

    Same interface as :class:`~.redis_listener.RedisListener`.

    Args:
        link: The cluster connection shared with the other parts.
        subscribers: The local subscriptions, by room.
        on_reconnect: Called after each reconnection (a metric).
    """

    def __init__(
        self,
        link: ClusterLink,
        subscribers: Subscribers,
        on_reconnect: Callable[[], None],
    ) -> None:
        self._link = link
        self._subscribers = subscribers
        self._on_reconnect = on_reconnect
        self._shards: dict[str, _Shard] = {}
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._leaving: set[str] = set()
        self._awaiting: set[str] = set()
        self._failure: str | None = None
        self._malformed_logged = False
        self._control = link.key("control", link.worker)
        self.online = False
        """Whether every shard connection is up and subscribed."""
        self.echo = asyncio.Event()
        """Set when the control echo and every shard's pong came back."""
        self.reconnect = asyncio.Event()
        """Set it to make the listener rebuild its connections."""

    async def subscribe_room(self, room: str) -> None:
        """Subscribe ``room`` on its shard; return once Redis confirmed it.

        Raises:
            BroadcasterUnavailable: Not connected, or the connection ended
                (or the slot moved) before Redis confirmed.
        """
        if not self.online:
            raise BroadcasterUnavailable("not connected to Redis")
        key = self._link.key("room", room)
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[key] = confirmed
        try:
            await self._ssubscribe(self._shard_for(key), [key])
            await confirmed  # no timer: see RedisListener.subscribe_room
        except (RedisError, OSError) as exc:
            self._fail(f"subscribe failed: {exc}")
            raise BroadcasterUnavailable(f"subscribe failed: {exc}") from None
        finally:
            if self._confirmations.get(key) is confirmed:
                del self._confirmations[key]

    async def unsubscribe_room(self, room: str) -> None:
        """Unsubscribe ``room`` if connected (a reconnect forgets it)."""
        key = self._link.key("room", room)
        shard = next((s for s in self._shards.values() if key in s.keys), None)
        if shard is None or not self.online:
            return
        shard.keys.discard(key)
        self._leaving.add(key)
        with contextlib.suppress(RedisError, OSError):
            async with shard.lock:
                await shard.pubsub.sunsubscribe(key)

    async def probe(self) -> None:
        """Publish on the control channel and ping every shard."""
        shards = list(self._shards.values())
        self._awaiting = {self._control, *(s.name for s in shards)}
        await self._link.publish(self._control, b"ping")
        for shard in shards:
            async with shard.lock:
                await shard.pubsub.ping()

    async def run(self, ready: asyncio.Future[None]) -> None:
        """Connect, read, and reconnect until the broadcaster closes.

        Args:
            ready: Resolved once the first connections are subscribed.
        """
        backoff = Backoff()
        was_online = False
        closed = self._link.closed
        while not closed.is_set():
            try:
                await self._connect()
                if was_online or backoff.failing:
                    self._on_reconnect()
                    logger.warning(
                        "Redis %s: reconnected; resubscribed %d rooms on "
                        "%d shards",
                        self._link.masked_url,
                        len(self._subscribers),
                        len(self._shards),
                    )
                    self._subscribers.interrupt()
                was_online = True
                backoff.reset()
                if not ready.done():
                    ready.set_result(None)
                while not self.reconnect.is_set() and not closed.is_set():
                    await self._link.pause(0.5)
                if not closed.is_set():
                    raise TimeoutError(self._failure or "subscription is deaf")
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                reraise_cancellation()
                if not backoff.failing:
                    logger.warning(
                        "Redis %s: shard connection lost or topology "
                        "changed (%s); reconnecting",
                        self._link.masked_url,
                        str(exc) or type(exc).__name__,
                    )
            finally:
                await self._disconnected()
            await backoff.pause(closed)

    def _fail(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason
        self.reconnect.set()

    async def _connect(self) -> None:
        """Subscribe control and rooms on their shards, then go online.

        Reads the slot map first, and waits for every confirmation.
        """
        self.reconnect.clear()
        self._failure = None
        await self._link.refresh_topology()
        rooms = self._subscribers.channels()
        keys = [self._control, *(self._link.key("room", r) for r in rooms)]
        futures = []
        loop = asyncio.get_running_loop()
        by_shard: dict[str, list[str]] = defaultdict(list)
        shards: dict[str, _Shard] = {}
        for key in keys:
            shard = self._shard_for(key)
            shards[shard.name] = shard
            by_shard[shard.name].append(key)
            futures.append(
                self._confirmations.setdefault(key, loop.create_future())
            )
        async with asyncio.timeout(self._link.timeout):
            for name, shard_keys in by_shard.items():
                await self._ssubscribe(shards[name], shard_keys)
            await asyncio.gather(*futures)
        for key in keys:
            self._confirmations.pop(key, None)
        self.online = True
        # Rooms whose last member left while we were resubscribing.
        for room in rooms:
            if room not in self._subscribers:
                await self.unsubscribe_room(room)

    def _shard_for(self, key: str) -> _Shard:
        """The shard of ``key``'s slot; opens its connection if new."""
        node = self._link.primary_of(key)
        shard = self._shards.get(node.name)
        if shard is None:
            pubsub = self._link.node_client(node).pubsub()
            shard = self._shards[node.name] = _Shard(node, pubsub)
        return shard

    async def _ssubscribe(self, shard: _Shard, keys: list[str]) -> None:
        """Subscribe ``keys``, one ``SSUBSCRIBE`` per slot.

        Starts the task that reads the shard's connection if none does.
        """
        by_slot: dict[int, list[str]] = defaultdict(list)
        for key in keys:
            by_slot[key_slot(key.encode())].append(key)
        async with shard.lock:
            for slot_keys in by_slot.values():
                shard.keys.update(slot_keys)
                self._leaving.difference_update(slot_keys)
                await shard.pubsub.ssubscribe(*slot_keys)
        if shard.reader is None:
            shard.reader = asyncio.create_task(
                self._read(shard), name=f"sanic-chat redis {shard.name}"
            )

    async def _disconnected(self) -> None:
        self.online = False
        shards, self._shards = list(self._shards.values()), {}
        for confirmed in self._confirmations.values():
            if not confirmed.done():
                confirmed.set_exception(
                    BroadcasterUnavailable("connection to Redis lost")
                )
                confirmed.exception()  # retrieved: caller may be gone
        self._confirmations.clear()
        self._leaving.clear()
        readers = [s.reader for s in shards if s.reader is not None]
        for reader in readers:
            reader.cancel()
        if readers:
            await asyncio.wait(readers, timeout=self._link.timeout)
        for shard in shards:
            # Bounded: closing can wait on a read that was cancelled.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._link.timeout):
                    await shard.pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, shard: _Shard) -> None:
        try:
            while True:
                message = await shard.pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._handle(shard, message)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            reraise_cancellation()
            self._fail(f"shard {shard.name}: {exc or type(exc).__name__}")

    def _handle(self, shard: _Shard, message: dict[str, object]) -> None:
        kind = message["type"]
        raw = message["channel"]
        channel = raw.decode() if isinstance(raw, bytes) else ""
        if kind == "ssubscribe":
            confirmed = self._confirmations.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == "sunsubscribe":
            if channel in self._leaving:
                self._leaving.discard(channel)
            else:  # Redis dropped it: its slot moved to another shard
                self._fail(f"slot of {channel} moved")
        elif kind == "pong":
            self._answered(shard.name)
        elif kind == "smessage":
            if channel == self._control:
                self._answered(channel)
                return
            data = message["data"]
            if isinstance(data, bytes):
                self._dispatch(channel, data)

    def _answered(self, name: str) -> None:
        self._awaiting.discard(name)
        if not self._awaiting:
            self.echo.set()

    def _dispatch(self, key: str, data: bytes) -> None:
        room = self._link.name_of("room", key)
        if room not in self._subscribers:
            return
        try:
            raw_id, origin, payload = data.decode().split("|", 2)
        except (UnicodeDecodeError, ValueError):
            if not self._malformed_logged:
                self._malformed_logged = True
                logger.warning(
                    "Redis %s: ignoring malformed message(s) on %s",
                    self._link.masked_url,
                    key,
                )
            return
        self._subscribers.deliver(
            Event(room, payload, raw_id or None, origin or None)
        )
