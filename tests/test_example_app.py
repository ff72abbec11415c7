"""The example app, run as users run it: ``python -m example_app``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from example_app.__main__ import page_url

from .conftest import run_example, spawn_example


def _http(
    port: int, path: str, body: Any = None, raw: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    data = (
        raw
        if raw is not None
        else (json.dumps(body).encode() if body is not None else None)
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, _lower(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, _lower(err.headers), err.read()


@pytest.mark.slow
@pytest.mark.parametrize("server", ["sanic", "uvicorn"])
async def test_page_login_and_chat(tmp_path: Path, server: str) -> None:
    """As users run it: ``python -m example_app``, or under an ASGI server
    (``uvicorn example_app.asgi:app``), where the 401 is an HTTP answer
    too (uvicorn supports the ``websocket.http.response`` extension).
    """
    with run_example(
        tmp_path / "log",
        asgi=server == "uvicorn",
        SANIC_CHAT_DEFAULT_ROOM="general",
    ) as port:
        status, headers, body = await asyncio.to_thread(_http, port, "/")
        assert status == 200 and headers["content-type"].startswith(
            "text/html"
        )
        assert b"<title>sanic-chat</title>" in body
        status, _, body = await asyncio.to_thread(_http, port, "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"

        status, headers, body = await asyncio.to_thread(
            _http, port, "/login", {"name": "alice"}
        )
        assert status == 200
        login = json.loads(body)
        assert login["user"] == {"id": "user:alice", "name": "alice"}
        cookie = headers["set-cookie"]
        assert "chat_token=" in cookie and "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie

        url = f"ws://127.0.0.1:{port}/ws"
        try:
            async with connect(url):
                raise AssertionError("connected without a token")
        except InvalidStatus as refused:
            assert refused.response.status_code == 401
        token = login["token"]
        async with connect(
            url, additional_headers={"Cookie": f"chat_token={token}"}
        ) as ws:
            welcome = json.loads(await ws.recv())
            assert welcome["user"]["name"] == "alice"
            assert welcome["rooms"] == ["general"]  # SANIC_CHAT_DEFAULT_ROOM
            assert json.loads(await ws.recv())["type"] == "joined"
            await ws.send(json.dumps({"type": "refresh", "token": token}))
            assert json.loads(await ws.recv())["type"] == "refreshed"
            await ws.send(
                json.dumps(
                    {"type": "message", "room": "general", "text": "hi"}
                )
            )
            message = json.loads(await ws.recv())
            assert message["type"] == "message" and message["text"] == "hi"


@pytest.mark.slow
async def test_login_refuses_bad_names(tmp_path: Path) -> None:
    with run_example(tmp_path / "log") as port:
        for body in ({"name": ""}, {"name": "<script>"}, {"nom": "x"}, [1]):
            status, _, raw = await asyncio.to_thread(
                _http, port, "/login", body
            )
            assert status == 400, body
            assert json.loads(raw)["error"]["code"] == "bad_request"
        status, _, raw = await asyncio.to_thread(
            _http, port, "/login", None, b"{not json"
        )
        assert status == 400


@pytest.mark.slow
async def test_the_browser_console_client_with_anonymous_guests(
    tmp_path: Path,
) -> None:
    with run_example(tmp_path / "log", "--allow-anonymous") as port:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            assert json.loads(await ws.recv())["type"] == "joined"
            await ws.send("Hello from JS!")
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message["text"] == "Hello from JS!"


@pytest.mark.slow  # the example app in a subprocess
def test_help_documents_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "example_app", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in (
        "--host", "--port", "--workers", "--default-room", "--allow-anonymous"
    ):  # fmt: skip
        assert flag in out
    assert "SANIC_CHAT_" in out


def _lower(headers: Any) -> dict[str, str]:
    """Header names in lower case: servers differ in how they spell them."""
    return {name.lower(): value for name, value in headers.items()}


@pytest.mark.slow  # the example app in a subprocess
@pytest.mark.parametrize("workers", [1, 2])
async def test_it_prints_the_url_to_open_once(
    tmp_path: Path, workers: int
) -> None:
    log = tmp_path / "log"
    port, proc = await asyncio.to_thread(
        spawn_example, log, "--workers", str(workers)
    )
    try:
        # Once every worker is up (one that ran main() again would have
        # printed by then), and, as in test_redis, stopped only then:
        # Sanic's manager never exits if told to while it waits for them.
        for _ in range(300):
            if log.read_text().count("Worker ready") >= workers:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:  # never leave a server behind
            proc.kill()
            proc.wait()
    lines = [line for line in log.read_text().splitlines() if "open " in line]
    assert lines == [f"sanic-chat example: open http://127.0.0.1:{port}/"]


def test_the_url_printed_is_one_a_browser_can_open() -> None:
    assert page_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert page_url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert page_url("::", 8000) == "http://[::1]:8000/"
    assert page_url("chat.local", 9000) == "http://chat.local:9000/"
