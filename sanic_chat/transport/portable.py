"""The portable transport: the chat on a public WebSocket API.

A :class:`PortableSocket` sits on a :class:`Channel`: an object that can
send a text message, receive the next message and close, with awaits.
:mod:`sanic_chat._sanic` builds one from Sanic's own websocket object
(Sanic's server) or from the ASGI server's ``websocket.*`` messages
(:mod:`sanic_chat.transport.asgi`). No Sanic internal is needed.

The chat writes synchronously (:meth:`PortableSocket.write`, the fan-out
never awaits a socket), a channel only with an await; in between, a send
queue bounded in bytes and in frames, and one writer task per
connection. While the queue is above its high-water mark,
:attr:`PortableSocket.can_write` is clear and the connection's own
bounded queues and slow-consumer policy take over, exactly as with a
TCP transport above its high-water mark on the fast path. A reader task
moves messages into a small inbox and stops reading while it is full,
so a flooding client is paused by the server underneath.

Trade-offs against the fast path: two tasks per connection, each message
framed per recipient by the server underneath (the prebuilt frame is
decoded back to text once per fan-out), keepalive pings, frame size
limits and control-frame floods left to the server (Sanic's
``WEBSOCKET_*`` settings, or the ASGI server's own), and under ASGI no
way to drop a TCP connection at once: a client that never reads is cut
off from the chat, but its server holds the socket until its own
timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from typing import Protocol

from ..wire import frame_texts
from .base import Keepalive, SocketBase
from .flag import Flag

logger = logging.getLogger(__name__)

# Bytes and frames queued before ``can_write`` is cleared, and below
# which it is set again (like a TCP transport's water marks).
_HIGH_BYTES = 65536
_LOW_BYTES = 16384
_HIGH_FRAMES = 256
_LOW_FRAMES = 64
# Complete client messages that may wait unread before reading stops.
_INBOX = 16


class Channel(Protocol):
    """A WebSocket as a public API offers it: awaited sends and receives."""

    @property
    def close_received(self) -> int | None:
        """The close code the client sent, once known."""
        ...

    async def send(self, text: str) -> None:
        """Send one text message."""
        ...

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the connection is closed."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Start the closing handshake."""
        ...

    def abort(self) -> None:
        """Drop the connection, if the API can."""
        ...


