"""One room's broadcaster subscription: pushed to, retried with backoff.

For every room with local members the process holds exactly one
subscription, whatever the number of members; its events go to
:meth:`Room.fanout`. The first joiner subscribes, in its own coroutine;
when the broker yields a :class:`~sanic_chat.backends.base.Subscription`
(every built-in one does), that subscription pushes events to the room
(:meth:`Subscription.deliver_to`), so a working room costs no task, no
coroutine and no future. A broker yielding some other async iterator is
read by a task, as before.

A subscription that fails is logged once and retried by a task, with
:class:`~sanic_chat.backoff.Backoff`, that exists only until it is back;
then members are told to re-sync, because events may have been missed
meanwhile (they are in history).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..backends.base import Broadcaster, Event, Gap, Subscription
from ..backoff import Backoff
from ..errors import BroadcasterUnavailable
from .room import Room

__all__ = ["JOIN_PATIENCE", "RoomSubscription"]

logger = logging.getLogger(__name__)

# A joiner outlives failed attempts to subscribe its room for this many
# seconds; the first attempt that fails after that refuses it. Judged when
# an attempt fails, not by a timer: a slow (busy) loop refuses nobody.
JOIN_PATIENCE = 3.0

_Events = AsyncIterator[Event | Gap]


class RoomSubscription:
    """Feeds one :class:`Room` from the broadcaster until cancelled.

    Created by the first joiner of the room on this process (it
    subscribes in :meth:`subscribed`), cancelled when the last member
    leaves. Needs a running loop.

    Args:
        room: The room whose events it delivers.
        broadcaster: Where the events come from.
    """

    __slots__ = (
        "_broadcaster",
        "_busy",
        "_closed",
        "_cm",
        "_events",
        "_live",
        "_ready",
        "_room",
        "task",
    )

    def __init__(self, room: Room, broadcaster: Broadcaster) -> None:
        self._room = room
        self._broadcaster = broadcaster
        # Made by joiners that wait for an attempt (a first one in
        # progress, or retries); failed, and dropped, by each attempt that
        # fails before the subscription first works.
        self._ready: asyncio.Future[None] | None = None
        self._live = False  # it has worked once: joiners need not wait
        self._busy = False  # a joiner is subscribing in its coroutine
        self._closed = False  # cancelled: the room is gone
        self._cm: AbstractAsyncContextManager[Any] | None = None
        self._events: Subscription | None = None  # pushing to us
        self.task: asyncio.Task[None] | None = None
        """Retrying (or reading a broker's own iterator), if anything."""

    def cancel(self) -> asyncio.Task[None] | None:
        """Stop following the room (its last member left).

        Returns:
            A task finishing the unsubscribe, when that needs an await
            (the broker's own unsubscribe at its server); keep it.
        """
        self._closed = True
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.cancel()
        pending = self._detach()
        if pending is None:
            return None
        return asyncio.get_running_loop().create_task(
            _quietly(pending, self._room.name),
            name=f"sanic-chat leave room {self._room.name}",
        )

    async def subscribed(self) -> None:
        """Wait until the subscription works; subscribe if nobody does.

        Failed attempts are waited out for ``JOIN_PATIENCE`` seconds.

        Raises:
            BroadcasterUnavailable: An attempt failed after the caller had
                waited that long.
        """
        if self._live:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        if not self._busy and self.task is None:
            self._busy = True
            try:
                events = await self._enter()
            except Exception as exc:
                self._busy = False
                self._retry(None, exc)  # and wait below, like the others
            except BaseException:
                self._busy = False
                if self._ready is not None and not self._closed:
                    self._retry(None, None)  # others wait for an attempt
                raise
            else:
                self._busy = False
                self._went_live()
                if events is not None:
                    self._retry(events, None)
                return
        while not self._live:
            ready = self._ready
            if ready is None:
                ready = self._ready = loop.create_future()
            try:
                # Shielded: a cancelled joiner must not cancel the others'.
                await asyncio.shield(ready)
            except BroadcasterUnavailable:
                if loop.time() - started >= JOIN_PATIENCE:
                    raise
                # Another attempt is on its way: wait for it.

    # -- pushed to by the Subscription (see Subscription.deliver_to) --

    def receive(self, events: Sequence[Event]) -> None:
        """Deliver events to the room (several: one write per member)."""
        self._room.fanout(events)

    def missed(self, gap: Gap) -> None:
        """Have the room's members re-sync: events were lost."""
        logger.warning(
            "room %s: fell %d events behind, asking members to re-sync",
            self._room.name,
            gap.skipped,
        )
        self._room.resync()

    def ended(self, error: BaseException | None) -> None:
        """The subscription was closed under us: retry (the room lives)."""
        if not self._closed and self.task is None:
            if not isinstance(error, Exception):
                error = BroadcasterUnavailable("subscription ended")
            self._retry(None, error)

    # -- internals --

    async def _enter(self) -> _Events | None:
        """Subscribe; ``None`` when pushed to, else the events to read."""
        cm = self._broadcaster.subscribe(self._room.name)
        events = await cm.__aenter__()
        self._cm = cm
        if self._closed:  # cancelled meanwhile (shutdown)
            pending = self._detach()
            if pending is not None:
                await _quietly(pending, self._room.name)
            raise asyncio.CancelledError
        if isinstance(events, Subscription):
            self._events = events
            events.deliver_to(self)
            return None
        result: _Events = events
        return result

    def _detach(self) -> Awaitable[object] | None:
        """Leave the subscription; what is left to await, if anything."""
        events, self._events = self._events, None
        if events is not None:
            events.deliver_to(None)
        cm, self._cm = self._cm, None
        if cm is None:
            return None
        if isinstance(cm, Subscription):
            return cm.leave_nowait()
        return cm.__aexit__(None, None, None)

    def _went_live(self) -> None:
        """The subscription works (again): wake joiners, or re-sync."""
        if self._live:
            logger.info("room %s: subscription restored", self._room.name)
            self._room.resync()
            return
        self._live = True
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)

    def _retry(self, events: _Events | None, error: Exception | None) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._run(events, error), name=f"sanic-chat room {self._room.name}"
        )

    async def _run(
        self, events: _Events | None, error: Exception | None
    ) -> None:
        """Read ``events`` (if given); on failure re-subscribe until back.

        Each failed attempt fails the joiners' ``ready`` future (they wait
        for the next one while their patience lasts); a room never stays
        broken while connections wait for it. Ends once a pushing
        subscription works.
        """
        backoff = Backoff()
        while True:
            if events is not None:
                try:
                    async for item in events:
                        if isinstance(item, Gap):
                            self.missed(item)
                        else:
                            self._room.fanout((item,))
                    error = BroadcasterUnavailable("subscription ended")
                except Exception as exc:
                    error = exc
                events = None
            if error is not None:
                self._failed(error, backoff)
                pending = self._detach()
                if pending is not None:
                    await _quietly(pending, self._room.name)
                await backoff.pause()
            try:
                events = await self._enter()
            except Exception as exc:
                error = exc
                continue
            error = None
            self._went_live()
            backoff.reset()
            if events is None:
                self.task = None
                return

    def _failed(self, error: BaseException, backoff: Backoff) -> None:
        ready, self._ready = self._ready, None
        if ready is not None and not ready.done():
            ready.set_exception(
                BroadcasterUnavailable(f"cannot subscribe: {error}")
            )
            ready.exception()  # retrieved, even if nobody waited
        if not backoff.failing:
            logger.warning(
                "room %s: subscription failed (%s); retrying",
                self._room.name,
                error,
            )


async def _quietly(pending: Awaitable[object], room: str) -> None:
    """Finish leaving a subscription; a failure there changes nothing."""
    try:
        await pending
    except Exception as exc:
        logger.debug("room %s: unsubscribe failed: %s", room, exc)
