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
  :class:`~sanic_chat.transport.rfc6455.ServerConnection` (parsing,
  unmasking, control frames, size limits, the closing handshake): the
  part of websockets' ``ServerProtocol`` this needs, with its rules, in
  one small object per connection;
* outgoing frames are prebuilt bytes (:mod:`sanic_chat.wire`) written
  straight to the transport; Sanic's protocol object keeps doing flow
  control (``pause_writing``) and the server's connection bookkeeping;
* an idle socket costs no task at all: messages wait in a small inbox
  for the handler's single ``recv`` loop, and the keepalive ping is one
  sweep per process (the hub calls each socket's ``keepalive``), not a
  task per socket.

This module knows asyncio and websockets, not Sanic: installing a
:class:`FastSocket` where Sanic's ``WebSocketProtocol`` forwards the
connection's bytes and events is :mod:`sanic_chat._sanic`'s job, and only
happens when its startup check finds every internal it relies on.
"""

from __future__ import annotations

import asyncio
import logging
import time

from websockets.frames import Opcode
from websockets.protocol import State

from ..errors import CloseCode
from .base import Keepalive, SocketBase
from .flag import Flag
from .rfc6455 import SEND_EOF, Frame, ServerConnection

logger = logging.getLogger(__name__)

# Pongs and close frames go out even when the client does not read; a
# client that floods pings without reading is cut off past this.
_MAX_WRITE_BACKLOG = 4 << 20
_EOF = SEND_EOF  # in data_to_send(): close the TCP stream
# A message in more pieces than this is refused (1008): websockets bounds
# a message's bytes, not its count of (possibly empty) fragments.
_MAX_FRAGMENTS = 256
# Tokens of the rate limit a fragment costs (its message pays as well).
_FRAGMENT_COST = 1 / 16
# Bytes parsed between two checks of the rate limit.
_SLICE = 4096
CORK_LIMIT = 64 << 10
"""Bytes a corked socket holds before it writes them anyway."""


class TooManyFragments(Exception):
    """A message came in more pieces than a client may send (1008)."""


class Fragments:
    """Reassembles the data frames of one message at a time.

    websockets bounds a message's bytes, not its count of (possibly
    empty) fragments: this refuses a message in more than
    ``_MAX_FRAGMENTS`` pieces.
    """

    __slots__ = ("_count", "_parts")

    def __init__(self) -> None:
        # The first item says text (b"\x01") or binary (b""); None: no
        # message under way, or the one under way was refused.
        self._parts: list[bytes] | None = None
        self._count = 0

    def abandon(self) -> None:
        """Drop the message under way (a new one started)."""
        self._parts = None

    def add(
        self, opcode: Opcode, data: bytes, fin: bool
    ) -> str | bytes | None:
        """Take a TEXT, BINARY or CONT frame; return a completed message.

        Raises:
            TooManyFragments: The message is over the bound; the rest of
                it is ignored.
            UnicodeDecodeError: A text message is not valid UTF-8.
        """
        if opcode is not Opcode.CONT:
            self._parts = [b"\x01" if opcode is Opcode.TEXT else b""]
            self._count = 0
        parts = self._parts
        if parts is None:  # the parser has already refused this
            return None
        self._count += 1
        if self._count > _MAX_FRAGMENTS:
            self._parts = None
            raise TooManyFragments
        if data:
            parts.append(data)
        if not fin:
            return None
        self._parts = None
        payload = b"".join(parts[1:])
        return payload.decode("utf-8") if parts[0] else payload


class FastSocket(SocketBase):
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
        ws_proto: The sans-I/O connection, in the OPEN state.
        close_timeout: Seconds a closing client may take.
        ping_interval: Seconds between keepalive pings (None: never).
        ping_timeout: Seconds to wait for a pong.

    Attributes:
        ws_proto: The sans-I/O connection (Sanic reads its ``state``).
    """

    __slots__ = (
        "_corked",
        "_corked_bytes",
        "_fragments",
        "_muted",
        "_transport",
        "ws_proto",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        can_write: Flag,
        ws_proto: ServerConnection,
        *,
        close_timeout: float,
        ping_interval: float | None,
        ping_timeout: float | None,
    ) -> None:
        # ``write_direct`` is the transport's own ``write``, for frames
        # while the socket is OPEN; ``on_lost`` fires as soon as it is not.
        # Keepalive settings are Sanic's WEBSOCKET_PING_*.
        super().__init__(
            can_write,
            transport.write,
            close_timeout=close_timeout,
            keepalive=Keepalive(ping_interval, ping_timeout, time.monotonic()),
        )
        self.ws_proto = ws_proto
        self._transport = transport
        self._fragments: Fragments | None = None  # until a client fragments
        self._muted = False
        self._corked: list[bytes] | None = None
        self._corked_bytes = 0

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

    def write(self, data: bytes) -> None:
        """Write prebuilt frames; dropped once the socket is closing."""
        if self._corked is not None:
            self.uncork()
        if self.ws_proto.state is State.OPEN:
            self._transport.write(data)

    def cork(self, head: bytes) -> None:
        """Hold ``head`` and the frames after it until :meth:`uncork`.

        The handshake's answer, ``welcome`` and the first ``joined`` then
        leave in one ``write`` (one system call, one packet) instead of
        three. Held until set-up ends or first waits, and at most
        :data:`CORK_LIMIT` bytes; anything else
        the socket writes (a close, a pong, a ping) uncorks first, so
        the order on the wire never changes.
        """
        self._corked = [head]
        self._corked_bytes = len(head)
        self.write_direct = self._held_write
        # Held no longer than the handler's first wait: a set-up that
        # waits (a hook, Redis) must not hold the client's handshake.
        self.loop.call_soon(self.uncork)

    def _held_write(self, data: bytes) -> None:
        corked = self._corked
        if corked is None:
            self._transport.write(data)
            return
        corked.append(data)
        self._corked_bytes += len(data)
        if self._corked_bytes >= CORK_LIMIT:
            self.uncork()

    def uncork(self) -> None:
        """Write what :meth:`cork` held, and write directly from now on."""
        corked, self._corked = self._corked, None
        if corked is not None:
            self.write_direct = self._transport.write
            self._transport.write(b"".join(corked))

    def _send_ping(self) -> None:
        self.ws_proto.send_ping(b"")
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
        if self.ws_proto.state is State.OPEN:
            self._resume()  # the client's close frame must get through
            self.ws_proto.send_close(code, reason)
        self._flush()
        self._abort_later()

    def abort(self) -> None:
        """Drop the TCP connection now, without a closing handshake."""
        self._end()
        self._transport.abort()

    async def wait_closed(self) -> None:
        """Nothing to wait for: Sanic's protocol ends the connection."""

    def fail_connection(self, code: int = 1006, reason: str = "") -> bool:
        """Sanic's hook when its graceful shutdown runs out of time.

        Sends a close frame with ``code`` when a frame may carry it (not
        1006, the default: that code means no close frame), then drops
        the connection.
        """
        if self.ws_proto.state is State.OPEN and code != 1006:
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

    def _pause_reading(self) -> None:
        self._transport.pause_reading()

    def _resume_reading(self) -> None:
        self._transport.resume_reading()

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
        self._received()

    def _receive(self, data: bytes) -> None:
        proto = self.ws_proto
        proto.receive_data(data)
        for frame in proto.events_received():
            opcode = frame.opcode
            if opcode is Opcode.PONG:
                self._keepalive.answered()
            if self._inbox.ended:
                continue  # a close has started: no more requests
            if opcode is Opcode.PING or opcode is Opcode.PONG:
                if not self._charge(1):
                    return
            elif opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                # A fragment is paid for apart from its message: a stream
                # of empty fragments costs parsing, not message tokens.
                fragment = opcode is Opcode.CONT or not frame.fin
                if fragment and not self._charge(_FRAGMENT_COST):
                    return
                try:
                    message = self._message(opcode, frame)
                except TooManyFragments:
                    self._policy_close("too many fragments in one message")
                    continue
                except UnicodeDecodeError:
                    self._end()  # nothing after the bad frame is taken
                    proto.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
                    continue
                if message is not None:
                    self._inbox.put(message)

    def _message(self, opcode: Opcode, frame: Frame) -> str | bytes | None:
        """The message a data frame completes, if it completes one.

        A whole message in one frame (nearly all of them) is decoded at
        once; :class:`Fragments` exists only once a client fragments.
        """
        fragments = self._fragments
        if frame.fin and opcode is not Opcode.CONT:
            if fragments is not None:
                fragments.abandon()  # a new message ends any under way
            if opcode is Opcode.TEXT:
                return str(frame.data, "utf-8")
            return bytes(frame.data)
        if fragments is None:
            fragments = self._fragments = Fragments()
        return fragments.add(opcode, bytes(frame.data), frame.fin)

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
        if self._corked is not None:
            self.uncork()
        transport = self._transport
        for chunk in self.ws_proto.data_to_send():
            if chunk != _EOF:
                transport.write(chunk)
        self._resume()
        if transport.can_write_eof():
            transport.write_eof()
        self._abort_later()

    def _flush(self) -> None:
        """Write what the protocol produced (pongs, close frames)."""
        if self._corked is not None:
            self.uncork()
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
        self._stop_close_timer()
        self._end()
        self._not_open()
