"""The ``on_message`` persistence hook, fed from a bounded queue.

Every message, edit and delete that a worker stores (whatever sent it:
a socket, :meth:`Chat.publish <sanic_chat.Chat.publish>`, the HTTP API)
becomes one :class:`MessageEvent`, handed to the app's ``on_message``
hook on that worker only, so an archive gets each event once however
many workers there are. The hook never runs on the path of a message:
the publisher appends the event to this worker's :class:`Archive` queue
(no await) and goes on; one task per worker awaits the hook for each
event in turn, in the order they were stored.

The queue is bounded in events (:data:`MAX_EVENTS`) and in bytes
(:data:`MAX_BYTES`: the memory of the text and of the meta plus a fixed
cost per event). A meta waits encoded, as the JSON text it was sent as,
and is decoded again for the hook: decoded, 2 KB of JSON can take 50 KB
of Python objects (``[{},{},...]``), which a bound in bytes of JSON would
not see. When it is full the new
event is dropped at once, counted (``archive_dropped``) and logged (one
warning when dropping starts, one line when it stops): a publisher never
waits for the archive. Waiting would move an archive's slowness into the
chat (a sender's next message, its ``ack``) and would not save the
events, since a hook that is thousands of events behind does not catch up
in a moment; the events dropped are still in the room's history, from
which an archive can be completed. A hook that raises is counted
(``archive_failures``) and logged, once when it starts failing (with the
traceback) and once when it works again; the event is not retried (retry
inside the hook if the archive needs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from .metrics import Metrics

__all__ = ["MAX_BYTES", "MAX_EVENTS", "Archive", "MessageEvent", "MessageHook"]

logger = logging.getLogger(__name__)

MAX_EVENTS = 10_000
"""Most events waiting for the ``on_message`` hook on one worker."""
MAX_BYTES = 16 * 1024 * 1024
"""Most bytes (estimated) of events waiting for the hook on one worker."""
EVENT_COST = 512
"""Bytes counted per event besides its text and meta."""
STOP_WAIT = 5.0
"""Seconds a stopping worker waits for its queue to be archived."""


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A stored message, edit or delete, as the ``on_message`` hook gets it.

    Attributes:
        kind: ``"message"``, ``"edited"`` or ``"deleted"``.
        room: The room.
        id: The message's id (for an edit or delete: the message changed).
        user: ``{"id", "name"}`` of who did it: the author of a message,
            the editor or the deleter (the author or a moderator).
        ts: When, in milliseconds since the epoch: the message's ``ts``,
            the edit's ``edited_ts``, the delete's time.
        text: The text published, or the new text; ``None`` for a delete.
        meta: The message's ``meta``, if it had one (``None`` for edits
            and deletes: an edit keeps the message's meta).
        event_id: The id of this event in the room's stream (the same as
            ``id`` for a message).
        to: For a direct message, the recipient's user id; ``room`` is
            then an inbox. A DM is stored once per inbox (the recipient's
            and the sender's, once when they are one user), and each
            stored copy is an event with its own ``room`` and ``id``.
    """

    kind: Literal["message", "edited", "deleted"]
    room: str
    id: str
    user: Mapping[str, str]
    ts: int
    text: str | None = None
    meta: Mapping[str, Any] | None = None
    event_id: str = ""
    to: str | None = None


MessageHook = Callable[[MessageEvent], "Awaitable[object] | object"]
"""``on_message(event)``, sync or async; its result is ignored."""


class Archive:
    """One worker's queue of events for the ``on_message`` hook.

    Args:
        hook: The app's ``on_message``.
        metrics: Counts ``archived``, ``archive_failures`` and
            ``archive_dropped``.
        max_events: Most events queued.
        max_bytes: Most bytes queued (estimated, see the module).
    """

    __slots__ = (
        "_bytes",
        "_dropping",
        "_empty",
        "_failing",
        "_hook",
        "_max_bytes",
        "_max_events",
        "_metrics",
        "_queue",
        "_task",
        "_wake",
    )

    def __init__(
        self,
        hook: MessageHook,
        metrics: Metrics,
        *,
        max_events: int = MAX_EVENTS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self._hook = hook
        self._metrics = metrics
        self._max_events = max_events
        self._max_bytes = max_bytes
        # (event without its meta, the meta as JSON text, bytes counted)
        self._queue: deque[tuple[MessageEvent, str | None, int]] = deque()
        self._bytes = 0
        self._dropping = 0
        self._failing = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()

    @property
    def pending(self) -> int:
        """Events waiting for the hook."""
        return len(self._queue)

    def record(self, event: MessageEvent) -> bool:
        """Queue ``event`` for the hook; never waits.

        Returns:
            False when the queue was full and the event was dropped.
        """
        size = EVENT_COST + sys.getsizeof(event.text or "")
        meta = None
        if event.meta is not None:
            meta = json.dumps(
                event.meta, ensure_ascii=False, separators=(",", ":")
            )
            size += sys.getsizeof(meta)
        if (
            len(self._queue) >= self._max_events
            or self._bytes + size > self._max_bytes
        ):
            self._metrics.archive_dropped += 1
            if not self._dropping:
                logger.warning(
                    "on_message queue full (%d events, %d bytes): dropping "
                    "events until the hook catches up",
                    len(self._queue),
                    self._bytes,
                )
            self._dropping += 1
            return False
        if self._dropping:
            logger.warning(
                "on_message queue has room again; %d events were dropped",
                self._dropping,
            )
            self._dropping = 0
        if meta is not None:
            event = replace(event, meta=None)
        self._queue.append((event, meta, size))
        self._bytes += size
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="sanic-chat on_message"
            )
        self._wake.set()
        return True

    async def stop(self, wait: float = STOP_WAIT) -> None:
        """Give the hook up to ``wait`` seconds for what is queued; stop.

        Events still queued then are counted as dropped and logged.
        """
        task = self._task
        if task is None:
            return
        self._empty.clear()
        if self._queue:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._empty.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._task = None
        if self._queue:
            left = len(self._queue)
            self._metrics.archive_dropped += left
            logger.warning("on_message: %d events not archived at stop", left)
            self._queue.clear()
            self._bytes = 0

    async def _run(self) -> None:
        wake, queue = self._wake, self._queue
        while True:
            if not queue:
                wake.clear()
                await wake.wait()
                continue
            event, meta, size = queue[0]
            if meta is not None:
                event = replace(event, meta=json.loads(meta))
            # Taken off the queue once the hook is done with it: a stop
            # that cancels the hook meanwhile counts it as not archived.
            try:
                result = self._hook(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self._failed(event)
            else:
                self._metrics.archived += 1
                if self._failing:
                    logger.warning(
                        "on_message works again after %d failures",
                        self._failing,
                    )
                    self._failing = 0
            queue.popleft()
            self._bytes -= size
            if not queue:
                self._empty.set()

    def _failed(self, event: MessageEvent) -> None:
        self._metrics.archive_failures += 1
        if not self._failing:
            logger.exception(
                "on_message failed for %s %s in %s (logged once until it "
                "works again; counted in archive_failures)",
                event.kind,
                event.id,
                event.room,
            )
        self._failing += 1
