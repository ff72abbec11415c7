"""The JavaScript client: served by the blueprint, tested by Node.

The serving tests ask a real server for ``client.js`` and
``client.d.ts``. The client's own tests are ``clients/js/test/*.test.mjs``
(``node --test``): they run here against the example app, on the
in-memory broadcaster and on Redis, with a :class:`TcpProxy` per test
in front of it that the Node tests cut, hold and restore through a small
HTTP control server (``CHAT_CONTROL``), as a failing network would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sanic_chat.jsclient import STATIC

from .conftest import TIMEOUT, live, make_app, spawn_example
from .redis_server import RedisServer
from .tcp_proxy import TcpProxy

ROOT = Path(__file__).parent.parent
JS = ROOT / "clients" / "js"
SECRET = "js-client-tests-secret-js-client-tests-secret"
NODE = shutil.which("node")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


async def get(
    port: int, path: str, method: str = "GET", **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        return await http.request(
            method, f"http://127.0.0.1:{port}{path}", headers=headers
        )


async def test_the_client_is_served_with_caching_headers() -> None:
    async with live(make_app()) as srv:
        js = await get(srv.port, "/client.js")
        dts = await get(srv.port, "/client.d.ts")
    assert js.status_code == 200
    assert js.content == (STATIC / "client.js").read_bytes()
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert js.headers["cache-control"] == "public, max-age=3600"
    assert js.headers["etag"].startswith('"')
    assert dts.status_code == 200
    assert dts.content == (STATIC / "client.d.ts").read_bytes()
    assert dts.headers["etag"] != js.headers["etag"]


async def test_a_matching_etag_gets_304_and_head_no_body() -> None:
    async with live(make_app()) as srv:
        etag = (await get(srv.port, "/client.js")).headers["etag"]
        again = await get(srv.port, "/client.js", **{"If-None-Match": etag})
        listed = await get(
            srv.port, "/client.js", **{"If-None-Match": f'"x", {etag}'}
        )
        other = await get(srv.port, "/client.js", **{"If-None-Match": '"x"'})
        head = await get(srv.port, "/client.js", "HEAD")
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert listed.status_code == 304
    assert other.status_code == 200 and other.content
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == etag
    size = len((STATIC / "client.js").read_bytes())
    assert head.headers["content-length"] == str(size)


async def test_the_client_moves_with_url_prefix_and_client_path() -> None:
    app = make_app(url_prefix="/chat", client_path="/lib/chat.js")
    async with live(app) as srv:
        js = await get(srv.port, "/chat/lib/chat.js")
        dts = await get(srv.port, "/chat/lib/chat.d.ts")
        old = await get(srv.port, "/client.js")
    assert js.status_code == 200 and b"export function connect" in js.content
    assert dts.status_code == 200 and b"ChatClient" in dts.content
    assert old.status_code == 404


async def test_an_empty_client_path_serves_no_client() -> None:
    app = make_app(client_path="")
    async with live(app) as srv:
        js = await get(srv.port, "/client.js")
    assert js.status_code == 404
    assert not any("client" in r.name for r in app.router.routes)


def test_a_client_path_must_start_with_a_slash() -> None:
    with pytest.raises(Exception, match="client_path must start with '/'"):
        make_app(client_path="client.js")


# --- the Node tests, against the example app --------------------------------


class Control:
    """HTTP control of TCP proxies for the Node tests.

    ``GET /proxy`` starts a proxy to the example app and answers its
    port; ``GET /proxy/PORT/cut`` (``restore``, ``hold``) acts on it.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.proxies: dict[int, TcpProxy] = {}
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for proxy in self.proxies.values():
            await proxy.stop()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            line = (await reader.readuntil(b"\r\n\r\n")).split(b" ")
            status, body = await self._act(line[1].decode().strip("/"))
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n{body}".encode()
            )
            await writer.drain()
        writer.close()

    async def _act(self, path: str) -> tuple[str, str]:
        parts = path.split("/")
        if parts == ["proxy"]:
            proxy = TcpProxy(self.target_port)
            await proxy.start()
            self.proxies[proxy.port] = proxy
            return "200 OK", str(proxy.port)
        if len(parts) == 3 and parts[0] == "proxy":
            proxy = self.proxies.get(int(parts[1]))
            action = {"cut": "cut", "restore": "restore", "hold": "hold"}
            if proxy is not None and parts[2] in action:
                getattr(proxy, action[parts[2]])()
                return "200 OK", "ok"
        return "404 Not Found", "no such action"


