"""The pub/sub part of the Redis broadcaster on Redis Cluster: per shard.

Each room's channel lives on the shard (primary) that owns its slot, and
is followed with ``SSUBSCRIBE`` there: the worker holds one pub/sub
connection per primary (opened at connect, so a first join on a shard
does not wait for one), and one task per connection reads it into the
room's subscriptions (:class:`~sanic_chat.backends.base.Subscribers`).
The worker's control channel (the heartbeat's echo) lives on its own
shard; each heartbeat also sends ``PING`` on every shard's connection,
and :attr:`ShardedListener.echo` is set only once the echo and every
shard's ``PONG`` came back, so the heartbeat judges every shard.

Why not redis-py's ``ClusterPubSub``: it polls its nodes in turn (a
message on one shard waits for the read timeout of the others), it
reconnects and resubscribes silently (the chat must tell members that
they may have missed messages), and it is missing from the redis-py 5
that the package supports.

A failure is handled like a lost connection on one Redis: a shard
connection fails (its primary died), Redis ``MOVED`` a subscription, or
the heartbeat found a shard deaf. The listener then logs once, reads the
slot map again, resubscribes every room on its new owner (with backoff
while a failover is under way) and interrupts every subscription, so
that clients get ``resync`` and recover with ``since``. A slot migrated
in a live cluster costs less: Redis sends ``sunsubscribe`` for its
channels, and only those rooms are resubscribed on the new owner and
interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
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


Message = dict[str, object]


class _Shard:
    """One pub/sub connection to one primary, and the task reading it.

    Commands go raw (``execute_command``): the listener keeps its own
    book of channels, and redis-py's (which would resubscribe silently
    on a reconnect, and which some versions never clean after
    ``SUNSUBSCRIBE``) stays empty.

    Args:
        node: The primary.
        pubsub: A pub/sub object of a client of that node alone.
        handle: Called with each message read.
        fail: Called with a reason when the connection fails.
        timeout: Bound of each wait when closing.
    """

    def __init__(
        self,
        node: ClusterNode,
        pubsub: PubSub,
        handle: Callable[[_Shard, Message], None],
        fail: Callable[[str], None],
        timeout: float,
    ) -> None:
        self.name = node.name
        self.keys: set[str] = set()
        self.closed = False  # the connections were rebuilt
        self._pubsub = pubsub
        self._handle = handle
        self._fail = fail
        self._timeout = timeout
        self._lock = asyncio.Lock()  # one command at a time
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and start the reader, once."""
        async with self._lock:
            await self._start()

    async def subscribe(self, keys: list[str]) -> None:
        """Subscribe ``keys``, one ``SSUBSCRIBE`` per slot.

        A batch over several slots would be refused (``CROSSSLOT``).
        """
        by_slot: dict[int, list[str]] = defaultdict(list)
        for key in keys:
            by_slot[key_slot(key.encode())].append(key)
        async with self._lock:
            for slot_keys in by_slot.values():
                self.keys.update(slot_keys)
                await self._pubsub.execute_command("SSUBSCRIBE", *slot_keys)
            await self._start()

    async def unsubscribe(self, key: str) -> None:
        """Unsubscribe ``key``; Redis confirms with ``sunsubscribe``."""
        self.keys.discard(key)
        async with self._lock:
            await self._pubsub.execute_command("SUNSUBSCRIBE", key)

    async def ping(self) -> bool:
        """Send ``PING``; its ``pong`` is read as a message.

        Returns whether it was sent: a closed shard has nothing to answer.
        """
        async with self._lock:
            if self.closed:
                return False
            await self._pubsub.ping()
            return True

    async def close(self) -> None:
        """Stop the reader and close the connection (bounded)."""
        self.closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.wait([reader], timeout=self._timeout)
        # Bounded: closing can wait on a read that was cancelled.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _start(self) -> None:
        if self._reader is None and not self.closed:
            await self._pubsub.connect()  # type: ignore[no-untyped-call]
            self._reader = asyncio.create_task(
                self._read(), name=f"sanic-chat redis {self.name}"
            )

    async def _read(self) -> None:
        try:
            while True:
                message = await self._pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._handle(self, message)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            reraise_cancellation()
            self._fail(f"shard {self.name}: {exc or type(exc).__name__}")


