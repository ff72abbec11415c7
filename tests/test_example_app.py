"""The example app, run as users run it: ``python -m example_app``."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from example_app import (
    SECRET_ENV,
    SESSION_LIFETIME,
    TOKEN_LIFETIME,
    create_app,
)
from example_app.__main__ import page_url

from .conftest import (
    LiveServer,
    live,
    run_example,
    spawn_example,
    stop_once_workers_are_ready,
)

_apps = itertools.count()


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
    # Once every worker is up, one that ran main() again has printed.
    await stop_once_workers_are_ready(log, proc, workers)
    lines = [line for line in log.read_text().splitlines() if "open " in line]
    assert lines == [f"sanic-chat example: open http://127.0.0.1:{port}/"]


def test_the_url_printed_is_one_a_browser_can_open() -> None:
    assert page_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert page_url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert page_url("::", 8000) == "http://[::1]:8000/"
    assert page_url("chat.local", 9000) == "http://chat.local:9000/"


# The session routes, in process: a reload trades the HttpOnly cookie
# for a fresh token (the page cannot read the cookie), logout clears it.

SECRET = "example-app-tests-secret-example-app-tests"


@pytest.fixture
async def example_live(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[LiveServer]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    app = create_app(f"example_{next(_apps)}")
    app.config.TOUCHUP = False
    app.config.AUTO_EXTEND = False
    async with live(app) as srv:
        yield srv


def _with_cookie(
    port: int, path: str, token: str | None, method: str = "GET"
) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=b"{}" if method == "POST" else None,
        headers={
            **({"Cookie": f"chat_token={token}"} if token else {}),
            **(
                {"Content-Type": "application/json"}
                if method == "POST"
                else {}
            ),
        },
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, _lower(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, _lower(err.headers), json.loads(err.read())


def _cookie_token(headers: dict[str, str]) -> str:
    match = re.search(r"chat_token=([^;]*)", headers["set-cookie"])
    assert match is not None, headers
    return match.group(1)


async def test_session_trades_a_valid_cookie_for_a_fresh_token(
    example_live: LiveServer,
) -> None:
    port = example_live.port
    status, headers, _ = await asyncio.to_thread(
        _http, port, "/login", {"name": "Alice"}
    )
    assert status == 200
    cookie = _cookie_token(headers)
    status, headers, body = await asyncio.to_thread(
        _with_cookie, port, "/session", cookie
    )
    assert status == 200, body
    assert body["user"] == {"id": "user:alice", "name": "Alice"}
    assert body["expires_at"] > time.time() + TOKEN_LIFETIME - 60
    assert headers["cache-control"] == "no-store"
    # The cookie is renewed with the token in the body, HttpOnly as before.
    assert _cookie_token(headers) == body["token"]
    # The session keeps its sign-in time: renewals cannot outlast it.
    first = jwt.decode(cookie, SECRET, algorithms=["HS256"])
    renewed = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
    assert renewed["auth_time"] == first["auth_time"]
    assert renewed["exp"] <= first["auth_time"] + SESSION_LIFETIME
    assert "HttpOnly" in headers["set-cookie"]
    # And that token opens a chat connection as Alice.
    async with connect(
        example_live.url(),
        subprotocols=[Subprotocol(f"bearer.{body['token']}")],
        open_timeout=5,
    ) as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["user"] == {"id": "user:alice", "name": "Alice"}


def _token(secret: str, **claims: Any) -> str:
    base = {
        "sub": "user:alice",
        "name": "Alice",
        "exp": time.time() + 60,
        "auth_time": int(time.time()) - 60,
    }
    return jwt.encode(
        {k: v for k, v in {**base, **claims}.items() if v is not ...}, secret
    )


@pytest.mark.parametrize(
    "token",
    [
        None,  # no cookie
        "not-a-jwt",
        _token(SECRET, exp=time.time() - 5),  # expired
        _token("some-other-secret-some-other-secret-xx"),  # forged
        _token(SECRET, exp=None),  # never expires: refused
        _token(SECRET, name="<script>", sub="user:<script>"),
        _token(SECRET, sub="user:bob"),  # name and id disagree
        # Signed in longer ago than a session lasts: renewals end.
        _token(SECRET, auth_time=int(time.time()) - SESSION_LIFETIME - 5),
        _token(SECRET, auth_time=...),  # no sign-in time
    ],
    ids=[
        "none",
        "garbage",
        "expired",
        "forged",
        "no-exp",
        "bad-name",
        "sub",
        "session-over",
        "no-auth-time",
    ],
)
async def test_session_without_a_valid_cookie_is_a_401(
    example_live: LiveServer, token: str | None
) -> None:
    status, headers, body = await asyncio.to_thread(
        _with_cookie, example_live.port, "/session", token
    )
    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert "set-cookie" not in headers


async def test_logout_clears_the_cookie(example_live: LiveServer) -> None:
    token = _token(SECRET)
    status, headers, body = await asyncio.to_thread(
        _with_cookie, example_live.port, "/logout", token, "POST"
    )
    assert status == 200 and body == {"signed_out": True}
    cookie = headers["set-cookie"]
    assert _cookie_token(headers).strip('"') == ""
    assert re.search(r"max-age=0", cookie, re.I), cookie


@pytest.mark.parametrize("path", ["/login", "/logout"])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded"]
)
async def test_sign_in_and_out_take_only_json(
    example_live: LiveServer, path: str, content_type: str
) -> None:
    """What a form on another site can send (``text/plain`` that reads
    as JSON included) signs nobody in or out: no cookie is set."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{example_live.port}{path}",
        data=b'{"name": "mallory", "x": "="}',
        headers={"Content-Type": content_type},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=5)
    assert refused.value.code == 415
    assert "set-cookie" not in _lower(refused.value.headers)
    body = json.loads(refused.value.read())
    assert body["error"]["code"] == "unsupported_media_type"


async def test_the_page_and_its_script_and_style_are_served(
    example_live: LiveServer,
) -> None:
    for path, kind in [
        ("/", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/app.css", "text/css"),
    ]:
        status, headers, body = await asyncio.to_thread(
            _http, example_live.port, path
        )
        assert status == 200 and headers["content-type"].startswith(kind)
        assert body
    for path in ("/static/", "/static/index.html", "/static/..%2F__init__.py"):
        status, _, _ = await asyncio.to_thread(_http, example_live.port, path)
        assert status == 404, path  # the page's files only


def test_freezing_the_startup_objects_also_spaces_full_collections() -> None:
    # In a child process: gc settings are process-wide.
    code = (
        "import asyncio, gc, example_app\n"
        "assert gc.get_freeze_count() == 0\n"
        "asyncio.run(example_app.freeze_startup_objects(None))\n"
        "print(gc.get_threshold(), gc.get_freeze_count() > 1000)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["(700,", "10,", "100)", "True"]
