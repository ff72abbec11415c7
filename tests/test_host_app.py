"""What registering the blueprint does to the host app, and nothing more.

sanic-ext is optional: a host that does not use it gets no ``/docs`` and
no automatic OPTIONS routes from the chat (here with sanic-ext hidden in
a subprocess, and in tests/test_packaging.py in a fresh venv without
it), a host with ``AUTO_EXTEND=False`` gets a working HTTP API, and a
host that uses sanic-ext finds the chat's routes in its OpenAPI document
and can inject :class:`~sanic_chat.Chat`. The README's "What the
blueprint adds to your app" list is checked against what registration
and a server run actually add.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Request, Sanic
from sanic.response import json as json_response
from sanic.response import text
from sanic_ext import Extend, openapi

import sanic_chat
from sanic_chat import Chat

from .conftest import TIMEOUT, live, new_app

ROOT = Path(__file__).parent.parent
KEY = "k-0123456789abcdef"
SYSTEM = {"X-API-Key": KEY}


def host_app(extend: str = "", **config: Any) -> Sanic:
    """A host app with a private route of its own, then the chat.

    ``extend``: when the host calls ``Extend(app)`` itself, ``"before"``
    or ``"after"`` registering the chat; ``""``: never.
    """
    app = new_app()
    app.config.update(config)
    if extend == "before":
        Extend(app)

    @app.get("/private/admin")
    @openapi.summary("The host's own admin page")
    async def admin(request: Request) -> Any:
        return text("secret")

    app.blueprint(sanic_chat.create_blueprint(api_key=KEY))
    if extend == "after":
        Extend(app)
    return app


async def exercise_the_api(http: httpx.AsyncClient) -> None:
    """Publish, read back, and get a 400 with ``fields``: the API works."""
    reply = await http.post(
        "/api/rooms/ops/messages", json={"text": "deployed"}, headers=SYSTEM
    )
    assert reply.status_code == 201, reply.text
    reply = await http.get("/api/rooms/ops/history", headers=SYSTEM)
    assert [m["text"] for m in reply.json()["messages"]] == ["deployed"]
    reply = await http.get("/api/rooms/ops/history?limit=lots", headers=SYSTEM)
    assert reply.status_code == 400
    assert reply.json()["error"]["fields"][0]["field"] == "limit"
    assert (await http.get("/api/health")).status_code == 200


WITHOUT_SANIC_EXT = """
import asyncio, socket, sys, urllib.error, urllib.request

sys.modules["sanic_ext"] = None  # as if not installed: imports fail
from sanic import Sanic
from sanic.response import text

import sanic_chat

app = Sanic("host")
app.config.TOUCHUP = False


@app.get("/private/admin")
async def admin(request):
    return text("secret")


app.blueprint(sanic_chat.create_blueprint(api_key="k"))


def status(method, url, **headers):
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def main():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = await app.create_server(sock=sock, return_asyncio_server=True)
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
        for method, path, headers in [
            ("GET", "/docs", {}),
            ("GET", "/docs/openapi.json", {}),
            ("OPTIONS", "/private/admin", {}),
            ("GET", "/api/rooms", {"X-API-Key": "k"}),
            ("GET", "/api/health", {}),
        ]:
            code = await asyncio.to_thread(status, method, base + path, **headers)
            print("=>", method, path, code)
    finally:
        await server.before_stop()
        server.close()
        await server.wait_closed()
        await server.after_stop()


