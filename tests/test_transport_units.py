"""Unit tests of the transports: bytes in, bytes out, no sockets.

:class:`FastSocket` is driven the way Sanic's protocol drives it: client
frame bytes go in through ``data_received``, and the test asserts on the
exact bytes it writes to a fake asyncio transport. :class:`Keepalive`,
:class:`Fragments` and :class:`Inbox` are plain objects, tested with
plain calls; :class:`PortableSocket` runs on a fake channel.
"""

from __future__ import annotations

import asyncio
import struct
import time
import types

import pytest
from websockets.frames import Opcode

from sanic_chat.limits import TokenBucket
from sanic_chat.transport import base
from sanic_chat.transport.base import KEEPALIVE_TIMEOUT, Inbox, Keepalive
from sanic_chat.transport.fast import (
    CORK_LIMIT,
    FastSocket,
    Fragments,
    TooManyFragments,
)
from sanic_chat.transport.flag import Flag
from sanic_chat.transport.portable import PortableSocket
from sanic_chat.transport.rfc6455 import ServerConnection
from sanic_chat.wire import text_frame

MASK = b"\x01\x02\x03\x04"


class _Lost:
    """Records the socket's ``on_lost`` call in ``events``."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def socket_lost(self) -> None:
        self.events.append("lost")


def client_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True
) -> bytes:
    """A masked client-to-server frame (RFC 6455, section 5.2)."""
    head = bytes(((0x80 if fin else 0) | opcode,))
    size = len(payload)
    if size < 126:
        head += bytes((0x80 | size,))
    else:
        head += bytes((0x80 | 126,)) + struct.pack("!H", size)
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + masked


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


def server_close(code: int, reason: str = "") -> bytes:
    """The unmasked close frame the server sends."""
    payload = close_payload(code, reason)
    return bytes((0x88, len(payload))) + payload


class FakeTransport(asyncio.Transport):
    """Records what the socket does to its TCP transport."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.buffer = 0
        self.reading = True
        self.closed = False
        self.aborted = False
        self.eof_written = False

    def data(self) -> bytes:
        data = b"".join(self.written)
        self.written.clear()
        return data

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return self.buffer

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True


def fast_socket(
    *,
    max_size: int = 1 << 20,
    close_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
) -> tuple[FastSocket, FakeTransport, list[str]]:
    """A FastSocket after the handshake, and what it wrote and reported."""
    transport = FakeTransport()
    socket = FastSocket(
        transport,
        Flag(True),
        ServerConnection(max_size),
        close_timeout=close_timeout,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
    )
    events: list[str] = []
    socket.on_lost = _Lost(events)
    return socket, transport, events


# ----------------------------------------------------------------------
# Pure objects


def test_keepalive_pings_after_the_interval_then_waits_for_the_pong() -> None:
    keepalive = Keepalive(20.0, 10.0, now=100.0)
    assert keepalive.check(119.9) is None
    assert keepalive.check(120.0) == "ping"
    keepalive.sent(120.0)
    assert keepalive.check(130.0) is None  # one ping at a time
    assert keepalive.check(130.1) == "timeout"
    keepalive.answered()
    assert keepalive.check(139.9) is None  # timed from the last ping
    assert keepalive.check(140.0) == "ping"


def test_keepalive_restart_times_the_pong_from_now() -> None:
    keepalive = Keepalive(20.0, 10.0, now=0.0)
    keepalive.restart(50.0)  # nothing unanswered: nothing to restart
    assert keepalive.sent_at is None
    keepalive.sent(20.0)
    keepalive.restart(50.0)
    assert keepalive.check(60.0) is None
    assert keepalive.check(60.5) == "timeout"


def test_keepalive_without_interval_or_timeout_never_acts() -> None:
    never = Keepalive(None, None, now=0.0)
    assert never.check(1e9) is None
    patient = Keepalive(1.0, None, now=0.0)
    patient.sent(1.0)
    assert patient.check(1e9) is None


def test_fragments_assemble_text_and_binary_messages() -> None:
    fragments = Fragments()
    assert fragments.add(Opcode.TEXT, "hé".encode(), True) == "hé"
    assert fragments.add(Opcode.BINARY, b"\x00", False) is None
    assert fragments.add(Opcode.CONT, b"", False) is None
    assert fragments.add(Opcode.CONT, b"\x01", True) == b"\x00\x01"
    assert fragments.add(Opcode.TEXT, b"", True) == ""


def test_fragments_refuse_a_message_in_too_many_pieces() -> None:
    fragments = Fragments()
    fragments.add(Opcode.TEXT, b"a", False)
    for _ in range(255):
        fragments.add(Opcode.CONT, b"", False)
    with pytest.raises(TooManyFragments):
        fragments.add(Opcode.CONT, b"", False)
    # The rest of the refused message is ignored; the next one counts.
    assert fragments.add(Opcode.CONT, b"b", True) is None
    assert fragments.add(Opcode.TEXT, b"ok", True) == "ok"


