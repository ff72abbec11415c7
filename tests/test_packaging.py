"""The package as users get it: built, installed into a fresh venv, used.

``python -m build`` makes the sdist and the wheel; each is installed into
its own new virtualenv (with only its declared dependencies) and must
serve a chat message end to end, importing nothing from this checkout.
Without extras there is no sanic-ext, so this is also the host app that
never asked for it: no ``/docs``, no automatic OPTIONS routes, its
private route listed nowhere, and the HTTP API working.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sanic_chat

# Builds the package and installs it in fresh venvs.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent

SMOKE = """
import asyncio, importlib.util, json, socket, sys, urllib.error
import urllib.request

from sanic import Sanic
from sanic.response import text
from websockets.asyncio.client import connect

import sanic_chat

assert sanic_chat.__version__ == sys.argv[1], sanic_chat.__version__
assert "site-packages" in sanic_chat.__file__, sanic_chat.__file__
assert importlib.util.find_spec("sanic_ext") is None, "sanic-ext installed"
app = Sanic("smoke")


@app.get("/private/admin")
async def admin(request):
    return text("secret")


app.blueprint(sanic_chat.create_blueprint(allow_anonymous=True, api_key="k"))


def http(method, url, body=None):
    headers = {"X-API-Key": "k", "Content-Type": "application/json"}
    request = urllib.request.Request(url, body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def check_the_host(base):
    def call(method, path, body=None):
        return asyncio.to_thread(http, method, base + path, body)

    for path in ("/docs", "/docs/openapi.json"):
        status, body = await call("GET", path)
        assert status == 404 and b"/private/admin" not in body, (path, status)
    status, _ = await call("OPTIONS", "/private/admin")
    assert status == 405, status
    post = "/api/rooms/ops/messages"
    status, body = await call("POST", post, b'{"text": "deployed"}')
    assert status == 201, body
    status, body = await call("GET", "/api/rooms/ops/history?limit=1")
    assert json.loads(body)["messages"][0]["text"] == "deployed", body
    status, body = await call("GET", "/api/rooms/ops/history?limit=lots")
    assert status == 400, body
    assert json.loads(body)["error"]["fields"][0]["field"] == "limit", body


async def main():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = await app.create_server(sock=sock, return_asyncio_server=True)
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
        await check_the_host(f"http://127.0.0.1:{port}")
        async with connect(f"ws://127.0.0.1:{port}/ws?name=smoke") as ws:
            await ws.send(json.dumps(
                {"type": "message", "room": "lobby", "text": "hi", "ref": "1"}
            ))
            seen = set()
            async with asyncio.timeout(10):
                while not {"welcome", "joined", "ack", "message"} <= seen:
                    frame = json.loads(await ws.recv())
                    seen.add(frame["type"])
                    if frame["type"] == "message":
                        assert frame["text"] == "hi"
                        assert frame["user"]["name"] == "smoke"
    finally:
        await server.before_stop()
        server.close()
        await server.wait_closed()
        await server.after_stop()


asyncio.run(main())
print("round trip ok, no /docs, API ok")
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return out


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["*.whl", "*.tar.gz"])
def test_the_built_package_installs_and_chats(
    dist: Path, kind: str, tmp_path: Path
) -> None:
    (artifact,) = dist.glob(kind)
    assert sanic_chat.__version__ in artifact.name
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(artifact)],
        check=True, capture_output=True, timeout=400,
    )  # fmt: skip
    smoke = tmp_path / "smoke.py"
    smoke.write_text(SMOKE)
    result = subprocess.run(
        [python, str(smoke), sanic_chat.__version__],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "round trip ok, no /docs, API ok" in result.stdout


def test_the_wheel_ships_the_typing_marker_and_metadata(dist: Path) -> None:
    import zipfile

    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        meta_name = next(n for n in names if n.endswith("METADATA"))
        metadata = archive.read(meta_name).decode()
    assert "sanic_chat/py.typed" in names
    assert "sanic_chat/transport/fast.py" in names
    # The JavaScript client the blueprint serves (sanic_chat.jsclient).
    assert "sanic_chat/static/client.js" in names
    assert "sanic_chat/static/client.d.ts" in names
    assert not any(n.startswith(("tests/", "example_app/")) for n in names)
    assert f"Version: {sanic_chat.__version__}" in metadata
    assert "License-Expression: MIT" in metadata
    assert "Provides-Extra: redis" in metadata
    assert "Provides-Extra: openapi" in metadata
    # sanic-ext only as an extra: Sanic extends every app it can import it in.
    requires = [
        line
        for line in metadata.splitlines()
        if "Requires-Dist: sanic-ext" in line
    ]
    assert requires and all("extra ==" in line for line in requires), requires
    assert "Project-URL: Changelog" in metadata
