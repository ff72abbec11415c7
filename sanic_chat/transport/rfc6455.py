"""The server side of an open WebSocket connection, sans I/O (RFC 6455).

The fast transport used websockets' ``ServerProtocol`` to parse what
clients send. That object is general (handshake, extensions, client
side, logging) and keeps about 1.5 KB in 13 objects per connection:
an id from ``uuid4``, a parser generator and its sub-generator, a
stream reader, lists. A chat server holds thousands of idle sockets, so
:class:`ServerConnection` is the part of it the fast transport uses,
for a server past the handshake with no extensions, in one small
object: an idle connection holds no buffer, no list and no generator.

It follows websockets' rules and messages exactly (the tests feed the
same bytes to both and compare everything that comes out): client frames
are masked, reserved bits are 0, control frames are final and at most
125 bytes, a message is at most ``max_size`` bytes, pings are answered,
a close frame is echoed and then the server closes TCP, and an error
closes with websockets' code and reason. Text is not decoded here: the
transport decodes messages (and answers invalid UTF-8 with :meth:`fail`).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import NamedTuple

from websockets.exceptions import InvalidState, ProtocolError
from websockets.frames import EXTERNAL_CLOSE_CODES, Close, CloseCode, Opcode
from websockets.protocol import State

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - built without its C extension
    from websockets.utils import apply_mask

__all__ = ["SEND_EOF", "Frame", "ServerConnection"]

SEND_EOF = b""
"""In :meth:`ServerConnection.data_to_send`: half-close the TCP stream."""

_OPEN = State.OPEN
_CLOSING = State.CLOSING
_CLOSED = State.CLOSED
_CONT = Opcode.CONT
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CLOSE = Opcode.CLOSE
_PING = Opcode.PING
_PONG = Opcode.PONG
_ABNORMAL = CloseCode.ABNORMAL_CLOSURE
# The opcode in a frame's first byte (low four bits); None: not defined.
_OPCODES: tuple[Opcode | None, ...] = tuple(
    Opcode(n) if n in Opcode._value2member_map_ else None for n in range(16)
)
# Payloads at least this long are unmasked from a view of the buffer
# rather than from a copy of it.
_VIEW_FROM = 512
_unpack_code = struct.Struct("!H").unpack_from


class Frame(NamedTuple):
    """A frame received: opcode, payload (unmasked) and FIN bit.

    Named like websockets' ``Frame`` attributes, so code reading frames
    reads either.
    """

    opcode: Opcode
    data: bytes
    fin: bool


class _Failed(Exception):
    """A frame broke a rule: fail the connection with this code."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _close_payload(code: int, reason: str) -> bytes:
    """A close frame's payload; raises ProtocolError as websockets does."""
    if not (code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000):
        raise ProtocolError("invalid status code")
    return struct.pack("!H", code) + reason.encode()


def _control(opcode: int, payload: bytes) -> bytes:
    """An unmasked, final control frame (a server's frames are unmasked)."""
    if len(payload) > 125:
        raise ProtocolError("control frame too long")
    return bytes((0x80 | opcode, len(payload))) + payload


