"""Every code sample in the README and docs/ runs, so none can rot.

Python samples run in a fresh namespace that already has what a reader
has at that point: ``from sanic import Sanic``, ``import sanic_chat`` and
an ``app = Sanic(...)``. A sample that defines ``async def main(url:
str)`` is a client (docs/clients.md): its ``main`` also runs against a
live server. JavaScript samples run in Node, as ES modules, against a
live server: ``"sanic-chat-client"`` is the served ``client.js`` and
``ws://127.0.0.1:8000`` that server (browser-only ones are marked as not
run). JSON samples must parse, line by line. The
README's browser-console snippet runs in Chromium, typed line by line
(see test_browser.py for the page itself). A sample preceded by
``<!-- not run: why -->`` is a sketch and says so; shell commands are
run by CI itself (.ci/run runs the README's test command, the benchmark
smoke test runs bench/run.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
from pathlib import Path

import pytest
from sanic import Sanic

import sanic_chat
from sanic_chat import MemoryBroadcaster
from sanic_chat.jsclient import STATIC
from sanic_chat.testing import BROADCASTER_CHECKS

from .conftest import TIMEOUT, live, make_app

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(
    r"(<!-- not run: [^>]*-->\n)?```(\w+)\n(.*?)\n```", re.DOTALL
)
_apps = itertools.count()


def samples(language: str) -> list[tuple[str, str]]:
    """``(where, code)`` of every sample in ``language`` that runs."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            sketch, lang, code = match.groups()
            if lang == language and not sketch:
                line = text[: match.start()].count("\n") + 2
                found.append((f"{doc.relative_to(ROOT)}:{line}", code))
    return found


def prelude() -> dict[str, object]:
    return {
        "Sanic": Sanic,
        "sanic_chat": sanic_chat,
        "app": Sanic(f"docs_sample_{next(_apps)}"),
        "__name__": "docs_sample",
    }


PYTHON = samples("python")


def test_the_docs_have_samples_to_run() -> None:
    assert len(PYTHON) >= 6
    assert len(samples("json")) >= 8


@pytest.mark.parametrize("sample", PYTHON, ids=[w for w, _ in PYTHON])
def test_python_sample_runs(
    sample: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    where, code = sample
    # Several samples create Sanic("myapp"), as readers would.
    monkeypatch.setattr(Sanic, "test_mode", True)
    namespace = prelude()
    namespace["MyBroadcaster"] = MemoryBroadcaster  # docs/backends.md
    exec(compile(code, where, "exec"), namespace)
    # A conformance-suite example is a test: run it against the memory
    # backend, check by check.
    for name, value in namespace.items():
        if name.startswith("test_") and asyncio.iscoroutinefunction(value):
            for check in BROADCASTER_CHECKS:
                asyncio.run(value(check))


@pytest.mark.parametrize(
    "sample", samples("json"), ids=[w for w, _ in samples("json")]
)
def test_json_sample_parses(sample: tuple[str, str]) -> None:
    _, code = sample
    for line in code.splitlines():
        if line.strip():
            json.loads(line)


CLIENTS = [(w, c) for w, c in PYTHON if "async def main(url: str)" in c]


def test_the_client_docs_have_a_sample_to_run() -> None:
    assert any(w.startswith("docs/clients.md") for w, _ in CLIENTS)


@pytest.mark.parametrize("sample", CLIENTS, ids=[w for w, _ in CLIENTS])
async def test_client_sample_talks_to_a_real_server(
    sample: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A client sample's ``main(url)`` runs against a live server."""
    where, code = sample
    namespace = prelude()
    exec(compile(code, where, "exec"), namespace)
    async with live(make_app()) as srv:
        await asyncio.wait_for(namespace["main"](srv.url()), TIMEOUT)
    assert "hello from Python" in capsys.readouterr().out


JAVASCRIPT = samples("js")
NODE = shutil.which("node")


def test_the_javascript_docs_have_samples_to_run() -> None:
    assert len([w for w, _ in JAVASCRIPT if "clients.md" in w]) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("sample", JAVASCRIPT, ids=[w for w, _ in JAVASCRIPT])
async def test_javascript_sample_talks_to_a_real_server(
    sample: tuple[str, str],
) -> None:
    """A Node sample runs as a module against a live server, as a guest.

    The package name becomes the served client's file and the sample's
    URL the live server's; every sample prints what the server answered
    (``sent ID``).
    """
    assert NODE is not None, "node is not installed"
    _, code = sample
    async with live(make_app()) as srv:
        code = code.replace(
            '"sanic-chat-client"', json.dumps((STATIC / "client.js").as_uri())
        ).replace("ws://127.0.0.1:8000", f"ws://127.0.0.1:{srv.port}")
        env = {k: v for k, v in os.environ.items() if k != "CHAT_TOKEN"}
        proc = await asyncio.create_subprocess_exec(
            NODE,
            "--experimental-websocket",
            "--no-warnings",
            "--input-type=module",
            "--eval",
            code,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT * 3)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    ids = re.findall(r"^sent (\S+)", text, re.MULTILINE)
    assert ids, text
    again = re.search(r"again: (\S+)", text)
    if again:  # the retry sample: the same ref, the same message
        assert again.group(1) == ids[0], text
