"""One room's broadcaster subscription, in one task, retried with backoff.

For every room with local members the process holds exactly one
subscription, whatever the number of members; its events go to
:meth:`Room.fanout`. A subscription that fails is logged once and retried
with :class:`~sanic_chat.backoff.Backoff`; when it is back, members are
told to re-sync, because events may have been missed meanwhile (they are
in history).
"""

from __future__ import annotations

import asyncio
import logging

from ..backends.base import Broadcaster, Gap
from ..backoff import Backoff
from ..errors import BroadcasterUnavailable
from .room import Room

__all__ = ["JOIN_PATIENCE", "RoomSubscription"]

logger = logging.getLogger(__name__)

# A joiner outlives failed attempts to subscribe its room for this many
# seconds; the first attempt that fails after that refuses it. Judged when
# an attempt fails, not by a timer: a slow (busy) loop refuses nobody.
JOIN_PATIENCE = 3.0


class RoomSubscription:
    """Feeds one :class:`Room` from the broadcaster until cancelled.

    Created (with its task) by the first joiner of the room on this
    process, cancelled when the last member leaves. Needs a running loop.

    Args:
        room: The room whose events it delivers.
        broadcaster: Where the events come from.
    """

    __slots__ = ("_broadcaster", "_room", "ready", "task")

    def __init__(self, room: Room, broadcaster: Broadcaster) -> None:
        self._room = room
        self._broadcaster = broadcaster
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        """Done once the subscription works; failed (and replaced by a
        fresh future) by each attempt that fails before that."""
        self.task: asyncio.Task[None] = loop.create_task(
            self._follow(), name=f"sanic-chat room {room.name}"
        )

    def cancel(self) -> None:
        """Stop following the room (its last member left)."""
        self.task.cancel()
        if not self.ready.done():
            self.ready.cancel()

    async def subscribed(self) -> None:
        """Wait until the subscription works.

        Failed attempts are waited out for ``JOIN_PATIENCE`` seconds.

        Raises:
            BroadcasterUnavailable: An attempt failed after the caller had
                waited that long.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            ready = self.ready
            try:
                await asyncio.shield(ready)
                return
            except BroadcasterUnavailable:
                if ready is self.ready or (
                    loop.time() - started >= JOIN_PATIENCE
                ):
                    raise
                # The room's task is trying again: wait for that attempt.

    async def _follow(self) -> None:
        """Deliver the room's events to its members until cancelled.

        The first subscription is retried the same way as a lost one:
        each failed attempt fails :attr:`ready` and puts a fresh future in
        its place, which joiners that have waited less than
        ``JOIN_PATIENCE`` wait on; a room never stays broken while
        connections wait for it.
        """
        room = self._room
        backoff = Backoff()
        while True:
            try:
                async with self._broadcaster.subscribe(room.name) as events:
                    if self.ready.done():
                        logger.info(
                            "room %s: subscription restored", room.name
                        )
                        room.resync()
                    else:
                        self.ready.set_result(None)
                    backoff.reset()
                    async for item in events:
                        if isinstance(item, Gap):
                            logger.warning(
                                "room %s: fell %d events behind, asking "
                                "members to re-sync",
                                room.name,
                                item.skipped,
                            )
                            room.resync()
                        else:
                            room.fanout(item)
                # The room still has members (else this task would have
                # been cancelled): an ended subscription is a failure.
                raise BroadcasterUnavailable("subscription ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ready = self.ready
                if not ready.done():
                    ready.set_exception(
                        BroadcasterUnavailable(f"cannot subscribe: {exc}")
                    )
                    ready.exception()  # retrieved, even if nobody waited
                    self.ready = asyncio.get_running_loop().create_future()
                if not backoff.failing:
                    logger.warning(
                        "room %s: subscription failed (%s); retrying",
                        room.name,
                        exc,
                    )
                await backoff.pause()
