"""ServerConnection against websockets' ServerProtocol, byte by byte.

websockets is the oracle: every case feeds the same bytes (and the same
calls) to both, and after each step asserts the same frames received,
the same bytes to send (close frames, pongs, the EOF marker), the same
state, close frames and log lines, and the same exceptions raised.
"""

from __future__ import annotations

import random
import struct
import sys
from collections.abc import Iterable
from typing import Any

import pytest
from websockets.frames import Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.utils import apply_mask  # pure Python: not the speedups

from sanic_chat.transport.rfc6455 import SEND_EOF, ServerConnection

MASK = b"\x37\xfa\x21\x3d"


class Log:
    """A logger that records what it is told (both get one)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def isEnabledFor(self, level: int) -> bool:
        return False

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(("debug", msg))

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(("info", msg))

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(("error", msg))


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
    length_form: int | None = None,
) -> bytes:
    """A client frame; ``length_form`` forces the 7/16/64-bit length."""
    head = bytes(((0x80 if fin else 0) | rsv << 4 | opcode,))
    size = len(payload)
    form = length_form
    if form is None:
        form = 7 if size < 126 else 16 if size < 65536 else 64
    bit = 0x80 if mask is not None else 0
    if form == 7:
        head += bytes((bit | size,))
    elif form == 16:
        head += bytes((bit | 126,)) + struct.pack("!H", size)
    else:
        head += bytes((bit | 127,)) + struct.pack("!Q", size)
    if mask is None:
        return head + payload
    return head + mask + apply_mask(payload, mask)


def close(code: int, reason: bytes = b"") -> bytes:
    return frame(Opcode.CLOSE, struct.pack("!H", code) + reason)


class Pair:
    """The oracle and the object under test, driven in lockstep."""

    def __init__(self, max_size: int | None = 1 << 20) -> None:
        self.log_theirs = Log()
        self.log_ours = Log()
        self.theirs = ServerProtocol(
            max_size=max_size,
            state=State.OPEN,
            logger=self.log_theirs,  # type: ignore[arg-type]
        )
        self.ours = ServerConnection(
            max_size,
            self.log_ours,  # type: ignore[arg-type]
        )
        self.received: list[tuple[int, bytes, bool]] = []
        self.sent: list[bytes] = []

    def do(self, method: str, *args: Any) -> None:
        """Call ``method`` on both; assert they end up the same."""
        outcomes = []
        for proto in (self.theirs, self.ours):
            try:
                getattr(proto, method)(*args)
            except Exception as exc:
                outcomes.append((type(exc), str(exc)))
            else:
                outcomes.append(None)
        assert outcomes[0] == outcomes[1], (method, args)
        self.check()

    def feed(self, data: bytes, splits: Iterable[int] = ()) -> None:
        """Feed ``data`` cut at ``splits`` (offsets), checking each piece."""
        start = 0
        for cut in [*sorted(splits), len(data)]:
            self.do("receive_data", data[start:cut])
            start = cut

    def check(self) -> None:
        theirs, ours = self.theirs, self.ours
        their_events = [
            (f.opcode, bytes(f.data), f.fin)  # type: ignore[union-attr]
            for f in theirs.events_received()
        ]
        our_events = [
            (f.opcode, f.data, f.fin) for f in ours.events_received()
        ]
        assert our_events == their_events
        for _, data, _ in our_events:
            assert type(data) is bytes
        their_writes = theirs.data_to_send()
        our_writes = list(ours.data_to_send())
        assert our_writes == their_writes
        assert ours.state is theirs.state
        assert ours.close_rcvd == theirs.close_rcvd
        assert ours.close_sent == theirs.close_sent
        assert ours.close_rcvd_then_sent == theirs.close_rcvd_then_sent
        assert ours.close_code == theirs.close_code
        assert self.log_ours.lines == self.log_theirs.lines
        if ours.state is not State.OPEN and their_writes[-1:] == [SEND_EOF]:
            assert ours._buffer is None  # what follows is discarded
        self.received += our_events
        self.sent += our_writes


def run(
    data: bytes, *, max_size: int | None = 1 << 20, eof: bool = True
) -> Pair:
    """Feed ``data`` whole, then byte by byte to a second pair."""
    pair = Pair(max_size)
    pair.feed(data)
    if eof:
        pair.do("receive_eof")
    slow = Pair(max_size)
    slow.feed(data, range(1, len(data)))
    if eof:
        slow.do("receive_eof")
    assert slow.received == pair.received
    assert slow.sent == pair.sent
    return pair


# ----------------------------------------------------------------------
# Hand-written cases: each rule, with the outcome spelled out as well


def test_data_frames_and_fragments_are_received_unmasked() -> None:
    pair = run(
        frame(Opcode.TEXT, b"hello")
        + frame(Opcode.BINARY, bytes(range(200)))
        + frame(Opcode.TEXT, b"x" * 70000)
        + frame(Opcode.TEXT, b"ab", fin=False)
        + frame(Opcode.CONT, b"", fin=False)
        + frame(Opcode.CONT, b"cd")
        + frame(Opcode.BINARY, b"", fin=False)
        + frame(Opcode.CONT, b"")
        + frame(Opcode.TEXT, b"", length_form=64)
    )
    assert [op for op, _, _ in pair.received] == [1, 2, 1, 1, 0, 0, 2, 0, 1]
    assert pair.received[0] == (Opcode.TEXT, b"hello", True)
    assert pair.received[2][1] == b"x" * 70000
    assert pair.sent == [SEND_EOF]  # EOF without a close: 1006, no frame
    assert pair.ours.close_code == 1006


def test_ping_is_answered_with_its_payload_pong_is_taken() -> None:
    pair = run(
        frame(Opcode.PING, b"abc") + frame(Opcode.PONG, b"z"), eof=False
    )
    assert pair.sent == [b"\x8a\x03abc"]
    assert pair.received == [
        (Opcode.PING, b"abc", True),
        (Opcode.PONG, b"z", True),
    ]


def test_ping_between_fragments_is_answered() -> None:
    run(
        frame(Opcode.TEXT, b"a", fin=False)
        + frame(Opcode.PING, b"p")
        + frame(Opcode.CONT, b"b")
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # no code: 1005 received, the empty frame echoed
        struct.pack("!H", 1000),
        struct.pack("!H", 1001) + "bye é".encode(),
        struct.pack("!H", 3000),
        struct.pack("!H", 4999) + b"x" * 123,
    ],
)
def test_close_is_echoed_then_tcp_closed(payload: bytes) -> None:
    pair = run(frame(Opcode.CLOSE, payload) + frame(Opcode.TEXT, b"lost"))
    assert pair.sent == [bytes((0x88, len(payload))) + payload, SEND_EOF]
    assert pair.received == [(Opcode.CLOSE, payload, True)]
    assert pair.ours.state is State.CLOSED


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),  # too short
        *[(struct.pack("!H", c), 1002) for c in (0, 999, 1004, 1005, 1006)],
        *[(struct.pack("!H", c), 1002) for c in (1015, 1016, 2999, 5000)],
        (struct.pack("!H", 1000) + b"\xff", 1007),
        (struct.pack("!H", 1000) + b"ok\xc3", 1007),
        (struct.pack("!H", 999) + b"\xff", 1007),  # reason checked first
    ],
)
def test_invalid_close_frames_fail(payload: bytes, code: int) -> None:
    pair = run(frame(Opcode.CLOSE, payload))
    assert pair.sent[0][2:4] == struct.pack("!H", code)
    assert pair.sent[1:] == [SEND_EOF]
    assert pair.received == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (frame(3, b"x"), b"invalid opcode"),
        (frame(0xB), b"invalid opcode"),
        (frame(Opcode.TEXT, b"x", mask=None), b"incorrect masking"),
        (frame(Opcode.TEXT, b"x", rsv=4), b"reserved bits must be 0"),
        (frame(Opcode.PING, b"x", rsv=1), b"reserved bits must be 0"),
        (frame(Opcode.PING, b"x" * 126), b"control frame too long"),
        (frame(Opcode.PONG, b"x", fin=False), b"fragmented control frame"),
        (frame(Opcode.CONT, b"x"), b"unexpected continuation frame"),
        (
            frame(Opcode.TEXT, b"a", fin=False) + frame(Opcode.BINARY, b"b"),
            b"expected a continuation frame",
        ),
        (
            frame(Opcode.TEXT, b"a", fin=False) + close(1000),
            b"incomplete fragmented message",
        ),
    ],
)
def test_protocol_errors_close_1002(data: bytes, reason: bytes) -> None:
    pair = run(data + frame(Opcode.TEXT, b"after"))
    assert pair.sent == [
        b"\x88" + bytes((2 + len(reason),)) + b"\x03\xea" + reason,
        SEND_EOF,
    ]
    assert (Opcode.TEXT, b"after", True) not in pair.received


def test_max_size_is_per_message_across_fragments() -> None:
    ok = run(
        frame(Opcode.TEXT, b"a" * 6, fin=False) + frame(Opcode.CONT, b"b" * 4),
        max_size=10,
    )
    assert ok.sent == [SEND_EOF]
    too_big = run(
        frame(Opcode.TEXT, b"a" * 6, fin=False) + frame(Opcode.CONT, b"b" * 5),
        max_size=10,
    )
    reason = (
        b"frame with 5 bytes after reading 6 bytes exceeds limit of 10 bytes"
    )
    assert too_big.sent[0] == b"\x88" + bytes((len(reason) + 2,)) + (
        b"\x03\xf1" + reason
    )
    run(frame(Opcode.BINARY, b"x" * 11), max_size=10)
    run(frame(Opcode.BINARY, b"x" * 300), max_size=10)  # 16-bit length
    run(frame(Opcode.CONT, b"x" * 11), max_size=10)  # 1009 before 1002
    run(  # a ping counts against the message under way
        frame(Opcode.TEXT, b"a" * 8, fin=False) + frame(Opcode.PING, b"xyz"),
        max_size=10,
    )
    run(frame(Opcode.TEXT, b"x" * 5000), max_size=None)


def test_a_too_big_frame_is_refused_at_its_header() -> None:
    pair = Pair(max_size=1000)
    pair.feed(b"\x82\xfe\xff\xff")  # 65535 bytes announced, none sent
    assert pair.sent[-1] == SEND_EOF
    assert pair.ours.state is State.CLOSING
    pair.feed(b"more is discarded")
    assert pair.ours._buffer is None


def test_server_initiated_close_and_the_clients_answer() -> None:
    pair = Pair()
    pair.do("send_close", 1001, "going")
    assert pair.ours.state is State.CLOSING
    # Still parsed after our close: frames (the transport ignores them),
    # pings answered; then the client's close, then TCP.
    pair.feed(frame(Opcode.TEXT, b"late") + frame(Opcode.PING, b"p"))
    pair.feed(close(1001))
    assert pair.sent[-1] == SEND_EOF
    pair.do("send_ping", b"")  # still allowed while CLOSING
    pair.do("receive_eof")
    assert pair.ours.state is State.CLOSED
    assert pair.ours.close_rcvd_then_sent is False
    pair.do("send_ping", b"")  # InvalidState, as websockets
    pair.do("send_close", 1000, "")  # InvalidState
    pair.do("receive_data", b"x")  # EOFError: stream ended
    pair.do("receive_eof")  # idempotent


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (1000, ""),
        (1008, "too many"),
        (4000, "é" * 61),
        (None, ""),
        (None, "reason without a code"),
        (1006, ""),
        (1005, ""),
        (999, "x"),
        (1000, "x" * 124),  # too long for a control frame
    ],
)
def test_send_close(code: int | None, reason: str) -> None:
    pair = Pair()
    pair.do("send_close", code, reason)
    pair.do("send_close", 1000, "")  # a second one is refused
    pair.feed(close(1000) + frame(Opcode.TEXT, b"x"))
    pair.do("receive_eof")


@pytest.mark.parametrize(
    "code", [1007, 1002, 1011, 1006, 1005, 999, 3000, 1008]
)
def test_fail(code: int) -> None:
    pair = Pair()
    pair.feed(frame(Opcode.TEXT, b"a"))
    pair.do("fail", code, "invalid UTF-8")
    pair.feed(frame(Opcode.TEXT, b"discarded") + close(1000))
    pair.do("fail", 1002, "again")
    pair.do("receive_eof")
    assert pair.ours.state is State.CLOSED


def test_fail_after_close_sent_sends_only_eof() -> None:
    pair = Pair()
    pair.do("send_close", 1000, "")
    pair.do("fail", 1007, "invalid UTF-8")
    assert pair.sent[-1] == SEND_EOF
    pair.do("receive_eof")


def test_fail_after_eof_is_closed_at_once() -> None:
    pair = Pair()
    pair.feed(frame(Opcode.TEXT, b"a")[:3])
    pair.do("receive_eof")
    pair.do("fail", 1007, "x")


def test_eof_in_the_middle_of_a_frame() -> None:
    pair = Pair()
    pair.feed(frame(Opcode.TEXT, b"abcdef")[:5])
    pair.do("receive_eof")
    assert pair.sent == [SEND_EOF]
    assert pair.ours.state is State.CLOSED


def test_a_parser_bug_fails_the_connection_1011(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(data: bytes, mask: bytes) -> bytes:
        raise RuntimeError("bug")

    monkeypatch.setattr("websockets.frames.apply_mask", broken)
    monkeypatch.setattr("sanic_chat.transport.rfc6455.apply_mask", broken)
    pair = Pair()
    pair.feed(frame(Opcode.TEXT, b"a") + frame(Opcode.TEXT, b"b"))
    assert pair.sent == [b"\x88\x02\x03\xf3", SEND_EOF]
    assert ("error", "parser failed") in pair.log_ours.lines
    pair.do("receive_eof")


def test_long_reads_keep_at_most_one_frame_buffered() -> None:
    max_size = 100_000
    data = frame(Opcode.BINARY, b"y" * max_size) * 3
    pair = Pair(max_size)
    for start in range(0, len(data), 4096):
        pair.feed(data[start : start + 4096])
        held = pair.ours._buffer
        assert held is None or len(held) <= 14 + max_size
    assert len(pair.received) == 3
    assert pair.ours._buffer is None


def test_an_idle_connection_is_small() -> None:
    conn = ServerConnection(1 << 20)
    assert not hasattr(conn, "__dict__")
    conn.receive_data(frame(Opcode.TEXT, b"hi"))
    conn.receive_data(frame(Opcode.PING, b"hi"))
    conn.events_received()
    conn.data_to_send()
    # Nothing left behind: no buffer, no lists, one small object.
    assert conn._buffer is None
    assert conn._events is None
    assert conn._writes is None
    assert sys.getsizeof(conn) <= 128


# ----------------------------------------------------------------------
# Seeded random streams


def _random_payload(
    rng: random.Random, opcode: int, max_size: int, tidy: bool
) -> bytes:
    if opcode == Opcode.CLOSE and rng.random() < 0.7:
        code = rng.choice(
            [
                *(1000, 1001, 1002, 1005, 1006, 1007, 1011, 1015, 2999),
                *(3000, 4999, 5000, 0, 65535, rng.randrange(65536)),
            ]
        )
        reason = rng.choice(
            [b"", b"bye", "é".encode(), b"\xff", b"ok\xe2\x82", b"r" * 123]
        )
        return struct.pack("!H", code) + reason
    if tidy:  # within the limits, mostly
        limit = min(max_size, 125) if opcode >= 8 else max_size // 3
        return rng.randbytes(rng.randrange(limit + 1))
    size = rng.choice(
        [0, 1, 2, 5, 125, 126, max_size, max_size + 1]
        + [rng.randrange(max_size + 20)] * 4
    )
    return rng.randbytes(size)


def _random_stream(rng: random.Random, max_size: int) -> bytes:
    """Frames of all kinds; a tidy stream breaks fewer rules, later."""
    tidy = rng.random() < 0.5
    frames = []
    fragmenting = False
    for _ in range(rng.randrange(1, 12)):
        opcode = rng.choice(
            [0, 0, 1, 1, 2, 2, 8, 9, 9, 10, 10, rng.randrange(16)]
        )
        if tidy and rng.random() < 0.9:
            opcode = (
                rng.choice([0, 9, 10] if fragmenting else [1, 2, 9, 10])
                if rng.random() < 0.95
                else 8
            )
        fin = rng.random() < 0.7
        if tidy and opcode >= 8:
            fin = rng.random() < 0.98
        if opcode < 8:
            fragmenting = not fin
        payload = _random_payload(rng, opcode, max_size, tidy)
        roll = rng.random() * (4 if tidy else 1)
        frames.append(
            frame(
                opcode,
                payload,
                fin=fin,
                rsv=rng.choice([1, 2, 4, 7]) if roll < 0.03 else 0,
                mask=None if 0.98 < roll < 1 else rng.randbytes(4),
                length_form=rng.choice([None, None, None, 16, 64])
                if len(payload) < 65536
                else None,
            )
        )
    return b"".join(frames)


@pytest.mark.parametrize("seed", range(6))
def test_random_streams_match_websockets(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(1000):
        max_size = rng.choice([0, 10, 130, 300, 70000])
        data = _random_stream(rng, max_size)
        pair = Pair(max_size)
        cuts = rng.sample(range(len(data)), min(len(data), rng.randrange(6)))
        # Sometimes a call from the transport comes in between reads.
        calls = [
            ("send_ping", b""),
            ("send_close", 1000, ""),
            ("fail", 1007, "invalid UTF-8"),
            ("receive_eof",),
        ]
        start = 0
        for cut in [*sorted(cuts), len(data)]:
            pair.do("receive_data", data[start:cut])
            start = cut
            if rng.random() < 0.1:
                pair.do(*rng.choice(calls))
        if rng.random() < 0.8:
            pair.do("receive_eof")


# ----------------------------------------------------------------------
# The fast transport on it (test_transport_units drives it on websockets)


def _fast_socket(max_size: int = 1 << 20) -> tuple[Any, Any]:
    import asyncio

    from sanic_chat.transport.fast import FastSocket
    from tests.test_transport_units import FakeTransport

    transport = FakeTransport()
    can_write = asyncio.Event()
    can_write.set()
    socket = FastSocket(
        transport,
        can_write,
        ServerConnection(max_size),
        close_timeout=10.0,
        ping_interval=None,
        ping_timeout=None,
    )
    return socket, transport


async def test_fast_socket_messages_ping_and_closing_handshake() -> None:
    socket, transport = _fast_socket()
    socket.data_received(
        frame(Opcode.TEXT, "hé".encode())
        + frame(Opcode.BINARY, b"a", fin=False)
        + frame(Opcode.PING, b"p")
        + frame(Opcode.CONT, b"b")
    )
    assert transport.data() == b"\x8a\x01p"
    assert await socket.recv() == "hé"
    assert await socket.recv() == b"ab"
    socket.data_received(close(1001, b"bye"))
    assert transport.data() == b"\x88\x05\x03\xe9bye"
    assert transport.closed  # the EOF marker: FIN
    assert socket.close_received == 1001
    assert not socket.open
    socket.eof_received()
    assert socket.ws_proto.state is State.CLOSED
    assert await socket.recv() is None


async def test_fast_socket_fails_invalid_utf8_and_too_big_frames() -> None:
    socket, transport = _fast_socket()
    socket.data_received(frame(Opcode.TEXT, b"\xff") + frame(Opcode.TEXT))
    assert transport.data() == b"\x88\x0f\x03\xefinvalid UTF-8"
    assert transport.closed
    assert await socket.recv() is None
    socket, transport = _fast_socket(max_size=10)
    socket.data_received(frame(Opcode.BINARY, b"x" * 11))
    reason = b"frame with 11 bytes exceeds limit of 10 bytes"
    assert transport.data() == bytes((0x88, len(reason) + 2)) + (
        b"\x03\xf1" + reason
    )
    assert transport.closed
    socket.connection_lost(None)  # what the closed transport reports
    assert await socket.recv() is None
