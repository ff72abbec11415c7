"""The Python ceiling: a bare ``websockets`` server using ``broadcast()``.

Speaks just enough for ``bench/loadgen.mjs``: a client joins the rooms
named by ``?room=`` in its URL (``lobby`` by default); every text frame
``{"type":"message","room":R,"text":T}`` is broadcast as
``{"type":"message","room":R,"text":T}`` to the members of ``R`` with
``websockets.broadcast`` (encoded once, no per-recipient work beyond the
write). No auth, ids, history or queues: the least work per delivery
the Python ecosystem offers.

    python bench/bare_server.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

ROOMS: defaultdict[str, set[ServerConnection]] = defaultdict(set)


async def handler(ws: ServerConnection) -> None:
    query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
    rooms = query.get("room") or ["lobby"]
    for room in rooms:
        ROOMS[room].add(ws)
    try:
        async for data in ws:
            frame = json.loads(data)
            if frame.get("type") != "message":
                continue
            room = frame["room"]
            out = {"type": "message", "room": room, "text": frame["text"]}
            broadcast(ROOMS[room], json.dumps(out, separators=(",", ":")))
    finally:
        for room in rooms:
            ROOMS[room].discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, ping_interval=None):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    import uvloop

    uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
