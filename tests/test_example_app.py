"""The example app, run as users run it: ``python -m example_app``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from websockets.asyncio.client import connect

from .conftest import run_example


def _get(port: int, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, r.headers["content-type"], r.read().decode()


async def test_page_health_and_chat(tmp_path: Path) -> None:
    with run_example(
        tmp_path / "log", SANIC_CHAT_DEFAULT_ROOM="general"
    ) as port:
        await _page_health_and_chat(port)


async def _page_health_and_chat(example: int) -> None:
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
