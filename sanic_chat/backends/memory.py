"""The in-memory broadcaster: one process, no dependencies.

It is the default. Every room's events fan out through one
:class:`~sanic_chat.backends.base.Subscription` per subscriber inside the
process, history is a ring buffer per channel, and channels that have not
been published to for a while are evicted first when ``max_channels`` or
``max_history_bytes`` is reached, so memory stays bounded even if clients
invent many rooms and fill them with the largest messages allowed.

The byte budget is counted in what history really holds, cheaply: the
size of each payload string (``sys.getsizeof``: a 4,000-emoji message is
about 16 KiB, four bytes per character) plus a fixed cost per entry and
per room measured with ``tracemalloc``. Without it the defaults (10,000
rooms of 100 messages) would let clients fill 17-20 GiB.

It does not share anything between processes: with ``sanic --workers N``
every worker has its own rooms. Use the Redis broadcaster for that.
"""

from __future__ import annotations

import bisect
import itertools
import re
import secrets
import sys
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager

from .base import (
    Broadcaster,
    Event,
    HistoryPage,
    Presence,
    PresenceInfo,
    ReadState,
    Receipts,
    Subscribers,
    Subscription,
)
from .memory_idempotency import MemoryIdempotency

_SEQUENCE = re.compile(r"[0-9]{1,18}")

# Bytes an entry costs besides its payload (the (seq, event) tuple, the
# Event, its id string, the deque slot), and a room besides its entries
# (its deque, its OrderedDict entry, its name): measured with tracemalloc
# on CPython 3.11, rounded up.
ENTRY_OVERHEAD = 300
ROOM_OVERHEAD = 900
MARK_OVERHEAD = 200
"""Bytes a read mark is counted for besides its user id."""
MAX_MARKS = 10_000
"""Read marks kept per channel; the least recently moved go first."""


