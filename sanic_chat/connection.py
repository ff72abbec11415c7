"""One client socket: its identity, its rooms and its bounded outboxes.

Fan-out never awaits a socket. The hub calls :meth:`Connection.send`,
which only appends the already-encoded frame to a bounded queue; a single
writer task per connection drains it. A connection has two queues:

* **replies** to the client's own requests (``welcome``, ``joined``, the
  replay of a recovery, ``ack``, ``history``, ``error``, ...). They are
  never dropped and do not count against the slow-consumer limit; they
  are bounded because the reader stops taking requests while replies are
  backed up (:meth:`Connection.wait_writable`), and they go out first.
* **broadcast** frames of rooms (messages, presence notices). When this
  queue is full the slow-consumer policy decides, so one slow client can
  never hold up the others and its memory stays bounded:

  - ``close``: the queue is discarded and the socket closed with 1013.
  - ``drop_oldest``: the oldest frames are dropped and, before the next
    frame of that room it does get, the client receives
    ``{"type":"lagged","room":R,"skipped":N}`` so it can re-sync.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from sanic.exceptions import WebsocketClosed
from websockets.protocol import State

from .config import SlowConsumerPolicy
from .errors import CloseCode
from .identity import User
from .protocol import encode
from .wire import frame_text, text_frame

logger = logging.getLogger(__name__)


class WebSocket(Protocol):
    """The part of Sanic's ``Websocket`` that the writer uses."""

    async def send(self, data: str) -> None:
        """Send one text frame."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake."""

    def end_connection(self, code: int = 1000, reason: str = "") -> object:
        """Queue a close frame and tear down without awaiting the client."""