class PortableSocket(SocketBase):
    """A :class:`~sanic_chat.transport.Socket` on a :class:`Channel`.

    Args:
        channel: The accepted WebSocket.
        close_timeout: Seconds from a close to giving up on the client.
    """

    # Reading stops at 16 unread messages and resumes below: the server
    # underneath bounds each message's size.
    inbox_high = _INBOX
    inbox_low = _INBOX - 1
    inbox_high_bytes = inbox_low_bytes = sys.maxsize

    __slots__ = (
        "_bytes",
        "_channel",
        "_close",
        "_inbox_room",
        "_queue",
        "_reader",
        "_send_waiter",
        "_writer",
    )

    def __init__(self, channel: Channel, *, close_timeout: float) -> None:
        # Keepalive is the server's (Sanic's WEBSOCKET_PING_*, or the ASGI
        # server's own settings): the chat sends no pings of its own.
        super().__init__(
            Flag(True),
            self.write,
            close_timeout=close_timeout,
            keepalive=Keepalive(None, None, time.monotonic()),
        )
        self._channel = channel
        self._queue: deque[tuple[str, int]] = deque()
        self._bytes = 0
        self._inbox_room = Flag(True)
        self._send_waiter: asyncio.Future[None] | None = None
        self._close: tuple[int, str] | None = None
        self._reader = self.loop.create_task(self._read())
        self._writer = self.loop.create_task(self._send_all())

    # ------------------------------------------------------------------
    # Writing

    @property
    def open(self) -> bool:
        """Whether data frames may still be sent."""
        return self._close is None and not self._gone

    @property
    def close_received(self) -> int | None:
        """The close code the client sent, if it sent one."""
        return self._channel.close_received

    def buffered(self) -> int:
        """Bytes queued here and not yet handed to the channel."""
        return self._bytes

    def write(self, data: bytes) -> None:
        """Queue prebuilt frames for the writer; dropped once closing."""
        if self._close is not None or self._gone:
            return
        texts = _texts(data)
        self._queue.extend(texts)
        self._bytes += len(data)
        if self._bytes >= _HIGH_BYTES or len(self._queue) >= _HIGH_FRAMES:
            self.can_write.clear()
        self._wake_writer()

    def _send_ping(self) -> None:
        """Keepalive is the server's: never called."""

    def start_closing(self, code: int = 1000, reason: str = "") -> None:
        """Close after the queued frames; give up after the timeout.

        Messages the client sends from now on are dropped.
        """
        if self._close is not None or self._gone:
            return
        self._close = (code, reason)
        self._end()
        self._wake_writer()
        self._abort_later()
        self._not_open()

    def abort(self) -> None:
        """Stop both tasks and drop the connection if the channel can."""
        self._end()
        if not self._gone:
            self._gone = True
            self._channel.abort()
        for task in (self._reader, self._writer):
            if task is not asyncio.current_task():
                task.cancel()
        self._finished()

    async def wait_closed(self) -> None:
        """Wait until the close frame is out (or given up on); end both tasks.

        The server underneath completes the closing handshake, with its
        own timeout; nothing the client sends now is read.
        """
        try:
            if not self._writer.done():
                await asyncio.wait([self._writer])
        finally:
            self._reader.cancel()
            self._writer.cancel()

    def _wake_writer(self) -> None:
        waiter = self._send_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _send_all(self) -> None:
        """The writer: queued frames, then the close frame if asked."""
        queue = self._queue
        channel = self._channel
        try:
            while True:
                if not queue:
                    if self._close is not None or self._gone:
                        break
                    self._send_waiter = self.loop.create_future()
                    await self._send_waiter
                    self._send_waiter = None
                    continue
                text, size = queue.popleft()
                await channel.send(text)
                self._bytes -= size
                if (
                    self._bytes <= _LOW_BYTES
                    and len(queue) <= _LOW_FRAMES
                    and not self.can_write.is_set()
                ):
                    self.can_write.set()
            if self._close is not None and not self._gone:
                await channel.close(*self._close)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the server's way to say "gone"
            logger.debug("portable socket: send failed: %r", exc)
            self._gone = True
            self._end()
        finally:
            self._finished()

    def _finished(self) -> None:
        """Once the connection is gone, release everything and every waiter.

        The close timer stays until then: a client that does not answer
        the close frame is dropped by it.
        """
        if self._gone:
            self._stop_close_timer()
            self._queue.clear()
            self._bytes = 0
            self.can_write.set()  # nobody may wait for a dead socket
            self._not_open()

    # ------------------------------------------------------------------
    # Reading

    async def _read(self) -> None:
        """The reader: messages into the inbox until the channel ends."""
        try:
            while True:
                await self._inbox_room.wait()
                message = await self._channel.receive()
                if message is None:
                    break
                if self._inbox.ended:
                    continue  # a close has started: no more requests
                self._inbox.put(message)
                self._received()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.debug("portable socket: receive failed: %r", exc)
        finally:
            self._gone = True
            self._end()
            self._wake_writer()
            self._finished()

    def _pause_reading(self) -> None:
        self._inbox_room.clear()

    def _resume_reading(self) -> None:
        self._inbox_room.set()

    def _end(self) -> None:
        super()._end()
        self._resume()  # the reader must not wait for room any more


# The hub writes the same frame object to every member of a room: decode
# it once per fan-out, not once per member.
_last: list[tuple[bytes, list[tuple[str, int]]]] = []


def _texts(data: bytes) -> list[tuple[str, int]]:
    if _last and _last[0][0] is data:
        return _last[0][1]
    texts = frame_texts(data)
    _last[:] = [(data, texts)]
    return texts