class _Inbox:
    """What the shards say: confirmations, pongs, echoes and events.

    Args:
        link: For key names and logs.
        subscribers: Where events go.
        control: The worker's control channel (its echo).
        moved: Called with a channel that Redis dropped (slot migrated).
    """

    def __init__(
        self,
        link: ClusterLink,
        subscribers: Subscribers,
        control: str,
        moved: Callable[[_Shard, str], None],
    ) -> None:
        self._link = link
        self._subscribers = subscribers
        self._control = control
        self._moved = moved
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        # SUNSUBSCRIBEs sent and not yet confirmed, by channel: any other
        # sunsubscribe is Redis dropping a channel whose slot moved.
        self._leaving: Counter[str] = Counter()
        self._awaiting: set[str] = set()  # control and shards to answer
        self._malformed_logged = False
        self.echo = asyncio.Event()

    def expect(self, key: str) -> asyncio.Future[None]:
        """The future resolved when Redis confirms ``key``."""
        confirmed = self._confirmations.get(key)
        if confirmed is None or confirmed.done():
            confirmed = asyncio.get_running_loop().create_future()
            self._confirmations[key] = confirmed
        return confirmed

    def forget(self, key: str, confirmed: asyncio.Future[None]) -> None:
        if self._confirmations.get(key) is confirmed:
            del self._confirmations[key]

    def leave(self, key: str) -> None:
        """Expect Redis's ``sunsubscribe`` of ``key``: no slot moved."""
        self._leaving[key] += 1

    def await_answers(self, names: set[str]) -> None:
        """Set :attr:`echo` once each of ``names`` answered."""
        self._awaiting = names

    def answered(self, name: str) -> None:
        self._awaiting.discard(name)
        if not self._awaiting:
            self.echo.set()

    def fail_all(self) -> None:
        """Fail every pending confirmation (the connections are gone)."""
        for confirmed in self._confirmations.values():
            if not confirmed.done():
                confirmed.set_exception(
                    BroadcasterUnavailable("connection to Redis lost")
                )
                confirmed.exception()  # retrieved: caller may be gone
        self._confirmations.clear()
        self._leaving.clear()

    def handle(self, shard: _Shard, message: Message) -> None:
        """Act on one message read from ``shard``."""
        kind = message["type"]
        raw = message["channel"]
        channel = raw.decode() if isinstance(raw, bytes) else ""
        if kind == "ssubscribe":
            confirmed = self._confirmations.get(channel)
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)
        elif kind == "sunsubscribe":
            if self._leaving[channel] > 0:
                self._leaving[channel] -= 1
                if not self._leaving[channel]:
                    del self._leaving[channel]
            else:  # Redis dropped it: its slot moved to another shard
                self._moved(shard, channel)
        elif kind == "pong":
            self.answered(shard.name)
        elif kind == "smessage":
            data = message["data"]
            if channel == self._control:
                self.answered(channel)
            elif isinstance(data, bytes):
                self._dispatch(channel, data)

    def _dispatch(self, key: str, data: bytes) -> None:
        room = self._link.name_of("room", key)
        if room not in self._subscribers:
            return
        event = _event(room, data)
        if event is not None:
            self._subscribers.deliver(event)
        elif not self._malformed_logged:
            # A foreign publisher on our prefix must not kill the listener.
            self._malformed_logged = True
            logger.warning(
                "Redis %s: ignoring malformed message(s) on %s",
                self._link.masked_url,
                key,
            )


