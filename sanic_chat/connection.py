"""One client socket: its identity, its rooms and how frames reach it.

Fan-out never awaits a socket. The hub calls :meth:`Connection.send`
with a prebuilt frame: while the socket keeps up, the frame is written
to its transport at once (no task, no copy); while the transport is
above its high-water mark, frames wait in the connection's
:class:`~sanic_chat.outbox.Outbox` (bounded in frames and bytes, replies
first, the slow-consumer policy for broadcast frames) and a flush task,
alive only during the backlog, drains it as the client catches up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .budget import UnsentBytes
from .config import SlowConsumerPolicy
from .errors import CloseCode
from .identity import User
from .metrics import Metrics
from .outbox import Outbox
from .transport import Socket
from .wire import text_frame

if TYPE_CHECKING:
    from .session import Expire

logger = logging.getLogger(__name__)


class _Keys:
    """Connection keys: a random prefix per process, then a counter.

    As unique across processes as a random key per connection, without
    a ``getrandom`` call per connection; a forked child draws its own
    prefix.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        """Draw a new prefix and restart the count."""
        self.prefix = secrets.token_hex(6) + "."
        self.count = itertools.count(1)

    def next(self) -> str:
        """A key no other connection of any process has."""
        return f"{self.prefix}{next(self.count):x}"


_keys = _Keys()