class Connection:
    """A connected client, as the hub sees it.

    Args:
        ws: The socket frames are written to.
        user: The authenticated identity of the client.
        queue_size: Broadcast frames buffered before ``policy`` applies;
            also the reply backlog at which the reader pauses.
        policy: What to do when the broadcast queue is full.
    """

    __slots__ = (
        "_close",
        "_drained",
        "_policy",
        "_queue",
        "_queue_size",
        "_replies",
        "_skipped",
        "_wakeup",
        "_writer",
        "_ws",
        "expiry",
        "key",
        "rooms",
        "sending_since",
        "user",
    )

    def __init__(
        self,
        ws: WebSocket,
        user: User,
        *,
        queue_size: int,
        policy: SlowConsumerPolicy,
    ) -> None:
        # Unique across processes: it travels through the broadcaster as
        # the origin of this connection's presence notices.
        self.key = secrets.token_hex(8)
        self.user = user
        self.rooms: set[str] = set()
        self.sending_since: float | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self._ws = ws
        self._queue: deque[tuple[str, bytes]] = deque()
        self._replies: deque[bytes] = deque()
        self._queue_size = queue_size
        self._policy = policy
        self._skipped: dict[str, int] = {}
        self._wakeup = asyncio.Event()
        self._drained: asyncio.Event | None = None
        self._close: tuple[int, str] | None = None
        self._writer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.key} user={self.user.id!r}>"

    @property
    def closing(self) -> bool:
        """Whether a close has been requested."""
        return self._close is not None

    def reply(self, frame: str | bytes) -> None:
        """Queue an answer to the client's own request; never dropped.

        ``frame`` is JSON text, or a wire frame from :mod:`sanic_chat.wire`.
        """
        if self._close is not None:
            return
        self._replies.append(
            frame if isinstance(frame, bytes) else text_frame(frame)
        )
        self._wakeup.set()

    def send(self, frame: bytes, room: str) -> None:
        """Queue a broadcast wire frame of ``room`` without waiting.

        The same ``bytes`` object goes to every member (built once by the
        hub). Applies the slow-consumer policy when the queue is full.
        """
        if self._close is not None:
            return
        queue = self._queue
        if len(queue) >= self._queue_size:
            if self._policy == "close":
                self.overflow(room)
                return
            dropped_room, _ = queue.popleft()
            self.overflow(dropped_room)
        queue.append((room, frame))
        self._wakeup.set()

    def offer(self, frame: bytes, room: str) -> None:
        """Queue a best-effort frame (a presence notice), or drop it.

        It is dropped when the broadcast queue is already half full, so
        that join/leave notices alone never trip the slow-consumer policy.
        Clients learn the truth from a ``presence`` request.
        """
        if len(self._queue) < self._queue_size // 2:
            self.send(frame, room)

    def overflow(self, room: str) -> None:
        """Account for one frame of ``room`` this client will not get.

        With policy ``close`` the connection is closed with 1013; with
        ``drop_oldest`` the loss is reported in a ``lagged`` frame.
        """
        if self._policy == "close":
            logger.info("closing slow consumer %s", self)
            self.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")
        else:
            self._skipped[room] = self._skipped.get(room, 0) + 1

    def forget(self, room: str) -> None:
        """Drop queued broadcast frames of ``room`` (before a re-sync)."""
        self._skipped.pop(room, None)
        queue = self._queue
        if any(r == room for r, _ in queue):
            # In place: the writer holds a reference to this deque.
            kept = [entry for entry in queue if entry[0] != room]
            queue.clear()
            queue.extend(kept)

    async def wait_writable(self) -> None:
        """Wait while replies are backed up: the client is not reading."""
        while len(self._replies) >= self._queue_size and self._close is None:
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            await self._drained.wait()

    def close(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Ask the writer to close the socket with ``code``.

        With ``flush`` the frames already queued are sent first (graceful
        shutdown); otherwise they are discarded and the close frame is
        queued behind what the socket already holds (slow consumer): Sanic
        aborts the TCP connection if the client does not read it within
        ``WEBSOCKET_TIMEOUT``.
        """
        if self._close is not None:
            return
        self._close = (code, reason)
        if not flush:
            # The writer may be stuck on a client that does not read:
            # end the connection now instead of waiting for it.
            self._queue.clear()
            self._replies.clear()
            self._skipped.clear()
            self._ws.end_connection(code, reason)
            if self._writer is not None:
                self._writer.cancel()
        self._wakeup.set()
        if self._drained is not None:
            self._drained.set()

    async def run_writer(self) -> None:
        """Drain the outboxes into the socket until a close is requested.

        Frames queued meanwhile are written together (replies first), in
        one ``write`` of at most about 64 KiB. Ends when the close frame
        is sent, when the socket fails, or at once (cancelled) on a
        slow-consumer close; the endpoint then cancels the reader and the
        connection leaves its rooms.
        """
        self._writer = asyncio.current_task()
        replies = self._replies
        queue = self._queue
        write = self._raw_writer()
        while True:
            if not replies and not queue:
                if self._close is not None:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
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
                    batch.append(
                        text_frame(
                            encode(
                                {
                                    "type": "lagged",
                                    "room": room,
                                    "skipped": skipped,
                                }
                            )
                        )
                    )
                batch.append(frame)
                size += len(frame)
            drained = self._drained
            if drained is not None and len(replies) < self._queue_size // 2:
                drained.set()
            self.sending_since = time.monotonic()
            await write(batch[0] if len(batch) == 1 else b"".join(batch))
            self.sending_since = None
        code, reason = self._close
        await self._ws.close(code, reason)

    def _raw_writer(self) -> Callable[[bytes], Awaitable[None]]:
        """How to put prebuilt frames on this socket.

        Straight to Sanic's transport (with its flow control) when the
        connection negotiated no extension, as Sanic's always do;
        otherwise through ``ws.send``, one frame at a time.
        """
        ws = self._ws
        io_proto = getattr(ws, "io_proto", None)
        ws_proto = getattr(ws, "ws_proto", None)
        if io_proto is not None and ws_proto and not ws_proto.extensions:

            async def write(data: bytes) -> None:
                if ws_proto.state is not State.OPEN:
                    raise WebsocketClosed("socket is closing")
                await io_proto.send(data)

            return write

        async def send_each(data: bytes) -> None:
            while data:
                size = len(_frame_at(data))
                await ws.send(frame_text(data[:size]))
                data = data[size:]

        return send_each


_BATCH_BYTES = 65536


def _frame_at(data: bytes) -> bytes:
    """The first frame in ``data`` (a concatenation of our frames)."""
    size = data[1] & 0x7F
    if size == 126:
        return data[: 4 + int.from_bytes(data[2:4], "big")]
    if size == 127:
        return data[: 10 + int.from_bytes(data[2:10], "big")]
    return data[: 2 + size]
