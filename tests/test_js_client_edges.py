"""The JavaScript client at its edges: odd frames, a getToken that hangs.

Each test runs a Node script (``node --eval``) against a real server: a
small Sanic app that speaks the protocol badly on purpose, or the chat
itself. The script must end by itself: a frame that throws out of the
socket's handler kills a Node process, and a timer left behind by
``close()`` keeps it alive.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest
from sanic import Request, Websocket

from sanic_chat.jsclient import STATIC

from .conftest import TIMEOUT, live, make_app, new_app

NODE = shutil.which("node")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

USER = {"id": "u1", "name": "Ann"}
# Frames a server should never send: none may throw out of the client.
ODD_FRAMES = [
    "not json",
    "null",
    "[1, 2]",
    json.dumps({"type": "__defineGetter__"}),
    json.dumps({"type": "presence", "room": "r", "users": [None]}),
    json.dumps({"type": "joined", "room": "r", "user": None}),
    json.dumps({"type": "message", "room": "r"}),
]


async def run_node(script: str, url: str) -> dict[str, object]:
    """Run ``script`` (CLIENT and URL filled in); its last line, parsed."""
    assert NODE is not None, "node is not installed"
    source = script.replace(
        "CLIENT", json.dumps((STATIC / "client.js").as_uri())
    ).replace("URL", json.dumps(url))
    node = await asyncio.create_subprocess_exec(
        NODE,
        "--experimental-websocket",
        "--no-warnings",
        "--input-type=module",
        "--eval",
        source,
        stdout=asyncio.subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(node.communicate(), TIMEOUT * 4)
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    text = output.decode(errors="replace")
    assert node.returncode == 0, text
    return json.loads(text.strip().splitlines()[-1])  # type: ignore[no-any-return]


ODD_SCRIPT = """
import { connect } from CLIENT;
const chat = connect(URL, { rooms: ["r"], sendTimeout: 60000 });
const errors = [];
chat.on("error", (e) => errors.push(e.code));
chat.on("message", (m) => {
  console.log(JSON.stringify({ text: m.text, errors, state: chat.state }));
  chat.close();
});
"""


async def test_frames_it_cannot_read_are_reported_not_thrown() -> None:
    app = new_app()

    @app.websocket("/ws", subprotocols=["sanic-chat"])
    async def odd(request: Request, ws: Websocket) -> None:
        welcome = {"type": "welcome", "user": USER, "rooms": ["r"]}
        await ws.send(json.dumps(welcome))
        await ws.send(
            json.dumps({"type": "joined", "room": "r", "user": USER})
        )
        for frame in ODD_FRAMES:
            await ws.send(frame)
        after = {"type": "message", "room": "r", "id": "1-0", "text": "after"}
        await ws.send(json.dumps({**after, "user": USER, "ts": 1}))
        await ws.recv(timeout=TIMEOUT * 4)  # until the client closes

    async with live(app) as srv:
        result = await run_node(ODD_SCRIPT, f"ws://127.0.0.1:{srv.port}/ws")
    assert result["text"] == "after"
    assert result["state"] == "connected"
    # Only the presence with a null member could not be read; the rest
    # are ignored (not JSON, no such type, no user, no id).
    assert result["errors"] == ["bad_frame"]


HANG_SCRIPT = """
import { connect } from CLIENT;
const hang = () => new Promise(() => {});
const chat = connect(URL, { getToken: hang, name: "g", heartbeat: 500 });
const errors = [];
chat.on("error", (e) => errors.push(e.code));
await chat.ready;
chat.close();
// Closed while getToken hangs: no timer may keep the process alive.
connect(URL, { getToken: hang, name: "h", heartbeat: 60000 }).close();
console.log(JSON.stringify({ errors, user: chat.user }));
"""


async def test_a_get_token_that_hangs_bounds_the_connect() -> None:
    """A getToken that never answers is given up after ``heartbeat``
    (reported as a ``token`` error): the client connects with the token
    it has (none: a guest), and ``close()`` leaves no timer behind."""
    async with live(make_app()) as srv:
        result = await run_node(HANG_SCRIPT, f"ws://127.0.0.1:{srv.port}/ws")
    assert result["errors"] == ["token"]
    assert result["user"]["name"] == "g"  # type: ignore[index]
