"""The Python ceiling: a bare ``websockets`` server using ``broadcast()``.

Speaks just enough of the sanic-chat protocol for ``bench/fanout.py``:
every text frame ``{"type":"message","text":T,"ref":R}`` is broadcast as
``{"type":"message","room":"lobby","text":T}`` to every connection with
``websockets.broadcast`` (encode once, no per-recipient work beyond the
write), and acknowledged to its sender.

    python bench/bare_server.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    CLIENTS.add(ws)
    try:
        async for data in ws:
            frame = json.loads(data)
            if frame.get("type") != "message":
                continue
            out = {"type": "message", "room": "lobby", "text": frame["text"]}
            broadcast(CLIENTS, json.dumps(out, separators=(",", ":")))
            if "ref" in frame:
                await ws.send(json.dumps({"type": "ack", "ref": frame["ref"]}))
    finally:
        CLIENTS.discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, ping_interval=None):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(int(sys.argv[1])))
