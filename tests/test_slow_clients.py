"""Half-sent requests against ``python -m example_app``.

Sanic's REQUEST_TIMEOUT counts silence, not the whole request: each byte
received restarts it (docs/deployment.md). So a client that trickles
slower than the timeout is closed, and one that trickles faster is
bounded only by REQUEST_MAX_HEADER_SIZE. Both bounds are tested here,
with the timeout shortened through the environment so that the test
takes seconds; the example app's own values are checked apart.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from example_app import SANIC_SETTINGS, create_app

from .conftest import run_example

PARTIAL = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
)


def closed_after(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Read until the server closes; return what it sent and when."""
    started = time.monotonic()
    sock.settimeout(limit)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received, time.monotonic() - started


@pytest.mark.slow
def test_a_client_silent_past_the_request_timeout_is_closed(
    tmp_path: Path,
) -> None:
    with run_example(
        tmp_path / "example.log", SANIC_REQUEST_TIMEOUT="2"
    ) as port:
        with socket.create_connection(("127.0.0.1", port), 5) as sock:
            sock.sendall(PARTIAL)
            # Faster than the timeout: kept open past it (the timer
            # restarts on each byte, it is not a deadline).
            for i in range(4):
                time.sleep(1)
                sock.sendall(b"X-Trickle-%d: 1\r\n" % i)
            # Then a line every 10 s: closed before the next one, 2 s
            # (the timeout) plus at most 1 s (Sanic checks every
            # timeout / 2) after the last byte.
            answer, took = closed_after(sock, 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert 1.5 < took < 4, took


@pytest.mark.slow
def test_a_fast_trickle_is_bounded_by_the_header_size(
    tmp_path: Path,
) -> None:
    with run_example(
        tmp_path / "example.log", SANIC_REQUEST_TIMEOUT="2"
    ) as port:
        with socket.create_connection(("127.0.0.1", port), 5) as sock:
            sock.sendall(PARTIAL)
            started = time.monotonic()
            line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
            try:
                for _ in range(20):  # 20 KB, more than the 8 KiB bound
                    sock.sendall(line)
                    time.sleep(0.1)
            except OSError:  # closed while we were still sending
                pass
            answer, _ = closed_after(sock, 5)
            took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert took < 2.5, took  # 9 lines of 1 KB, not the 20


def test_the_example_app_sets_chat_sized_sanic_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SANIC_CHAT_JWT_SECRET", "x" * 32)
    app = create_app("example_limits_default")
    assert SANIC_SETTINGS == {
        "REQUEST_TIMEOUT": 10,
        "KEEP_ALIVE_TIMEOUT": 5,
        "REQUEST_MAX_HEADER_SIZE": 8192,
        "REQUEST_MAX_SIZE": 1_000_000,
    }
    for key, value in SANIC_SETTINGS.items():
        assert app.config[key] == value, key
    # The environment wins over the example's values.
    monkeypatch.setenv("SANIC_REQUEST_TIMEOUT", "30")
    app = create_app("example_limits_env")
    assert app.config.REQUEST_TIMEOUT == 30
    assert app.config.KEEP_ALIVE_TIMEOUT == 5