def test_fragments_raise_on_invalid_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        Fragments().add(Opcode.TEXT, b"\xff", True)


def test_inbox_counts_messages_and_bytes() -> None:
    inbox = Inbox()
    inbox.put("abc")
    inbox.put(b"de")
    assert (len(inbox), inbox.bytes) == (2, 5)
    inbox.end()
    assert inbox.ended


async def test_inbox_returns_what_arrived_before_the_end_then_none() -> None:
    inbox = Inbox()
    waiting = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put("first")
    assert await waiting == "first"
    inbox.put("second")
    inbox.end()
    assert await inbox.get() == "second"
    assert await inbox.get() is None
    assert inbox.bytes == 0


# ----------------------------------------------------------------------
# FastSocket: reading


async def test_text_and_binary_frames_become_messages() -> None:
    socket, transport, _ = fast_socket()
    socket.data_received(
        client_frame(0x1, "héllo".encode()) + client_frame(0x2, b"\x00\xff")
    )
    assert await socket.recv() == "héllo"
    assert await socket.recv() == b"\x00\xff"
    assert transport.data() == b""  # nothing to answer


async def test_a_frame_split_across_reads_and_fragments_is_one_message() -> (
    None
):
    socket, _, _ = fast_socket()
    data = client_frame(0x1, b"hel", fin=False) + client_frame(0x0, b"lo")
    for i in range(len(data)):  # byte by byte
        socket.data_received(data[i : i + 1])
    assert await socket.recv() == "hello"


async def test_a_ping_is_answered_with_a_pong_carrying_its_payload() -> None:
    socket, transport, _ = fast_socket()
    socket.data_received(client_frame(0x9, b"abc"))
    assert transport.data() == b"\x8a\x03abc"


async def test_a_ping_flood_is_closed_with_1008_and_no_more_is_read() -> None:
    socket, transport, events = fast_socket()
    socket.limiter = TokenBucket(1.0, 2)
    socket.max_strikes = 3
    socket.data_received(client_frame(0x9) * 10)
    # websockets queues the ten pongs as it parses the read; the charge
    # that follows refuses the fifth ping (third strike): close 1008.
    written = transport.data()
    pongs = b"\x8a\x00" * 10
    assert written == pongs + server_close(1008, "too many control frames")
    assert transport.eof_written  # a half-close: the client reads it all
    assert events == ["lost"]
    socket.data_received(client_frame(0x1, b"ignored"))
    assert await socket.recv() is None


async def test_an_oversized_frame_closes_with_1009() -> None:
    socket, transport, events = fast_socket(max_size=10)
    socket.data_received(client_frame(0x1, b"x" * 11))
    assert transport.data() == server_close(
        1009, "frame with 11 bytes exceeds limit of 10 bytes"
    )
    assert transport.closed  # then FIN
    assert events == ["lost"]
    assert socket.close_received is None
    socket.connection_lost(None)  # what the closed transport reports
    assert await socket.recv() is None


async def test_invalid_utf8_closes_with_1007() -> None:
    socket, transport, _ = fast_socket()
    socket.data_received(client_frame(0x1, b"\xff"))
    assert transport.data() == server_close(1007, "invalid UTF-8")
    assert await socket.recv() is None


async def test_too_many_fragments_close_with_1008() -> None:
    socket, transport, _ = fast_socket()
    data = client_frame(0x1, b"a", fin=False)
    data += client_frame(0x0, b"", fin=False) * 256
    socket.data_received(data)
    assert transport.data() == server_close(
        1008, "too many fragments in one message"
    )
    assert await socket.recv() is None


async def test_reading_pauses_when_messages_pile_up_and_resumes() -> None:
    socket, transport, _ = fast_socket()
    socket.data_received(client_frame(0x1, b"m") * 16)
    assert not transport.reading
    assert socket.reading_paused
    for _ in range(11):
        await socket.recv()
    assert not transport.reading  # 5 left: above the low-water mark
    await socket.recv()
    assert transport.reading
    assert not socket.reading_paused


async def test_reading_pauses_on_bytes_too() -> None:
    socket, transport, _ = fast_socket(max_size=2 << 20)
    payload = b"x" * (1 << 20)  # one message of 1 MiB: the byte mark
    head = bytes((0x82, 0x80 | 127)) + struct.pack("!Q", len(payload))
    socket.data_received(head + MASK + payload)  # binary: any bytes do
    assert not transport.reading
    assert len(await socket.recv() or b"") == len(payload)
    assert transport.reading