class MemoryBroadcaster(Broadcaster, Receipts):
    """Broadcaster for a single process.

    It keeps read receipts too (:class:`~.base.Receipts`): a mark per
    user per channel, counted in ``max_history_bytes``, at most
    :data:`MAX_MARKS` per channel (the least recently moved forgotten
    first), and forgotten with the channel's history.

    Ids look like ``"3f9a1c-42"``: a random epoch per broadcaster and a
    counter. The epoch means an id from before a restart is never
    mistaken for a current one: recovery then honestly reports
    ``recovered: false``.

    Args:
        history_size: Events kept per channel.
        max_channels: Channels whose history is kept; the least recently
            published one is forgotten first.
        max_history_bytes: Budget of all history in this process, in
            bytes (payloads plus bookkeeping, see the module docstring).
            Over it, the least recently published channels are forgotten
            whole, first; a channel that alone is over it loses its oldest
            events. A forgotten id answers ``found=False`` (clients get
            ``recovered: false``).
        queue_size: Events a subscription may fall behind before it gets
            a :class:`~sanic_chat.backends.base.Gap`.

    Raises:
        ValueError: A limit is negative (``max_channels`` below 1).
    """

    def __init__(
        self,
        *,
        history_size: int = 100,
        max_channels: int = 10_000,
        max_history_bytes: int = 64 * 1024 * 1024,
        queue_size: int = 10_000,
    ) -> None:
        if max_channels < 1 or max_history_bytes < 0:
            raise ValueError(
                "max_channels must be >= 1 and max_history_bytes >= 0"
            )
        self.history_size = history_size
        self.max_channels = max_channels
        self.max_history_bytes = max_history_bytes
        self.queue_size = queue_size
        self._bytes = 0
        # Refs of messages sent (see idempotency_of): this process's.
        self.idempotency_part = MemoryIdempotency()
        self._epoch = secrets.token_hex(3)
        self._counter = itertools.count(1)
        # channel -> ring of (sequence number, event); OrderedDict for LRU.
        self._history: OrderedDict[str, deque[tuple[int, Event]]] = (
            OrderedDict()
        )
        self._subscribers = Subscribers(queue_size)
        self._presence = MemoryPresence()
        # channel -> user id -> (sequence number, id) of the last read.
        self._marks: dict[str, dict[str, tuple[int, str]]] = {}

    @property
    def history_bytes(self) -> int:
        """Bytes of history held now, as counted against the budget.

        Never above ``max_history_bytes`` once a publish has returned.
        """
        return self._bytes

    async def connect(self) -> None:
        """Nothing to connect to."""

    async def disconnect(self) -> None:
        """End every open subscription."""
        self._subscribers.close()

    async def publish(
        self,
        channel: str,
        payload: str,
        *,
        store: bool = True,
        origin: str | None = None,
    ) -> Event:
        """Deliver ``payload`` to the channel's subscribers right away."""
        if store:
            seq = next(self._counter)
            event = Event(channel, payload, f"{self._epoch}-{seq}", origin)
            ring = self._history.get(channel)
            if ring is None:
                ring = self._history[channel] = deque(maxlen=self.history_size)
                self._bytes += ROOM_OVERHEAD
                if len(self._history) > self.max_channels:
                    self._forget(next(iter(self._history)))
            else:
                self._history.move_to_end(channel)
                if len(ring) == ring.maxlen:  # append drops the oldest
                    self._bytes -= _cost(ring[0][1])
            ring.append((seq, event))
            self._bytes += _cost(event)
            self._enforce_budget(channel)
        else:
            event = Event(channel, payload, None, origin)
        self._subscribers.deliver(event)
        return event

    def _forget(self, channel: str) -> None:
        marks = self._marks.pop(channel, {})
        self._bytes -= sum(_mark_cost(user) for user in marks)
        ring = self._history.pop(channel)
        self._bytes -= ROOM_OVERHEAD + sum(_cost(e) for _, e in ring)

    def _enforce_budget(self, channel: str) -> None:
        """Forget the least recently published rooms until under budget.

        ``channel`` (just published to, so the most recent) goes last,
        oldest events first; it is forgotten whole once empty.
        """
        while self._bytes > self.max_history_bytes:
            oldest = next(iter(self._history))
            if oldest != channel:
                self._forget(oldest)
                continue
            ring = self._history[channel]
            self._bytes -= _cost(ring.popleft()[1])
            if not ring:  # an event larger than the budget: none kept
                self._forget(channel)

    def subscribe(
        self, channel: str
    ) -> AbstractAsyncContextManager[Subscription]:
        """Follow ``channel`` until the block exits."""
        return self._subscribers.subscribe(channel)

    async def history(
        self,
        channel: str,
        *,
        limit: int,
        after: str | None = None,
        before: str | None = None,
    ) -> HistoryPage:
        """Return stored events from the channel's ring."""
        ring = self._history.get(channel)
        entries = list(ring) if ring is not None else []
        if after is None and before is None:
            return HistoryPage([e for _, e in entries[-limit:]])
        start, end = 0, len(entries)
        if after is not None:
            index = self._index(entries, after)
            if index is None:
                return HistoryPage([], found=False)
            start = index + 1
        if before is not None:
            index = self._index(entries, before)
            if index is None:
                return HistoryPage([], found=False)
            end = index
        if after is None:
            # Paging backwards: the newest ``limit`` before ``before``.
            start = max(end - limit, 0)
        else:
            end = min(end, start + limit)
        return HistoryPage([e for _, e in entries[start:end]])

    def _index(
        self, entries: list[tuple[int, Event]], event_id: str
    ) -> int | None:
        """Position of ``event_id`` in ``entries``, ``None`` if absent."""
        seq = self._sequence(event_id)
        if seq is None:
            return None
        index = bisect.bisect_left(entries, seq, key=lambda entry: entry[0])
        if index == len(entries) or entries[index][0] != seq:
            # Never a stored id of this channel, or pushed out of the ring.
            return None
        return index

    def _sequence(self, event_id: str) -> int | None:
        epoch, _, seq = event_id.partition("-")
        # Not str.isdigit: it accepts "²", which int() refuses, and
        # other scripts' digits, which would give one event several ids.
        if epoch != self._epoch or not _SEQUENCE.fullmatch(seq):
            return None
        return int(seq)

    async def mark_read(
        self, channel: str, user_id: str, message_id: str
    ) -> bool | None:
        """Move ``user_id``'s mark in ``channel`` forward to ``message_id``."""
        ring = self._history.get(channel)
        index = None if ring is None else self._index(list(ring), message_id)
        if ring is None or index is None:
            return None
        seq, event = ring[index]
        marks = self._marks.setdefault(channel, {})
        current = marks.pop(user_id, None)
        if current is not None and current[0] >= seq:
            marks[user_id] = current
            return False
        # Every user who ever read (a guest per connection) leaves a
        # mark: they count against the budget, and a channel keeps the
        # most recently moved MAX_MARKS, so reads cannot grow memory.
        if current is None:
            self._bytes += _mark_cost(user_id)
            if len(marks) >= MAX_MARKS:
                oldest = next(iter(marks))
                del marks[oldest]
                self._bytes -= _mark_cost(oldest)
        marks[user_id] = (seq, event.id or message_id)
        self._enforce_budget(channel)
        return True

    async def receipts(
        self, channel: str, user_ids: Sequence[str]
    ) -> dict[str, str]:
        """Return the marks of ``user_ids`` in ``channel``."""
        marks = self._marks.get(channel, {})
        return {u: marks[u][1] for u in user_ids if u in marks}

    async def read_state(
        self, channel: str, user_id: str, *, limit: int
    ) -> ReadState:
        """Return ``user_id``'s mark and the stored events after it."""
        ring = self._history.get(channel) or ()
        mark = self._marks.get(channel, {}).get(user_id)
        if mark is None:
            return ReadState(None, min(len(ring), limit))
        unread = sum(1 for seq, _ in ring if seq > mark[0])
        return ReadState(mark[1], min(unread, limit))

    async def presence_add(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one more connection of ``user`` in ``channel``."""
        await self._presence.presence_add(channel, user)

    async def presence_remove(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one connection of ``user`` less in ``channel``."""
        await self._presence.presence_remove(channel, user)

    async def presence(self, channel: str, *, limit: int) -> PresenceInfo:
        """Return the distinct users in ``channel``."""
        return await self._presence.presence(channel, limit=limit)


class MemoryPresence(Presence):
    """Presence for a single process: connection counts in a dict.

    The presence part of :class:`MemoryBroadcaster`, usable alone (with
    :class:`~sanic_chat.backends.combined.CombinedBroadcaster`) beside a
    broker of your own when the app runs one process.
    """

    def __init__(self) -> None:
        # channel -> user id -> (connection count, public user)
        self._channels: dict[
            str, dict[str, tuple[int, Mapping[str, str]]]
        ] = {}

    async def presence_add(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one more connection of ``user`` in ``channel``."""
        users = self._channels.setdefault(channel, {})
        count, _ = users.get(user["id"], (0, user))
        users[user["id"]] = (count + 1, user)

    async def presence_remove(
        self, channel: str, user: Mapping[str, str]
    ) -> None:
        """Count one connection of ``user`` less in ``channel``."""
        users = self._channels.get(channel)
        if users is None or user["id"] not in users:
            return
        count, stored = users[user["id"]]
        if count > 1:
            users[user["id"]] = (count - 1, stored)
        else:
            del users[user["id"]]
            if not users:
                del self._channels[channel]

    async def presence(self, channel: str, *, limit: int) -> PresenceInfo:
        """Return the distinct users in ``channel``."""
        users = self._channels.get(channel, {})
        listed = [user for _, user in itertools.islice(users.values(), limit)]
        return PresenceInfo(listed, len(users))


def _mark_cost(user_id: str) -> int:
    """Bytes one read mark is counted for."""
    return sys.getsizeof(user_id) + MARK_OVERHEAD


def _cost(event: Event) -> int:
    """Bytes one stored event is counted for."""
    return sys.getsizeof(event.payload) + ENTRY_OVERHEAD