@contextlib.contextmanager
def example_app(log: Path, broadcaster: str) -> Iterator[int]:
    """The example app (tokens signed with ``SECRET``); yield its port."""
    env = {"SANIC_CHAT_JWT_SECRET": SECRET}
    if broadcaster != "memory://":
        env["SANIC_CHAT_BROADCASTER_URL"] = broadcaster
    port, proc = spawn_example(log, **env)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(scope="module")
def on_memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One example app on the in-memory broadcaster for this module."""
    log = tmp_path_factory.mktemp("js-memory") / "example.log"
    with example_app(log, "memory://") as port:
        yield port


@pytest.fixture(scope="module")
def on_redis(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[int]:
    """One example app on Redis for this module."""
    log = tmp_path_factory.mktemp("js-redis") / "example.log"
    with example_app(log, redis_server.url) as port:
        yield port


async def run_node_tests(port: int) -> None:
    assert NODE is not None, "node is not installed"
    control = Control(port)
    await control.start()
    env = {
        **os.environ,
        "CHAT_HTTP": f"http://127.0.0.1:{port}",
        "CHAT_CONTROL": f"http://127.0.0.1:{control.port}",
        "CHAT_SECRET": SECRET,
    }
    try:
        proc = await asyncio.create_subprocess_exec(
            NODE,
            "--experimental-websocket",
            "--no-warnings",
            "--test",
            "--test-concurrency=2",
            *sorted(str(p) for p in (JS / "test").glob("*.test.mjs")),
            env=env,
            cwd=JS,
            stdout=asyncio.subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await proc.communicate()
    finally:
        await control.stop()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, f"node --test failed:\n{text}"
    assert "# fail 0" in text and "# pass 0" not in text, text


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_node_suite_on_memory(on_memory: int) -> None:
    await run_node_tests(on_memory)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_node_suite_on_redis(on_redis: int) -> None:
    await run_node_tests(on_redis)


BROWSER_SCRIPT = """
async ([room, token, expired, forged]) => {
  const { connect } = await import("/client.js");
  const fast = { initialDelay: 50, maxDelay: 200 };
  const chat = connect("/ws", { token, rooms: [room] });
  const seen = [];
  chat.on("message", (m) => seen.push(m.text));
  await chat.ready;
  const id = await chat.send(room, "from the browser");
  const history = await chat.history(room);
  chat.close();
  const codes = [];
  for (const bad of [expired, forged]) {
    const refused = connect("/ws", { token: bad, rooms: [room], reconnect: fast });
    codes.push(await refused.ready.then(() => "connected", (e) => e.code));
  }
  return { id, user: chat.user, seen, history: history.map((m) => m.id), codes };
}
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_served_client_works_in_chromium(on_memory: int) -> None:
    """Imported from ``/client.js`` by a real page: a relative ``/ws``,
    the subprotocol token, and refusals told apart without an HTTP
    status (the ``no-cors`` probe)."""
    import jwt
    from playwright.async_api import async_playwright

    now = int(time.time())
    claims = {"sub": "browser-user", "name": "Bea"}
    token = jwt.encode({**claims, "exp": now + 600}, SECRET)
    expired = jwt.encode({**claims, "exp": now - 600}, SECRET)
    forged = jwt.encode({**claims, "exp": now + 600}, "x" * 40)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"http://127.0.0.1:{on_memory}/health")
            result = await page.evaluate(
                BROWSER_SCRIPT, ["js-browser", token, expired, forged]
            )
        finally:
            await browser.close()
    assert result["user"] == {"id": "browser-user", "name": "Bea"}
    assert result["seen"] == ["from the browser"]
    assert result["history"][-1] == result["id"]
    assert result["codes"] == ["unauthorized", "unauthorized"]
    assert errors == []


NPM = shutil.which("npm")


