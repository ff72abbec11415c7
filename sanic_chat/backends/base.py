"""The broadcaster interface: how chat events travel between processes.

A broadcaster carries opaque, already-encoded payloads on named channels
(one channel per room) and knows who is in each channel. It has two parts,
as Centrifuge's ``Broker`` and ``PresenceManager`` do, each deliberately
small, so that new backends are easy to write and to check with
:mod:`sanic_chat.testing`:

:class:`Broker`, the messages:

* :meth:`Broker.connect` / :meth:`Broker.disconnect`: lifecycle.
* :meth:`Broker.publish`: send a payload to every subscriber of a
  channel; stored payloads get an id and go into the channel's history.
* :meth:`Broker.subscribe`: an async context manager yielding a
  :class:`Subscription`, an async iterator of :class:`Event`.
* :meth:`Broker.history`: recent stored events, for ``history``, for
  recovery after a reconnect (``join ... since``) and for paging through
  a room's history (``before`` / ``after`` an id).

:class:`Presence`, the people: ``presence_add``, ``presence_remove`` and
``presence`` (who is in a channel, across every process).

:class:`Receipts`, optional: each user's last-read message per channel
(``mark_read``, ``receipts``, ``read_state``). It needs the order of the
broker's ids, so the broker implements it (both built-in backends do).
A backend without it still serves a chat: ``read`` and ``receipts``
requests get a ``bad_request`` error and ``joined`` has no
``last_read``/``unread`` (see :func:`receipts_of`).

:class:`Idempotency`, optional: the ``ref`` of each message a user sent
recently, and the id it got (``claim``, ``settle``, ``release``), so that
a resend after a lost ``ack`` is answered instead of published again.
Both built-in backends have it (Redis shares it between workers); for a
backend without it the chat keeps refs in each worker's memory (see
:func:`idempotency_of`).

:class:`Broadcaster` is both, on one object: what the chat takes, and
what a backend that does both subclasses (both built-in backends do).
:class:`~sanic_chat.backends.combined.CombinedBroadcaster` makes one out
of a broker and a presence part written separately. :class:`Subscribers`
is the bookkeeping every broker needs and should not write again: the
local subscriptions of each channel, so that a backend subscribes once
per channel per process however many subscriptions there are.

The hub keeps exactly one subscription per room per process, however many
sockets are in the room, and encodes each message once.

Contract every backend keeps:

* Ids are opaque strings, unique within a channel, assigned at publish.
* Every subscriber of a channel sees that channel's events in the same
  order, and that order is the order of ids in :meth:`Broker.history`.
* Memory stays bounded: history is a ring per channel and subscription
  queues are bounded; a subscriber that falls behind gets a
  :class:`Gap` instead of unbounded buffering.
* A backend that reconnects resubscribes by itself and calls
  :meth:`Subscription.interrupt` on every subscription
  (:meth:`Subscribers.interrupt`), so that members are told to re-sync.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from ..wakeup import Wakeup


@dataclass(frozen=True, slots=True)
class Event:
    """One payload delivered on a channel.

    Attributes:
        channel: The channel (room) it was published to.
        payload: The encoded payload, exactly as published.
        id: Id assigned at publish for stored events; ``None`` for
            ephemeral ones (presence notices), which are not in history.
        origin: Opaque tag given by the publisher (the hub uses it so that
            a member does not get its own presence notice twice).
    """

    channel: str
    payload: str
    id: str | None = None
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Marks that a subscription lost ``skipped`` events (0: unknown).

    The events are still in history; subscribers tell their clients to
    re-sync.
    """

    channel: str
    skipped: int


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Result of :meth:`Broadcaster.history`.

    Attributes:
        events: Stored events, oldest first.
        found: ``False`` when an ``after`` or ``before`` id was given
            but is no longer (or never was) in the channel's history: the
            caller cannot know what it missed.
    """

    events: list[Event]
    found: bool = True


@dataclass(slots=True)
class PresenceInfo:
    """Users currently in a channel, on every process.

    Attributes:
        users: Public user objects (``{"id", "name"}``), at most the
            requested limit.
        count: Number of distinct users, which may exceed ``len(users)``.
    """

    users: list[Mapping[str, str]] = field(default_factory=list)
    count: int = 0


class Consumer(Protocol):
    """What a :class:`Subscription` pushes to (:meth:`~.deliver_to`)."""

    def receive(self, events: Sequence[Event]) -> None:
        """Take the next events (at least one), in channel order.

        All the events queued when the callback ran, at once: a consumer
        can hand several to a client in one write. They are the
        consumer's even if it stops consuming during the call.
        """

    def missed(self, gap: Gap) -> None:
        """Events were lost after those received (see :class:`Gap`)."""

    def ended(self, error: BaseException | None) -> None:
        """The stream ended (closed by the backend; with its error)."""


class Subscription(Wakeup):
    """A bounded, ordered stream of the events of one channel.

    Backends create it and feed it with :meth:`put`; consumers iterate
    over it, or have it push to them (:meth:`deliver_to`). When the
    consumer falls ``maxsize`` events behind, further events are not
    queued: the consumer receives one :class:`Gap` after the queued
    events (a pushed-to consumer in :meth:`Consumer.missed`), then live
    events again. The queue exists only while events
    wait in it (an idle subscription holds none).

    It is also the async context manager that :meth:`Subscribers.subscribe`
    returns, entered once: one object per subscription, not two. Left
    (:meth:`leave_nowait`) without an owner, it is just closed.

    Args:
        channel: The channel this subscription follows.
        maxsize: Most events held before a gap is declared.
    """

    __slots__ = (
        "_closed",
        "_consumer",
        "_error",
        "_interrupted",
        "_items",
        "_lost",
        "_maxsize",
        "_owner",
        "_scheduled",
        "channel",
    )

    def __init__(self, channel: str, maxsize: int = 10_000) -> None:
        super().__init__()
        self.channel = channel
        self._maxsize = maxsize
        self._items: deque[Event] | None = None
        self._lost = 0
        self._interrupted = False
        self._error: BaseException | None = None
        self._closed = False
        self._consumer: Consumer | None = None
        self._scheduled = False
        # The Subscribers that made it (Subscribers.subscribe), if any.
        self._owner: Subscribers | None = None

    def put(self, event: Event) -> None:
        """Queue ``event`` for the consumer; never blocks."""
        if self._closed:
            return
        items = self._items
        if items is None:
            items = self._items = deque()
        if self._lost or len(items) >= self._maxsize:
            self._lost += 1
        else:
            items.append(event)
        self._wake()

    def interrupt(self) -> None:
        """Declare that events may have been missed (a reconnect).

        The consumer gets a :class:`Gap` (``skipped`` 0: unknown) after the
        events already queued.
        """
        self._interrupted = True
        self._wake()

    def close(self, error: BaseException | None = None) -> None:
        """End the stream; with ``error``, iteration raises it.

        Only the first call counts: a later one keeps the first's error.
        """
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._wake()

    def deliver_to(self, consumer: Consumer | None) -> None:
        """Push to ``consumer`` instead of being iterated (``None``: stop).

        What :meth:`put`, :meth:`interrupt` and :meth:`close` bring is
        handed over in one callback of the running loop (``call_soon``)
        that drains everything queued by then, in order: delivery stays
        asynchronous to the publisher, as with iteration, but needs no
        task, coroutine or future. Needs a running loop when fed.
        """
        self._consumer = consumer
        if consumer is not None and (
            self._items or self._lost or self._interrupted or self._closed
        ):
            self._wake()

    def _wake(self) -> None:
        consumer = self._consumer
        if consumer is None:
            super()._wake()
        elif not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Hand everything queued to the consumer (see :meth:`deliver_to`)."""
        self._scheduled = False
        consumer = self._consumer
        if consumer is None:
            return  # what is queued waits for a consumer or an iterator
        items = self._items
        if items is not None:
            # Handed over whole: what put() brings meanwhile starts a new
            # queue and another callback. Nothing is held while idle.
            self._items = None
            if items:
                consumer.receive(items)
            # A consumer may stop consuming from its callback.
            if self._consumer is not consumer:
                return
        if self._lost or self._interrupted:
            gap = Gap(self.channel, self._lost)
            self._lost = 0
            self._interrupted = False
            consumer.missed(gap)
        if self._closed and self._consumer is consumer:
            self._consumer = None
            consumer.ended(self._error)

    async def __aenter__(self) -> Subscription:
        owner = self._owner
        if owner is None:
            return self
        return await owner._enter(self)

    async def __aexit__(self, *exc_info: object) -> None:
        pending = self.leave_nowait()
        if pending is not None:
            await pending

    def leave_nowait(self) -> Awaitable[None] | None:
        """Leave now; return the unsubscribing left to await, if any.

        That is the owner's ``on_last`` call when this was the channel's
        last local subscription, else ``None``. Idempotent. Without an
        owner it closes the subscription and returns ``None``.
        """
        owner = self._owner
        if owner is None:
            self.close()
            return None
        return owner._leave(self)

    def __aiter__(self) -> AsyncIterator[Event | Gap]:
        return self

    async def __anext__(self) -> Event | Gap:
        while True:
            if self._items:
                return self._items.popleft()
            if self._lost or self._interrupted:
                gap = Gap(self.channel, self._lost)
                self._lost = 0
                self._interrupted = False
                return gap
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            await self._sleep()


