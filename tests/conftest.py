"""Real servers on ephemeral ports and real WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from sanic import Sanic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import sanic_chat
import sanic_chat._openapi

from .redis_cluster import RedisCluster
from .redis_sentinel import SentinelSetup
from .redis_server import RedisServer

TIMEOUT = 5.0
_names = itertools.count()


def new_app() -> Sanic:
    """A fresh, empty app with a unique name.

    Without sanic-ext unless the test is marked ``sanic_ext`` (see
    :func:`sanic_ext_where_marked`).
    """
    app = Sanic(f"chat_test_{next(_names)}")
    # TouchUp rewrites Sanic's methods per app; with many apps in one
    # process it is flaky and it buys nothing in tests.
    app.config.TOUCHUP = False
    app.config.AUTO_EXTEND = SANIC_EXT["on"]
    return app


# Whether apps use sanic-ext; the ``sanic_ext`` marker turns it on.
SANIC_EXT = {"on": False}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sanic-ext",
        action="store_true",
        help="every test app uses sanic-ext (AUTO_EXTEND), as a host "
        "with sanic-ext installed; by default only tests marked sanic_ext",
    )


@pytest.fixture(autouse=True)
def sanic_ext_where_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Test apps as hosts without sanic-ext, unless marked ``sanic_ext``.

    sanic-ext is in the dev extra, so Sanic would extend every test app
    (``AUTO_EXTEND``): automatic HEAD, OPTIONS and TRACE routes, the
    router finalized again for each, an OpenAPI document, and the chat
    describing its routes for it; about half a second per app on two
    cores, for a feature few tests are about. Unmarked tests run as a
    host without sanic-ext does: no ``Extend``, and the chat's
    descriptions skipped as when sanic-ext cannot be imported.
    ``pytest --sanic-ext`` runs every test as a host using sanic-ext
    (CI's oldest-versions job does, to check the chat on sanic-ext's
    oldest release).
    """
    if request.node.get_closest_marker("sanic_ext") or (
        request.config.getoption("sanic_ext")
    ):
        SANIC_EXT["on"] = True
    else:
        monkeypatch.setattr(sanic_chat._openapi, "openapi", None)
    try:
        yield
    finally:
        SANIC_EXT["on"] = False


# The broadcaster URL ``make_app`` uses; the ``backend`` fixture sets it.
BACKEND_URL = {"url": "memory://"}
# How ``live`` serves apps; the ``transport`` fixture sets it: "sanic"
# (Sanic's server, fast transport), "sanic-portable" (Sanic's server,
# portable transport) or "uvicorn" (an ASGI server, portable transport).
TRANSPORT = {"name": "sanic"}


def make_app(**options: Any) -> Sanic:
    """A fresh app with the chat blueprint and the given options.

    Unless ``broadcaster`` is given, it uses the backend under test, with a
    fresh key prefix so that tests sharing one Redis share nothing.
    """
    app = new_app()
    if TRANSPORT["name"] == "sanic-portable":
        options.setdefault("transport", "portable")
    if "broadcaster" not in options:
        url = BACKEND_URL["url"]
        if url.startswith("redis"):
            url += "&" if "?" in url else "?"
            url += f"prefix=t{next(_names)}:&heartbeat=1"
        options["broadcaster"] = url
    app.blueprint(sanic_chat.create_blueprint(**options))
    return app


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServer]:
    """One ``redis-server`` for the session, on a free port."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def redis_sentinel(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SentinelSetup]:
    """A primary, a replica and three sentinels, once for the session."""
    setup = SentinelSetup(tmp_path_factory.mktemp("sentinel"))
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


@pytest.fixture(scope="session")
def redis_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisCluster]:
    """One Redis Cluster (3 primaries, 3 replicas) for the session."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["memory", "redis", "redis-sentinel", "redis-cluster"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test against every built-in broadcaster."""
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        BACKEND_URL["url"] = redis.url
    elif request.param == "redis-sentinel":
        setup = request.getfixturevalue("redis_sentinel")
        BACKEND_URL["url"] = setup.url()
    elif request.param == "redis-cluster":
        BACKEND_URL["url"] = request.getfixturevalue("redis_cluster").url
    try:
        yield request.param
    finally:
        BACKEND_URL["url"] = "memory://"


