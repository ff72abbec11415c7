"""A connection's frames waiting for its socket: bounded, replies first.

While a socket keeps up, :class:`~sanic_chat.connection.Connection`
writes every frame straight to it and this queue stays empty. While the
socket is backed up, frames wait here, in two queues:

* **replies** to the client's own requests (``welcome``, ``joined``, the
  replay of a recovery, ``ack``, ``history``, ``error``, ...). They are
  never dropped and do not count against the slow-consumer limit; they
  stay bounded because the reader stops taking requests while replies
  are backed up (:meth:`Outbox.backed_up`), and they go out first.
* **broadcast** frames of rooms (messages, presence notices). When this
  queue is full the slow-consumer policy decides, so one slow client can
  never hold up the others and its memory stays bounded:

  - ``close``: :meth:`Outbox.add` refuses the frame and the connection
    closes with 1013.
  - ``drop_oldest``: the oldest frames are dropped and, before the next
    frame of that room it does get, the client receives
    ``{"type":"lagged","room":R,"skipped":N}`` so it can re-sync.

Both are bounded in frames (``queue_size``) and, together with the
socket's own write buffer, in bytes (``max_unsent_bytes``): a reply over
the byte bound is refused (the connection closes with 1013; the reader
pauses at half of it, so a client that reads never gets there), and
broadcast frames over it follow the slow-consumer policy. Every queued
byte is also counted in the worker's
:class:`~sanic_chat.budget.UnsentBytes`.

Nothing here does I/O: the connection decides when to write what
:meth:`Outbox.take` returns.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from .budget import UnsentBytes
from .config import SlowConsumerPolicy
from .metrics import Metrics
from .protocol import lagged
from .wire import text_frame


class Buffered(Protocol):
    """What counts the bytes written and not yet taken: a socket."""

    def buffered(self) -> int:
        """Bytes written and not yet taken by the client."""


# The most bytes of frames :meth:`Outbox.take` joins into one write.
BATCH_BYTES = 65536


class Outbox:
    """The bounded queues of one connection (see the module docstring).

    Args:
        socket: Whose :meth:`~Buffered.buffered` bytes, written and not
            yet taken by the client, count against ``max_unsent_bytes``
            too (the object is kept, not a bound method of it).
        queue_size: Broadcast frames queued before ``policy`` applies;
            also the reply backlog at which :meth:`backed_up` is true.
        policy: What to do when the broadcast queue is full.
        max_unsent_bytes: Bound on queued plus ``buffered()`` bytes.
        budget: The worker's account of unsent bytes.
        metrics: Where dropped and ``lagged`` frames are counted.

    Attributes:
        policy: The slow-consumer policy.
        queued: Bytes of the frames queued here.
    """

    __slots__ = (
        "_budget",
        "_max_unsent",
        "_metrics",
        "_queue",
        "_queue_size",
        "_replies",
        "_skipped",
        "_socket",
        "policy",
        "queued",
    )

    def __init__(
        self,
        socket: Buffered,
        *,
        queue_size: int,
        policy: SlowConsumerPolicy,
        max_unsent_bytes: int,
        budget: UnsentBytes,
        metrics: Metrics,
    ) -> None:
        self.policy = policy
        self.queued = 0
        self._socket = socket
        # Created when a frame first waits, dropped once the queue is
        # empty: an idle connection (most of them) holds no deque at all.
        self._queue: deque[tuple[str, bytes]] | None = None
        self._replies: deque[bytes] | None = None
        self._queue_size = queue_size
        self._max_unsent = max_unsent_bytes
        self._budget = budget
        self._metrics = metrics
        # Frames dropped per room and not reported in a ``lagged`` yet;
        # None while there are none (an idle connection holds no dict).
        self._skipped: dict[str, int] | None = None

    def __bool__(self) -> bool:
        """Whether any frame waits."""
        return bool(self._replies or self._queue)

    @property
    def unsent(self) -> int:
        """Bytes queued here or waiting in the socket's write buffer."""
        return self.queued + self._socket.buffered()

    @property
    def lagging(self) -> bool:
        """Whether a ``lagged`` report waits for its room's next frame."""
        return bool(self._skipped)

    def add_reply(self, data: bytes) -> bool:
        """Queue a reply; False (nothing queued) over the byte bound."""
        size = len(data)
        if self.unsent + size > self._max_unsent:
            return False
        if self._replies is None:
            self._replies = deque()
        self._replies.append(data)
        self._count(size)
        return True

    def add(self, frame: bytes, room: str) -> bool:
        """Queue a broadcast frame of ``room``, under the policy.

        With ``drop_oldest`` the oldest frames make way for it (each
        recorded by :meth:`skip`).

        Returns:
            False when the frame finds no room: with ``close`` the
            connection must close; with ``drop_oldest`` the socket's
            own buffer is that full, and the frame is the caller's to
            :meth:`skip`.
        """
        size = len(frame)
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if self._full(size):
            if self.policy == "close":
                return False
            while queue and self._full(size):
                dropped_room, dropped = queue.popleft()
                self._count(-len(dropped))
                self.skip(dropped_room)
            if self._full(size):
                return False
        queue.append((room, frame))
        self._count(size)
        return True

    def skip(self, room: str) -> None:
        """Record a frame of ``room`` dropped: ``lagged`` precedes the next."""
        self._metrics.messages_dropped += 1
        skipped = self._skipped
        if skipped is None:
            skipped = self._skipped = {}
        skipped[room] = skipped.get(room, 0) + 1

    def has_slack(self) -> bool:
        """Whether a best-effort frame is worth queueing (under half full)."""
        return (
            len(self._queue or ()) < self._queue_size // 2
            and self.queued < self._max_unsent // 2
        )

    def forget(self, room: str) -> None:
        """Drop the queued broadcast frames of ``room`` and its lag."""
        skipped = self._skipped
        if skipped is not None:
            skipped.pop(room, None)
            if not skipped:
                self._skipped = None
        queue = self._queue
        if queue is not None and any(r == room for r, _ in queue):
            kept = [entry for entry in queue if entry[0] != room]
            self._count(-sum(len(f) for r, f in queue if r == room))
            queue.clear()
            queue.extend(kept)

    def backed_up(self) -> bool:
        """Whether replies pile up: the client is not reading them.

        True from ``queue_size`` queued replies, or from half of
        ``max_unsent_bytes`` unsent, so that a client that keeps asking
        without reading is paused long before its byte bound.
        """
        return (
            len(self._replies or ()) >= self._queue_size
            or self.unsent >= self._max_unsent // 2
        )

    def take(self) -> bytes:
        """Remove and return the next frames, joined for one write.

        Replies first, then broadcast frames, about :data:`BATCH_BYTES`
        in all; a room's pending ``lagged`` goes just before its frame.
        """
        batch: list[bytes] = []
        size = 0
        replies = self._replies
        if replies is not None:
            while replies and size < BATCH_BYTES:
                frame = replies.popleft()
                batch.append(frame)
                size += len(frame)
            if not replies:
                self._replies = None
        queue = self._queue
        if queue is not None:
            lags = self._skipped
            while queue and size < BATCH_BYTES:
                room, frame = queue.popleft()
                if lags:
                    skipped = lags.pop(room, 0)
                    if skipped:
                        self._metrics.lagged += 1
                        batch.append(text_frame(lagged(room, skipped)))
                batch.append(frame)
                size += len(frame)
            if not queue:
                self._queue = None
            if lags is not None and not lags:
                self._skipped = None
        self._count(-size)
        return batch[0] if len(batch) == 1 else b"".join(batch)

    def clear(self) -> None:
        """Discard every frame and pending ``lagged`` (the socket is gone)."""
        self._queue = self._replies = None
        self._count(-self.queued)
        self._skipped = None

    def _full(self, size: int) -> bool:
        """Whether a broadcast frame of ``size`` bytes finds no room."""
        return (
            len(self._queue or ()) >= self._queue_size
            or self.unsent + size > self._max_unsent
        )

    def _count(self, size: int) -> None:
        """Account for ``size`` bytes queued (negative: written or gone)."""
        self.queued += size
        self._budget.queued += size