class Connection:
    """A connected client, as the hub sees it.

    Args:
        socket: The WebSocket frames are written to.
        user: The authenticated identity of the client.
        queue_size: Broadcast frames buffered before ``policy`` applies;
            also the reply backlog at which the reader pauses.
        policy: What to do when the broadcast queue is full.
        metrics: The chat's counters.
        max_unsent_bytes: Bytes queued or in the socket's write buffer
            beyond which ``policy`` applies to broadcast frames and a
            reply closes the connection with 1013.
        budget: The worker's account of unsent bytes, shared by every
            connection of the chat.

    Attributes:
        key: Unique across processes (the origin of presence notices).
        replied: Bytes of replies so far, and of stored history read for
            the client (:meth:`charge`); the reader charges them to the
            rate limit: a small request can cost a large reply or read.
        on_stall: Called once when a wait for this client to read begins
            (the endpoint gives its admission slot back).
        expiry: When (epoch seconds ``at``) and how (``code``,
            ``reason``) the client's identity expires, or None; the hub's
            watchdog closes the connection within a second of it, so that
            no connection holds a timer of its own.
    """

    __slots__ = (
        "_can_write",
        "_close",
        "_drain",
        "_metrics",
        "_outbox",
        "_write",
        "expiry",
        "key",
        "on_stall",
        "replied",
        "rooms",
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
        metrics: Metrics | None = None,
        max_unsent_bytes: int = 1 << 20,
        budget: UnsentBytes | None = None,
    ) -> None:
        self.key = _keys.next()
        self.user = user
        self.rooms: set[str] = set()
        self.socket = socket
        self.replied = 0
        self.on_stall: Callable[[], None] | None = None
        self.expiry: Expire | None = None
        self._metrics = metrics or Metrics()
        self._outbox = Outbox(
            socket,
            queue_size=queue_size,
            policy=policy,
            max_unsent_bytes=max_unsent_bytes,
            budget=budget or UnsentBytes(1 << 62),
            metrics=self._metrics,
        )
        # Created at the first backlog: most sockets never have one.
        self._drain: Drain | None = None
        self._close: tuple[int, str] | None = None
        # The hot path: set while frames may go straight to the transport
        # (open, no backlog, no pending ``lagged``); None otherwise.
        self._write: Callable[[bytes], object] | None = socket.write_direct
        self._can_write = socket.can_write
        socket.on_lost = self  # told by socket_lost(): no bound method kept

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

    @property
    def sending_since(self) -> float | None:
        """Since when the socket has refused data while frames wait.

        None while it keeps up; the hub's watchdog closes a connection
        stuck for longer than ``send_timeout``.
        """
        drain = self._drain
        return drain.since if drain is not None else None

    def charge(self, size: int) -> None:
        """Count ``size`` bytes of work done for the client as replied.

        For stored history read to answer a request and not sent back
        (an edit's or a delete's lookup, a ``before`` id not found): the
        reader charges it to the rate limit as it charges replies.
        """
        self.replied += size

    def reply(self, frame: str | bytes) -> None:
        """Send an answer to the client's own request; never dropped.

        ``frame`` is JSON text, or a wire frame from :mod:`sanic_chat.wire`.
        """
        if self._close is not None:
            return
        data = frame if isinstance(frame, bytes) else text_frame(frame)
        self.replied += len(data)
        write = self._write
        if write is not None and self._can_write.is_set():
            write(data)
            return
        if not self._outbox.add_reply(data):
            logger.info("closing %s: over its unsent bytes bound", self)
            self._metrics.slow_consumer_disconnects += 1
            self.close(CloseCode.TRY_AGAIN_LATER, "too much unsent data")
            return
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
        if self._outbox.add(frame, room):
            self._backlog()
        else:
            self.overflow(room)

    def send_all(self, data: bytes, best_effort: bool) -> bool:
        """Write several broadcast frames at once, if they can go out now.

        ``data`` is their wire frames joined, ``best_effort`` whether
        some are presence notices (written only while the queue has
        slack, as :meth:`offer` would). False, and nothing written, when
        they cannot go straight to the socket (backed up, lagging,
        closing): the caller then sends them one by one.
        """
        write = self._write
        if (
            write is None
            or not self._can_write.is_set()
            or (best_effort and not self._outbox.has_slack())
        ):
            return False
        write(data)
        return True

    @property
    def unsent(self) -> int:
        """Bytes queued here or waiting in the socket's write buffer."""
        return self._outbox.unsent

    def offer(self, frame: bytes, room: str) -> None:
        """Send a best-effort frame (a presence notice), or drop it.

        It is dropped when the broadcast queue is already half full, so
        that join/leave notices alone never trip the slow-consumer policy.
        Clients learn the truth from a ``presence`` request.
        """
        if self._outbox.has_slack():
            self.send(frame, room)
        else:
            self._metrics.messages_dropped += 1

    def overflow(self, room: str) -> None:
        """Account for one frame of ``room`` this client will not get.

        With policy ``close`` the connection is closed with 1013; with
        ``drop_oldest`` the loss is reported in a ``lagged`` frame.
        """
        if self._outbox.policy == "close":
            if self._close is None:
                logger.info("closing slow consumer %s", self)
                self._metrics.slow_consumer_disconnects += 1
            self.close(CloseCode.TRY_AGAIN_LATER, "slow consumer")
        else:
            self._outbox.skip(room)
            self._write = None  # the next frame of the room: lagged first

    def forget(self, room: str) -> None:
        """Drop queued broadcast frames of ``room`` (before a re-sync)."""
        self._outbox.forget(room)

    def backed_up(self) -> bool:
        """Whether replies pile up: the client is not reading them."""
        return self._outbox.backed_up()

    async def wait_writable(self) -> None:
        """Wait while replies are backed up: the client is not reading."""
        while self._close is None and self._outbox.backed_up():
            on_stall, self.on_stall = self.on_stall, None
            if on_stall is not None:
                on_stall()
            if not await self._drainer().wait():
                return

    def keepalive(self, now: float) -> None:
        """Let the socket ping when due; close 1011 if it says to.

        Called periodically by the hub for every connection: one sweep
        per process instead of a keepalive task per socket. The decision
        and its settings are the socket's (``Socket.keepalive``).
        """
        if self._close is not None:
            return
        reason = self.socket.keepalive(now)
        if reason is not None:
            logger.info("closing %s: keepalive ping unanswered", self)
            self.close(CloseCode.INTERNAL_ERROR, reason)

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
        drain = self._drain
        if drain is not None:
            drain.wake()
        if flush and drain is not None and drain.running:
            return  # the flush task closes once the queues are empty
        self._discard()
        self.socket.start_closing(code, reason)

    def uncork(self) -> None:
        """Send what the socket held during set-up; write directly again.

        The hot path (:attr:`_write`) then calls the transport itself,
        not the socket's holding function.
        """
        socket = self.socket
        socket.uncork()
        if self._write is not None:
            self._write = socket.write_direct

    def socket_lost(self) -> None:
        """The socket is gone: nothing more can be sent (its ``on_lost``)."""
        if self._close is None:
            self._close = (CloseCode.ABNORMAL_CLOSURE, "connection lost")
        self._discard()
        if self._drain is not None:
            self._drain.wake()

    def _discard(self) -> None:
        self._write = None
        self._outbox.clear()
        if self._drain is not None:
            self._drain.stop()

    def _backlog(self) -> None:
        self._write = None
        self._drainer().start()

    def _drainer(self) -> Drain:
        drain = self._drain
        if drain is None:
            drain = self._drain = Drain(
                self.socket, self._outbox, self._drained_out
            )
        return drain

    def _drained_out(self) -> None:
        """The flush task ended: close, or write directly again."""
        socket = self.socket
        if self._close is not None:
            socket.start_closing(*self._close)
        elif not self._outbox.lagging and socket.open:
            self._write = socket.write_direct


