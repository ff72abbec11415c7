"""What every transport shares: keepalive, the inbox and the socket's core.

:class:`SocketBase` holds the part of a
:class:`~sanic_chat.transport.Socket` that does not depend on how bytes
reach the client: the attributes the chat sets and reads, back pressure
through ``can_write``, the reader's :class:`Inbox`, the close timer, the
``on_lost`` callback and the one keepalive decision (:class:`Keepalive`).
:class:`~sanic_chat.transport.fast.FastSocket` and
:class:`~sanic_chat.transport.portable.PortableSocket` add their own way
of writing, reading and closing.

:class:`Keepalive` and :class:`Inbox` are plain objects: they take the
time as an argument (or need a running loop only while a reader waits),
so they are tested without sockets.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from types import EllipsisType
from typing import Literal, Protocol

from ..limits import TokenBucket
from ..wakeup import Wakeup
from .flag import Flag

KEEPALIVE_TIMEOUT = "keepalive ping timeout"
"""The close reason of :meth:`SocketBase.keepalive` (with 1011)."""


class LostListener(Protocol):
    """Who a socket tells that it is no longer open (``on_lost``).

    An object rather than a callback: a bound method stored per socket
    would be one more object per connection.
    """

    def socket_lost(self) -> None:
        """The socket is no longer open: a close started, or it was lost."""


class Keepalive:
    """When a socket pings its client, and when it gives up on it.

    The chat sends a ping ``interval`` seconds after the last one (or
    after the handshake) and waits ``timeout`` seconds for any pong.
    There is one sweep per process, not a timer per socket: the hub calls
    :meth:`SocketBase.keepalive` every few seconds with the time.

    Args:
        interval: Seconds between pings; None: the chat never pings (the
            server underneath does keepalive, or nobody does).
        timeout: Seconds to wait for a pong; None: wait for ever.
        now: The time of the handshake (``time.monotonic()``).

    Attributes:
        interval: Seconds between pings, or None.
        timeout: Seconds to wait for a pong, or None.
        sent_at: When the unanswered ping went out; None when answered.
        last: When the last ping (or the handshake) was.
    """

    __slots__ = ("interval", "last", "sent_at", "timeout")

    def __init__(
        self, interval: float | None, timeout: float | None, now: float
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.sent_at: float | None = None
        self.last = now

    def check(self, now: float) -> Literal["ping", "timeout"] | None:
        """What to do at ``now``.

        Returns:
            ``"ping"`` when a ping is due (none is unanswered and the last
            was ``interval`` seconds ago), ``"timeout"`` when the
            unanswered one has waited over ``timeout``, else None.
        """
        interval = self.interval
        if interval is None:
            return None
        sent = self.sent_at
        if sent is None:
            return "ping" if now - self.last >= interval else None
        if self.timeout is not None and now - sent > self.timeout:
            return "timeout"
        return None

    def sent(self, now: float) -> None:
        """Record a ping sent at ``now``."""
        self.sent_at = self.last = now

    def answered(self) -> None:
        """Record a pong: the client is alive."""
        self.sent_at = None

    def restart(self, now: float) -> None:
        """Time the unanswered ping from ``now``.

        Used when reading resumes: its pong may have waited unread behind
        the client's requests, which is our delay, not the client's.
        """
        if self.sent_at is not None:
            self.sent_at = now


class Inbox(Wakeup):
    """Complete client messages waiting for the connection's one reader.

    Unbounded by itself: each transport stops reading from the network
    while it holds too much (see :attr:`bytes` and ``len()``).

    Attributes:
        bytes: Characters or bytes of the messages waiting.
        ended: Whether no more messages come (:meth:`get` returns None
            once the waiting ones are taken).
    """

    __slots__ = ("_messages", "bytes", "ended")

    def __init__(self) -> None:
        # Created with the first message: many sockets never send one
        # after the handshake, and an empty deque costs 768 bytes.
        super().__init__()
        self._messages: deque[str | bytes] | None = None
        self.bytes = 0
        self.ended = False

    def __len__(self) -> int:
        return len(self._messages or ())

    def put(self, message: str | bytes) -> None:
        """Add a message and wake the reader."""
        if self._messages is None:
            self._messages = deque()
        self._messages.append(message)
        self.bytes += len(message)
        self._wake()

    def end(self) -> None:
        """No more messages: wake the reader to take the rest, then None."""
        self.ended = True
        self._wake()

    def take(self) -> str | bytes | EllipsisType | None:
        """The next message; None once ended and empty; ``...`` if none.

        With ``...`` the reader awaits :meth:`arrival`, then takes again.
        """
        messages = self._messages
        if messages:
            message = messages.popleft()
            self.bytes -= len(message)
            return message
        return None if self.ended else ...

    def arrival(self) -> asyncio.Future[None]:
        """A future done at the next :meth:`put` or :meth:`end`.

        A plain future, not a coroutine: an idle connection waits on
        this alone (no coroutine frames per idle socket).
        """
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    async def get(self) -> str | bytes | None:
        """Return the next message, or None once ended and empty."""
        message = self.take()
        while message is ...:
            await self.arrival()
            message = self.take()
        return message


class SocketBase:
    """The half of a :class:`~sanic_chat.transport.Socket` any I/O shares.

    Subclasses provide ``open``, ``close_received``, ``buffered``,
    ``write``, ``start_closing``, ``abort``, ``wait_closed``,
    ``_send_ping``, ``_pause_reading`` and ``_resume_reading``; they put
    messages in ``_inbox`` and call :meth:`_received` after, :meth:`_end`
    when no more messages will be read and :meth:`_not_open` when data
    frames can no longer be sent.

    Reading stops (:meth:`_pause_reading`) from ``inbox_high`` messages
    or ``inbox_high_bytes`` waiting, and resumes once the reader has
    brought them down to ``inbox_low`` and ``inbox_low_bytes``: a client
    that floods is held back by TCP, not by our memory.

    Args:
        can_write: Set while a write goes out at once.
        write_direct: The cheapest write while open and ``can_write``.
        close_timeout: Seconds from a close to giving up on the client.
        keepalive: The socket's keepalive state and settings.

    Attributes:
        loop: The connection's event loop.
        can_write: Set while a write goes out at once.
        write_direct: The cheapest write while open and ``can_write``.
        on_lost: Told once (:meth:`LostListener.socket_lost`), as soon as
            the socket is no longer open.
        limiter: The connection's rate limit (set by the endpoint).
        max_strikes: ``rate_limited`` strikes before a 1008 close.
    """

    inbox_high: int = 16
    inbox_low: int = 4
    inbox_high_bytes: int = 1 << 20
    inbox_low_bytes: int = 1 << 18

    __slots__ = (
        "_close_timeout",
        "_close_timer",
        "_gone",
        "_inbox",
        "_keepalive",
        "_paused",
        "can_write",
        "limiter",
        "loop",
        "max_strikes",
        "on_lost",
        "write_direct",
    )

    def __init__(
        self,
        can_write: Flag | asyncio.Event,
        write_direct: Callable[[bytes], object],
        *,
        close_timeout: float,
        keepalive: Keepalive,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.can_write = can_write
        self.write_direct = write_direct
        self.on_lost: LostListener | None = None
        self.limiter: TokenBucket | None = None
        self.max_strikes = 20
        self._close_timeout = close_timeout
        self._close_timer: asyncio.TimerHandle | None = None
        self._gone = False  # the connection underneath is over
        self._inbox = Inbox()
        self._paused = False
        self._keepalive = keepalive

    @property
    def open(self) -> bool:
        """Whether data frames may still be sent."""
        raise NotImplementedError

    @property
    def reading_paused(self) -> bool:
        """Whether reading is paused because unread messages piled up."""
        return self._paused

    def writable(self) -> bool:
        """Whether the socket is open and a write goes out at once."""
        return self.open and self.can_write.is_set()

    async def wait_writable(self) -> None:
        """Wait until the socket drains below its low-water mark."""
        await self.can_write.wait()

    def keepalive(self, now: float) -> str | None:
        """Ping the client when due; say why to close if it does not answer.

        Returns:
            :data:`KEEPALIVE_TIMEOUT` when the last ping has waited too
            long for its pong (the caller closes with 1011), else None.
            Nothing is decided while reading is paused: a pong may wait
            unread behind the client's requests (the send timeout covers
            a client that is stuck).
        """
        keepalive = self._keepalive
        if keepalive.interval is None or self._paused:
            return None
        action = keepalive.check(now)
        if action is None:
            return None
        if action == "timeout":
            return KEEPALIVE_TIMEOUT
        if self.open:
            self._send_ping()
            keepalive.sent(now)
        return None

    def uncork(self) -> None:
        """Write what set-up held back (only the fast transport holds)."""

    def _send_ping(self) -> None:
        """Send a ping frame (only transports that ping have one)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake."""
        raise NotImplementedError

    async def recv(self) -> str | bytes | None:
        """Return the next message, or None once reading is over.

        Reading ends when the connection closes or a close starts; the
        messages that arrived before that are still returned first.
        """
        message = self.take()
        while message is ...:
            await self.arrival()
            message = self.take()
        return message

    def take(self) -> str | bytes | EllipsisType | None:
        """:meth:`recv` without waiting: ``...`` while no message waits.

        The endpoint's read loop takes, and awaits :meth:`arrival` only
        when nothing waits: an idle socket's reader then holds one future
        and no coroutine of the socket's.
        """
        message = self._inbox.take()
        if (
            message is not None
            and message is not ...
            and self._paused
            and len(self._inbox) <= self.inbox_low
            and self._inbox.bytes <= self.inbox_low_bytes
        ):
            self._resume()
            # Its pong may have waited unread: time it from now.
            self._keepalive.restart(time.monotonic())
        return message

    def arrival(self) -> asyncio.Future[None]:
        """A future done when :meth:`take` may have something new."""
        return self._inbox.arrival()

    def _received(self) -> None:
        """Messages were put in the inbox: stop reading if it is full."""
        inbox = self._inbox
        if (
            not self._paused
            and not inbox.ended
            and (
                len(inbox) >= self.inbox_high
                or inbox.bytes >= self.inbox_high_bytes
            )
        ):
            self._paused = True
            self._pause_reading()

    def _resume(self) -> None:
        """Read again (after the reader caught up, or to see a close)."""
        if self._paused:
            self._paused = False
            self._resume_reading()

    def _pause_reading(self) -> None:
        raise NotImplementedError

    def _resume_reading(self) -> None:
        raise NotImplementedError

    def _end(self) -> None:
        """No more messages: ``recv`` returns None once the inbox is empty."""
        self._inbox.end()

    def _abort_later(self) -> None:
        """Abort if the client has not completed the close in time."""
        if self._close_timer is None and not self._gone:
            self._close_timer = self.loop.call_later(
                self._close_timeout, self.abort
            )

    def _stop_close_timer(self) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None

    def _not_open(self) -> None:
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost.socket_lost()
