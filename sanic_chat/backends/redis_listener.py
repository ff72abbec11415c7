"""The pub/sub part of the Redis broadcaster: one connection per worker.

Every process holds one pub/sub connection, subscribed to its own control
channel (the heartbeat's echo) and once to each room that has local
subscriptions (kept in a :class:`~sanic_chat.backends.base.Subscribers`).
One task reads it and hands each event to the room's subscriptions. When
the connection fails, or the heartbeat finds it deaf, the task logs once,
reconnects with backoff (:class:`~sanic_chat.backoff.Backoff`),
resubscribes every room and interrupts every subscription, so that
clients are told to re-sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from ..backoff import Backoff
from ..errors import BroadcasterUnavailable
from .base import Event, Subscribers
from .redis_link import RedisLink, reraise_cancellation

logger = logging.getLogger("sanic_chat.backends.redis")


class RedisListener:
    """Reads the worker's pub/sub connection; reconnects when it fails.

    A part of :class:`~sanic_chat.backends.redis.RedisBroadcaster`: it
    runs :meth:`run` as a task, and its :class:`Subscribers` subscribe and
    unsubscribe rooms through :meth:`subscribe_room` and
    :meth:`unsubscribe_room`.

    Args:
        link: The Redis connection shared with the other parts.
        subscribers: The local subscriptions, by room.
        on_reconnect: Called after each reconnection (a metric).
    """

    def __init__(
        self,
        link: RedisLink,
        subscribers: Subscribers,
        on_reconnect: Callable[[], None],
    ) -> None:
        self._link = link
        self._subscribers = subscribers
        self._on_reconnect = on_reconnect
        self._pubsub: PubSub | None = None
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._malformed_logged = False
        self._control = link.key("control", link.worker)
        self._room_prefix = link.key("room", "")
        self.online = False
        """Whether the connection is up and subscribed."""
        self.echo = asyncio.Event()
        """Set when a message arrives on the worker's control channel."""
        self.reconnect = asyncio.Event()
        """Set it to make the listener drop its connection and reconnect."""

    async def subscribe_room(self, room: str) -> None:
        """Subscribe ``room``; return once Redis confirmed it.

        Raises:
            BroadcasterUnavailable: The connection is down, or ended (it
                failed, or the heartbeat found it deaf) before Redis
                confirmed the subscription.
        """
        key = self._room_prefix + room
        pubsub = self._pubsub
        if pubsub is None or not self.online:
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
            self.reconnect.set()
            raise BroadcasterUnavailable(f"subscribe failed: {exc}") from None
        finally:
            if self._confirmations.get(key) is confirmed:
                del self._confirmations[key]

    async def probe(self) -> None:
        """Publish a heartbeat on the control channel.

        :attr:`echo` is set when it comes back.
        """
        await self._link.publish(self._control, b"ping")

    async def unsubscribe_room(self, room: str) -> None:
        """Unsubscribe ``room`` if connected (a reconnect forgets it)."""
        pubsub = self._pubsub
        if pubsub is not None and self.online:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.unsubscribe(self._room_prefix + room)

    async def run(self, ready: asyncio.Future[None]) -> None:
        """Connect, read, and reconnect until the broadcaster closes.

        Args:
            ready: Resolved once the first connection is subscribed.
        """
        backoff = Backoff()
        was_online = False
        while not self._link.closed.is_set():
            pubsub = self._link.client().pubsub()
            try:
                await self._connect(pubsub)
                if was_online or backoff.failing:
                    self._on_reconnect()
                    logger.warning(
                        "Redis %s: reconnected; resubscribed %d rooms",
                        self._link.masked_url,
                        len(self._subscribers),
                    )
                    self._subscribers.interrupt()
                was_online = True
                backoff.reset()
                if not ready.done():
                    ready.set_result(None)
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                reraise_cancellation()
                if not backoff.failing:
                    logger.warning(
                        "Redis %s: connection lost (%s); reconnecting",
                        self._link.masked_url,
                        str(exc) or type(exc).__name__,
                    )
            finally:
                await self._disconnected(pubsub)
            await backoff.pause(self._link.closed)

    async def _connect(self, pubsub: PubSub) -> None:
        """Subscribe the control channel and every room, then go online."""
        rooms = [self._room_prefix + r for r in self._subscribers.channels()]
        await pubsub.subscribe(self._control, *rooms)
        self._pubsub = pubsub
        self.reconnect.clear()
        async with asyncio.timeout(self._link.timeout):
            while True:  # wait for the confirmations
                message = await pubsub.get_message(timeout=None)
                if (
                    message
                    and message["type"] == "subscribe"
                    and message["channel"] == self._control.encode()
                ):
                    break
        self.online = True
        # Rooms whose last member left while we were resubscribing.
        stale = [
            key
            for key in rooms
            if key[len(self._room_prefix) :] not in self._subscribers
        ]
        if stale:
            await pubsub.unsubscribe(*stale)

    async def _disconnected(self, pubsub: PubSub) -> None:
        self.online = False
        self._pubsub = None
        for confirmed in self._confirmations.values():
            if not confirmed.done():
                confirmed.set_exception(
                    BroadcasterUnavailable("connection to Redis lost")
                )
                confirmed.exception()  # retrieved: caller may be gone
        # Bounded: closing can wait on a read that was cancelled.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._link.timeout):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, pubsub: PubSub) -> None:
        control = self._control.encode()
        closed = self._link.closed
        while not self.reconnect.is_set() and not closed.is_set():
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
                    self.echo.set()
                    continue
                self._dispatch(channel, message["data"])
        raise TimeoutError("subscription path is deaf")

    def _dispatch(self, key: str, data: bytes) -> None:
        room = key[len(self._room_prefix) :]
        if room not in self._subscribers:
            return
        try:
            raw_id, origin, payload = data.decode().split("|", 2)
        except (UnicodeDecodeError, ValueError):
            # A foreign publisher on our prefix must not kill the listener.
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