# ----------------------------------------------------------------------
# FastSocket: writing and closing


async def test_writes_go_to_the_transport_unchanged_while_open() -> None:
    socket, transport, _ = fast_socket()
    frame = text_frame("hi")
    socket.write(frame)
    assert transport.written == [b"\x81\x02hi"]
    assert transport.written[0] == frame
    assert socket.write_direct == transport.write


async def test_a_corked_socket_writes_its_setup_in_one_write() -> None:
    socket, transport, _ = fast_socket()
    socket.cork(b"HTTP/1.1 101\r\n\r\n")
    socket.write_direct(text_frame("welcome"))
    socket.write_direct(text_frame("joined"))
    assert transport.written == []
    socket.uncork()
    assert transport.written == [
        b"HTTP/1.1 101\r\n\r\n" + text_frame("welcome") + text_frame("joined")
    ]
    assert socket.write_direct == transport.write  # the hot path again
    socket.uncork()  # twice: nothing more
    assert len(transport.written) == 1


async def test_a_cork_lasts_until_the_first_wait_at_most() -> None:
    socket, transport, _ = fast_socket()
    socket.cork(b"head")
    socket.write_direct(b"one")
    await asyncio.sleep(0)  # the handler waits: what it held goes out
    assert transport.written == [b"headone"]
    socket.write_direct(b"two")  # a stale reference still writes at once
    assert transport.written == [b"headone", b"two"]


async def test_a_cork_keeps_the_order_of_everything_written() -> None:
    socket, transport, _ = fast_socket()
    socket.cork(b"head")
    socket.write_direct(b"frame")
    socket.start_closing(1000, "bye")  # the close frame comes after
    assert transport.data() == b"headframe" + server_close(1000, "bye")
    socket, transport, _ = fast_socket()
    socket.cork(b"head")
    socket.write(b"queued")  # the flush task's write: uncorks first
    assert transport.written == [b"head", b"queued"]


async def test_a_cork_holds_at_most_its_byte_limit() -> None:
    socket, transport, _ = fast_socket()
    socket.cork(b"h")
    big = b"x" * CORK_LIMIT
    socket.write_direct(big)
    assert transport.written == [b"h" + big]
    socket.write_direct(b"after")
    assert transport.written[-1] == b"after"


async def test_can_write_reflects_flow_control() -> None:
    socket, transport, _ = fast_socket()
    assert socket.writable()
    socket.can_write.clear()  # what Sanic's pause_writing does
    assert not socket.writable()
    transport.buffer = 70_000
    assert socket.buffered() == 70_000
    waiting = asyncio.ensure_future(socket.wait_writable())
    await asyncio.sleep(0)
    assert not waiting.done()
    socket.can_write.set()  # resume_writing
    await asyncio.wait_for(waiting, 1)
    assert socket.writable()


async def test_closing_handshake_started_by_the_server() -> None:
    socket, transport, events = fast_socket()
    socket.data_received(client_frame(0x1, b"before"))
    socket.start_closing(1000, "bye")
    assert transport.data() == server_close(1000, "bye")
    assert events == ["lost"]
    assert not socket.open
    socket.write(text_frame("too late"))
    assert transport.data() == b""
    assert await socket.recv() == "before"  # what came first is still read
    assert await socket.recv() is None
    socket.data_received(client_frame(0x8, close_payload(1000)))
    assert socket.close_received == 1000
    assert transport.closed  # the handshake is done: FIN
    assert not transport.aborted
    socket.connection_lost(None)
    assert events == ["lost"]  # once


async def test_closing_handshake_started_by_the_client() -> None:
    socket, transport, events = fast_socket()
    socket.data_received(client_frame(0x8, close_payload(1001, "away")))
    assert transport.data() == server_close(1001, "away")
    assert socket.close_received == 1001
    assert transport.closed  # the server closes TCP first
    assert events == ["lost"]
    socket.connection_lost(None)
    assert await socket.recv() is None


async def test_a_client_that_ignores_the_close_is_aborted() -> None:
    socket, transport, _ = fast_socket(close_timeout=0.01)
    socket.start_closing(1001, "")
    await asyncio.sleep(0.05)
    assert transport.aborted


async def test_connection_lost_ends_reading_and_the_close_timer() -> None:
    socket, transport, events = fast_socket(close_timeout=0.01)
    socket.start_closing(1000)
    socket.connection_lost(None)
    assert events == ["lost"]
    await asyncio.sleep(0.05)
    assert not transport.aborted
    assert await socket.recv() is None


# ----------------------------------------------------------------------
# FastSocket: keepalive