@pytest.mark.slow
def test_the_npm_package_would_ship_the_client(tmp_path: Path) -> None:
    """``npm pack --dry-run`` (offline): prepack copies the canonical files.

    Run on a copy of ``clients/js`` beside a link to ``sanic_chat/static``,
    so that the worktree is left as it was.
    """
    assert NPM is not None, "npm is not installed"
    package = tmp_path / "clients" / "js"
    shutil.copytree(JS, package, ignore=shutil.ignore_patterns("client.*"))
    (tmp_path / "sanic_chat").mkdir()
    (tmp_path / "sanic_chat" / "static").symlink_to(STATIC)
    result = subprocess.run(
        [NPM, "pack", "--dry-run", "--json", "--offline"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "npm_config_cache": str(tmp_path / "npm-cache"),
            "npm_config_update_notifier": "false",
        },
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (packed,) = json.loads(result.stdout[result.stdout.index("[") :])
    files = {f["path"] for f in packed["files"]}
    assert files == {"client.js", "client.d.ts", "package.json", "README.md"}
    for name in ("client.js", "client.d.ts"):
        assert (package / name).read_bytes() == (STATIC / name).read_bytes()
    manifest = json.loads((JS / "package.json").read_text())
    assert manifest["exports"]["."] == {
        "types": "./client.d.ts",
        "default": "./client.js",
    }


LAGGED_SCRIPT = """
import { connect } from CLIENT;
const chat = connect(URL, { name: "slow", rooms: ["flood"] });
const texts = [];
let lagged = 0;
chat.on("lagged", () => (lagged += 1));
chat.on("message", (m) => {
  texts.push(m.text.split(" ")[0]);
  if (m.text !== "the-end") return;
  console.log(JSON.stringify({ texts, lagged }));
  chat.close();
});
await chat.ready;
console.log("ready");
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_client_that_lagged_gets_every_message_once_in_order() -> None:
    """The server drops frames of a client that reads too slowly (held
    in a proxy with a small buffer) and says ``lagged``: the client
    re-joins with ``since`` and delivers every message once, in order,
    live messages after the gap included."""
    assert NODE is not None, "node is not installed"
    app = make_app(
        broadcaster="memory://",
        send_queue_size=10,
        slow_consumer="drop_oldest",
        history_size=2100,
        max_unsent_bytes=256 * 1024,
    )
    count = 2000
    filler = "x" * 3900
    async with live(app) as srv:
        proxy = TcpProxy(srv.port, rcvbuf=4096)
        await proxy.start()
        script = LAGGED_SCRIPT.replace(
            "CLIENT", json.dumps((STATIC / "client.js").as_uri())
        ).replace("URL", json.dumps(f"ws://127.0.0.1:{proxy.port}/ws"))
        node = await asyncio.create_subprocess_exec(
            NODE,
            "--experimental-websocket",
            "--no-warnings",
            "--input-type=module",
            "--eval",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert node.stdout is not None
            ready = await asyncio.wait_for(node.stdout.readline(), TIMEOUT)
            assert ready == b"ready\n", ready
            proxy.hold()
            for i in range(count):
                await srv.chat.publish("flood", f"m{i} {filler}")
            await asyncio.sleep(0.5)  # the outbox overflows meanwhile
            proxy.restore()
            for i in range(count, count + 20):  # live after the gap
                await srv.chat.publish("flood", f"m{i}")
            await srv.chat.publish("flood", "the-end")
            output, _ = await asyncio.wait_for(node.communicate(), TIMEOUT * 4)
        finally:
            if node.returncode is None:
                node.kill()
            await proxy.stop()
    result = json.loads(output.decode().strip().splitlines()[-1])
    assert result["lagged"] > 0, "the server never dropped a frame"
    expected = [f"m{i}" for i in range(count + 20)] + ["the-end"]
    assert result["texts"] == expected


NETWORK_SCRIPT = """
async (token) => {
  const { connect } = await import("/client.js");
  const slow = { initialDelay: 60000, maxDelay: 60000 };
  const chat = connect("/ws", { token, rooms: ["js-net"], reconnect: slow });
  window.chat = chat;
  window.states = [];
  chat.on("state", (e) => window.states.push([e.state, e.reason ?? null]));
  await chat.ready;
}
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_the_client_follows_the_browser_network(on_memory: int) -> None:
    """``offline`` drops the socket at once; ``online`` reconnects at
    once, though the backoff would wait a minute; so does
    ``reconnect()`` after a lost connection."""
    import jwt
    from playwright.async_api import async_playwright

    claims = {"sub": "net-user", "name": "Net", "exp": int(time.time()) + 600}
    token = jwt.encode(claims, SECRET)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            context = await browser.new_context()
            page = await context.new_page()
            await page.goto(f"http://127.0.0.1:{on_memory}/health")
            await page.evaluate(NETWORK_SCRIPT, token)
            await context.set_offline(True)
            await page.wait_for_function("chat.state === 'disconnected'")
            offline = await page.evaluate("states.at(-1)")
            await context.set_offline(False)
            await page.wait_for_function(
                "chat.state === 'connected'", timeout=10000
            )
            # A lost connection waits out its backoff; reconnect() not.
            await page.evaluate("chat._ws.close(4000)")
            await page.wait_for_function("chat.state === 'disconnected'")
            await page.wait_for_timeout(500)
            waiting = await page.evaluate("chat.state")
            await page.evaluate("chat.reconnect()")
            await page.wait_for_function(
                "chat.state === 'connected'", timeout=10000
            )
            states = await page.evaluate("states")
        finally:
            await browser.close()
    assert offline == ["disconnected", "offline"]
    assert waiting == "disconnected"
    assert [s for s, _ in states].count("connected") == 3