class ServerConnection:
    """An open WebSocket connection, server side: frames in, frames out.

    The subset of websockets' ``ServerProtocol`` that the fast transport
    and Sanic use, with the same names and results: feed bytes with
    :meth:`receive_data` and :meth:`receive_eof`, then take frames from
    :meth:`events_received` and bytes to write from :meth:`data_to_send`
    (:data:`SEND_EOF` in it: half-close TCP).

    Args:
        max_size: The most bytes a message may have (None: no limit).
        logger: Told "connection closed" (INFO) once the closing ends,
            as websockets tells its logger.

    Attributes:
        state: websockets' ``State``: OPEN, CLOSING once a close frame
            was sent, CLOSED once TCP ended (Sanic reads it).
        close_rcvd: The client's close frame, once received.
        close_sent: The close frame sent, once sent.
        close_rcvd_then_sent: Whether the close was received first (None
            until both were exchanged).
        max_size: The message size limit.
        logger: The logger given.
    """

    __slots__ = (
        "_buffer",
        "_current_size",
        "_eof_rcvd",
        "_eof_sent",
        "_events",
        "_writes",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "logger",
        "max_size",
        "state",
    )

    def __init__(
        self, max_size: int | None, logger: logging.Logger | None = None
    ) -> None:
        self.state = _OPEN
        self.max_size = max_size
        self.logger = logger
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        # An incomplete frame (None: nothing held, as when idle); at most
        # one frame's header and max_size bytes, plus the last read.
        self._buffer: bytearray | None = None
        # Bytes of the fragmented message under way (None: none is).
        self._current_size: int | None = None
        self._events: list[Frame] | None = None
        self._writes: list[bytes] | None = None
        self._eof_rcvd = False
        # Sent once the connection is failed or a close received; from
        # then on, what the client sends is discarded.
        self._eof_sent = False

    @property
    def close_code(self) -> int | None:
        """The close code received, once CLOSED (1006: none received)."""
        if self.state is not _CLOSED:
            return None
        if self.close_rcvd is None:
            return _ABNORMAL
        return self.close_rcvd.code

    # ------------------------------------------------------------------
    # Receiving

    def receive_data(self, data: bytes | bytearray) -> None:
        """Parse bytes from the client.

        Raises:
            EOFError: :meth:`receive_eof` was called before.
        """
        if self._eof_rcvd:
            raise EOFError("stream ended")
        if self._eof_sent:
            return  # closing: discarded
        buffer = self._buffer
        if buffer is not None:
            buffer += data
            data = buffer
        try:
            end = self._parse(data)
        except _Failed as exc:
            self._buffer = None
            self.fail(exc.code, exc.reason)
            return
        except UnicodeDecodeError as exc:
            self._buffer = None
            self.fail(
                CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}"
            )
            return
        except Exception:  # a bug: fail the connection, not the server
            self._buffer = None
            if self.logger is not None:
                self.logger.error("parser failed", exc_info=True)
            # No details: they may be sensitive (as websockets).
            self.fail(CloseCode.INTERNAL_ERROR)
            return
        if self._eof_sent or end == len(data):  # a close: rest discarded
            self._buffer = None
        elif buffer is not None:
            del buffer[:end]
        else:
            self._buffer = bytearray(memoryview(data)[end:])

    def _parse(self, data: bytes | bytearray) -> int:
        """Take the complete frames in ``data``; return where they end.

        Raises:
            _Failed: A frame broke a rule.
            UnicodeDecodeError: A close frame's reason is not UTF-8.
        """
        size = len(data)
        pos = 0
        while size - pos >= 2:
            head1 = data[pos]
            head2 = data[pos + 1]
            opcode = _OPCODES[head1 & 0x0F]
            if opcode is None:
                raise _Failed(CloseCode.PROTOCOL_ERROR, "invalid opcode")
            if not head2 & 0x80:
                raise _Failed(CloseCode.PROTOCOL_ERROR, "incorrect masking")
            length = head2 & 0x7F
            start = pos + 2
            if length == 126:
                if size - start < 2:
                    break
                length = (data[start] << 8) | data[start + 1]
                start += 2
            elif length == 127:
                if size - start < 8:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            current = self._current_size
            if self.max_size is not None:
                limit = self.max_size
                if current is not None:
                    limit -= current
                if length > limit:
                    after = ""
                    if current is not None:
                        after = f"after reading {current} bytes "
                    raise _Failed(
                        CloseCode.MESSAGE_TOO_BIG,
                        f"frame with {length} bytes {after}"
                        f"exceeds limit of {self.max_size} bytes",
                    )
            end = start + 4 + length
            if size < end:
                break
            mask = data[start : start + 4]
            if length < _VIEW_FROM:
                payload = apply_mask(data[start + 4 : end], mask)
            else:
                with memoryview(data) as view:
                    payload = apply_mask(view[start + 4 : end], mask)
            pos = end
            fin = bool(head1 & 0x80)
            if head1 & 0x70:
                raise _Failed(
                    CloseCode.PROTOCOL_ERROR, "reserved bits must be 0"
                )
            if opcode is _TEXT or opcode is _BINARY:
                if current is not None:
                    raise _Failed(
                        CloseCode.PROTOCOL_ERROR,
                        "expected a continuation frame",
                    )
                if not fin:
                    self._current_size = length
            elif opcode is _CONT:
                if current is None:
                    raise _Failed(
                        CloseCode.PROTOCOL_ERROR,
                        "unexpected continuation frame",
                    )
                self._current_size = None if fin else current + length
            else:
                if length > 125:
                    raise _Failed(
                        CloseCode.PROTOCOL_ERROR, "control frame too long"
                    )
                if not fin:
                    raise _Failed(
                        CloseCode.PROTOCOL_ERROR, "fragmented control frame"
                    )
                if opcode is _PING:
                    self._write(_control(_PONG, payload))
                elif opcode is _CLOSE:
                    self._close_received(payload)
                    self._event(Frame(opcode, payload, fin))
                    return pos
            self._event(Frame(opcode, payload, fin))
        return pos

    def _close_received(self, payload: bytes) -> None:
        """Echo a close frame (if none was sent), then half-close TCP."""
        if len(payload) >= 2:
            close = Close(_unpack_code(payload)[0], payload[2:].decode())
            if not (
                close.code in EXTERNAL_CLOSE_CODES or 3000 <= close.code < 5000
            ):
                raise _Failed(CloseCode.PROTOCOL_ERROR, "invalid status code")
        elif not payload:
            close = Close(CloseCode.NO_STATUS_RCVD, "")
        else:
            raise _Failed(CloseCode.PROTOCOL_ERROR, "close frame too short")
        self.close_rcvd = close
        if self.state is _CLOSING:
            self.close_rcvd_then_sent = False
        if self._current_size is not None:
            raise _Failed(
                CloseCode.PROTOCOL_ERROR, "incomplete fragmented message"
            )
        if self.state is _OPEN:
            # The payload as received: an empty one stays empty (1005).
            self._write(_control(_CLOSE, payload))
            self.close_sent = close
            self.close_rcvd_then_sent = True
            self.state = _CLOSING
        self._send_eof()

    def receive_eof(self) -> None:
        """The client closed its side of TCP: the connection is CLOSED."""
        if self._eof_rcvd:
            return
        self._eof_rcvd = True
        if self._eof_sent:
            self._buffer = None
            self._closed()
        else:  # websockets: "unexpected end of stream"
            self.fail(_ABNORMAL)

    def events_received(self) -> Sequence[Frame]:
        """The frames received since the last call."""
        events = self._events
        if events is None:
            return ()
        self._events = None
        return events

    # ------------------------------------------------------------------
    # Sending

    def data_to_send(self) -> Sequence[bytes]:
        """Bytes to write since the last call; :data:`SEND_EOF`: half-close."""
        writes = self._writes
        if writes is None:
            return ()
        self._writes = None
        return writes

    def send_ping(self, data: bytes) -> None:
        """Send a ping (OPEN or CLOSING).

        Raises:
            InvalidState: The connection is CLOSED.
            ProtocolError: ``data`` is over 125 bytes.
        """
        if self.state is not _OPEN and self.state is not _CLOSING:
            raise InvalidState(f"connection is {self.state.name.lower()}")
        self._write(_control(_PING, data))

    def send_close(self, code: int | None = None, reason: str = "") -> None:
        """Start the closing handshake: send a close frame, go CLOSING.

        Raises:
            InvalidState: The connection is not OPEN.
            ProtocolError: ``code`` is not one a close frame may carry, or
                a reason without a code, or the reason is too long.
        """
        if self.state is not _OPEN:
            raise InvalidState(f"connection is {self.state.name.lower()}")
        if code is None:
            if reason != "":
                raise ProtocolError("cannot send a reason without a code")
            close = Close(CloseCode.NO_STATUS_RCVD, "")
            payload = b""
        else:
            close = Close(code, reason)
            payload = _close_payload(code, reason)
        self._write(_control(_CLOSE, payload))
        self.close_sent = close
        self.state = _CLOSING

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection: close frame (if OPEN), then half-close TCP.

        What the client sends from now on is discarded. Code 1006 sends
        no close frame (the connection is already broken).

        Raises:
            ProtocolError: ``code`` is not one a close frame may carry.
        """
        if self.state is _OPEN and code != _ABNORMAL:
            payload = _close_payload(code, reason)
            self._write(_control(_CLOSE, payload))
            self.close_sent = Close(code, reason)
            if self.close_rcvd is not None:
                self.close_rcvd_then_sent = True
            self.state = _CLOSING
        if not self._eof_sent:
            self._send_eof()
        self._buffer = None
        if self._eof_rcvd:
            self._closed()

    # ------------------------------------------------------------------

    def _send_eof(self) -> None:
        self._eof_sent = True
        self._write(SEND_EOF)

    def _closed(self) -> None:
        self.state = _CLOSED
        if self.logger is not None:
            self.logger.info("connection closed")

    def _write(self, data: bytes) -> None:
        writes = self._writes
        if writes is None:
            self._writes = [data]
        else:
            writes.append(data)

    def _event(self, frame: Frame) -> None:
        events = self._events
        if events is None:
            self._events = [frame]
        else:
            events.append(frame)