async def test_keepalive_pings_when_due_and_reports_an_unanswered_ping() -> (
    None
):
    socket, transport, _ = fast_socket(ping_interval=20, ping_timeout=10)
    # Times a little off the marks: float sums are not exact.
    start = time.monotonic()  # just after the handshake
    assert socket.keepalive(start + 19.5) is None
    assert transport.data() == b""
    assert socket.keepalive(start + 20.5) is None
    assert transport.data() == b"\x89\x00"  # an empty ping
    assert socket.keepalive(start + 30) is None  # not yet late
    assert socket.keepalive(start + 31) == KEEPALIVE_TIMEOUT


async def test_a_pong_answers_the_keepalive_ping() -> None:
    socket, transport, _ = fast_socket(ping_interval=20, ping_timeout=10)
    start = time.monotonic()
    socket.keepalive(start + 20.5)
    socket.data_received(client_frame(0xA))
    assert socket.keepalive(start + 35) is None
    assert socket.keepalive(start + 41) is None  # the next ping
    assert transport.data() == b"\x89\x00" * 2


async def test_keepalive_waits_while_reading_is_paused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    socket, transport, _ = fast_socket(ping_interval=20, ping_timeout=10)
    start = time.monotonic()
    socket.keepalive(start + 20.5)
    assert transport.data() == b"\x89\x00"
    socket.data_received(client_frame(0x1, b"m") * 16)  # paused
    # The pong may wait unread behind the requests: no verdict now.
    assert socket.keepalive(start + 100) is None
    assert transport.data() == b""
    # Reading resumes at start + 500: the pong is timed from then.
    clock = types.SimpleNamespace(monotonic=lambda: start + 500)
    monkeypatch.setattr(base, "time", clock)
    for _ in range(12):
        await socket.recv()
    assert not socket.reading_paused
    assert socket.keepalive(start + 509.5) is None
    assert socket.keepalive(start + 510.5) == KEEPALIVE_TIMEOUT


async def test_keepalive_off_sends_nothing() -> None:
    socket, transport, _ = fast_socket(ping_interval=None)
    assert socket.keepalive(1e9) is None
    assert transport.data() == b""


# ----------------------------------------------------------------------
# PortableSocket


class FakeChannel:
    """A public WebSocket API: awaited sends and receives."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.incoming: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        self.aborted = False

    @property
    def close_received(self) -> int | None:
        return None

    async def send(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(text)

    async def receive(self) -> str | bytes | None:
        return await self.incoming.get()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        self.incoming.put_nowait(None)

    def abort(self) -> None:
        self.aborted = True


async def test_portable_socket_sends_frames_as_texts_and_closes() -> None:
    channel = FakeChannel()
    socket = PortableSocket(channel, close_timeout=1)
    events: list[str] = []
    socket.on_lost = _Lost(events)
    socket.write(text_frame("a") + text_frame("b"))
    await channel.incoming.put("hello")
    assert await asyncio.wait_for(socket.recv(), 1) == "hello"
    socket.start_closing(1000, "bye")
    await asyncio.wait_for(socket.wait_closed(), 1)
    assert channel.sent == ["a", "b"]
    assert channel.closed == (1000, "bye")
    assert events == ["lost"]
    assert socket.keepalive(1e9) is None  # the server's job


async def test_portable_socket_clears_can_write_above_its_high_mark() -> None:
    channel = FakeChannel()
    channel.gate.clear()  # the client does not read
    socket = PortableSocket(channel, close_timeout=1)
    frame = text_frame("x" * 1000)
    for _ in range(66):
        socket.write(frame)
    assert socket.buffered() == 66 * len(frame)  # over 64 KiB
    assert not socket.writable()
    channel.gate.set()
    await asyncio.wait_for(socket.wait_writable(), 1)
    assert socket.writable()
    socket.abort()


def test_handshake_finds_a_header_token_in_any_spelling() -> None:
    from sanic_chat.transport.handshake import _has_token

    for values in (
        ["websocket"],
        [" WebSocket "],
        ["keep-alive, websocket"],
        ["h2c ,websocket"],
        ["a", "b,  WEBSOCKET  , c"],
    ):
        assert _has_token(values, "websocket"), values
    for values in ([], [""], ["websockets"], ["web socket"], ["a,b", "c"]):
        assert not _has_token(values, "websocket"), values


async def test_fail_connection_sends_its_close_then_drops_the_connection() -> (
    None
):
    # Sanic's graceful shutdown, when its time is up, calls it with 1001.
    socket, transport, _ = fast_socket()
    assert socket.fail_connection(1001, "going away") is True
    assert transport.data() == server_close(1001, "going away")
    assert transport.aborted


async def test_fail_connection_with_1006_drops_it_without_a_close_frame() -> (
    None
):
    # 1006 (its default) is the code no close frame may carry.
    socket, transport, _ = fast_socket()
    assert socket.fail_connection() is True
    assert transport.data() == b""
    assert transport.aborted
