"""Bodies on the HTTP API: nothing is read before the caller is known.

A cross-site form can POST ``text/plain`` with the victim's cookie; a
stranger can send 60 MB. Raw sockets send the headers and only a little
of the body: a server that buffers bodies before authenticating never
answers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from sanic_chat import JWTAuthenticator

from .conftest import TIMEOUT, live, make_app, spawn_example
from .test_auth import SECRET
from .test_upgrade_methods import status_of

KEY = "k-0123456789abcdef"
POST = "/api/rooms/lobby/messages"
BIG = 60 * 1024 * 1024


def body_app() -> object:
    return make_app(authenticator=JWTAuthenticator(SECRET), api_key=KEY)


async def send_head(
    port: int, head: str, body: bytes = b""
) -> tuple[bytes, float]:
    """Send a request head and some body; return the answer's head and
    how long it took. The rest of a declared body is never sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        await writer.drain()
        async with asyncio.timeout(TIMEOUT):
            answer = await reader.readuntil(b"\r\n\r\n")
        return answer, time.monotonic() - started
    finally:
        writer.close()


async def test_json_only_and_the_system_first() -> None:
    async with live(body_app()) as srv:  # type: ignore[arg-type]
        base = f"http://127.0.0.1:{srv.port}"
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            for headers in [
                {"Content-Type": "text/plain"},
                {"Content-Type": "application/x-www-form-urlencoded"},
                {},  # no content type at all
            ]:
                response = await http.post(
                    POST,
                    content=b'{"text": "forged"}',
                    headers={"X-API-Key": KEY, **headers},
                )
                assert response.status_code == 415, response.text
                body = response.json()["error"]
                assert body["code"] == "unsupported_media_type"
            # The same body as JSON, with a charset, is published.
            response = await http.post(
                POST,
                content=b'{"text": "real"}',
                headers={
                    "X-API-Key": KEY,
                    "Content-Type": "application/json; charset=utf-8",
                },
            )
            assert response.status_code == 201, response.text
            history = await http.get(
                "/api/rooms/lobby/history", headers={"X-API-Key": KEY}
            )
            assert [m["text"] for m in history.json()["messages"]] == ["real"]
            # Not JSON, too deep, invalid: 400 with fields, never a 500.
            for raw, field in [
                (b"{nope", ""),
                (b"[" * 60_000, ""),
                (b'{"text": 5}', "text"),
            ]:
                response = await http.post(
                    POST,
                    content=raw,
                    headers={
                        "X-API-Key": KEY,
                        "Content-Type": "application/json",
                    },
                )
                assert response.status_code == 400, response.text
                fields = response.json()["error"]["fields"]
                assert fields[0]["field"] == field


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", POST, 401),
        ("DELETE", "/api/users/u1/connections", 401),
        ("GET", "/api/rooms", 401),
        ("GET", "/ws", 426),
        ("GET", "/metrics", 400),
        ("GET", "/api/health", 400),
        ("GET", "/asyncapi.json", 400),
        ("GET", "/client.js", 400),
        ("HEAD", "/client.d.ts", 400),
    ],
)
async def test_no_route_buffers_a_body_before_answering(
    method: str, path: str, status: int
) -> None:
    async with live(body_app()) as srv:  # type: ignore[arg-type]
        answer, took = await send_head(
            srv.port,
            f"{method} {path} HTTP/1.1\nHost: x\n"
            f"Content-Type: application/json\nContent-Length: {BIG}\n",
            b"{" * 1024,
        )
        assert status_of(answer) == status, answer
        assert took < 2


async def test_an_empty_body_is_no_body() -> None:
    async with live(body_app()) as srv:  # type: ignore[arg-type]
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            response = await http.request(
                "DELETE",
                f"http://127.0.0.1:{srv.port}/api/users/u1/connections",
                headers={"X-API-Key": KEY, "Content-Length": "0"},
            )
            assert response.status_code == 200, response.text


async def test_publish_bodies_are_bounded_before_and_while_reading() -> None:
    async with live(body_app()) as srv:  # type: ignore[arg-type]
        head = (
            f"POST {POST} HTTP/1.1\nHost: x\nX-API-Key: {KEY}\n"
            "Content-Type: application/json\n"
        )
        # Declared over the bound: refused before reading anything.
        answer, _ = await send_head(
            srv.port, head + f"Content-Length: {64 * 1024 + 1}\n"
        )
        assert status_of(answer) == 413, answer
        # Chunked, with no declared length: refused once past the bound,
        # without waiting for the (endless) rest.
        chunk = b"%x\r\n%s\r\n" % (16 * 1024, b" " * 16 * 1024)
        answer, took = await send_head(
            srv.port, head + "Transfer-Encoding: chunked\n", chunk * 5
        )
        assert status_of(answer) == 413, answer
        assert took < 2
        # Chunked and within the bound: accepted.
        text = b'{"text": "chunked"}'
        answer, _ = await send_head(
            srv.port,
            head + "Transfer-Encoding: chunked\n",
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(text), text),
        )
        assert status_of(answer) == 201, answer


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _send_big(port: int, pid: int) -> tuple[bytes, int, int]:
    """POST 60 MB unauthenticated, 1 MB at a time.

    Returns the answer's first bytes, how many MB had been sent when it
    arrived, and the server's peak RSS (KiB) seen while sending.
    """
    sent = [0]
    answer: list[tuple[bytes, int]] = []
    peak = _rss_kib(pid)
    with socket.create_connection(("127.0.0.1", port), TIMEOUT) as sock:
        sock.sendall(
            (
                f"POST {POST} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {BIG}"
                "\r\n\r\n"
            ).encode()
        )
        reader = threading.Thread(
            target=lambda: answer.append((sock.recv(4096), sent[0])),
            daemon=True,
        )
        reader.start()
        piece = b" " * (1 << 20)
        try:
            for _ in range(BIG // len(piece)):
                sock.sendall(piece)
                sent[0] += 1
                peak = max(peak, _rss_kib(pid))
        except OSError:  # the server may stop reading once it answered
            pass
        reader.join(TIMEOUT)
    assert answer, "no answer"
    return answer[0][0], answer[0][1], peak


@pytest.mark.slow  # the example app in a subprocess
def test_60_mb_from_a_stranger_costs_no_memory(tmp_path: Path) -> None:
    port, proc = spawn_example(tmp_path / "example.log")
    try:
        before = _rss_kib(proc.pid)
        for _ in range(3):
            answer, sent_mb, peak = _send_big(port, proc.pid)
            assert status_of(answer) == 401, answer
            # Answered long before the body was all sent (a server that
            # buffers first answers after the 60th MB).
            assert sent_mb < 30, sent_mb
            grown = peak - before
            assert grown < 8 * 1024, f"server RSS grew by {grown} KiB"
    finally:
        proc.terminate()
        proc.wait(10)
