"""Metrics: the Python API, the Prometheus text, and several workers."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import httpx
import pytest

from .conftest import live, make_app, remote, run_example


def sample(text: str, name: str) -> list[float]:
    """Values of the Prometheus series ``name`` (any labels)."""
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", re.M)
    return [float(v) for v in pattern.findall(text)]


async def test_the_python_api_counts_what_happened() -> None:
    async with live(make_app(rate_limit=1, rate_burst=2)) as srv:
        async with srv.client() as alice, srv.client() as bob:
            await alice.say("one")
            await bob.expect("message", text="one")
            await alice.say("two", room="lobby")
            await bob.expect("message", text="two")
            for _ in range(3):  # past the burst: refused
                await bob.send({"type": "ping"})
            await bob.find("error", code="rate_limited")
            m = srv.chat.metrics_snapshot()
            assert m["connections"] == 2 and m["rooms"] == 1
            assert m["room_members"] == {"lobby": 2}
            assert m["messages_received"] == 2
            assert m["messages_sent"] >= 4  # two messages, two members
            assert m["publish_count"] == 2 and m["publish_seconds"] > 0
            assert m["rate_limited"] >= 1
            assert m["broadcaster_healthy"] is True
        async with httpx.AsyncClient() as http:
            await http.get(
                srv.url().replace("ws://", "http://"),
                headers={
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Origin": "https://evil.example",
                },
            )
        m = srv.chat.metrics_snapshot()
        assert m["auth_failures"] == {"forbidden_origin": 1}


async def test_metrics_are_served_as_prometheus_text() -> None:
    app = make_app(metrics_room_labels="names")
    async with live(app) as srv, srv.client() as alice:
        await alice.say("hello")
        async with httpx.AsyncClient() as http:
            reply = await http.get(f"http://127.0.0.1:{srv.port}/metrics")
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/plain")
        text = reply.text
        assert sample(text, "sanic_chat_connections") == [1.0]
        assert sample(text, "sanic_chat_messages_received_total") == [1.0]
        assert sample(text, "sanic_chat_publish_seconds_count") == [1.0]
        assert sample(text, "sanic_chat_room_members") == [1.0]
        assert sample(text, "sanic_chat_broadcaster_up") == [1.0]
        names = set(re.findall(r"^# TYPE (\S+)", text, re.M))
        assert all(n.startswith("sanic_chat_") for n in names)


@pytest.mark.slow  # two worker processes
async def test_with_two_workers_every_scrape_counts_both(
    tmp_path: Path,
) -> None:
    log = tmp_path / "example.log"
    with run_example(log, "--workers", "2", "--allow-anonymous") as port:
        srv = remote(port)
        async with (
            contextlib.AsyncExitStack() as stack,
            httpx.AsyncClient() as http,
        ):
            clients = [
                await stack.enter_async_context(srv.client()) for _ in range(6)
            ]
            for client in clients[:3]:
                await client.say("hi")
            await asyncio.sleep(1.5)  # each worker syncs every second
            workers = set()
            for _ in range(8):
                reply = await http.get(f"http://127.0.0.1:{port}/metrics")
                text = reply.text
                assert sample(text, "sanic_chat_connections") == [6.0], text
                assert sample(text, "sanic_chat_messages_received_total") == [
                    3.0
                ]
                workers.add(len(sample(text, "sanic_chat_broadcaster_up")))
            assert workers == {2}  # health per worker (pid label)
