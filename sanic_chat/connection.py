"""One client socket: its identity, its rooms and its bounded outbox.

Fan-out never awaits a socket. The hub calls :meth:`Connection.send`,
which only appends the already-encoded frame to a bounded queue; a single
writer task per connection drains it. When the queue is full the
slow-consumer policy decides, so one slow client can never hold up the
others and its memory stays bounded:

* ``close``: the queue is discarded and the socket is closed with 1013.
* ``drop_oldest``: the oldest frames are dropped and, before the next
  frame it does get, the client receives ``{"type":"lagged","room":R,
  "skipped":N}`` so it can re-sync with ``join ... since``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from typing import Protocol

from .config import SlowConsumerPolicy
from .errors import CloseCode
from .identity import User
from .protocol import encode

logger = logging.getLogger(__name__)

_ids = itertools.count(1)


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
        queue_size: Frames buffered before ``policy`` applies.
        policy: What to do when the buffer is full.
    """

    __slots__ = (
        "_close",
        "_flush",
        "_policy",
        "_queue",
        "_queue_size",
        "_skipped",
        "_wakeup",
        "_writer",
        "_ws",
        "key",
        "rooms",
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
        self.key = f"c{next(_ids)}"
        self.user = user
        self.rooms: set[str] = set()
        self._ws = ws
        self._queue: deque[tuple[str | None, str]] = deque()
        self._queue_size = queue_size
        self._policy = policy
        self._skipped: dict[str, int] = {}
        self._wakeup = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._flush = False
        self._writer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.key} user={self.user.id!r}>"

    @property
    def closing(self) -> bool:
        """Whether a close has been requested."""
        return self._close is not None

    def send(self, frame: str, room: str | None = None) -> None:
        """Queue ``frame`` for the client without waiting.

        ``room`` names the room a broadcast frame belongs to, so that a
        ``lagged`` notice can say which room lost frames.
        """
        if self._close is not None:
            return
        queue = self._queue
        if len(queue) >= self._queue_size:
            if self._policy == "close":
                logger.info(
                    "closing slow consumer %s: %d frames queued",
                    self,
                    len(queue),
                )
                self.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")
                return
            dropped_room, _ = queue.popleft()
            if dropped_room is not None:
                self._skipped[dropped_room] = (
                    self._skipped.get(dropped_room, 0) + 1
                )
        queue.append((room, frame))
        if len(queue) == 1:
            self._wakeup.set()

    def offer(self, frame: str, room: str | None = None) -> None:
        """Queue a best-effort frame (a presence notice), or drop it.

        It is dropped when the outbox is already half full, so that
        join/leave notices alone never trip the slow-consumer policy.
        Clients learn the truth from a ``presence`` request.
        """
        if len(self._queue) < self._queue_size // 2:
            self.send(frame, room)

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
        self._flush = flush
        if not flush:
            # The writer may be stuck on a client that does not read:
            # end the connection now instead of waiting for it.
            self._queue.clear()
            self._skipped.clear()
            self._ws.end_connection(code, reason)
            if self._writer is not None:
                self._writer.cancel()
        self._wakeup.set()

    async def run_writer(self) -> None:
        """Drain the outbox into the socket until a close is requested.

        Ends when the close frame is sent, when the socket fails, or at
        once (cancelled) on a slow-consumer close; the endpoint then
        cancels the reader and the connection leaves its rooms.
        """
        self._writer = asyncio.current_task()
        queue = self._queue
        ws = self._ws
        while True:
            if not queue:
                if self._close is not None:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._skipped:
                lagged, self._skipped = self._skipped, {}
                for room, skipped in lagged.items():
                    await ws.send(
                        encode(
                            {
                                "type": "lagged",
                                "room": room,
                                "skipped": skipped,
                            }
                        )
                    )
            _, frame = queue.popleft()
            await ws.send(frame)
        code, reason = self._close
        await ws.close(code, reason)