Subscribing = Subscription
"""What :meth:`Subscribers.subscribe` returns: the subscription itself
(once a wrapper of its own; the name stays for code that checks it)."""


ChannelHook = Callable[[str], Awaitable[None]]
"""An async callable taking a channel name (see :class:`Subscribers`)."""


class Subscribers:
    """The local subscriptions of every channel: reference counting, once.

    Every broker needs the same bookkeeping, so it is written here (as
    encode/broadcaster does in its facade) rather than in each backend: a
    map from channel to its local :class:`Subscription` objects,
    which creates them, fans events out to them, and interrupts or closes
    them all when the backend reconnects or disconnects. The backend
    subscribes at its server once per channel per process, in
    ``on_first``, however many local subscriptions follow the channel, and
    unsubscribes in ``on_last`` when the last one ends.

    A broker's :meth:`Broker.subscribe` then reads::

        def subscribe(self, channel):
            return self._subscribers.subscribe(channel)

    and whatever receives an event from the server calls
    :meth:`deliver`.

    Args:
        queue_size: Events a subscription may fall behind before a
            :class:`Gap`.
        on_first: Awaited when a channel gets its first local
            subscription, before that subscription is handed out;
            subscribe at the server here. When it raises, the
            subscription ends and the error propagates to the caller of
            :meth:`subscribe`. Subscriptions that arrive while it runs do
            not wait for it.
        on_last: Awaited when the last local subscription of a channel
            ends (also after ``on_first`` failed); unsubscribe at the
            server here. Not awaited for channels that :meth:`close`
            ended, nor when the channel was subscribed again before the
            call ran.
    """

    __slots__ = ("_channels", "_on_first", "_on_last", "queue_size")

    def __init__(
        self,
        queue_size: int = 10_000,
        *,
        on_first: ChannelHook | None = None,
        on_last: ChannelHook | None = None,
    ) -> None:
        self.queue_size = queue_size
        self._on_first = on_first
        self._on_last = on_last
        # A channel's one subscription, or a set once it has more (most
        # channels have one: a set costs 216 bytes more).
        self._channels: dict[str, Subscription | set[Subscription]] = {}

    def subscribe(self, channel: str) -> Subscription:
        """Follow ``channel`` locally until the block exits.

        The subscription is its own context manager: enter it once
        (``async with``), or leave it early with
        :meth:`Subscription.leave_nowait`.

        Raises:
            Exception: Whatever ``on_first`` raised (on entry).
        """
        subscription = Subscription(channel, self.queue_size)
        subscription._owner = self
        return subscription

    async def _enter(self, subscription: Subscription) -> Subscription:
        """Register ``subscription``; subscribe at the server if first."""
        channel = subscription.channel
        present = self._channels.get(channel)
        if present is None:
            self._channels[channel] = subscription
        elif isinstance(present, Subscription):
            self._channels[channel] = {present, subscription}
        else:
            present.add(subscription)
        if present is None and self._on_first is not None:
            try:
                await self._on_first(channel)
            except BaseException:
                pending = self._leave(subscription)
                if pending is not None:
                    await pending
                raise
        return subscription

    def _leave(self, subscription: Subscription) -> Awaitable[None] | None:
        """Close and drop ``subscription``; ``on_last``'s call if due.

        Does nothing the second time. A subscription that :meth:`close`
        already dropped is not here any more (a later subscription of the
        channel may have taken its place): nothing to do then.
        """
        subscription.close()
        channel = subscription.channel
        present = self._channels.get(channel)
        if present is not subscription:
            if not isinstance(present, set) or subscription not in present:
                return None
            present.discard(subscription)
            if present:
                return None
        del self._channels[channel]
        if self._on_last is None:
            return None
        return self._last(channel, self._on_last)

    async def _last(self, channel: str, on_last: ChannelHook) -> None:
        """``on_last``, unless ``channel`` was subscribed again meanwhile.

        The hub awaits it in a task: a new first subscriber may have
        subscribed at the server before it runs, and an unsubscribe then
        would leave the channel deaf there.
        """
        if channel not in self._channels:
            await on_last(channel)

    def __contains__(self, channel: object) -> bool:
        """Whether ``channel`` has a local subscription."""
        return channel in self._channels

    def __len__(self) -> int:
        """Number of channels with a local subscription."""
        return len(self._channels)

    def channels(self) -> list[str]:
        """Return the channels that have a local subscription, now."""
        return list(self._channels)

    def deliver(self, event: Event) -> None:
        """Queue ``event`` for every local subscription of its channel."""
        present = self._channels.get(event.channel)
        if isinstance(present, Subscription):
            present.put(event)
        elif present is not None:
            for subscription in present:
                subscription.put(event)

    def interrupt(self, channel: str | None = None) -> None:
        """Tell subscriptions that events may have been missed.

        Every subscription, or those of ``channel`` when given.

        Call it after a reconnect, once every channel is subscribed again;
        consumers get a :class:`Gap` (and chat members a ``resync``).
        """
        if channel is None:
            groups = list(self._channels.values())
        else:
            present = self._channels.get(channel)
            groups = [] if present is None else [present]
        for group in groups:
            for subscription in _each(group):
                subscription.interrupt()

    def close(self, error: BaseException | None = None) -> None:
        """End every subscription (with ``error``, iteration raises it)."""
        channels, self._channels = self._channels, {}
        for group in channels.values():
            for subscription in _each(group):
                subscription.close(error)


