"""A room of thousands is the normal case: default room, default settings.

The server runs as users run it (``python -m example_app``, one worker)
in its own process; 5,000 real WebSocket clients connect as fast as they
can. Nobody may be flooded by join notices or closed as a slow consumer,
and one message must then reach all of them.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from websockets.asyncio.client import ClientConnection, connect

# Thousands of clients against the example app in a subprocess.
pytestmark = pytest.mark.slow

CLIENTS = 5000
BATCH = 250


def _health(port: int) -> dict[str, int]:
    url = f"http://127.0.0.1:{port}/health"
    with urllib.request.urlopen(url) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


async def test_5000_clients_in_one_room(example: int) -> None:
    url = f"ws://127.0.0.1:{example}/ws"
    counts: list[int] = []
    sockets: list[ClientConnection] = []

    async def drain(ws: ClientConnection, index: int) -> None:
        async for _ in ws:
            counts[index] += 1

    readers = []
    for start in range(0, CLIENTS, BATCH):
        opened = await asyncio.gather(
            *(
                connect(url, open_timeout=60, ping_interval=None)
                for _ in range(start, min(start + BATCH, CLIENTS))
            )
        )
        for ws in opened:
            counts.append(0)
            sockets.append(ws)
            readers.append(asyncio.create_task(drain(ws, len(sockets) - 1)))
    try:
        health = await asyncio.to_thread(_health, example)
        assert health["status"] == "ok"
        assert (health["connections"], health["rooms"]) == (CLIENTS, 1)
        # Welcome and own joined for everyone; join notices only while the
        # room was small (presence_events_max_members, default 100).
        async with asyncio.timeout(60):
            while min(counts) < 2:
                await asyncio.sleep(0.1)
        assert max(counts) <= 2 + 100

        before = list(counts)
        await sockets[-1].send("hello, everyone")
        async with asyncio.timeout(60):
            while any(c == b for c, b in zip(counts, before)):
                await asyncio.sleep(0.1)
        assert all(ws.close_code is None for ws in sockets)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
        await asyncio.gather(*readers, return_exceptions=True)
    async with asyncio.timeout(30):
        while (await asyncio.to_thread(_health, example))["connections"]:
            await asyncio.sleep(0.1)
    assert (await asyncio.to_thread(_health, example))["rooms"] == 0
