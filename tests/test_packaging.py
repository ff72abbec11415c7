"""The package as users get it: built, installed into a fresh venv, used.

``python -m build`` makes the sdist and the wheel; each is installed into
its own new virtualenv (with only its declared dependencies) and must
serve a chat message end to end, importing nothing from this checkout.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sanic_chat

ROOT = Path(__file__).parent.parent

SMOKE = """
import asyncio, json, socket, sys

from sanic import Sanic
from websockets.asyncio.client import connect

import sanic_chat

assert sanic_chat.__version__ == sys.argv[1], sanic_chat.__version__
assert "site-packages" in sanic_chat.__file__, sanic_chat.__file__
app = Sanic("smoke")
app.blueprint(sanic_chat.create_blueprint(allow_anonymous=True))


async def main():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = await app.create_server(sock=sock, return_asyncio_server=True)
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
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
print("round trip ok")
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
    assert "round trip ok" in result.stdout


def test_the_wheel_ships_the_typing_marker_and_metadata(dist: Path) -> None:
    import zipfile

    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        meta_name = next(n for n in names if n.endswith("METADATA"))
        metadata = archive.read(meta_name).decode()
    assert "sanic_chat/py.typed" in names
    assert "sanic_chat/transport/fast.py" in names
    assert not any(n.startswith(("tests/", "example_app/")) for n in names)
    assert f"Version: {sanic_chat.__version__}" in metadata
    assert "License-Expression: MIT" in metadata
    assert "Provides-Extra: redis" in metadata
    assert "Project-URL: Changelog" in metadata