def _each(
    group: Subscription | set[Subscription],
) -> Sequence[Subscription]:
    """The subscriptions of one channel's entry in :class:`Subscribers`."""
    return (group,) if isinstance(group, Subscription) else list(group)


class Broker(ABC):
    """The message part of a backend: publish, subscribe, history.

    Subclass it for a transport that carries messages; pair it with a
    :class:`Presence` part through
    :class:`~sanic_chat.backends.combined.CombinedBroadcaster`, or
    subclass :class:`Broadcaster` to provide both on one object. Keep the
    local subscriptions in a :class:`Subscribers`. Run
    :data:`sanic_chat.testing.BROKER_CHECKS` against it to check the
    contract described in this module's docstring.
    """

    @abstractmethod
    async def connect(self) -> None:
        """Get ready to serve; raise a clear error if the backend is down.

        Raises:
            BroadcasterUnavailable: The backend cannot be reached.
        """

    @abstractmethod
    async def disconnect(self) -> None:
        """Release every resource; close any open subscription."""

    @abstractmethod
    async def publish(
        self,
        channel: str,
        payload: str,
        *,
        store: bool = True,
        origin: str | None = None,
    ) -> Event:
        """Deliver ``payload`` to every subscriber of ``channel``.

        Args:
            channel: Target channel.
            payload: Encoded payload; delivered unchanged.
            store: Assign an id and keep the event in history. Ephemeral
                events (``store=False``) have no id.
            origin: Opaque tag carried to subscribers unchanged.

        Returns:
            The event as subscribers will see it (with its id if stored).

        Raises:
            BroadcasterUnavailable: The backend cannot be reached; the
                event was not delivered.
        """

    @abstractmethod
    def subscribe(
        self, channel: str
    ) -> AbstractAsyncContextManager[Subscription]:
        """Follow ``channel``: events published after entry are delivered.

        Usage::

            async with broadcaster.subscribe("lobby") as subscription:
                async for event in subscription:
                    ...
        """

    @abstractmethod
    async def history(
        self,
        channel: str,
        *,
        limit: int,
        after: str | None = None,
        before: str | None = None,
    ) -> HistoryPage:
        """Return stored events of ``channel``, oldest first.

        Without ``after`` and ``before``, the newest ``limit`` events.
        With ``after`` alone, the oldest ``limit`` events published after
        it: recovery, and paging forwards. With ``before`` alone, the
        newest ``limit`` events published before it: paging backwards.
        With both, the oldest ``limit`` events published after ``after``
        and before ``before`` (none if ``before`` is not newer than
        ``after``). Both bounds are exclusive.

        Args:
            channel: The channel.
            limit: Most events returned (positive).
            after: Return only events published after this id.
            before: Return only events published before this id.

        Returns:
            The events, oldest first; ``found`` is ``False`` (and
            ``events`` empty) when ``after`` or ``before`` is not an id
            in the channel's history (any more).
        """

    #: Times this process reconnected to its backend (a metric).
    reconnects: int = 0

    @property
    def healthy(self) -> bool:
        """Whether this process can currently publish and receive.

        Backends that can lose their connection override it; the health
        endpoint reports a worker whose broadcaster is unhealthy as not
        ready.
        """
        return True


