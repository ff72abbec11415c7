"""The example app, run as users run it: ``python -m example_app``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def example() -> Iterator[int]:
    port = _free_port()
    env = {**os.environ, "SANIC_CHAT_DEFAULT_ROOM": "general"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "example_app", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), 0.1):
                    break
            except OSError:
                if proc.poll() is not None:
                    out, _ = proc.communicate()
                    raise RuntimeError(out.decode()) from None
                time.sleep(0.1)
        else:
            raise RuntimeError("example app did not start")
        yield port
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _get(port: int, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:  # noqa: S310
        return r.status, r.headers["content-type"], r.read().decode()


async def test_page_health_and_chat(example: int) -> None:
    status, kind, body = await asyncio.to_thread(_get, example, "/")
    assert status == 200 and kind.startswith("text/html")
    assert "<title>sanic-chat</title>" in body
    status, kind, body = await asyncio.to_thread(_get, example, "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    async with connect(f"ws://127.0.0.1:{example}/ws?name=js") as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["rooms"] == ["general"]  # from SANIC_CHAT_DEFAULT_ROOM
        assert json.loads(await ws.recv())["type"] == "joined"
        await ws.send("Hello from JS!")
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert message["text"] == "Hello from JS!"
        assert message["user"]["name"] == "js"


def test_help_documents_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "example_app", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--host", "--port", "--workers", "--default-room"):
        assert flag in out
    assert "SANIC_CHAT_" in out