TRANSPORTS = ("sanic", "sanic-portable", "uvicorn")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``transport``: all of them, or those a test names.

    ``@pytest.mark.transports("sanic", ...)`` limits a test to what only
    those transports do (the fast path's own limits, Sanic's shutdown).
    """
    if "transport" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("transports")
        names = marker.args if marker else TRANSPORTS
        metafunc.parametrize("transport", names, indirect=True)


# First: ``-m "not slow"`` must see the markers added here.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Run the portable transports on the memory backend only; mark the
    rest of the matrix ``slow``.

    Transports and backends are separate layers (the hub stands between
    them); the full matrix would double the suites' time for nothing.
    Of what remains, the default variant (memory backend, Sanic's server
    with the fast transport) stays in the quick loop (``-m "not slow"``)
    and every other one is marked ``slow``: the other transports
    (``sanic-portable``, ``uvicorn``), the Redis backend, and anything
    that needs a ``redis-server`` (any parameter starting with ``"redis"``,
    or the ``redis_server`` or ``redis_cluster`` fixture), and the tests marked ``sanic_ext`` (an
    app with sanic-ext takes about a second to start). CI runs them all.
    """
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        params = params.params if params is not None else {}
        if (
            str(params.get("backend", "")).startswith("redis")
            and params.get("transport", "sanic") != "sanic"
        ):
            dropped.append(item)
            continue
        kept.append(item)
        if (
            _matrix_variant(params)
            or {"redis_server", "redis_sentinel", "redis_cluster"}
            & set(getattr(item, "fixturenames", ()))
            or item.get_closest_marker("sanic_ext")
        ):
            item.add_marker(pytest.mark.slow)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _matrix_variant(params: dict[str, Any]) -> bool:
    """Whether a test's parameters are not the default variant."""
    return (
        params.get("transport", "sanic") != "sanic"
        or params.get("backend", "memory") != "memory"
        or any(str(v).startswith("redis") for v in params.values())
    )


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test on every transport: the protocol must not change."""
    TRANSPORT["name"] = request.param
    try:
        yield request.param
    finally:
        TRANSPORT["name"] = "sanic"


class LiveServer:
    def __init__(self, app: Sanic, server: Any, port: int) -> None:
        self.app = app
        self.port = port
        self._server = server
        self._stopped = False

    async def stop(self) -> None:
        """Stop the server as Sanic does on shutdown, listeners included."""
        if self._stopped:
            return
        self._stopped = True
        await self._server.before_stop()
        self._server.close()
        # Before wait_closed: from Python 3.12.1 it waits for every
        # connection, a half-sent request's included.
        self._abort_half_sent_requests()
        await self._server.wait_closed()
        await self._server.after_stop()

    def _abort_half_sent_requests(self) -> None:
        """End connections that sent part of a request, as Sanic does.

        Sanic's own shutdown aborts every connection still busy after
        its graceful wait. Without that step here, such a connection (a
        client's upgrade caught half-way, e.g. through a proxy being
        cut) was cancelled later, with the test's event loop, and Sanic
        logs a cancelled half-read request as an error ("Exception
        occurred while handling uri: 'http:///*'"): a rare failure of
        tests that check no error was logged.
        """
        from sanic.http import Stage

        for conn in list(self._server.connections):
            http = getattr(conn, "_http", None)
            if http is not None and http.stage is Stage.REQUEST:
                conn.transport.abort()

    @property
    def chat(self) -> sanic_chat.Chat:
        return sanic_chat.get_chat(self.app)

    def url(self, path: str = "/ws", **query: Any) -> str:
        from urllib.parse import urlencode

        qs = urlencode(query, doseq=True)
        return f"ws://127.0.0.1:{self.port}{path}" + (f"?{qs}" if qs else "")

    @asynccontextmanager
    async def client(
        self, path: str = "/ws", welcome: bool = True, **query: Any
    ) -> AsyncIterator[Client]:
        """Connect; by default read the welcome and the joined frames."""
        max_queue = query.pop("max_queue", 16)
        async with connect(
            self.url(path, **query),
            open_timeout=TIMEOUT,
            max_queue=max_queue,
            # A test client that stopped reading cannot see the server's
            # close frame behind unread messages; do not wait 10 s for it.
            close_timeout=1,
        ) as ws:
            client = Client(ws)
            if welcome:
                client.welcome = await client.expect("welcome")
                for room in client.welcome["rooms"]:
                    await client.expect("joined", room=room)
            yield client


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}

    @property
    def user(self) -> dict[str, str]:
        return self.welcome["user"]

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(
            frame if isinstance(frame, str) else json.dumps(frame)
        )

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        data = await asyncio.wait_for(self.ws.recv(), timeout)
        frame = json.loads(data)
        assert isinstance(frame, dict) and "type" in frame, frame
        return frame

    async def expect(self, type: str, **fields: Any) -> dict[str, Any]:
        """Read the next frame and check its type and fields.

        Notices about other members joining or leaving are best-effort and
        race with everything else, so they are skipped unless expected.
        """
        frame = await self.recv()
        while (
            type not in ("joined", "left")
            and frame["type"] in ("joined", "left")
            and frame["user"] != self.welcome.get("user")
        ):
            frame = await self.recv()
        assert frame["type"] == type, frame
        for key, value in fields.items():
            assert frame[key] == value, frame
        return frame

    async def find(self, type: str, **fields: Any) -> dict[str, Any]:
        """Read frames until one has this type and these fields."""
        return await self.until(
            lambda f: (
                f["type"] == type
                and all(f.get(k) == v for k, v in fields.items())
            )
        )

    async def until(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """Read frames until one matches; return it."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if match(frame):
                    return frame

    async def say(self, text: str, room: str = "lobby") -> dict[str, Any]:
        """Send a message and return its echo."""
        await self.send({"type": "message", "room": room, "text": text})
        return await self.until(
            lambda f: f["type"] == "message" and f["text"] == text
        )

    async def close_code(self) -> int | None:
        """Read until the server closes; return the close code it sent."""
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(TIMEOUT * 2):
                while True:
                    await self.ws.recv()
        return info.value.rcvd.code if info.value.rcvd else None

    async def drain(self, wait: float) -> list[dict[str, Any]]:
        """Return every frame that arrives within ``wait`` seconds."""
        frames: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while True:
                    frames.append(await self.recv())
        return frames

    async def nothing(
        self, wait: float = 0.2, *, notices: bool = True
    ) -> None:
        """Assert that no frame arrives within ``wait`` seconds.

        ``notices=False`` lets through the ``joined``/``left`` notices of
        other members, which are best-effort and may arrive late (a
        notice published before this client joined can reach it after,
        through a slow Redis), as :meth:`expect` does.
        """
        try:
            async with asyncio.timeout(wait):
                while True:
                    frame = json.loads(await self.ws.recv())
                    if notices or not (
                        frame.get("type") in ("joined", "left")
                        and frame.get("user") != self.welcome.get("user")
                    ):
                        break
        except TimeoutError:
            return
        pytest.fail(f"a frame arrived: {frame!r}")


class AsgiLiveServer(LiveServer):
    """An app served by uvicorn in this process (see :func:`live_asgi`)."""

    async def stop(self) -> None:
        """Stop as uvicorn does on SIGTERM: sockets, then the lifespan."""
        if self._stopped:
            return
        self._stopped = True
        server, task = self._server
        server.should_exit = True
        async with asyncio.timeout(TIMEOUT * 3):
            await task


async def drain_each(
    wait: float, *clients: Client
) -> list[list[dict[str, Any]]]:
    """Every frame each client gets within ``wait`` seconds, all of them
    listening at once (not one ``wait`` after the other)."""
    return list(await asyncio.gather(*(c.drain(wait) for c in clients)))


async def until(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait until ``check()`` holds (polled), instead of a fixed sleep."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


async def send_until_acked(client: Client, frame: dict[str, Any]) -> Any:
    """Send ``frame`` until acked, as clients do (``unavailable``: the
    same ref again, a little later)."""
    for _ in range(20):
        await client.send(frame)
        answer = await client.until(lambda f: f.get("ref") == frame["ref"])
        if answer["type"] == "ack":
            return answer
        assert answer["code"] == "unavailable", answer
        await asyncio.sleep(0.2)
    raise AssertionError(f"never acknowledged: {answer}")


@asynccontextmanager
async def live_asgi(app: Sanic) -> AsyncIterator[LiveServer]:
    """Serve ``app`` with uvicorn (its ASGI side) on an ephemeral port."""
    import uvicorn

    sock = _bound_socket()
    config = uvicorn.Config(
        app,
        lifespan="on",
        ws="websockets-sansio",
        # No dictConfig of the test process's logging, no levels set.
        log_config=None,
        log_level=None,
        timeout_graceful_shutdown=int(TIMEOUT),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(TIMEOUT):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
    srv = AsgiLiveServer(app, (server, task), sock.getsockname()[1])
    try:
        yield srv
    finally:
        await srv.stop()
        sock.close()


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def live(
    app: Sanic, access_log: bool = False
) -> AsyncIterator[LiveServer]:
    """Run ``app`` on 127.0.0.1 and an ephemeral port, with its listeners.

    On Sanic's own server, or on uvicorn when the ``transport`` fixture
    says so.
    """
    if TRANSPORT["name"] == "uvicorn":
        async with live_asgi(app) as srv:
            yield srv
        return
    # Sanic treats port=0 as "use the default"; bind the socket ourselves.
    sock = _bound_socket()
    port = sock.getsockname()[1]
    server = await app.create_server(
        sock=sock, return_asyncio_server=True, access_log=access_log
    )
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    srv = LiveServer(app, server, port)
    try:
        yield srv
    finally:
        await srv.stop()


# sanic-testing's ``app.asgi_client`` replaces ``Sanic.__call__`` (the
# ASGI entry point) for every app of the process, for good; uvicorn would
# then serve later tests' apps through sanic-testing's test shim.
_SANIC_ASGI_ENTRY = Sanic.__call__


@pytest.fixture(autouse=True)
def sanic_asgi_entry_restored() -> Iterator[None]:
    """Undo sanic-testing's process-wide patch after every test."""
    yield
    Sanic.__call__ = _SANIC_ASGI_ENTRY  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def no_errors_logged(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """Fail any test during which sanic-chat or Sanic logged an error.

    Tests that provoke an error on purpose are marked ``logs_errors``.
    """
    yield
    if request.node.get_closest_marker("logs_errors"):
        return
    errors = [
        r
        for r in caplog.get_records("call") + caplog.get_records("teardown")
        if r.levelno >= logging.ERROR and not _uvicorn_denial_noise(r)
    ]
    assert not errors, [r.getMessage() for r in errors]


def _uvicorn_denial_noise(record: logging.LogRecord) -> bool:
    """uvicorn's websockets-sansio logs an ERROR after every refusal sent
    as a ``websocket.http.response`` (the client gets it right): upstream
    bug, see Kludex/uvicorn pull request 3138.
    """
    return record.name == "uvicorn.error" and record.getMessage() == (
        "ASGI callable returned without completing handshake."
    )


@pytest.fixture
def app_factory() -> Callable[..., Sanic]:
    return make_app


@pytest.fixture
async def server() -> AsyncIterator[LiveServer]:
    async with live(make_app()) as srv:
        yield srv


# For tests that send faster than a person: the rate limit is tested apart.
UNLIMITED = {"rate_limit": 10_000.0, "rate_burst": 10_000}


@pytest.fixture
async def fast_server() -> AsyncIterator[LiveServer]:
    """A server whose rate limit does not get in the way of floods."""
    async with live(make_app(**UNLIMITED)) as srv:
        yield srv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def stop_once_workers_are_ready(
    log: Path, proc: subprocess.Popen[bytes], workers: int
) -> None:
    """Stop a ``--workers N`` example app once every worker is up.

    Sanic's worker manager, told to stop while it still waits for its
    workers' acks (``wait_for_ack``), never exits: wait for each "Worker
    ready" and give the acks a second to reach the main process. Kills
    the process if it does not exit, so no server is left behind.
    """
    try:
        for _ in range(300):
            text = await asyncio.to_thread(log.read_text)
            if text.count("Worker ready") >= workers:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        proc.terminate()
        await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def spawn_example(
    log: Path,
    *args: str,
    port: int | None = None,
    asgi: bool = False,
    **env: str,
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start ``python -m example_app`` (on a free port unless ``port``).

    With ``asgi``, ``uvicorn example_app.asgi:app`` instead (``args`` go
    to uvicorn then). Waits until it listens. Output is appended to
    ``log`` (a pipe nobody reads would block the server).
    """
    port = port or _free_port()
    command = (
        ["uvicorn", "example_app.asgi:app", "--log-level", "warning"]
        if asgi
        else ["example_app"]
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *command, "--port", str(port), *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), 0.1):
                return port, proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()) from None
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("example app did not start")


@contextmanager
def run_example(
    log: Path, *args: str, asgi: bool = False, **env: str
) -> Iterator[int]:
    """Run the example app for the duration of the block; yield its port."""
    port, proc = spawn_example(log, *args, asgi=asgi, **env)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def remote(port: int) -> LiveServer:
    """A :class:`LiveServer` handle on a server in another process."""
    return LiveServer(None, None, port)  # type: ignore[arg-type]


@pytest.fixture
def example(tmp_path: Path) -> Iterator[int]:
    """The example app with default settings, guests allowed."""
    with run_example(tmp_path / "example.log", "--allow-anonymous") as port:
        yield port


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI, a skipped test is a failure: nothing may silently skip."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(
                f"CI: {len(skipped)} test(s) skipped; skips fail CI",
                red=True,
            )