class Presence(ABC):
    """The presence part of a backend: who is in each channel.

    Counts connections per user and channel, across every process. Its
    :meth:`connect` and :meth:`disconnect` do nothing unless overridden
    (a presence store with its own connection overrides them). Run
    :data:`sanic_chat.testing.PRESENCE_CHECKS` against it.
    """

    async def connect(self) -> None:  # noqa: B027 - optional hook
        """Get ready to serve (nothing unless overridden)."""

    async def disconnect(self) -> None:  # noqa: B027 - optional hook
        """Release every resource (nothing unless overridden)."""

    @abstractmethod
    async def presence_add(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one more connection of ``user`` in ``channel``.

        Counted if and only if it returns: when it raises or is cancelled,
        the count must end up unchanged (the hub removes only what was
        added, so anything else leaks or steals a count).
        """

    @abstractmethod
    async def presence_remove(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one connection of ``user`` less in ``channel``.

        Removing a connection that was not counted changes nothing.
        """

    @abstractmethod
    async def presence(self, channel: str, *, limit: int) -> PresenceInfo:
        """Return the distinct users present in ``channel``.

        Args:
            channel: The channel.
            limit: Most users listed; ``count`` is exact regardless.
        """


@dataclass(frozen=True, slots=True)
class ReadState:
    """A user's place in a channel (:meth:`Receipts.read_state`).

    Attributes:
        last_read: The id the user last marked read; ``None``: none.
        unread: Stored events after ``last_read`` (every stored event
            when there is none, or when it is no longer in history).
    """

    last_read: str | None
    unread: int


class Receipts(ABC):
    """The optional read-receipts part: who read each channel how far.

    One mark per user and channel, shared by every process, that never
    moves backwards. Marks are ids of the broker's history, so the broker
    implements this part: it alone knows its ids' order. Marks live as
    long as the channel's history (its TTL, its eviction). Run
    :data:`sanic_chat.testing.RECEIPTS_CHECKS` against it.
    """

    @abstractmethod
    async def mark_read(
        self, channel: str, user_id: str, message_id: str
    ) -> bool | None:
        """Record that ``user_id`` read ``channel`` up to ``message_id``.

        Atomic: of two concurrent marks, the newer id wins.

        Returns:
            ``True`` when the mark moved forward; ``False`` when
            ``message_id`` is not newer than the mark (nothing changes);
            ``None`` when ``message_id`` is not an id in the channel's
            history (nothing changes).

        Raises:
            BroadcasterUnavailable: The backend cannot be reached.
        """

    @abstractmethod
    async def receipts(
        self, channel: str, user_ids: Sequence[str]
    ) -> dict[str, str]:
        """Return the marks of ``user_ids`` in ``channel`` (those with one).

        Raises:
            BroadcasterUnavailable: The backend cannot be reached.
        """

    @abstractmethod
    async def read_state(
        self, channel: str, user_id: str, *, limit: int
    ) -> ReadState:
        """Return ``user_id``'s mark and how many events follow it.

        Args:
            channel: The channel.
            user_id: The user.
            limit: Most unread events counted (the history size).

        Raises:
            BroadcasterUnavailable: The backend cannot be reached.
        """


def receipts_of(broadcaster: object) -> Receipts | None:
    """The read-receipts part of ``broadcaster``, if it has one.

    The broadcaster itself when it is a :class:`Receipts`, or the part a
    :class:`~sanic_chat.backends.combined.CombinedBroadcaster` was given
    (its ``receipts_part``); ``None`` for a backend without receipts,
    such as one written for 0.1.
    """
    part = getattr(broadcaster, "receipts_part", broadcaster)
    return part if isinstance(part, Receipts) else None


PENDING = ""
"""What :meth:`Idempotency.claim` returns while another claim is open."""


class Idempotency(ABC):
    """The optional part that remembers which refs a user already sent.

    A ``ref`` goes through two states: *claimed* (a publish is under way,
    for ``lease`` seconds at most) and *settled* (the message has an id,
    kept ``ttl`` seconds). :meth:`claim` is atomic, so of two concurrent
    sends with one ref (two sockets, two workers) exactly one publishes;
    the other sees :data:`PENDING` and asks again until the first settles
    or releases. Run :data:`sanic_chat.testing.IDEMPOTENCY_CHECKS`
    against it. Keys are ``(user_id, ref)``: refs of different users
    never collide.
    """

    @abstractmethod
    async def claim(self, user_id: str, ref: str, lease: float) -> str | None:
        """Claim ``ref`` for a publish, or learn what became of it.

        Args:
            user_id: The sender.
            ref: The client's ref of the message.
            lease: Seconds the claim holds if never settled nor released
                (a worker that died mid-publish frees it then).

        Returns:
            ``None``: the caller holds the claim and must :meth:`settle`
            or :meth:`release` it; :data:`PENDING`: another claim is
            open; else the id of the message already sent with ``ref``.

        Raises:
            BroadcasterUnavailable: The backend cannot be reached.
        """

    @abstractmethod
    async def settle(
        self, user_id: str, ref: str, message_id: str, ttl: float
    ) -> None:
        """Record that ``ref`` was published as ``message_id``, for ``ttl``.

        Raises:
            BroadcasterUnavailable: The backend cannot be reached.
        """

    @abstractmethod
    async def release(self, user_id: str, ref: str) -> None:
        """Drop a claim whose publish failed, so that a resend may retry.

        Raises:
            BroadcasterUnavailable: The backend cannot be reached.
        """


def idempotency_of(broadcaster: object) -> Idempotency | None:
    """The idempotency part of ``broadcaster``, if it has one.

    Its ``idempotency_part``, or the broadcaster itself when it is an
    :class:`Idempotency`; ``None`` for a backend without one.
    """
    part = getattr(broadcaster, "idempotency_part", broadcaster)
    return part if isinstance(part, Idempotency) else None


class Broadcaster(Broker, Presence):
    """Interface of a broadcaster backend: both parts on one object.

    A :class:`Broker` and a :class:`Presence`; it is what the chat takes
    (``create_blueprint(broadcaster=...)``). Subclass it to plug in a
    transport that does both, implementing every abstract method
    (``connect``, ``disconnect``, ``publish``, ``subscribe``, ``history``,
    ``presence_add``, ``presence_remove``, ``presence``), as a 0.1
    backend did; or combine separate parts with
    :class:`~sanic_chat.backends.combined.CombinedBroadcaster`. Run
    :func:`sanic_chat.testing.check_broadcaster` against it to check the
    contract described in this module's docstring.
    """
