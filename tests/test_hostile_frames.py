"""Malformed frames against a live server on the fast transport.

``tests/test_rfc6455.py`` holds the frame parser to websockets' rules,
sans I/O. This sends the same kinds of hostile bytes through Sanic's
server to the fast transport: each connection gets its close code and
reason, then TCP is closed (no hang), nothing is logged as an error (the
``no_errors_logged`` fixture), and the server still serves others.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from websockets.frames import Opcode

from .conftest import live, make_app
from .test_limits import _raw_upgrade, _read_until_closed
from .test_rfc6455 import MASK, close, frame


def _close(code: int, reason: bytes = b"") -> bytes:
    """The unmasked close frame the server sends."""
    payload = struct.pack("!H", code) + reason
    return bytes((0x88, len(payload))) + payload


def _too_big(length: int) -> bytes:
    return _close(
        1009, b"frame with %d bytes exceeds limit of %d bytes" % (length, 1024)
    )


HOSTILE = [
    # 64-bit lengths: all ones, and only the top bit (which must be 0)
    (bytes((0x82, 0xFF)) + b"\xff" * 8 + MASK, _too_big(2**64 - 1)),
    (bytes((0x82, 0xFF, 0x80)) + bytes(7) + MASK, _too_big(2**63)),
    (frame(Opcode.BINARY, b"x" * 1025), _too_big(1025)),
    (close(1005), _close(1002, b"invalid status code")),
    (close(999), _close(1002, b"invalid status code")),
    (close(5000), _close(1002, b"invalid status code")),
    (frame(Opcode.CLOSE, b"\x03"), _close(1002, b"close frame too short")),
    (
        close(1000, b"\xff"),
        _close(1007, b"invalid start byte at position 0"),
    ),
    (close(1000) + frame(Opcode.TEXT, b"{}") * 50, _close(1000)),
    (
        frame(Opcode.PING, b"p" * 126),
        _close(1002, b"control frame too long"),
    ),
    (
        frame(Opcode.PING, b"p", fin=False),
        _close(1002, b"fragmented control frame"),
    ),
    (
        frame(Opcode.TEXT, b"{", fin=False) + close(1000),
        _close(1002, b"incomplete fragmented message"),
    ),
    (
        frame(Opcode.TEXT, b"{", fin=False) + frame(Opcode.TEXT, b"}"),
        _close(1002, b"expected a continuation frame"),
    ),
    (frame(Opcode.CONT, b"x"), _close(1002, b"unexpected continuation frame")),
    (
        frame(Opcode.TEXT, b"{}", rsv=4),
        _close(1002, b"reserved bits must be 0"),
    ),
    (frame(Opcode.TEXT, b"{}", mask=None), _close(1002, b"incorrect masking")),
    (frame(3), _close(1002, b"invalid opcode")),
    (frame(Opcode.TEXT, b"\xff"), _close(1007, b"invalid UTF-8")),
    (
        frame(Opcode.TEXT, b"\xe2\x82", fin=False) + frame(Opcode.CONT, b"x"),
        _close(1007, b"invalid UTF-8"),
    ),
]


def _opcodes_and_last(data: bytes) -> tuple[list[int], bytes]:
    """The opcodes of the server's (unmasked) frames, and the last frame."""
    opcodes, pos, last = [], 0, b""
    while pos < len(data):
        length, start = data[pos + 1] & 0x7F, pos + 2
        if length == 126:
            length, start = struct.unpack_from("!H", data, start)[0], start + 2
        elif length == 127:
            length, start = struct.unpack_from("!Q", data, start)[0], start + 8
        opcodes.append(data[pos] & 0x0F)
        last, pos = data[pos : start + length], start + length
    assert pos == len(data), data  # whole frames, nothing after them
    return opcodes, last


def _send_and_read(
    port: int, data: bytes, half_close: bool
) -> tuple[list[int], bytes]:
    sock = _raw_upgrade(port)
    try:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return _opcodes_and_last(_read_until_closed(sock))
    finally:
        sock.close()


@pytest.mark.transports("sanic")
async def test_hostile_frames_get_their_close_code_and_break_nothing(
    transport: str,
) -> None:
    app = make_app()
    app.config.WEBSOCKET_MAX_SIZE = 1024
    async with live(app) as srv:
        for data, answer in HOSTILE:
            opcodes, last = await asyncio.to_thread(
                _send_and_read, srv.port, data, False
            )
            assert last == answer, data[:16]
            assert opcodes.count(Opcode.CLOSE) == 1
        # A frame cut short by the client's EOF: no close frame (1006).
        data = frame(Opcode.TEXT, b"abcdef")[:5]
        opcodes, _ = await asyncio.to_thread(
            _send_and_read, srv.port, data, True
        )
        assert Opcode.TEXT in opcodes  # welcome came
        assert Opcode.CLOSE not in opcodes
        async with srv.client() as calm:
            await calm.say("still serving")
