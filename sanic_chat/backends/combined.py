"""One broadcaster out of a broker and a presence part written apart.

The chat takes one :class:`~sanic_chat.backends.base.Broadcaster`. When
your messages and your presence live in different places (a message bus
of your own beside our Redis presence, or the reverse), combine them::

    broadcaster = CombinedBroadcaster(MyBroker(...), MemoryPresence())
    app.blueprint(create_blueprint(broadcaster=broadcaster))

Every message call goes to the broker, every presence call to the
presence part, unchanged; nothing else is added.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import cast

from .base import (
    Broadcaster,
    Broker,
    Event,
    HistoryPage,
    Idempotency,
    Presence,
    PresenceInfo,
    Receipts,
    Subscription,
    idempotency_of,
    receipts_of,
)

__all__ = ["CombinedBroadcaster"]


class CombinedBroadcaster(Broadcaster):
    """A :class:`Broadcaster` made of a broker and a presence part.

    ``connect`` connects the broker, then the presence part;
    ``disconnect`` disconnects both, the presence part first. When one
    object is both parts, it is connected and disconnected once.
    ``healthy`` and ``reconnects`` are the broker's (and the presence
    part's too when it is a :class:`Broker` itself, such as a
    :class:`~sanic_chat.backends.redis.RedisBroadcaster` used only for
    its presence).

    Args:
        broker: Carries messages: publish, subscribe, history.
        presence: Counts who is in each channel.
        receipts: Keeps read receipts; by default the broker, when it
            is a :class:`~sanic_chat.backends.base.Receipts` (the marks
            are its ids), else none (``read`` requests are refused).
        idempotency: Remembers the refs of messages sent; by default the
            broker's part, else the presence part's, else none (the chat
            then remembers them in each worker's memory).
    """

    def __init__(
        self,
        broker: Broker,
        presence: Presence,
        receipts: Receipts | None = None,
        idempotency: Idempotency | None = None,
    ) -> None:
        self.broker = broker
        self.presence_part = presence
        if receipts is None:
            receipts = receipts_of(broker)
        self.receipts_part = receipts
        if idempotency is None:
            idempotency = idempotency_of(broker)
        if idempotency is None:
            idempotency = idempotency_of(presence)
        self.idempotency_part = idempotency
        # One object may be both parts: then it is connected once.
        self._separate = cast(object, presence) is not broker

    def __repr__(self) -> str:
        return (
            f"<CombinedBroadcaster {self.broker!r} + {self.presence_part!r}>"
        )

    async def connect(self) -> None:
        """Connect the broker, then the presence part.

        Raises:
            BroadcasterUnavailable: Either part cannot be reached (the
                broker is disconnected again if the presence part fails).
        """
        await self.broker.connect()
        if self._separate:
            try:
                await self.presence_part.connect()
            except BaseException:
                await self.broker.disconnect()
                raise

    async def disconnect(self) -> None:
        """Disconnect the presence part, then the broker."""
        try:
            if self._separate:
                await self.presence_part.disconnect()
        finally:
            await self.broker.disconnect()

    @property
    def healthy(self) -> bool:
        """Whether the broker (and a presence part with a health) is up."""
        presence = self.presence_part
        if isinstance(presence, Broker) and self._separate:
            return self.broker.healthy and presence.healthy
        return self.broker.healthy

    @property
    def reconnects(self) -> int:  # type: ignore[override]
        """Reconnections of the broker (and of a presence part that counts)."""
        count = self.broker.reconnects
        presence = self.presence_part
        if isinstance(presence, Broker) and self._separate:
            count += presence.reconnects
        return count

    async def publish(
        self,
        channel: str,
        payload: str,
        *,
        store: bool = True,
        origin: str | None = None,
    ) -> Event:
        """Publish through the broker."""
        return await self.broker.publish(
            channel, payload, store=store, origin=origin
        )

    def subscribe(
        self, channel: str
    ) -> AbstractAsyncContextManager[Subscription]:
        """Subscribe through the broker."""
        return self.broker.subscribe(channel)

    async def history(
        self,
        channel: str,
        *,
        limit: int,
        after: str | None = None,
        before: str | None = None,
    ) -> HistoryPage:
        """Read the broker's history."""
        return await self.broker.history(
            channel, limit=limit, after=after, before=before
        )

    async def presence_add(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count a connection in the presence part."""
        await self.presence_part.presence_add(channel, user)

    async def presence_remove(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count a connection less in the presence part."""
        await self.presence_part.presence_remove(channel, user)

    async def presence(self, channel: str, *, limit: int) -> PresenceInfo:
        """Ask the presence part who is in ``channel``."""
        return await self.presence_part.presence(channel, limit=limit)
