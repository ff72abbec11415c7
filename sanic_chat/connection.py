"""One client socket: its identity, its rooms and its bounded outboxes.

Fan-out never awaits a socket. The hub calls :meth:`Connection.send`
with a prebuilt frame: while the socket keeps up, the frame is written
to its transport at once (no task, no copy); while the transport is
above its high-water mark, frames wait in bounded queues that a flush
task, alive only during the backlog, drains. A connection has two
queues:

* **replies** to the client's own requests (``welcome``, ``joined``, the
  replay of a recovery, ``ack``, ``history``, ``error``, ...). They are
  never dropped and do not count against the slow-consumer limit; they
  stay bounded because the reader stops taking requests while replies are
  backed up (:meth:`Connection.wait_writable`), and they go out first.
* **broadcast** frames of rooms (messages, presence notices). When this
  queue is full the slow-consumer policy decides, so one slow client can
  never hold up the others and its memory stays bounded:

  - ``close``: the queue is discarded and the socket closed with 1013.
  - ``drop_oldest``: the oldest frames are dropped and, before the next
    frame of that room it does get, the client receives
    ``{"type":"lagged","room":R,"skipped":N}`` so it can re-sync.

Both are bounded in frames (``send_queue_size``) and, together with the
socket's own write buffer, in bytes (``max_unsent_bytes``): a reply that
would go over the byte bound closes the connection with 1013 at once
(the reader pauses at half of it, so a client that reads never gets
there), and broadcast frames over it follow the slow-consumer policy.
Every queued byte is also counted in the worker's
:class:`~sanic_chat.budget.UnsentBytes`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable

from .budget import UnsentBytes
from .config import SlowConsumerPolicy
from .errors import CloseCode
from .identity import User
from .metrics import Metrics
from .protocol import lagged
from .transport import Socket
from .wire import text_frame

logger = logging.getLogger(__name__)


class Connection:
    """A connected client, as the hub sees it.

    Args:
        socket: The WebSocket frames are written to.
        user: The authenticated identity of the client.
        queue_size: Broadcast frames buffered before ``policy`` applies;
            also the reply backlog at which the reader pauses.
        policy: What to do when the broadcast queue is full.
        max_unsent_bytes: Bytes queued or in the socket's write buffer
            beyond which ``policy`` applies to broadcast frames and a
            reply closes the connection with 1013.
        budget: The worker's account of unsent bytes, shared by every
            connection of the chat.
        ping_interval: Seconds between keepalive pings (None: never).
        ping_timeout: Seconds to wait for the pong before closing 1011.
    """

    __slots__ = (
        "_budget",
        "_can_write",
        "_close",
        "_drained",
        "_flusher",
        "_max_unsent",
        "_metrics",
        "_policy",
        "_queue",
        "_queue_size",
        "_queued_bytes",
        "_replies",
        "_skipped",
        "_write",
        "key",
        "on_stall",
        "ping_interval",
        "ping_timeout",
        "replied",
        "rooms",
        "sending_since",
        "socket",
        "user",
    )

    def __init__(
        self,
        socket: Socket,
        user: User,
        *,
        queue_size: int,
        policy: SlowConsumerPolicy,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        metrics: Metrics | None = None,
        max_unsent_bytes: int = 1 << 20,
        budget: UnsentBytes | None = None,
    ) -> None:
        # Unique across processes: it travels through the broadcaster as
        # the origin of this connection's presence notices.
        self.key = secrets.token_hex(8)
        self.user = user
        self.rooms: set[str] = set()
        self.sending_since: float | None = None
        self.socket = socket
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._queue: deque[tuple[str, bytes]] = deque()
        self._replies: deque[bytes] = deque()
        self._queue_size = queue_size
        self._max_unsent = max_unsent_bytes
        self._queued_bytes = 0  # in _replies and _queue
        self._budget = budget or UnsentBytes(1 << 62)
        # Bytes of replies produced so far: the reader charges them to the
        # client's rate limit (a small request can cost a large reply).
        self.replied = 0
        # Called once when a wait for this client to read begins (the
        # endpoint gives back its admission slot: a stalled client must
        # not hold one).
        self.on_stall: Callable[[], None] | None = None
        self._policy = policy
        self._skipped: dict[str, int] = {}
        self._drained: asyncio.Event | None = None
        self._close: tuple[int, str] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._metrics = metrics or Metrics()
        # The hot path: set while frames may go straight to the transport
        # (open, no backlog, no pending ``lagged``); None otherwise.
        self._write: Callable[[bytes], object] | None = socket.write_direct
        self._can_write = socket.can_write
        socket.on_lost = self._lost

    def __repr__(self) -> str:
        return f"<Connection {self.key} user={self.user.id!r}>"

    @property
    def close_code(self) -> int | None:
        """The close code the server chose, if it started the close."""
        return self._close[0] if self._close is not None else None

    @property
    def closing(self) -> bool:
        """Whether a close has been requested (or the socket is gone)."""
        return self._close is not None

    def reply(self, frame: str | bytes) -> None:
        """Send an answer to the client's own request; never dropped.

        ``frame`` is JSON text, or a wire frame from :mod:`sanic_chat.wire`.
        """
        if self._close is not None:
            return
        data = frame if isinstance(frame, bytes) else text_frame(frame)
        size = len(data)
        self.replied += size
        write = self._write
        if write is not None and self._can_write.is_set():
            write(data)
            return
        if self.unsent + size > self._max_unsent:
            logger.info("closing %s: over its unsent bytes bound", self)
            self._metrics.slow_consumer_disconnects += 1
            self.close(CloseCode.TRY_AGAIN_LATER, "too much unsent data")
            return
        self._replies.append(data)
        self._count(size)
        self._backlog()

    def send(self, frame: bytes, room: str) -> None:
        """Send a broadcast wire frame of ``room`` without waiting.

        The same ``bytes`` object goes to every member (built once by the
        hub). Queued while the socket is backed up; the slow-consumer
        policy applies when that queue is full.
        """
        write = self._write
        if write is not None and self._can_write.is_set():
            write(frame)
            return
        if self._close is not None:
            return
        queue = self._queue
        size = len(frame)
        if self._full(size):
            if self._policy == "close":
                self.overflow(room)
                return
            while queue and self._full(size):
                dropped_room, dropped = queue.popleft()
                self._count(-len(dropped))
                self.overflow(dropped_room)
            if self._full(size):  # the socket's own buffer is that full
                self.overflow(room)
                return
        queue.append((room, frame))
        self._count(size)
        self._backlog()

    @property
    def unsent(self) -> int:
        """Bytes queued here or waiting in the socket's write buffer."""
        return self._queued_bytes + self.socket.buffered()

    def _full(self, size: int) -> bool:
        """Whether a broadcast frame of ``size`` bytes finds no room."""
        return (
            len(self._queue) >= self._queue_size
            or self.unsent + size > self._max_unsent
        )

    def _count(self, size: int) -> None:
        """Account for ``size`` bytes queued (negative: written or gone)."""
        self._queued_bytes += size
        self._budget.queued += size

    def offer(self, frame: bytes, room: str) -> None:
        """Send a best-effort frame (a presence notice), or drop it.

        It is dropped when the broadcast queue is already half full, so
        that join/leave notices alone never trip the slow-consumer policy.
        Clients learn the truth from a ``presence`` request.
        """
        if (
            len(self._queue) < self._queue_size // 2
            and self._queued_bytes < self._max_unsent // 2
        ):
            self.send(frame, room)
        else:
            self._metrics.messages_dropped += 1

    def overflow(self, room: str) -> None:
        """Account for one frame of ``room`` this client will not get.

        With policy ``close`` the connection is closed with 1013; with
        ``drop_oldest`` the loss is reported in a ``lagged`` frame.
        """
        if self._policy == "close":
            if self._close is None:
                logger.info("closing slow consumer %s", self)
                self._metrics.slow_consumer_disconnects += 1
            self.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")
        else:
            self._metrics.messages_dropped += 1
            self._skipped[room] = self._skipped.get(room, 0) + 1
            self._write = None  # the next frame of the room: lagged first

    def forget(self, room: str) -> None:
        """Drop queued broadcast frames of ``room`` (before a re-sync)."""
        self._skipped.pop(room, None)
        queue = self._queue
        if any(r == room for r, _ in queue):
            # In place: the flush task holds a reference to this deque.
            kept = [entry for entry in queue if entry[0] != room]
            dropped = sum(len(f) for r, f in queue if r == room)
            self._count(-dropped)
            queue.clear()
            queue.extend(kept)

    def backed_up(self) -> bool:
        """Whether replies pile up: the client is not reading them.

        True from ``queue_size`` queued replies, or from half of
        ``max_unsent_bytes`` unsent, so that a client that keeps asking
        without reading is paused long before its byte bound.
        """
        return (
            len(self._replies) >= self._queue_size
            or self.unsent >= self._max_unsent // 2
        )

    async def wait_writable(self) -> None:
        """Wait while replies are backed up: the client is not reading."""
        while self._close is None and self.backed_up():
            on_stall, self.on_stall = self.on_stall, None
            if on_stall is not None:
                on_stall()
            if self._flusher is None:
                # Nothing queued: only the socket's buffer is that full.
                # Timed like a stuck write, for the watchdog to see.
                if self._can_write.is_set():
                    return
                if self.sending_since is None:
                    self.sending_since = time.monotonic()
                try:
                    await self._writable_or_closed()
                finally:
                    if self._flusher is None:
                        self.sending_since = None
                continue
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            await self._drained.wait()

    async def _writable_or_closed(self) -> None:
        """Wait until the socket drains or the connection is closed."""
        if self._drained is None:
            self._drained = asyncio.Event()
        self._drained.clear()  # close() sets it
        waits = (
            asyncio.ensure_future(self.socket.wait_writable()),
            asyncio.ensure_future(self._drained.wait()),
        )
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def keepalive(self, now: float) -> None:
        """Ping the client when due; close 1011 if the last ping is unanswered.

        Called periodically by the hub for every connection: one sweep
        per process instead of a keepalive task per socket.
        """
        if self.ping_interval is None or self._close is not None:
            return
        if self.socket.reading_paused:
            # We are not reading: a pong may be waiting unread behind the
            # client's requests. The send timeout covers a stuck client.
            return
        sent = self.socket.ping_sent_at
        if sent is None:
            if now - self.socket.last_ping >= self.ping_interval:
                self.socket.ping()
        elif self.ping_timeout is not None and now - sent > self.ping_timeout:
            logger.info("closing %s: keepalive ping unanswered", self)
            self.close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close the socket with ``code``.

        With ``flush`` the frames already queued are sent first (graceful
        shutdown); otherwise they are discarded (a slow consumer) and the
        close frame follows what the transport already holds. A client
        that does not complete the closing handshake within
        ``WEBSOCKET_TIMEOUT`` seconds is disconnected.
        """
        if self._close is not None:
            return
        self._close = (code, reason)
        if self._drained is not None:
            self._drained.set()
        if flush and self._flusher is not None:
            return  # the flush task closes once the queues are empty
        self._discard()
        self.socket.start_closing(code, reason)

    def _lost(self) -> None:
        """The socket is gone: nothing more can be sent."""
        if self._close is None:
            self._close = (CloseCode.ABNORMAL_CLOSURE, "connection lost")
        self._discard()
        if self._drained is not None:
            self._drained.set()

    def _discard(self) -> None:
        self._write = None
        self._queue.clear()
        self._replies.clear()
        self._count(-self._queued_bytes)
        self._skipped.clear()
        flusher, self._flusher = self._flusher, None
        if flusher is not None and flusher is not asyncio.current_task():
            flusher.cancel()
        self.sending_since = None

    def _backlog(self) -> None:
        self._write = None
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush()
            )

    async def _flush(self) -> None:
        """Drain the queues as the transport accepts more; then end.

        Frames queued meanwhile are written together (replies first), in
        one ``write`` of at most about 64 KiB. ``sending_since`` tells the
        hub's watchdog how long the socket has refused more data.
        """
        socket = self.socket
        replies = self._replies
        queue = self._queue
        try:
            while replies or queue:
                if not socket.writable():
                    if not socket.open:
                        return
                    if self.sending_since is None:
                        self.sending_since = time.monotonic()
                    await socket.wait_writable()
                    continue
                self.sending_since = None
                batch: list[bytes] = []
                size = 0
                while replies and size < _BATCH_BYTES:
                    frame = replies.popleft()
                    batch.append(frame)
                    size += len(frame)
                while queue and size < _BATCH_BYTES:
                    room, frame = queue.popleft()
                    skipped = self._skipped.pop(room, 0)
                    if skipped:
                        self._metrics.lagged += 1
                        batch.append(text_frame(lagged(room, skipped)))
                    batch.append(frame)
                    size += len(frame)
                self._count(-size)
                socket.write(batch[0] if len(batch) == 1 else b"".join(batch))
                drained = self._drained
                if drained is not None and not self.backed_up():
                    drained.set()
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None
                self.sending_since = None
                if self._close is not None:
                    socket.start_closing(*self._close)
                elif not self._skipped and socket.open:
                    self._write = socket.write_direct
                if self._drained is not None:
                    self._drained.set()


_BATCH_BYTES = 65536
