"""The fast transport: a lean WebSocket on Sanic's own TCP transport.

Sanic's websocket object (``WebsocketImplProtocol``) is built for
application code that awaits ``recv``/``send``: per connection it keeps
a keepalive task, a closer task, a task per ``recv``, several locks and
queues, and every ``send`` frames the text again under a lock. A chat
server holds thousands of mostly idle sockets and writes the same frame
to all of them, so ``/ws`` speaks WebSocket itself, on the connection
Sanic accepted:

* the opening handshake is checked here (RFC 6455, section 4.2: four
  headers and a key); incoming frames go through the sans-I/O
  ``websockets.server.ServerProtocol`` (parsing, unmasking, control
  frames, size limits, the closing handshake), as in Sanic itself;
* outgoing frames are prebuilt bytes (:mod:`sanic_chat.wire`) written
  straight to the transport; Sanic's protocol object keeps doing flow
  control (``pause_writing``) and the server's connection bookkeeping;
* an idle socket costs no task at all: messages wait in a small inbox
  for the handler's single ``recv`` loop, and the keepalive ping is one
  sweep per process (:meth:`Keepalive.sweep`), not a task per socket.

This module knows asyncio and websockets, not Sanic: installing a
:class:`FastSocket` where Sanic's ``WebSocketProtocol`` forwards the
connection's bytes and events is :mod:`sanic_chat._sanic`'s job, and only
happens when its startup check finds every internal it relies on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from ..errors import CloseCode
from ..limits import TokenBucket

logger = logging.getLogger(__name__)

# How many complete client messages may wait unread before the socket
# stops reading (TCP back-pressure on a client that floods).
_INBOX_HIGH = 16
_INBOX_LOW = 4
_INBOX_HIGH_BYTES = 1 << 20
_INBOX_LOW_BYTES = 1 << 18
# Pongs and close frames go out even when the client does not read; a
# client that floods pings without reading is cut off past this.
_MAX_WRITE_BACKLOG = 4 << 20
_EOF = b""  # websockets' marker in data_to_send(): close the TCP stream
# A message in more pieces than this is refused (1008): websockets bounds
# a message's bytes, not its count of (possibly empty) fragments.
_MAX_FRAGMENTS = 256
# Tokens of the rate limit a fragment costs (its message pays as well).
_FRAGMENT_COST = 1 / 16
# Bytes parsed between two checks of the rate limit.
_SLICE = 4096


class FastSocket:
    """One upgraded connection; Sanic's protocol forwards its I/O here.

    Besides the :class:`~sanic_chat.transport.Socket` interface it has what
    Sanic's ``WebSocketProtocol`` calls on its ``websocket``:
    ``data_received``, ``eof_received``, ``connection_lost``,
    ``end_connection``, ``fail_connection``, ``close``, ``ws_proto`` and
    ``loop``.

    Args:
        transport: The connection's asyncio transport.
        can_write: Set while ``transport`` takes more data (the server's
            protocol clears it in ``pause_writing``).
        ws_proto: The sans-I/O protocol, in the OPEN state.
        close_timeout: Seconds a closing client may take.
        ping_interval: Seconds between keepalive pings (None: never).
        ping_timeout: Seconds to wait for a pong.

    Attributes:
        ws_proto: The sans-I/O protocol state (Sanic reads its ``state``).
        loop: The connection's event loop.
        on_lost: Called once, as soon as the socket is no longer open
            (a close started by either side, or the connection lost).
        ping_sent_at: When an unanswered keepalive ping went out.
        last_ping: When the last keepalive ping (or the handshake) was.
    """

    __slots__ = (
        "_close_timeout",
        "_close_timer",
        "_eof",
        "_fragment_count",
        "_fragments",
        "_gone",
        "_inbox",
        "_inbox_bytes",
        "_muted",
        "_paused",
        "_transport",
        "_waiter",
        "can_write",
        "last_ping",
        "limiter",
        "loop",
        "max_strikes",
        "on_lost",
        "ping_interval",
        "ping_sent_at",
        "ping_timeout",
        "write_direct",
        "ws_proto",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        can_write: asyncio.Event,
        ws_proto: ServerProtocol,
        *,
        close_timeout: float,
        ping_interval: float | None,
        ping_timeout: float | None,
    ) -> None:
        self.ws_proto = ws_proto
        self.loop = asyncio.get_running_loop()
        self.on_lost: Callable[[], None] | None = None
        self.ping_sent_at: float | None = None
        self.last_ping = time.monotonic()
        # Sanic's WEBSOCKET_PING_* settings; Connection.keepalive acts.
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._transport = transport
        # Set by the server's protocol while the transport takes more data.
        self.can_write = can_write
        # The transport's own ``write``, for frames while the socket is
        # OPEN; ``on_lost`` fires as soon as it is not.
        self.write_direct: Callable[[bytes], object] = self._transport.write
        self._close_timeout = close_timeout
        self._inbox: deque[str | bytes] = deque()
        self._inbox_bytes = 0
        self._eof = False
        self._gone = False
        self._waiter: asyncio.Future[None] | None = None
        self._fragments: list[bytes] | None = None
        self._fragment_count = 0
        self._muted = False
        # The connection's rate limit, which control frames (pings and
        # pongs) are charged to as they arrive: websockets answers pings
        # by itself, so they never reach the reader's own accounting.
        self.limiter: TokenBucket | None = None
        self.max_strikes = 20
        self._close_timer: asyncio.TimerHandle | None = None
        self._paused = False

    # ------------------------------------------------------------------
    # Writing

    @property
    def open(self) -> bool:
        """Whether data frames may still be sent."""
        return self.ws_proto.state is State.OPEN

    @property
    def close_received(self) -> int | None:
        """The close code the client sent, if it sent one."""
        received = self.ws_proto.close_rcvd
        return received.code if received is not None else None

    def buffered(self) -> int:
        """Bytes written to the socket that the client has not taken yet."""
        return self._transport.get_write_buffer_size()

    @property
    def reading_paused(self) -> bool:
        """Whether reading is paused because the inbox is full."""
        return self._paused

    def writable(self) -> bool:
        """Whether a write goes out now rather than into the buffer.

        False while the transport's buffer is above its high-water mark
        (Sanic's ``pause_writing``) or once the socket is closing.
        """
        return self.ws_proto.state is State.OPEN and self.can_write.is_set()

    async def wait_writable(self) -> None:
        """Wait until the transport drains below its low-water mark."""
        await self.can_write.wait()

    def write(self, data: bytes) -> None:
        """Write prebuilt frames; dropped once the socket is closing."""
        if self.ws_proto.state is State.OPEN:
            self._transport.write(data)

    def ping(self) -> None:
        """Send a keepalive ping (answered by a pong)."""
        if self.ws_proto.state is State.OPEN:
            self.ws_proto.send_ping(b"")
            self.ping_sent_at = self.last_ping = time.monotonic()
            self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (Sanic calls this when it stops)."""
        self.start_closing(code, reason)

    def start_closing(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake; abort if the client ignores it.

        Frames already in the transport's buffer go out first, the close
        frame last; a client that does not answer within ``close_timeout``
        seconds (Sanic's ``WEBSOCKET_TIMEOUT``) is disconnected. Messages
        the client sends from now on are dropped.
        """
        self._end()
        if self._gone:
            return
        if self._paused and self.ws_proto.state is State.OPEN:
            # The client's close frame must get through.
            self._paused = False
            self._transport.resume_reading()
        if self.ws_proto.state is State.OPEN:
            self.ws_proto.send_close(code, reason)
        self._flush()
        self._abort_later()

    def _abort_later(self) -> None:
        if self._close_timer is None and not self._gone:
            self._close_timer = self.loop.call_later(
                self._close_timeout, self._transport.abort
            )

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake."""
        self._end()
        self._transport.abort()

    async def wait_closed(self) -> None:
        """Nothing to wait for: Sanic's protocol ends the connection."""

    def fail_connection(self, code: int = 1006, reason: str = "") -> bool:
        """Sanic's hook when its graceful shutdown runs out of time."""
        if self.ws_proto.state is State.OPEN:
            self.ws_proto.send_close(code, reason)
            self._flush()
        self.abort()
        return True

    def end_connection(self, code: int = 1000, reason: str = "") -> None:
        """Sanic's hook when its connection task ends: close, then drop.

        Called after the handler returned, or by Sanic when it stops.
        """
        self.start_closing(code, reason)

    # ------------------------------------------------------------------
    # Reading

    async def recv(self) -> str | bytes | None:
        """Return the next message, or None once reading is over.

        Reading ends when the connection closes or a close starts; the
        messages that arrived before that are still returned first.
        """
        while not self._inbox:
            if self._eof:
                return None
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._inbox.popleft()
        self._inbox_bytes -= len(message)
        if (
            self._paused
            and len(self._inbox) <= _INBOX_LOW
            and self._inbox_bytes <= _INBOX_LOW_BYTES
        ):
            self._paused = False
            self._transport.resume_reading()
            if self.ping_sent_at is not None:
                # Its pong may have waited unread: time it from now.
                self.ping_sent_at = time.monotonic()
        return message

    def data_received(self, data: bytes) -> None:
        """Feed bytes from the client; queue complete messages.

        A large read is parsed in slices, with the rate limit checked in
        between: a read full of tiny frames (pings, empty fragments) is
        cut off after one slice's worth of work, not after all of it.
        """
        for start in range(0, len(data), _SLICE):
            if self._muted:
                break  # closed for abuse: the rest is not even parsed
            self._receive(data[start : start + _SLICE])
        self._flush()
        if (
            not self._paused
            and not self._eof
            and (
                len(self._inbox) >= _INBOX_HIGH
                or self._inbox_bytes >= _INBOX_HIGH_BYTES
            )
        ):
            self._paused = True
            self._transport.pause_reading()

    def _receive(self, data: bytes) -> None:
        proto = self.ws_proto
        proto.receive_data(data)
        for frame in proto.events_received():
            assert isinstance(frame, Frame)  # after the handshake: frames
            opcode = frame.opcode
            if self._eof:
                if opcode is Opcode.PONG:
                    self.ping_sent_at = None
                continue  # a close has started: no more requests
            if opcode is Opcode.PING or opcode is Opcode.PONG:
                if opcode is Opcode.PONG:
                    self.ping_sent_at = None
                if not self._charge(1):
                    return
            elif opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                # A fragment is paid for apart from its message: a stream
                # of empty fragments costs parsing, not message tokens.
                fragment = opcode is Opcode.CONT or not frame.fin
                if fragment and not self._charge(_FRAGMENT_COST):
                    return
                self._assemble(opcode, bytes(frame.data), frame.fin)

    def _charge(self, cost: float) -> bool:
        """Charge a control frame or a fragment; False: closed with 1008."""
        limiter = self.limiter
        if limiter is None or limiter.take(cost):
            return True
        if limiter.strikes < self.max_strikes:
            return True
        logger.info("closing a client that floods control frames")
        self._policy_close("too many control frames")
        return False

    def _policy_close(self, reason: str) -> None:
        """Close 1008 and read nothing more from an abusive client.

        Not ``fail()``: closing TCP with the flood unread would reset the
        connection and could destroy our close frame before the client
        reads it. Instead the close frame goes out followed by a FIN (a
        half-close), and whatever the client still sends is discarded
        unparsed until it closes its side (or the abort timer fires);
        the client sees a clean close.
        """
        self._end()  # nothing after this frame is taken
        self._muted = True
        if self.ws_proto.state is State.OPEN:
            self.ws_proto.send_close(CloseCode.POLICY_VIOLATION, reason)
        transport = self._transport
        for chunk in self.ws_proto.data_to_send():
            if chunk != _EOF:
                transport.write(chunk)
        if self._paused:
            self._paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        self._abort_later()

    def _assemble(self, opcode: Opcode, data: bytes, fin: bool) -> None:
        if opcode is not Opcode.CONT:
            self._fragments = [b"\x01" if opcode is Opcode.TEXT else b""]
            self._fragment_count = 0
        fragments = self._fragments
        if fragments is None:  # the parser has already refused this
            return
        self._fragment_count += 1
        if self._fragment_count > _MAX_FRAGMENTS:
            self._fragments = None
            self._policy_close("too many fragments in one message")
            return
        if data:
            fragments.append(data)
        if not fin:
            return
        self._fragments = None
        payload = b"".join(fragments[1:])
        if not fragments[0]:
            self._deliver(payload)
            return
        try:
            self._deliver(payload.decode("utf-8"))
        except UnicodeDecodeError:
            self._end()  # nothing after the bad frame is taken either
            self.ws_proto.fail(CloseCode.INVALID_DATA, "invalid UTF-8")

    def _deliver(self, message: str | bytes) -> None:
        self._inbox.append(message)
        self._inbox_bytes += len(message)
        self._wake()

    def _end(self) -> None:
        """No more messages: ``recv`` returns None once the inbox is empty."""
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _flush(self) -> None:
        """Write what the protocol produced (pongs, close frames)."""
        transport = self._transport
        for chunk in self.ws_proto.data_to_send():
            if chunk != _EOF:
                transport.write(chunk)
            else:
                # Flush, then FIN; the timer aborts a client that never
                # reads what is still buffered.
                transport.close()
                self._abort_later()
        if transport.get_write_buffer_size() > _MAX_WRITE_BACKLOG:
            logger.info("aborting a client that sends but never reads")
            self.abort()
        state = self.ws_proto.state
        if state is not State.OPEN:
            self._not_open()
            if state is State.CLOSED:
                self._end()

    def eof_received(self) -> bool:
        """The client half-closed: the connection is over."""
        self.ws_proto.receive_eof()
        self._flush()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        """The TCP connection is gone: wake the reader, tell the owner."""
        self._gone = True
        if self.ws_proto.state is not State.CLOSED:
            self.ws_proto.state = State.CLOSED
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._end()
        self._not_open()

    def _not_open(self) -> None:
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()