asyncio.run(main())
print("=> sanic_ext imported:", sys.modules["sanic_ext"] is not None)
"""


@pytest.mark.slow  # a host app in a subprocess
def test_a_host_without_sanic_ext_gets_no_docs_and_a_working_api(
    tmp_path: Path,
) -> None:
    script = tmp_path / "host.py"
    script.write_text(WITHOUT_SANIC_EXT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [
        line[3:] for line in result.stdout.splitlines() if line[:3] == "=> "
    ]
    assert lines == [
        "GET /docs 404",
        "GET /docs/openapi.json 404",
        "OPTIONS /private/admin 405",
        "GET /api/rooms 200",
        "GET /api/health 200",
        "sanic_ext imported: False",
    ]


@pytest.mark.sanic_ext  # installed; the host turns AUTO_EXTEND off
async def test_a_host_with_auto_extend_off_serves_the_api() -> None:
    # sanic-ext is installed here; the host turned Sanic's auto-extend off.
    app = host_app(AUTO_EXTEND=False)
    async with live(app) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            await exercise_the_api(http)
            assert (await http.get("/docs")).status_code == 404
            reply = await http.get("/docs/openapi.json")
            assert reply.status_code == 404
            reply = await http.options("/private/admin")
            assert reply.status_code == 405
            async with server.client() as client:
                assert client.user["id"].startswith("guest-")


@pytest.mark.sanic_ext
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="auto-extend"),
        pytest.param({"extend": "before"}, id="extend-before"),
        pytest.param(
            {"extend": "after", "AUTO_EXTEND": False}, id="extend-after"
        ),
    ],
)
async def test_a_host_using_sanic_ext_keeps_its_docs_and_gets_the_chats(
    options: dict[str, Any],
) -> None:
    app = host_app(**options)

    @app.get("/whoami")
    async def whoami(request: Request, chat: Chat) -> Any:
        return json_response({"same": chat is sanic_chat.get_chat(app)})

    async with live(app) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
            await exercise_the_api(http)
            assert (await http.get("/whoami")).json() == {"same": True}
            spec = (await http.get("/docs/openapi.json")).json()
    paths = spec["paths"]
    admin_get = paths["/private/admin"]["get"]
    assert admin_get["summary"] == "The host's own admin page"
    summaries = {
        (method.upper(), path): operation["summary"]
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "chat" in operation.get("tags", ())
    }
    assert summaries == {
        ("GET", "/ws"): "The chat WebSocket",
        ("GET", "/metrics"): "Prometheus metrics of the chat",
        ("GET", "/client.js"): "The JavaScript client (an ES module)",
        ("GET", "/client.d.ts"):
            "TypeScript declarations of the JavaScript client",
        ("GET", "/api/rooms"): "List rooms",
        ("GET", "/api/rooms/{room}/history"): "Read a room's history",
        ("GET", "/api/rooms/{room}/presence"): "Who is in a room",
        ("POST", "/api/rooms/{room}/messages"):
            "Publish a message (system permission)",
        ("GET", "/api/rooms/{room}/receipts"): "Read receipts of a room",
        ("POST", "/api/users/{user_id}/messages"):
            "Send a direct message to a user (system permission)",
        ("PATCH", "/api/rooms/{room}/messages/{message_id}"):
            "Edit a message (system permission)",
        ("DELETE", "/api/rooms/{room}/messages/{message_id}"):
            "Delete a message (system permission)",
        ("DELETE", "/api/users/{user_id}/connections"):
            "Disconnect a user (system permission)",
        ("GET", "/api/health"): "Liveness and readiness of this worker",
    }  # fmt: skip
    (tag,) = [t for t in spec["tags"] if t["name"] == "chat"]
    assert tag["description"].startswith("sanic-chat:")
    publish = paths["/api/rooms/{room}/messages"]["post"]
    (scheme,) = publish["security"][0]
    assert spec["components"]["securitySchemes"][scheme] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "CHAT_API_KEY; a token with the chat_admin claim "
        "works too (Authorization: Bearer)",
    }
    history = paths["/api/rooms/{room}/history"]["get"]
    assert {p["name"] for p in history["parameters"]} >= {
        "room", "limit", "before", "after",
    }  # fmt: skip


# ----------------------------------------------------------------------
# The README's list against what registration really adds.


class RecordingSanic(Sanic):
    """A Sanic app that records what is registered on it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx.recorded = Counter()

    def register_listener(self, listener: Any, event: str, **kw: Any) -> Any:
        self.ctx.recorded["listener " + event] += 1
        return super().register_listener(listener, event, **kw)

    def register_middleware(self, middleware: Any, *a: Any, **k: Any) -> Any:
        self.ctx.recorded["middleware"] += 1
        return super().register_middleware(middleware, *a, **k)

    def register_named_middleware(self, *a: Any, **k: Any) -> Any:
        self.ctx.recorded["middleware"] += 1
        return super().register_named_middleware(*a, **k)


async def private_admin(request: Request) -> Any:
    return text("secret")


def readme_section() -> dict[str, str]:
    """The bullets of the README's section, by their bold lead."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What the blueprint adds to your app", 1)[1]
    section = section.split("\n## ", 1)[0]
    bullets: dict[str, str] = {}
    for bullet in re.split(r"\n- ", section)[1:]:
        lead = re.match(r"\*\*([^*]+)\*\*", bullet)
        assert lead, bullet
        bullets[lead.group(1)] = " ".join(bullet.split())
    return bullets


async def test_the_readme_lists_everything_the_blueprint_adds() -> None:
    bullets = readme_section()
    bare = RecordingSanic("bare_host")
    app = RecordingSanic("chat_host")
    for each in (bare, app):
        each.config.update(AUTO_EXTEND=False, TOUCHUP=False)
        each.get("/private/admin", name="admin")(private_admin)
    # Sanic's first server start in a process writes its own variables
    # (``SANIC_LOG_EXTRA``); let that happen before taking the baseline.
    first = new_app()
    first.get("/")(private_admin)
    async with live(first):
        pass
    environ = dict(os.environ)
    filters = {
        name: list(logging.getLogger(name).filters)
        for name in ("sanic.access", "sanic.error", "sanic.root")
    }
    app.blueprint(sanic_chat.create_blueprint())

    routes = {
        f"{method} /{route.path}".replace(":str>", ">")
        for route in app.router.routes
        for method in route.methods
        if route.name != "chat_host.admin"
    }
    assert routes == set(
        re.findall(
            r"`((?:GET|HEAD|POST|PATCH|DELETE) /[^`]*)`", bullets["Routes"]
        )
    )
    assert {route.name for route in app.router.routes} - {
        "chat_host.admin"
    } == {
        f"chat_host.sanic_chat.{name}"
        for name in re.findall(r"`sanic_chat\.(\w+)`", bullets["Routes"])
    }
    listed = Counter[str]()
    for event, times in re.findall(
        r"`(\w+_(?:start|stop))`(?: \u00d7(\d))?", bullets["Listeners"]
    ):
        listed["listener " + event] += int(times or 1)
    recorded = app.ctx.recorded - bare.ctx.recorded
    assert recorded == listed
    assert "middleware" not in recorded
    assert bullets["Middleware"] == "**Middleware**: none."

    assert dict(app.config) == dict(bare.config)
    async with live(bare), live(app):
        assert app.websocket_enabled
        assert "`app.enable_websocket()`" in bullets["Protocol"]
        assert {k for k in vars(app.ctx) if k != "recorded"} == {"sanic_chat"}
        assert "`app.ctx.sanic_chat`" in bullets["State"]
    assert dict(app.config) == dict(bare.config)
    assert "writes none" in bullets["Config"]
    assert dict(os.environ) == environ  # one worker: nothing set
    assert "`PROMETHEUS_MULTIPROC_DIR`" in bullets["Environment"]
    for name, before in filters.items():
        added = [f for f in logging.getLogger(name).filters if f not in before]
        assert len(added) <= 1  # once per process: maybe there already
        assert f"`{name}`" in bullets["Logging"]