class ShardedListener:
    """Reads one sharded pub/sub connection per primary.

    Rebuilds them all when one fails; follows a room whose slot moved.
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
        self._moves: set[asyncio.Task[None]] = set()
        self._failure: str | None = None
        self._control = link.key("control", link.worker)
        self._inbox = _Inbox(link, subscribers, self._control, self._moved)
        self.online = False
        """Whether every shard connection is up and subscribed."""
        self.address: tuple[str, int] | None = None
        """Always None: there is no single server to follow."""
        self.echo = self._inbox.echo
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
        confirmed = self._inbox.expect(key)
        shard = self._shard_for(key)
        try:
            await shard.subscribe([key])
            # redis-py can swallow a cancellation while it opens a new
            # shard's connection: a cancelled caller must not go on.
            reraise_cancellation()
            await confirmed  # no timer: see RedisListener.subscribe_room
        except (RedisError, OSError) as exc:
            reraise_cancellation()
            self._fail(f"subscribe failed: {exc}")
            raise BroadcasterUnavailable(f"subscribe failed: {exc}") from None
        finally:
            self._inbox.forget(key, confirmed)
            await self._close_if_stale(shard)

    async def unsubscribe_room(self, room: str) -> None:
        """Unsubscribe ``room`` if connected (a reconnect forgets it)."""
        key = self._link.key("room", room)
        shard = next((s for s in self._shards.values() if key in s.keys), None)
        if shard is None or not self.online:
            return
        self._inbox.leave(key)
        with contextlib.suppress(RedisError, OSError):
            await shard.unsubscribe(key)

    async def probe(self) -> None:
        """Publish on the control channel and ping every shard."""
        shards = list(self._shards.values())
        self._inbox.await_answers({self._control, *(s.name for s in shards)})
        await self._link.publish(self._control, b"ping")
        for shard in shards:
            if not await shard.ping():
                self._inbox.answered(shard.name)

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

        Reads the slot map first, and waits for every confirmation; all
        of it bounded, so that a node that hangs cannot hang the listener.
        """
        self.reconnect.clear()
        self._failure = None
        async with asyncio.timeout(self._link.timeout * 2):
            rooms = await self._subscribe_all()
        self.online = True
        # Rooms whose last member left while we were resubscribing.
        for room in rooms:
            if room not in self._subscribers:
                await self.unsubscribe_room(room)

    async def _subscribe_all(self) -> list[str]:
        """Open every primary's shard, subscribe control and every room."""
        await self._link.refresh_topology()
        # A connection to every primary, even those without rooms yet:
        # the heartbeat pings them all, and a first join there does not
        # wait for a new connection (one per shard and worker, bounded).
        for node in self._link.primaries():
            await self._shard_for_node(node).start()
        rooms = self._subscribers.channels()
        keys = [self._control, *(self._link.key("room", r) for r in rooms)]
        by_shard: dict[str, list[str]] = defaultdict(list)
        shards: dict[str, _Shard] = {}
        futures = [self._inbox.expect(key) for key in keys]
        for key in keys:
            shard = self._shard_for(key)
            shards[shard.name] = shard
            by_shard[shard.name].append(key)
        for name, shard_keys in by_shard.items():
            await shards[name].subscribe(shard_keys)
        await asyncio.gather(*futures)
        for key, confirmed in zip(keys, futures, strict=True):
            self._inbox.forget(key, confirmed)
        return rooms

    def _moved(self, shard: _Shard, key: str) -> None:
        """Redis dropped ``key`` (its slot migrated): follow it."""
        shard.keys.discard(key)
        if not self.online:
            return  # the connections are being rebuilt anyway
        if key == self._control:
            self._fail(f"slot of {key} moved")
            return
        task = asyncio.create_task(
            self._follow(key), name="sanic-chat redis moved slot"
        )
        self._moves.add(task)
        task.add_done_callback(self._moves.discard)

    async def _follow(self, key: str) -> None:
        """Subscribe a room on its slot's new owner, then interrupt it.

        Its subscribers may have missed events meanwhile (a gap); if
        anything fails, every connection is rebuilt instead.
        """
        room = self._link.name_of("room", key)
        logger.warning(
            "Redis %s: slot of %s moved; resubscribing it",
            self._link.masked_url,
            key,
        )
        confirmed = self._inbox.expect(key)
        shard = None
        try:
            async with asyncio.timeout(self._link.timeout * 2):
                await self._link.refresh_topology()
                shard = self._shard_for(key)
                await shard.subscribe([key])
                await confirmed
        except (RedisError, OSError, TimeoutError, BroadcasterUnavailable):
            reraise_cancellation()
            self._fail(f"slot of {key} moved; resubscribing it failed")
            return
        finally:
            self._inbox.forget(key, confirmed)
            if shard is not None:
                await self._close_if_stale(shard)
        self._subscribers.interrupt(room)
        if room not in self._subscribers:  # its last member left meanwhile
            await self.unsubscribe_room(room)

    def _shard_for(self, key: str) -> _Shard:
        """The shard of ``key``'s slot (see :meth:`_shard_for_node`)."""
        return self._shard_for_node(self._link.primary_of(key))

    def _shard_for_node(self, node: ClusterNode) -> _Shard:
        """The shard of ``node``; a new one (not connected yet) if none."""
        shard = self._shards.get(node.name)
        if shard is None:
            shard = self._shards[node.name] = _Shard(
                node,
                self._link.node_client(node).pubsub(),
                self._inbox.handle,
                self._fail,
                self._link.timeout,
            )
        return shard

    async def _close_if_stale(self, shard: _Shard) -> None:
        """Close a shard opened while the connections were rebuilt."""
        if self._shards.get(shard.name) is not shard:
            await shard.close()

    async def _disconnected(self) -> None:
        self.online = False
        shards, self._shards = list(self._shards.values()), {}
        for shard in shards:  # first: no reader may start a move now
            await shard.close()
        moves = list(self._moves)
        for task in moves:
            task.cancel()
        if moves:
            await asyncio.wait(moves, timeout=self._link.timeout)
        self._inbox.fail_all()


def _event(room: str, data: bytes) -> Event | None:
    """The event in ``id|origin|payload``, or None if malformed."""
    try:
        raw_id, origin, payload = data.decode().split("|", 2)
    except (UnicodeDecodeError, ValueError):
        return None
    return Event(room, payload, raw_id or None, origin or None)