class Drain:
    """The flush task of a backed-up connection, and the waits on it.

    While the socket is backed up one task writes the outbox out as the
    socket accepts more: everything queued meanwhile in one ``write`` of
    about 64 KiB (replies first). It exists only during the backlog.

    Args:
        socket: The connection's socket.
        outbox: The connection's queued frames.
        done: Called when the task ends (the outbox is empty, or the
            socket no longer open), unless it was stopped.

    Attributes:
        since: Since when the socket has refused data while frames wait;
            None while it keeps up.
    """

    __slots__ = ("_done", "_event", "_outbox", "_socket", "_task", "since")

    def __init__(
        self, socket: Socket, outbox: Outbox, done: Callable[[], None]
    ) -> None:
        self._socket = socket
        self._outbox = outbox
        self._done = done
        self._task: asyncio.Task[None] | None = None
        # Set when a batch leaves the backlog under its bounds, when the
        # task ends and on a close: what a waiting reader waits for.
        self._event: asyncio.Event | None = None
        self.since: float | None = None

    @property
    def running(self) -> bool:
        """Whether the flush task exists (the socket is backed up)."""
        return self._task is not None

    def start(self) -> None:
        """Start the flush task unless it runs."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Cancel the flush task (the queued frames are discarded)."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self.since = None

    def wake(self) -> None:
        """Wake whoever waits in :meth:`wait` (the connection closes)."""
        if self._event is not None:
            self._event.set()

    async def wait(self) -> bool:
        """Wait for one step of progress; False: nothing to wait for.

        With the task running: until it writes a batch or ends. Without
        it (nothing queued, only the socket's own buffer full): until the
        socket drains, timed like a stuck write for the watchdog to see.
        Either way a close ends the wait.
        """
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        if self._task is not None:
            event.clear()
            await event.wait()
            return True
        if self._socket.can_write.is_set():
            return False
        if self.since is None:
            self.since = time.monotonic()
        event.clear()
        waits = (
            asyncio.ensure_future(self._socket.wait_writable()),
            asyncio.ensure_future(event.wait()),
        )
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            if self._task is None:
                self.since = None
        return True

    async def _run(self) -> None:
        socket = self._socket
        outbox = self._outbox
        try:
            while outbox:
                if not socket.writable():
                    if not socket.open:
                        return
                    if self.since is None:
                        self.since = time.monotonic()
                    await socket.wait_writable()
                    continue
                self.since = None
                socket.write(outbox.take())
                if self._event is not None and not outbox.backed_up():
                    self._event.set()
        finally:
            if self._task is asyncio.current_task():
                self._task = None
                self.since = None
                self._done()
                self.wake()
